import Foundation
import ServalWire

/// One run of a pipeline as the store keeps it and `/v2/pipelines/{name}/runs/{id}` shows it: what started it,
/// each step with its status, duration, log and output hashes, the data hashes, the candidates' and champion's
/// metrics, the gate verdicts, and the version it registered.
public struct PipelineRunRecord: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        /// Still going.
        case running
        /// Registered and deployed a new version.
        case succeeded
        /// Nothing changed since a candidate that is already registered: every step skipped.
        case unchanged
        /// A gate failed: nothing registered.
        case blocked
        /// A step failed: nothing registered (or, when deploying failed, registered but not deployed).
        case failed
    }

    /// One step: data, train (one per candidate), quantize, evaluate, register, deploy.
    public struct Step: Codable, Sendable, Equatable {
        public enum Status: String, Codable, Sendable {
            case ran, cached, skipped, failed
        }

        public var name: String
        public var status: Status
        public var startedAt: String?
        public var durationSecs: Double?
        /// The step's log file, when it ran a command.
        public var log: String?
        /// Hashes of what it produced (the candidate's sha256, the data md5s).
        public var outputs: [String: String]?
        /// A line for people: why it was cached or skipped, what it decided.
        public var detail: String?

        public init(name: String, status: Status, startedAt: String? = nil, durationSecs: Double? = nil, log: String? = nil,
                    outputs: [String: String]? = nil, detail: String? = nil) {
            self.name = name
            self.status = status
            self.startedAt = startedAt
            self.durationSecs = durationSecs
            self.log = log
            self.outputs = outputs
            self.detail = detail
        }

        enum CodingKeys: String, CodingKey { case name, status, startedAt = "started_at", durationSecs = "duration_secs", log, outputs, detail }
    }

    /// A data input with its content hash (DVC's md5).
    public struct DataInput: Codable, Sendable, Equatable {
        public var name: String
        public var path: String
        public var md5: String
        public var size: Int
        public var rows: Int?

        public init(name: String, path: String, md5: String, size: Int, rows: Int? = nil) {
            self.name = name
            self.path = path
            self.md5 = md5
            self.size = size
            self.rows = rows
        }
    }

    /// One trained candidate (one per matrix combination).
    public struct Candidate: Codable, Sendable, Equatable {
        public var params: [String: String]
        public var sha256: String?
        public var metrics: [String: Double]
    }

    /// One gate rule's verdict.
    public struct GateVerdict: Codable, Sendable, Equatable {
        public var metric: String
        public var rule: String
        public var candidate: Double?
        public var champion: Double?
        public var outcome: String
    }

    public var id: String
    public var pipeline: String
    public var model: String
    /// `manual`, `api`, `schedule` or `alert <name>`.
    public var trigger: String
    public var status: Status
    public var startedAt: String
    public var endedAt: String?
    public var error: String?
    public var steps: [Step]
    public var data: [DataInput]
    public var candidates: [Candidate]
    public var metrics: [String: Double]?
    public var championVersion: Int?
    public var championMetrics: [String: Double]?
    public var gates: [GateVerdict]
    public var quantized: Bool?
    public var registeredVersion: Int?
    public var deployment: String?

    public init(id: String, pipeline: String, model: String, trigger: String, startedAt: String) {
        self.id = id
        self.pipeline = pipeline
        self.model = model
        self.trigger = trigger
        self.status = .running
        self.startedAt = startedAt
        self.steps = []
        self.data = []
        self.candidates = []
        self.gates = []
    }

    enum CodingKeys: String, CodingKey {
        case id, pipeline, model, trigger, status, startedAt = "started_at", endedAt = "ended_at", error, steps, data, candidates, metrics
        case championVersion = "champion_version", championMetrics = "champion_metrics", gates, quantized
        case registeredVersion = "registered_version", deployment
    }

    /// The record as JSON text (sorted keys, so equal records give equal text).
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    public static func decode(_ data: Data) throws -> PipelineRunRecord {
        do {
            return try JSONDecoder().decode(PipelineRunRecord.self, from: data)
        } catch let error as DecodingError {
            throw PipelineError("not a pipeline run record: \(error.fieldDescription)")
        }
    }
}

extension Dictionary where Key == EvaluationMetric, Value == Double {
    /// Keyed by the metric's name, without values JSON cannot hold.
    var named: [String: Double] {
        Dictionary<String, Double>(uniqueKeysWithValues: compactMap { $0.value.isFinite ? ($0.key.rawValue, $0.value) : nil })
    }
}
