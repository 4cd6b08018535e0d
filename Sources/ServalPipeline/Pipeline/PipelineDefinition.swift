import Foundation
import Yams

/// A retraining pipeline as its YAML file describes it: the data it versions, the train command (optionally a
/// matrix of candidates), optional quantization, the evaluation gates against the champion, how a candidate is
/// deployed, and what triggers a run. Parsing checks every field and names the file, line and field of a mistake.
public struct PipelineDefinition: Sendable {
    public struct Train: Sendable {
        /// The command, with `${…}` references.
        public var run: String
        /// Parameters with several values: one candidate per combination, in file order.
        public var matrix: [(name: String, values: [ParameterValue])]
    }

    public struct Quantize: Sendable, Equatable {
        public var enabled: Bool
        public var calibration: String?
        public var maxCosineDistance: Double
    }

    /// A gate on one metric: absolute bounds, and bounds on the difference to the champion's value.
    public struct Gate: Sendable, Equatable {
        public var min: Double?
        public var max: Double?
        public var minDeltaVsChampion: Double?
        public var maxDeltaVsChampion: Double?
    }

    public struct Evaluate: Sendable, Equatable {
        public var labelColumn: String
        /// The first is primary: it picks the best matrix candidate.
        public var metrics: [EvaluationMetric]
        public var gates: [EvaluationMetric: Gate]
        /// The input columns, in order; nil: every column but the label, in file order.
        public var columns: [String]?
    }

    public enum Strategy: String, Sendable, CaseIterable {
        case canary, shadow, direct
    }

    public struct Deploy: Sendable, Equatable {
        public var strategy: Strategy
        /// Percent of traffic (canary) or mirrored (shadow).
        public var traffic: Int
        public var progressiveSteps: [Int]?
        public var progressiveIntervalSeconds: Double?
        public var guardMinRequests: Int?
        public var guardMaxErrorRate: Double?
        public var guardMaxP99LatencyRatio: Double?
    }

    public struct Triggers: Sendable, Equatable {
        public var onAlert: [String]
        public var everySeconds: Double?
        public var cooldownSeconds: Double
    }

    public var name: String
    public var model: String
    /// Named data paths (relative to the pipeline file's folder), in file order.
    public var data: [(name: String, path: String)]
    /// Parameters, in file order.
    public var params: [(name: String, value: ParameterValue)]
    public var deps: [String]
    public var train: Train
    public var quantize: Quantize?
    public var evaluate: Evaluate
    public var deploy: Deploy
    public var triggers: Triggers

    /// The alerts the monitor raises, which `triggers.on_alert` may name.
    public static let alertNames = ["dataset_drift", "prediction_drift", "accuracy", "estimated_accuracy", "mae"]

    /// Parses and validates a pipeline file's text; `file` names it in errors.
    public static func parse(_ text: String, file: String) throws -> PipelineDefinition {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else { throw PipelineError("\(file): the file is empty; a pipeline needs name, model, data, train, evaluate and deploy") }
            root = node
        } catch let error as PipelineError {
            throw error
        } catch {
            throw PipelineError("\(file): not YAML: \(error)")
        }
        let top = YAMLField(node: root, path: "", file: file)
        try top.only(["name", "model", "data", "params", "deps", "train", "quantize", "evaluate", "deploy", "triggers"])
        let name = try top.required("name").string()
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw try top.required("name").error("use letters, digits, '-', '_' and '.'")
        }
        let model = try top.required("model").string()

        let data = try top.required("data").entries().map { (name: $0.key, path: try $0.value.string()) }
        let params = try (top["params"]?.entries() ?? []).map { (name: $0.key, value: try ParameterValue($0.value)) }
        let deps = try top["deps"]?.strings() ?? []

        let trainField = try top.required("train")
        try trainField.only(["run", "matrix"])
        var matrix: [(name: String, values: [ParameterValue])] = []
        for (key, value) in try trainField["matrix"]?.entries() ?? [] {
            let values = try value.list().map(ParameterValue.init)
            guard !values.isEmpty else { throw value.error("a matrix parameter needs at least one value") }
            matrix.append((key, values))
        }
        let train = Train(run: try trainField.required("run").string(), matrix: matrix)

        var quantize: Quantize?
        if let field = top["quantize"] {
            try field.only(["enabled", "calibration", "max_cosine_distance"])
            quantize = Quantize(enabled: try field["enabled"]?.bool() ?? true, calibration: try field["calibration"]?.string(),
                                maxCosineDistance: try field["max_cosine_distance"]?.double() ?? 0.01)
        }

        let evaluateField = try top.required("evaluate")
        try evaluateField.only(["label_column", "metrics", "gates", "columns"])
        let metricsField = try evaluateField.required("metrics")
        let metrics = try metricsField.list().map { item -> EvaluationMetric in
            let text = try item.string()
            guard let metric = EvaluationMetric(rawValue: text) else {
                throw item.error("unknown metric '\(text)'; expected one of \(EvaluationMetric.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return metric
        }
        guard !metrics.isEmpty else { throw metricsField.error("name at least one metric (the first is primary)") }
        var gates: [EvaluationMetric: Gate] = [:]
        for (key, value) in try evaluateField["gates"]?.entries() ?? [] {
            guard let metric = EvaluationMetric(rawValue: key) else {
                throw value.error("unknown metric; expected one of \(EvaluationMetric.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            try value.only(["min", "max", "min_delta_vs_champion", "max_delta_vs_champion"])
            gates[metric] = Gate(min: try value["min"]?.double(), max: try value["max"]?.double(),
                                 minDeltaVsChampion: try value["min_delta_vs_champion"]?.double(), maxDeltaVsChampion: try value["max_delta_vs_champion"]?.double())
        }
        let evaluate = Evaluate(labelColumn: try evaluateField.required("label_column").string(), metrics: metrics, gates: gates,
                                columns: try evaluateField["columns"]?.strings())

        let deployField = try top.required("deploy")
        try deployField.only(["strategy", "traffic", "progressive", "guard"])
        let strategyField = try deployField.required("strategy")
        guard let strategy = Strategy(rawValue: try strategyField.string()) else {
            throw strategyField.error("expected canary, shadow or direct")
        }
        var deploy = Deploy(strategy: strategy, traffic: try deployField["traffic"]?.int() ?? (strategy == .direct ? 100 : 10))
        guard (1...100).contains(deploy.traffic) else { throw try deployField.required("traffic").error("a percentage from 1 to 100") }
        if let progressive = deployField["progressive"] {
            try progressive.only(["steps", "interval_secs"])
            let steps = try progressive.required("steps").list().map { try $0.int() }
            guard !steps.isEmpty, steps.allSatisfy({ (1...100).contains($0) }), zip(steps, steps.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw try progressive.required("steps").error("increasing percentages from 1 to 100")
            }
            deploy.progressiveSteps = steps
            deploy.progressiveIntervalSeconds = try progressive["interval_secs"]?.seconds() ?? 60
        }
        if let guardField = deployField["guard"] {
            try guardField.only(["min_requests", "max_error_rate", "max_p99_latency_ratio"])
            deploy.guardMinRequests = try guardField["min_requests"]?.int()
            deploy.guardMaxErrorRate = try guardField["max_error_rate"]?.double()
            deploy.guardMaxP99LatencyRatio = try guardField["max_p99_latency_ratio"]?.double()
        }

        var triggers = Triggers(onAlert: [], everySeconds: nil, cooldownSeconds: 3600)
        if let field = top["triggers"] {
            try field.only(["on_alert", "every", "cooldown"])
            if let alerts = field["on_alert"] {
                for item in try alerts.list() {
                    let alert = try item.string()
                    guard alertNames.contains(alert) else { throw item.error("unknown alert '\(alert)'; expected one of \(alertNames.joined(separator: ", "))") }
                    triggers.onAlert.append(alert)
                }
            }
            triggers.everySeconds = try field["every"]?.seconds()
            triggers.cooldownSeconds = try field["cooldown"]?.seconds() ?? 3600
        }

        let definition = PipelineDefinition(name: name, model: model, data: data, params: params, deps: deps,
                                            train: train, quantize: quantize, evaluate: evaluate, deploy: deploy, triggers: triggers)
        // Every `${…}` must name something a run defines; checked now so nothing runs with a typo in it.
        try definition.checkReferences(trainField.required("run"), text: train.run)
        if let calibration = quantize?.calibration, let field = top["quantize"]?["calibration"] { try definition.checkReferences(field, text: calibration) }
        return definition
    }

    /// The names `${…}` may use, besides `params.<name>` and `data.<name>`.
    static let runVariables = ["params_file", "outputs.model", "run_id", "candidate"]

    func checkReferences(_ field: YAMLField, text: String) throws {
        for reference in Substitution.references(in: text) {
            let known = Self.runVariables + data.map { "data.\($0.name)" } + (params.map(\.name) + train.matrix.map(\.name)).map { "params.\($0)" }
            if known.contains(reference) { continue }
            throw field.error("unknown variable ${\(reference)}; known: \(known.map { "${\($0)}" }.joined(separator: ", "))")
        }
    }

    /// The path of the data named `name`.
    public func dataPath(_ name: String) -> String? { data.first { $0.name == name }?.path }

    /// The value of the parameter `name` (a matrix candidate's values come on top).
    public func param(_ name: String) -> ParameterValue? { params.first { $0.name == name }?.value }

    /// Every combination of the matrix (one empty combination without a matrix), in file order, the last
    /// parameter varying fastest.
    public var candidates: [[String: ParameterValue]] {
        var combinations: [[String: ParameterValue]] = [[:]]
        for (name, values) in train.matrix {
            combinations = combinations.flatMap { partial in values.map { value in partial.merging([name: value]) { $1 } } }
        }
        return combinations
    }
}

/// A parameter value from the pipeline file: a number, a string, a boolean, or a list or mapping of them.
public indirect enum ParameterValue: Sendable, Equatable {
    case int(Int)
    case double(Double)
    case string(String)
    case bool(Bool)
    case list([ParameterValue])
    case mapping([ParameterEntry])

    init(_ field: YAMLField) throws {
        switch field.node {
        case .scalar(let scalar):
            if scalar.style == .plain {
                if let value = field.node.int { self = .int(value); return }
                if let value = field.node.float { self = .double(value); return }
                if let value = field.node.bool { self = .bool(value); return }
            }
            self = .string(scalar.string)
        case .sequence:
            self = .list(try field.list().map(ParameterValue.init))
        case .mapping:
            self = .mapping(try field.entries().map { ParameterEntry(key: $0.key, value: try ParameterValue($0.value)) })
        case .alias:
            throw field.error("YAML aliases are not supported here")
        }
    }

    /// The value as JSON text (what the params file holds).
    public var json: String {
        switch self {
        case .int(let value): return String(value)
        case .double(let value): return value.isFinite ? String(value) : "null"
        case .bool(let value): return value ? "true" : "false"
        case .string(let value): return DVCHash.pythonJSON(value)
        case .list(let values): return "[" + values.map(\.json).joined(separator: ", ") + "]"
        case .mapping(let entries): return "{" + entries.map { DVCHash.pythonJSON($0.key) + ": " + $0.value.json }.joined(separator: ", ") + "}"
        }
    }

    /// The value as a command line gets it: scalars as written, collections as JSON.
    public var text: String {
        switch self {
        case .int(let value): return String(value)
        case .double(let value): return String(value)
        case .bool(let value): return value ? "true" : "false"
        case .string(let value): return value
        case .list, .mapping: return json
        }
    }
}

/// One key of a mapping parameter, in file order.
public struct ParameterEntry: Sendable, Equatable {
    public let key: String
    public let value: ParameterValue

    public init(key: String, value: ParameterValue) {
        self.key = key
        self.value = value
    }
}
