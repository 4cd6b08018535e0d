import ServalServing
import ServalTensor
import ServalWire

/// Turns a stored v2 request into its v2 answer through the same Router and batcher as online requests, at
/// background priority. A job with more rows than the model's `max_batch_size` is fed to the batcher in pieces
/// of at most that size, and the pieces' outputs are joined in order.
public struct JobRunner: Sendable {
    public let router: Router
    /// What one request may declare, as for online requests.
    public let limits: WireLimits

    public init(router: Router, limits: WireLimits = .standard) {
        self.router = router
        self.limits = limits
    }

    /// The decoded request, and which outputs the client wants as binary.
    public func decode(body: [UInt8], headerLength: Int?) throws -> (InferenceRequest, KServeCodec.BinaryOutputs) {
        try body.withUnsafeBytes { try KServeCodec.decodeRequest(body: $0, headerLength: headerLength, limits: limits) }
    }

    /// The v2 answer, as stored for `GET /v2/jobs/{id}/result`, and the JSON the callback carries.
    public func run(_ claim: JobClaim) async throws -> (version: Int, result: JobResult, callbackBody: String) {
        var (request, binaryOutputs) = try decode(body: claim.body, headerLength: claim.headerLength)
        let job = claim.job
        // A job without a v2 `id` answers under the job's id: the key its prediction is logged and given feedback by.
        if request.id == nil { request.id = job.id }
        let route = try await router.route(job.model, job.pinnedVersion ? .version(job.version ?? 0) : .latest, routingKey: request.routingKey)
        let response = try await infer(request, on: route)
        let (json, binary) = KServeCodec.encodeResponse(response, binary: binaryOutputs)
        let result = binary.isEmpty && binaryOutputs == .none
            ? JobResult(body: Array(json.utf8), headerLength: nil)
            : JobResult(body: Array(json.utf8) + binary, headerLength: json.utf8.count)
        let callbackBody = result.headerLength == nil ? json : KServeCodec.encodeResponse(response, binary: .none).json
        return (route.primary.version, result, callbackBody)
    }

    private func infer(_ request: InferenceRequest, on route: Route) async throws -> InferenceResponse {
        let limit = route.primary.config.maxBatchSize ?? 0
        let rows = request.inputs.values.first?.shape.first ?? 0
        guard limit > 0, rows > limit else { return try await router.infer(request, on: route, priority: .background) }
        try route.primary.validate(request)
        let started = router.clock()
        let pieces = stride(from: 0, to: rows, by: limit).map { $0..<min($0 + limit, rows) }
        // All pieces are queued at once, so the batcher can run them back to back (and beside online traffic).
        let answers = try await withThrowingTaskGroup(of: (Int, InferenceResponse).self) { group in
            for (index, range) in pieces.enumerated() {
                var piece = request
                piece.inputs = request.inputs.mapValues { $0.rows(range) }
                group.addTask { (index, try await router.infer(piece, on: route, priority: .background, observed: false)) }
            }
            var answers = [InferenceResponse?](repeating: nil, count: pieces.count)
            for try await (index, answer) in group { answers[index] = answer }
            return answers.map { $0! }
        }
        var joined = answers[0]
        joined.outputs = try joined.outputs.map { output in
            let parts = answers.map { answer in answer.outputs.first { $0.name == output.name }?.value }
            return (output.name, try Self.concatenate(parts, name: output.name))
        }
        router.observe(request, joined, on: route, latency: router.clock() - started)
        return joined
    }

    private static func concatenate(_ parts: [Value?], name: String) throws -> Value {
        switch parts.first {
        case .tensor?:
            let tensors = parts.compactMap { $0?.tensor }
            guard tensors.count == parts.count else { throw ServingError(.internalError, "output '\(name)' is missing from a piece of the job") }
            return .tensor(Tensor.concatenatingRows(tensors))
        case .mapSequence(let first)?:
            var values: [Tensor] = []
            for part in parts {
                guard case .mapSequence(let maps)? = part else { throw ServingError(.internalError, "output '\(name)' is missing from a piece of the job") }
                values.append(maps.values)
            }
            return .mapSequence(MapSequence(keys: first.keys, values: Tensor.concatenatingRows(values)))
        case nil, .some(.none):
            throw ServingError(.internalError, "output '\(name)' is missing from a piece of the job")
        }
    }
}
