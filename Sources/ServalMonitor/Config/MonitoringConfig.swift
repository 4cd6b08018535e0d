import Foundation
import Yams

/// A model's monitoring settings: the `monitoring:` section of its `config.yaml`, or the body of
/// `PUT /v2/models/{m}/monitoring`. Field names and defaults follow the issue's schema (and Evidently's where
/// they are Evidently's); an absent field takes its default.
public struct MonitoringConfig: Sendable, Equatable, Codable {
    /// Rows the model was trained on (`.csv`, `.npy` or `.jsonl`), relative to the model folder.
    public var reference: String?
    /// Names of the columns of the monitored 2-D input (default f0…fN−1).
    public var features: [String]?
    /// Features compared as categories, by name or by column index.
    public var categorical: [FeatureReference]
    /// The monitored input tensor; default: the model's only (or first) input.
    public var input: String?
    /// The evaluation window: the last N logged rows.
    public var window: Int
    /// Share of requests logged, in [0, 1].
    public var sampleRate: Double
    public var drift: Drift
    public var performance: Performance?
    public var alert: Alert?
    /// Payload-log retention.
    public var log: Retention
    /// Optional CloudEvents sink, KServe-logger style.
    public var logger: Logger?

    /// Where sampled requests and responses are also posted as CloudEvents (binary mode, `ce-*` headers), in the
    /// manner of KServe's inference logger.
    public struct Logger: Sendable, Equatable, Codable {
        public enum Mode: String, Sendable, Codable { case all, request, response }
        public var url: String
        public var mode: Mode

        public init(url: String, mode: Mode = .all) {
            self.url = url
            self.mode = mode
        }

        enum CodingKeys: String, CodingKey { case url, mode }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            url = try container.decode(String.self, forKey: .url)
            mode = try container.decodeIfPresent(Mode.self, forKey: .mode) ?? .all
        }
    }

    /// A feature named, or picked by its column index.
    public enum FeatureReference: Sendable, Equatable, Codable {
        case name(String)
        case index(Int)

        public init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let index = try? container.decode(Int.self) { self = .index(index) } else { self = .name(try container.decode(String.self)) }
        }

        public func encode(to encoder: Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .name(let name): try container.encode(name)
            case .index(let index): try container.encode(index)
            }
        }
    }

    /// How drift is scored: one method for every feature (`auto` is Evidently's choice per feature) or a map from
    /// feature to method, one threshold or a map, and the drifted-feature share at which the dataset drifts.
    public struct Drift: Sendable, Equatable, Codable {
        /// nil: `auto`.
        public var method: DriftMethod?
        public var methods: [String: DriftMethod]
        public var threshold: Double?
        public var thresholds: [String: Double]
        public var share: Double

        public init(method: DriftMethod? = nil, methods: [String: DriftMethod] = [:], threshold: Double? = nil, thresholds: [String: Double] = [:], share: Double = 0.5) {
            self.method = method
            self.methods = methods
            self.threshold = threshold
            self.thresholds = thresholds
            self.share = share
        }

        enum CodingKeys: String, CodingKey { case method, threshold, share }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.init()
            if let word = try? container.decodeIfPresent(String.self, forKey: .method) {
                method = try Self.method(word, path: "drift.method")
            } else if let map = try container.decodeIfPresent([String: String].self, forKey: .method) {
                methods = try map.mapValues { try Self.method($0, path: "drift.method") }.compactMapValues { $0 }
            }
            if let value = try? container.decodeIfPresent(Double.self, forKey: .threshold) {
                threshold = value
            } else if let map = try container.decodeIfPresent([String: Double].self, forKey: .threshold) {
                thresholds = map
            }
            share = try container.decodeIfPresent(Double.self, forKey: .share) ?? 0.5
        }

        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            if methods.isEmpty { try container.encode(method?.rawValue ?? "auto", forKey: .method) } else {
                try container.encode(methods.mapValues(\.rawValue), forKey: .method)
            }
            if thresholds.isEmpty { try container.encode(threshold, forKey: .threshold) } else { try container.encode(thresholds, forKey: .threshold) }
            try container.encode(share, forKey: .share)
        }

        static func method(_ word: String, path: String) throws -> DriftMethod? {
            if word == "auto" { return nil }
            guard let method = DriftMethod(rawValue: word) else {
                throw MonitoringConfigError("\(path): unknown method '\(word)', expected auto, " + DriftMethod.allCases.map(\.rawValue).joined(separator: ", "))
            }
            return method
        }

        /// The method for `feature` (nil: `auto`) and its threshold (nil: the method's default).
        public func method(for feature: String) -> DriftMethod? { methods[feature] ?? method }
        public func threshold(for feature: String) -> Double? { thresholds[feature] ?? threshold }
    }

    /// What realised and estimated performance is measured against.
    public struct Performance: Sendable, Equatable, Codable {
        public enum Task: String, Sendable, Codable { case classification, regression }
        public var task: Task
        /// The reference column holding the true label (or target value).
        public var labelColumn: String?
        public var minAccuracy: Double?
        public var maxMAE: Double?

        public init(task: Task = .classification, labelColumn: String? = nil, minAccuracy: Double? = nil, maxMAE: Double? = nil) {
            self.task = task
            self.labelColumn = labelColumn
            self.minAccuracy = minAccuracy
            self.maxMAE = maxMAE
        }

        enum CodingKeys: String, CodingKey { case task, labelColumn = "label_column", minAccuracy = "min_accuracy", maxMAE = "max_mae" }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            task = try container.decodeIfPresent(Task.self, forKey: .task) ?? .classification
            labelColumn = try container.decodeIfPresent(String.self, forKey: .labelColumn)
            minAccuracy = try container.decodeIfPresent(Double.self, forKey: .minAccuracy)
            maxMAE = try container.decodeIfPresent(Double.self, forKey: .maxMAE)
        }
    }

    /// Where alerts are posted, and for how many consecutive evaluations a condition must hold before it fires.
    public struct Alert: Sendable, Equatable, Codable {
        public var webhook: String?
        public var forWindows: Int

        public init(webhook: String? = nil, forWindows: Int = 2) {
            self.webhook = webhook
            self.forWindows = forWindows
        }

        enum CodingKeys: String, CodingKey { case webhook, forWindows = "for_windows" }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            webhook = try container.decodeIfPresent(String.self, forKey: .webhook)
            forWindows = try container.decodeIfPresent(Int.self, forKey: .forWindows) ?? 2
        }
    }

    /// How long payload-log rows are kept: at most `maxRows` per model and `maxAge` seconds.
    public struct Retention: Sendable, Equatable, Codable {
        public var maxRows: Int
        public var maxAge: Double

        public init(maxRows: Int = 100_000, maxAge: Double = 7 * 86_400) {
            self.maxRows = maxRows
            self.maxAge = maxAge
        }

        enum CodingKeys: String, CodingKey { case maxRows = "max_rows", maxAge = "max_age" }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            maxRows = try container.decodeIfPresent(Int.self, forKey: .maxRows) ?? 100_000
            maxAge = try container.decodeIfPresent(Double.self, forKey: .maxAge) ?? 7 * 86_400
        }
    }

    enum CodingKeys: String, CodingKey {
        case reference, features, categorical, input, window, sampleRate = "sample_rate", drift, performance, alert, log, logger
    }

    public init(
        reference: String? = nil, features: [String]? = nil, categorical: [FeatureReference] = [], input: String? = nil, window: Int = 500,
        sampleRate: Double = 1, drift: Drift = Drift(), performance: Performance? = nil, alert: Alert? = nil, log: Retention = Retention(),
        logger: Logger? = nil
    ) {
        self.logger = logger
        self.reference = reference
        self.features = features
        self.categorical = categorical
        self.input = input
        self.window = window
        self.sampleRate = sampleRate
        self.drift = drift
        self.performance = performance
        self.alert = alert
        self.log = log
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        reference = try container.decodeIfPresent(String.self, forKey: .reference)
        features = try container.decodeIfPresent([String].self, forKey: .features)
        categorical = try container.decodeIfPresent([FeatureReference].self, forKey: .categorical) ?? []
        input = try container.decodeIfPresent(String.self, forKey: .input)
        window = try container.decodeIfPresent(Int.self, forKey: .window) ?? 500
        sampleRate = try container.decodeIfPresent(Double.self, forKey: .sampleRate) ?? 1
        drift = try container.decodeIfPresent(Drift.self, forKey: .drift) ?? Drift()
        performance = try container.decodeIfPresent(Performance.self, forKey: .performance)
        alert = try container.decodeIfPresent(Alert.self, forKey: .alert)
        log = try container.decodeIfPresent(Retention.self, forKey: .log) ?? Retention()
        logger = try container.decodeIfPresent(Logger.self, forKey: .logger)
    }

    /// Range checks the types alone do not make; the message names the field.
    public func validate() throws {
        if window < 1 || window > 1_000_000 { throw MonitoringConfigError("window: expected an integer in 1…1000000, got \(window)") }
        if !(0...1).contains(sampleRate) { throw MonitoringConfigError("sample_rate: expected a number in [0, 1], got \(sampleRate)") }
        if !(0...1).contains(drift.share) { throw MonitoringConfigError("drift.share: expected a number in [0, 1], got \(drift.share)") }
        if let alert, alert.forWindows < 1 { throw MonitoringConfigError("alert.for_windows: expected an integer ≥ 1, got \(alert.forWindows)") }
        if log.maxRows < 1 { throw MonitoringConfigError("log.max_rows: expected an integer ≥ 1, got \(log.maxRows)") }
        if !(log.maxAge > 0) { throw MonitoringConfigError("log.max_age: expected seconds > 0, got \(log.maxAge)") }
        if let names = features, Set(names).count != names.count { throw MonitoringConfigError("features: names must be unique") }
        if let url = alert?.webhook, URL(string: url)?.scheme.map({ $0 == "http" || $0 == "https" }) != true {
            throw MonitoringConfigError("alert.webhook: expected an http(s) URL, got '\(url)'")
        }
        if let url = logger?.url, URL(string: url)?.scheme.map({ $0 == "http" || $0 == "https" }) != true {
            throw MonitoringConfigError("logger.url: expected an http(s) URL, got '\(url)'")
        }
    }

    /// Field names each level accepts; anything else is a typo the user should hear about, not a setting ignored.
    static let knownFields: [String: Set<String>] = [
        "": ["reference", "features", "categorical", "input", "window", "sample_rate", "drift", "performance", "alert", "log", "logger"],
        "drift": ["method", "threshold", "share"], "performance": ["task", "label_column", "min_accuracy", "max_mae"],
        "alert": ["webhook", "for_windows"], "log": ["max_rows", "max_age"], "logger": ["url", "mode"],
    ]

    /// Refuses unknown field names at the top level and inside each section, naming the first one.
    static func checkFields(_ document: Any?) throws {
        guard let top = document as? [String: Any] else { return }
        for (key, value) in top {
            guard knownFields[""]!.contains(key) else {
                throw MonitoringConfigError("\(key): unknown field; expected one of \(knownFields[""]!.sorted().joined(separator: ", "))")
            }
            if let allowed = knownFields[key], let section = value as? [String: Any] {
                if let unknown = section.keys.sorted().first(where: { !allowed.contains($0) }) {
                    throw MonitoringConfigError("\(key).\(unknown): unknown field; expected one of \(allowed.sorted().joined(separator: ", "))")
                }
            }
        }
    }

    /// The `monitoring:` section of a model's `config.yaml`, or nil when it has none.
    public static func fromModelConfig(_ text: String, file: String) throws -> MonitoringConfig? {
        struct Section: Decodable { var monitoring: MonitoringConfig? }
        do {
            // A file of comments only is an empty document: no settings.
            guard let node = try Yams.compose(yaml: text) else { return nil }
            let config = try YAMLDecoder().decode(Section.self, from: node).monitoring
            if config != nil { try checkFields((try Yams.load(yaml: text) as? [String: Any])?["monitoring"]) }
            try config?.validate()
            return config
        } catch {
            var message = MonitoringConfigError.describe(error)
            if message.hasPrefix("monitoring.") { message.removeFirst("monitoring.".count) }
            throw MonitoringConfigError("\(file): monitoring.\(message)")
        }
    }

    /// A JSON body (`PUT .../monitoring`), validated.
    public static func fromJSON(_ bytes: [UInt8]) throws -> MonitoringConfig {
        do {
            let config = try JSONDecoder().decode(MonitoringConfig.self, from: Data(bytes))
            try checkFields(try JSONSerialization.jsonObject(with: Data(bytes)))
            try config.validate()
            return config
        } catch let error as MonitoringConfigError {
            throw error
        } catch {
            throw MonitoringConfigError(MonitoringConfigError.describe(error))
        }
    }

    /// The settings as JSON, every default spelled out.
    public func json() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(self)) ?? Data("{}".utf8))
    }
}

/// A monitoring setting that is missing, of the wrong type or out of range; the message names the field.
public struct MonitoringConfigError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    static func describe(_ error: Error) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map(\.stringValue).filter { !$0.isEmpty }
            return keys.isEmpty ? "" : keys.joined(separator: ".") + ": "
        }
        switch error {
        case let error as MonitoringConfigError: return error.message
        case DecodingError.typeMismatch(let type, let context): return "\(path(context))expected \(type)"
        case DecodingError.valueNotFound(let type, let context): return "\(path(context))expected \(type), got null"
        case DecodingError.keyNotFound(let key, let context): return "\(path(context))missing '\(key.stringValue)'"
        case DecodingError.dataCorrupted(let context):
            if let underlying = context.underlyingError { return describe(underlying) }
            return "\(path(context))\(context.debugDescription)"
        default: return "\(error)"
        }
    }
}
