import Foundation
import Yams
import ServalWire

/// A model's serving configuration (`config.yaml` next to the version folders). Field names and meanings follow
/// Triton's model configuration; every field is optional and what the model itself says is derived.
public struct ModelConfig: Sendable, Equatable, Codable {
    /// Largest batch (rows along dimension 0) the batcher forms; 0 disables batching.
    public var maxBatchSize: Int?
    public var inputs: [TensorMetadata]?
    public var outputs: [TensorMetadata]?
    public var dynamicBatching: DynamicBatching?
    public var instanceCount: Int?
    public var threadsPerInstance: Int?
    public var versionPolicy: VersionPolicy?
    public var versionLabels: [String: Int]?
    /// Run the model once per warm-up batch size before it takes traffic (default true).
    public var warmup: Bool?
    /// Batch sizes (rows) to warm up; default: 1, the preferred batch sizes and max_batch_size.
    public var warmupBatchSizes: [Int]?
    /// Seconds a loaded version may go without requests before it is unloaded (weights freed); the next request
    /// loads it again. Nil or 0: never (the default).
    public var idleUnloadSecs: Double?
    /// Accept NaN and ±infinity in floating-point inputs (and values out of FP32/FP16 range, which become
    /// infinite). Default false: such a request gets 400 naming the input and the element.
    public var allowNonFinite: Bool?

    public struct DynamicBatching: Sendable, Equatable, Codable {
        public var maxQueueDelayUs: Int?
        public var preferredBatchSizes: [Int]?
        public var maxQueueSize: Int?
        public var queueTimeoutUs: Int?

        public init(maxQueueDelayUs: Int? = nil, preferredBatchSizes: [Int]? = nil, maxQueueSize: Int? = nil, queueTimeoutUs: Int? = nil) {
            self.maxQueueDelayUs = maxQueueDelayUs
            self.preferredBatchSizes = preferredBatchSizes
            self.maxQueueSize = maxQueueSize
            self.queueTimeoutUs = queueTimeoutUs
        }

        enum CodingKeys: String, CodingKey {
            case maxQueueDelayUs = "max_queue_delay_us", preferredBatchSizes = "preferred_batch_sizes"
            case maxQueueSize = "max_queue_size", queueTimeoutUs = "queue_timeout_us"
        }
    }

    enum CodingKeys: String, CodingKey {
        case maxBatchSize = "max_batch_size", inputs, outputs, dynamicBatching = "dynamic_batching"
        case instanceCount = "instance_count", threadsPerInstance = "threads_per_instance"
        case versionPolicy = "version_policy", versionLabels = "version_labels", warmup, warmupBatchSizes = "warmup_batch_sizes"
        case idleUnloadSecs = "idle_unload_secs", allowNonFinite = "allow_non_finite"
    }

    public init() {}

    /// Parses YAML text; errors name the file and the problem.
    public static func parse(_ text: String, file: String) throws -> ModelConfig {
        do {
            // Whitespace or comments only: an empty document, every field derived.
            guard let node = try Yams.compose(yaml: text) else { return ModelConfig() }
            let config = try YAMLDecoder().decode(ModelConfig.self, from: node)
            if let idle = config.idleUnloadSecs, !(idle >= 0) || !idle.isFinite {
                throw ServingError.invalidArgument("\(file): idle_unload_secs must be a number of seconds ≥ 0 (0: never unload), got \(idle)")
            }
            return config
        } catch let error as ServingError {
            throw error
        } catch {
            throw ServingError.invalidArgument("\(file): \(Self.describe(error))")
        }
    }

    private static func describe(_ error: Error) -> String {
        if case DecodingError.typeMismatch(_, let context) = error { return "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)" }
        if case DecodingError.dataCorrupted(let context) = error { return "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)" }
        return "\(error)"
    }
}

/// Which versions of a model to serve (TF Serving / Triton `version_policy`).
public enum VersionPolicy: Sendable, Equatable, Codable {
    /// The N highest version numbers (default: latest 1).
    case latest(Int)
    case all
    case specific([Int])

    public func select(from versions: [Int]) -> [Int] {
        let sorted = versions.sorted()
        switch self {
        case .latest(let count): return Array(sorted.suffix(max(count, 0)))
        case .all: return sorted
        case .specific(let wanted): return sorted.filter { wanted.contains($0) }
        }
    }

    enum CodingKeys: String, CodingKey { case latest, all, specific }

    public init(from decoder: Decoder) throws {
        if let single = try? decoder.singleValueContainer(), let word = try? single.decode(String.self), word == "all" {
            self = .all
            return
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let count = try container.decodeIfPresent(Int.self, forKey: .latest) {
            self = .latest(count)
        } else if let versions = try container.decodeIfPresent([Int].self, forKey: .specific) {
            self = .specific(versions)
        } else if container.contains(.all) {
            self = .all
        } else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "expected 'latest: N', 'all' or 'specific: [..]'"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .latest(let count): try container.encode(count, forKey: .latest)
        case .all: try container.encode(true, forKey: .all)
        case .specific(let versions): try container.encode(versions, forKey: .specific)
        }
    }
}
