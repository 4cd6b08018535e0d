import Foundation

/// Where a version came from, as the register call describes it (MLflow-style lineage). Every field is optional.
public struct VersionMetadata: Sendable, Codable, Equatable {
    public var description: String?
    public var tags: [String: String]?
    public var metrics: [String: Double]?
    public var params: [String: ParamValue]?
    public var datasets: [Dataset]?
    public var championMetrics: [String: Double]?
    public var source: Source?

    public init() {}

    /// A training parameter: string or number, kept as given.
    public enum ParamValue: Sendable, Codable, Equatable {
        case string(String)
        case number(Double)

        public init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let number = try? container.decode(Double.self) {
                self = .number(number)
            } else if let text = try? container.decode(String.self) {
                self = .string(text)
            } else {
                throw DecodingError.typeMismatch(ParamValue.self, .init(codingPath: decoder.codingPath, debugDescription: "expected a string or a number"))
            }
        }

        public func encode(to encoder: Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .string(let text): try container.encode(text)
            case .number(let number): try container.encode(number)
            }
        }
    }

    /// A data set the version was trained or evaluated on, with its content hash (DVC's md5).
    public struct Dataset: Sendable, Codable, Equatable {
        public var name: String
        public var path: String?
        public var md5: String?

        public init(name: String, path: String? = nil, md5: String? = nil) {
            self.name = name
            self.path = path
            self.md5 = md5
        }
    }

    /// The run that produced the version.
    public struct Source: Sendable, Codable, Equatable {
        public var runId: String?
        public var pipeline: String?
        public var gitCommit: String?
        public var deps: [String: String]?
        public var uri: String?

        public init() {}

        enum CodingKeys: String, CodingKey {
            case runId = "run_id", pipeline, gitCommit = "git_commit", deps, uri
        }
    }

    enum CodingKeys: String, CodingKey {
        case description, tags, metrics, params, datasets, championMetrics = "champion_metrics", source
    }
}

/// A registered version as the store records it.
public struct VersionRecord: Sendable, Equatable {
    public let model: String
    public let version: Int
    public let sha256: String
    public let size: Int
    public let createdAt: String
    public let actor: String
    public let metadata: VersionMetadata?
}

/// One append-only history entry: who changed what, when, and why.
public struct HistoryEntry: Sendable, Equatable {
    public let id: Int
    public let model: String
    public let time: String
    public let actor: String
    public let action: HistoryAction
    /// JSON object text: from/to, weights, the figures behind an automatic action.
    public let details: String
    public let reason: String?
}

/// What a history entry records.
public enum HistoryAction: String, Sendable, Codable, CaseIterable {
    case register, label, unlabel, rollback, traffic
    case autoRollback = "auto_rollback"
    case promote, load, unload
    /// A model's monitoring settings changed (`PUT /v2/models/{m}/monitoring`).
    case monitoring
    /// A retraining pipeline was asked to run (by an alert, its schedule, a person): started or refused, and why.
    case pipelineTrigger = "pipeline_trigger"
    /// A pipeline run ended: its status, and the version it registered.
    case pipelineRun = "pipeline_run"
}

/// Internal actors, for changes no person made.
public enum Actor {
    public static let config = "config"
    public static let repository = "repository"
    public static let guardian = "guard"
    public static let anonymous = "anonymous"
    public static let pipeline = "pipeline"
}

/// Errors of the registry, by kind; frontends map them to status codes.
public struct RegistryError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        case notFound
        case conflict
        case invalid
        case unavailable
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
