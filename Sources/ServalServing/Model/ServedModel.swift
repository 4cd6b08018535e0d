import Dispatch
import Foundation
import Synchronization
import ServalEngine
import ServalONNX
import ServalTensor
import ServalWire

/// One loaded, warmed-up version of a model: what requests are routed to. Requests hold a reference while
/// they run, so a version that is unloaded finishes its in-flight work before its memory is freed.
public final class ServedModel: Sendable {
    public let name: String
    public let version: Int
    /// The effective configuration: config.yaml merged with what the model declares.
    public let config: ModelConfig
    public let inputs: [TensorMetadata]
    public let outputs: [TensorMetadata]
    /// Bytes held by the model's weights.
    public let weightBytes: Int
    public let platform = "onnx_onnxv1"
    /// Requests, rows, batches and durations for the statistics extension and metrics.
    public let statistics: ModelStatistics
    let session: Session
    let batcher: DynamicBatcher

    /// Bytes the version keeps resident, measured once it was loaded and warmed up: weights, packed copies, plans
    /// and pooled buffers. What `--model-memory-limit` counts.
    public let memoryBytes: Int
    /// How long each phase of the load took.
    public let loadPhases: LoadPhases
    /// Requests in flight and the last time the version was asked for (idle unload and the memory budget).
    public let usage = VersionUsage()

    /// Loads and compiles `file`, then warms it up (unless the config says not to).
    public init(
        name: String, version: Int, file: URL, config: ModelConfig, executor: (any BatchExecutor)? = nil,
        executorWrapper: (@Sendable (any BatchExecutor) -> any BatchExecutor)? = nil
    ) throws {
        var phases = LoadPhases()
        let clock = ContinuousClock()
        var mark = clock.now
        func lap() -> Double {
            let now = clock.now
            defer { mark = now }
            return (now - mark) / .seconds(1)
        }
        let model: ONNXModel
        do { model = try ONNXModel(contentsOf: file, fileRead: { phases.read = lap() }) } catch {
            throw ServingError.unavailable("\(name) version \(version): \(error)")
        }
        phases.importing = lap()
        // instances × threads stay within the CPUs the cgroup grants, not the host's core count.
        let instanceCount = max(1, config.instanceCount ?? 1)
        let threads = CPUBudget.threadsPerInstance(requested: config.threadsPerInstance, instances: instanceCount, budget: CPUBudget.available())
        let session: Session
        do { session = try Session(graph: model.graph, options: SessionOptions(intraOpThreads: threads)) } catch {
            throw ServingError.unavailable("\(name) version \(version): \(error)")
        }
        phases.optimise = lap()
        self.name = name
        self.version = version
        self.session = session
        self.statistics = ModelStatistics(model: name, version: version)
        let declaredInputs = session.inputs.map { ServedModel.metadata($0) }
        let declaredOutputs = session.outputTypes.map { ServedModel.metadata($0) }
        var effective = config
        effective.inputs = config.inputs ?? declaredInputs
        effective.outputs = config.outputs ?? declaredOutputs
        // Batching merges requests along dimension 0, so every input and output must have a variable first dimension.
        let batchable = !declaredInputs.isEmpty && (declaredInputs + declaredOutputs).allSatisfy { $0.shape.first == -1 }
        if let requested = config.maxBatchSize, requested > 0, !batchable {
            throw ServingError.unavailable("\(name) version \(version): max_batch_size \(requested) needs every input and output to have a variable first dimension")
        }
        effective.maxBatchSize = config.maxBatchSize ?? (batchable ? 64 : 0)
        effective.instanceCount = instanceCount
        effective.threadsPerInstance = threads
        effective.versionPolicy = config.versionPolicy ?? .latest(1)
        effective.warmup = config.warmup ?? true
        self.inputs = declaredInputs
        self.outputs = declaredOutputs
        self.weightBytes = model.graph.weightBytes
        let batching = effective.dynamicBatching
        let settings = DynamicBatcher.Settings(
            maxBatchSize: effective.maxBatchSize!, preferredBatchSizes: batching?.preferredBatchSizes ?? [],
            maxQueueDelay: .microseconds(batching?.maxQueueDelayUs ?? 0), maxQueueSize: batching?.maxQueueSize ?? 0,
            defaultTimeout: batching?.queueTimeoutUs.map { .microseconds($0) }, instances: effective.instanceCount!)
        self.batcher = DynamicBatcher(model: name, settings: settings, executor: executor ?? (executorWrapper ?? { $0 })(SessionExecutor(session: session)), statistics: statistics)
        // Warm-up sizes: the declared set, else 1, the preferred sizes and the largest batch.
        let defaults = [1, effective.maxBatchSize!] + (batching?.preferredBatchSizes ?? [])
        let limit = max(1, effective.maxBatchSize!)
        let sizes = effective.warmup == true ? Set(config.warmupBatchSizes ?? defaults).filter { $0 > 0 && $0 <= limit }.sorted() : []
        effective.warmupBatchSizes = sizes
        self.config = effective
        for rows in sizes { try Self.warmUp(session: session, inputs: declaredInputs, model: name, version: version, rows: rows) }
        phases.warmup = lap()
        self.loadPhases = phases
        self.memoryBytes = session.residentBytes()
    }

    static func metadata(_ info: ValueInfo) -> TensorMetadata {
        switch info.type {
        case .tensor(let dtype, let shape):
            return TensorMetadata(name: info.name, datatype: dtype?.kserveName ?? "BYTES", shape: (shape ?? []).map { $0.value ?? -1 })
        case .sequence:
            return TensorMetadata(name: info.name, datatype: "MAP", shape: [-1])
        default:
            return TensorMetadata(name: info.name, datatype: "BYTES", shape: [-1])
        }
    }

    /// One run with zero inputs of `rows` rows (other variable dimensions 1), so real requests do not pay for it.
    private static func warmUp(session: Session, inputs: [TensorMetadata], model name: String, version: Int, rows: Int) throws {
        var feeds: [String: Value] = [:]
        for input in inputs {
            guard let dtype = DType(kserveName: input.datatype) else { continue }
            let shape = input.shape.enumerated().map { $0.element >= 0 ? $0.element : ($0.offset == 0 ? rows : 1) }
            feeds[input.name] = .tensor(Tensor(zeros: dtype, shape: shape))
        }
        do { _ = try session.run(feeds) } catch {
            throw ServingError.unavailable("\(name) version \(version): warm-up failed: \(error)")
        }
    }

    /// Checks the request against the model's inputs: every input present, known, of the right datatype and shape.
    public func validate(_ request: InferenceRequest) throws {
        for name in request.inputs.keys where !inputs.contains(where: { $0.name == name }) {
            throw ServingError.invalidArgument("unexpected input '\(name)' for model '\(self.name)'; inputs are \(inputs.map { "'\($0.name)'" }.joined(separator: ", "))")
        }
        for input in inputs {
            guard let tensor = request.inputs[input.name] else {
                throw ServingError.invalidArgument("missing input '\(input.name)' (\(input.datatype) \(input.shape)) for model '\(name)'")
            }
            if tensor.dtype.kserveName != input.datatype {
                throw ServingError.invalidArgument("input '\(input.name)' has datatype \(tensor.dtype.kserveName), expected \(input.datatype)")
            }
            let matches = tensor.shape.count == input.shape.count && zip(tensor.shape, input.shape).allSatisfy { $1 < 0 || $0 == $1 }
            if !matches {
                throw ServingError.invalidArgument("input '\(input.name)' has shape \(tensor.shape), expected \(input.shape)")
            }
            if config.allowNonFinite != true, let index = tensor.firstNonFinite() {
                throw ServingError.invalidArgument(
                    "input '\(input.name)' element \(index) is not finite (NaN, ±Infinity, or out of \(input.datatype) range); "
                        + "model '\(name)' takes finite values only (allow_non_finite: true in its config.yaml accepts them)")
            }
        }
        for output in request.requestedOutputs ?? [] where !outputs.contains(where: { $0.name == output }) {
            throw ServingError.invalidArgument("unknown output '\(output)' requested; outputs are \(outputs.map { "'\($0.name)'" }.joined(separator: ", "))")
        }
    }

    /// Validates, queues the request for the batcher, and selects the requested outputs of its rows.
    /// A `timeout` parameter (microseconds, as in Triton) bounds the time spent waiting in the queue.
    public func infer(_ request: InferenceRequest, priority: RequestPriority = .normal) async throws -> InferenceResponse {
        try await inferTimed(request, priority: priority).response
    }

    /// `infer`, also telling where the request's time went in the batcher (for traces).
    public func inferTimed(_ request: InferenceRequest, priority: RequestPriority = .normal) async throws -> (response: InferenceResponse, timing: BatchTiming) {
        usage.begin()
        defer { usage.end() }
        do { try validate(request) } catch {
            statistics.recordRequest(success: false, totalNs: 0, queueNs: 0, failure: "invalid")
            throw error
        }
        var timeout: Duration?
        switch request.parameters["timeout"] {
        case .int(let micros)?: timeout = .microseconds(micros)
        case .double(let micros)?: timeout = .microseconds(Int64(micros))
        default: break
        }
        let answer: BatchAnswer
        do {
            answer = try await batcher.submit(request.inputs, timeout: timeout, priority: priority)
        } catch let error as ServingError {
            throw error
        } catch let error as EngineError {
            throw ServingError(.invalidArgument, "model '\(name)': \(error)", serverFault: true)
        } catch {
            throw ServingError(.internalError, "model '\(name)': \(error)")
        }
        let names = request.requestedOutputs ?? outputs.map(\.name)
        let response = InferenceResponse(
            modelName: name, modelVersion: String(version), id: request.id,
            outputs: names.compactMap { output in answer.outputs[output].map { (output, $0) } })
        return (response, answer.timing)
    }

    /// Runs one request on the calling thread, outside the batcher and on one intra-op thread: for background work
    /// (shadow copies) that must neither queue beside the model's own traffic nor take the shared intra-op pool.
    public func inferInline(_ request: InferenceRequest) throws -> InferenceResponse {
        usage.begin()
        defer { usage.end() }
        try validate(request)
        let results: [String: Value]
        do {
            results = try session.run(request.inputs.mapValues { .tensor($0) }, threads: 1)
        } catch let error as EngineError {
            throw ServingError(.invalidArgument, "model '\(name)': \(error)", serverFault: true)
        }
        let names = request.requestedOutputs ?? outputs.map(\.name)
        return InferenceResponse(
            modelName: name, modelVersion: String(version), id: request.id,
            outputs: names.compactMap { output in results[output].map { (output, $0) } })
    }

    /// Requests admitted and not yet finished (queued or running).
    public var pendingRequests: Int { get async { await batcher.pending } }
}

/// Seconds spent in each phase of loading a version: reading the file, importing it into the graph IR, optimising
/// and compiling the plan, and warming it up.
public struct LoadPhases: Sendable, Equatable {
    public var read = 0.0
    public var importing = 0.0
    public var optimise = 0.0
    public var warmup = 0.0

    public init() {}

    public var total: Double { read + importing + optimise + warmup }
    /// (phase label, seconds), in load order.
    public var named: [(phase: String, seconds: Double)] { [("read", read), ("import", importing), ("optimise", optimise), ("warmup", warmup)] }
}

/// What idle unload and the memory budget read about a loaded version: how many requests are in flight on it,
/// and when (on the manager's clock) it was last resolved for a request. Two atomics, so the request path pays
/// no lock.
public final class VersionUsage: Sendable {
    private let running = Atomic<Int>(0)
    private let lastUsedBits = Atomic<UInt64>(0)

    public init() {}

    public var inFlight: Int { running.load(ordering: .relaxed) }
    public func begin() { running.add(1, ordering: .relaxed) }
    public func end() { running.subtract(1, ordering: .relaxed) }

    public var lastUsed: Double { Double(bitPattern: lastUsedBits.load(ordering: .relaxed)) }
    public func touch(_ time: Double) { lastUsedBits.store(time.bitPattern, ordering: .relaxed) }
}

/// How a request ranks in its model's batch queue: `background` work (async jobs) runs on capacity that
/// synchronous requests leave free.
public enum RequestPriority: Sendable, Equatable {
    case normal
    case background
}

/// Runs batches on the model's session, on a concurrent queue of its own: never on the HTTP event loops.
struct SessionExecutor: BatchExecutor {
    let session: Session
    private static let computeQueue = DispatchQueue(label: "serval.compute", qos: .userInitiated, attributes: .concurrent)

    func execute(_ feeds: [String: Value]) async throws -> [String: Value] {
        let session = self.session
        return try await withCheckedThrowingContinuation { continuation in
            SessionExecutor.computeQueue.async { continuation.resume(with: Result { try session.run(feeds) }) }
        }
    }
}
