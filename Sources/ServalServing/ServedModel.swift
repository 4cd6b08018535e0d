import Dispatch
import Foundation
import ServalEngine
import ServalONNX
import ServalTensor

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
    let session: Session
    let instances: InstancePool

    /// Compute runs here, never on the HTTP event loops.
    private static let computeQueue = DispatchQueue(label: "serval.compute", qos: .userInitiated, attributes: .concurrent)

    /// Loads and compiles `file`, then warms it up (unless the config says not to).
    public init(name: String, version: Int, file: URL, config: ModelConfig) throws {
        let model: ONNXModel
        do { model = try ONNXModel(contentsOf: file) } catch { throw ServingError.unavailable("\(name) version \(version): \(error)") }
        let threads = max(1, config.threadsPerInstance ?? 1)
        let session: Session
        do { session = try Session(graph: model.graph, options: SessionOptions(intraOpThreads: threads)) } catch {
            throw ServingError.unavailable("\(name) version \(version): \(error)")
        }
        self.name = name
        self.version = version
        self.session = session
        let declaredInputs = session.inputs.map { ServedModel.metadata($0) }
        let declaredOutputs = session.outputTypes.map { ServedModel.metadata($0) }
        var effective = config
        effective.inputs = config.inputs ?? declaredInputs
        effective.outputs = config.outputs ?? declaredOutputs
        effective.maxBatchSize = config.maxBatchSize ?? 0
        effective.instanceCount = max(1, config.instanceCount ?? 1)
        effective.threadsPerInstance = threads
        effective.versionPolicy = config.versionPolicy ?? .latest(1)
        effective.warmup = config.warmup ?? true
        self.config = effective
        self.inputs = declaredInputs
        self.outputs = declaredOutputs
        self.weightBytes = model.graph.initializers.values.reduce(0) { $0 + $1.byteCount }
        self.instances = InstancePool(instances: effective.instanceCount!, maxQueue: effective.dynamicBatching?.maxQueueSize ?? 0)
        if effective.warmup == true { try warmUp() }
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

    /// One run with zero inputs (variable dimensions set to 1), so the first real request does not pay for it.
    private func warmUp() throws {
        var feeds: [String: Value] = [:]
        for input in inputs {
            guard let dtype = DType(kserveName: input.datatype) else { continue }
            feeds[input.name] = .tensor(Tensor(zeros: dtype, shape: input.shape.map { $0 < 0 ? 1 : $0 }))
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
        }
        for output in request.requestedOutputs ?? [] where !outputs.contains(where: { $0.name == output }) {
            throw ServingError.invalidArgument("unknown output '\(output)' requested; outputs are \(outputs.map { "'\($0.name)'" }.joined(separator: ", "))")
        }
    }

    /// Validates, waits for a free instance, runs the model off the event loop and selects the requested outputs.
    public func infer(_ request: InferenceRequest) async throws -> InferenceResponse {
        try validate(request)
        try await instances.acquire(model: name)
        let results: [String: Value]
        do {
            let feeds = request.inputs.mapValues { Value.tensor($0) }
            let session = self.session
            results = try await withCheckedThrowingContinuation { continuation in
                ServedModel.computeQueue.async {
                    continuation.resume(with: Result { try session.run(feeds) })
                }
            }
            await instances.release()
        } catch {
            await instances.release()
            if let engineError = error as? EngineError { throw ServingError.invalidArgument("model '\(name)': \(engineError)") }
            throw ServingError(.internalError, "model '\(name)': \(error)")
        }
        let names = request.requestedOutputs ?? outputs.map(\.name)
        return InferenceResponse(
            modelName: name, modelVersion: String(version), id: request.id,
            outputs: names.compactMap { output in results[output].map { (output, $0) } })
    }

    /// Requests admitted and not yet finished (running or queued).
    public var pendingRequests: Int { get async { await instances.pending } }
}
