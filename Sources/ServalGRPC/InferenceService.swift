import GRPCCore
import ServalAuth
import Tracing
import ServalServing
import ServalWire

/// `inference.GRPCInferenceService`: the Open Inference Protocol RPCs plus Triton's configuration,
/// statistics, repository and streaming extensions, over the same `ModelManager` as the REST frontend.
struct InferenceService: Inference_GRPCInferenceService.SimpleServiceProtocol {
    let lifecycle: ModelLifecycle
    let state: ServerState
    /// What one request may declare (`--max-tensor-elements`, ...).
    var limits = WireLimits.standard
    var manager: ModelManager { lifecycle.manager }
    var router: Router { lifecycle.router }

    func serverLive(request: Inference_ServerLiveRequest, context: ServerContext) async throws -> Inference_ServerLiveResponse {
        .with { $0.live = true }
    }

    func serverReady(request: Inference_ServerReadyRequest, context: ServerContext) async throws -> Inference_ServerReadyResponse {
        let ready = await state.isReady(manager)
        return .with { $0.ready = ready }
    }

    func modelReady(request: Inference_ModelReadyRequest, context: ServerContext) async throws -> Inference_ModelReadyResponse {
        try await GRPCStatus.mapping {
            let name = try Self.modelName(request.name)
            let ready = try await state.isReady(router, model: name, try ModelSelector.parse(version: request.version, model: name))
            return .with { $0.ready = ready }
        }
    }

    func serverMetadata(request: Inference_ServerMetadataRequest, context: ServerContext) async throws -> Inference_ServerMetadataResponse {
        .with {
            $0.name = ServerInfo.name
            $0.version = ServerInfo.version
            $0.extensions = ["model_repository", "model_configuration", "statistics"]
        }
    }

    func modelMetadata(request: Inference_ModelMetadataRequest, context: ServerContext) async throws -> Inference_ModelMetadataResponse {
        try await GRPCStatus.mapping {
            let route = try await resolve(request.name, request.version)
            return ModelMessages.metadata(route.primary, versions: await manager.readyVersions(of: route.model))
        }
    }

    func modelInfer(request: Inference_ModelInferRequest, context: ServerContext) async throws -> Inference_ModelInferResponse {
        try await GRPCStatus.mapping { try await cancellable { try await infer(request) } }
    }

    /// The full form of ModelInfer, for its metadata: a W3C `traceparent` there makes Serval's span join the caller's trace.
    func modelInfer(
        request: ServerRequest<Inference_ModelInferRequest>, context: ServerContext
    ) async throws -> ServerResponse<Inference_ModelInferResponse> {
        guard let tracer = router.tracer else {
            return ServerResponse(message: try await modelInfer(request: request.message, context: context))
        }
        let started = ContinuousClock.now
        let parent = RequestTrace.parent(from: request.metadata, using: MetadataExtractor(), tracer: tracer)
        let trace = RequestTrace(tracer: tracer, operation: "inference.GRPCInferenceService/ModelInfer", parent: parent, started: started)
        let message = try await RequestTrace.around(trace) {
            try await GRPCStatus.mapping { try await cancellable { try await infer(request.message, trace: trace, started: started) } }
        }
        return ServerResponse(message: message)
    }

    /// Requests on one stream run concurrently (so they can share a batch); each answer is written as soon
    /// as it is ready, carrying the request's `id`. A failed request answers with `error_message` and the
    /// stream goes on.
    func modelStreamInfer(
        request: RPCAsyncSequence<Inference_ModelInferRequest, any Error>,
        response: RPCWriter<Inference_ModelStreamInferResponse>,
        context: ServerContext
    ) async throws {
        try await cancellable { try await streamInfer(request, response) }
    }

    private func streamInfer(
        _ request: RPCAsyncSequence<Inference_ModelInferRequest, any Error>, _ response: RPCWriter<Inference_ModelStreamInferResponse>
    ) async throws {
        let (answers, sink) = AsyncStream.makeStream(of: Inference_ModelStreamInferResponse.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await answer in answers { try await response.write(answer) }
            }
            do {
                try await withThrowingDiscardingTaskGroup { requests in
                    for try await message in request {
                        requests.addTask {
                            var answer = Inference_ModelStreamInferResponse()
                            do {
                                answer.inferResponse = try await infer(message)
                            } catch {
                                answer.errorMessage = GRPCStatus.rpcError(error).message
                            }
                            sink.yield(answer)
                        }
                    }
                }
            } catch {
                sink.finish()
                throw GRPCStatus.rpcError(error)
            }
            sink.finish()
            try await group.waitForAll()
        }
    }

    func modelConfig(request: Inference_ModelConfigRequest, context: ServerContext) async throws -> Inference_ModelConfigResponse {
        try await GRPCStatus.mapping {
            let route = try await resolve(request.name, request.version)
            return .with { $0.config = ModelMessages.config(route.primary) }
        }
    }

    func modelStatistics(request: Inference_ModelStatisticsRequest, context: ServerContext) async throws -> Inference_ModelStatisticsResponse {
        try await GRPCStatus.mapping {
            // No name: every ready version of every model; a name (and version): that one, NOT_FOUND if unknown.
            guard !request.name.isEmpty else { return ModelMessages.statistics(await manager.readyModels(named: nil)) }
            if request.version.isEmpty {
                _ = try await router.route(request.name, .latest)
                return ModelMessages.statistics(await manager.readyModels(named: request.name))
            }
            return ModelMessages.statistics([try await resolve(request.name, request.version).primary])
        }
    }

    func repositoryIndex(request: Inference_RepositoryIndexRequest, context: ServerContext) async throws -> Inference_RepositoryIndexResponse {
        try await GRPCStatus.mapping {
            try Self.checkRepository(request.repositoryName)
            return ModelMessages.index(await manager.index(), readyOnly: request.ready)
        }
    }

    func repositoryModelLoad(request: Inference_RepositoryModelLoadRequest, context: ServerContext) async throws -> Inference_RepositoryModelLoadResponse {
        try await GRPCStatus.mapping {
            try Self.checkRepository(request.repositoryName)
            if let key = request.parameters.keys.sorted().first {
                throw ServingError(.unsupported, "load parameter '\(key)' is not supported: Serval loads models from the repository folder as they are")
            }
            try await lifecycle.load(model: try Self.modelName(request.modelName), actor: Self.actor(context))
            return .init()
        }
    }

    func repositoryModelUnload(request: Inference_RepositoryModelUnloadRequest, context: ServerContext) async throws -> Inference_RepositoryModelUnloadResponse {
        try await GRPCStatus.mapping {
            try Self.checkRepository(request.repositoryName)
            try await lifecycle.unload(model: try Self.modelName(request.modelName), actor: Self.actor(context))
            return .init()
        }
    }

    // MARK: - Shared steps

    /// Runs `body` in a task that is cancelled when the RPC is (its deadline passed or the client went away),
    /// so a queued request leaves the model's queue instead of running later for nobody.
    private func cancellable<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let work = Task { try await body() }
        return try await withRPCCancellationHandler {
            try await work.value
        } onCancelRPC: {
            work.cancel()
        }
    }

    private func infer(
        _ message: Inference_ModelInferRequest, trace: RequestTrace? = nil, started: ContinuousClock.Instant = .now
    ) async throws -> Inference_ModelInferResponse {
        let request = try InferenceCodec.decodeRequest(message, limits: limits)
        trace?.child("decode", from: started, to: .now)
        let model = try Self.modelName(message.modelName)
        let route = try await router.route(model, try ModelSelector.parse(version: message.modelVersion, model: model), routingKey: request.routingKey)
        let response = try await router.infer(request, on: route, trace: trace)
        let encoding = ContinuousClock.now
        defer { trace?.child("encode", from: encoding, to: .now) }
        return InferenceCodec.encodeResponse(response, raw: InferenceCodec.wantsRawOutputs(message))
    }

    /// The protocol's "no version" is the empty string: the router's default (policy, `stable`, latest ready).
    private func resolve(_ name: String, _ version: String) async throws -> Route {
        let model = try Self.modelName(name)
        return try await router.route(model, try ModelSelector.parse(version: version, model: model))
    }

    /// The simple service protocol does not see call metadata, so gRPC changes are audited as anonymous until
    /// authentication supplies the caller.
    /// Who loads or unloads: the authenticated principal (`--auth-config`), else "anonymous".
    private static func actor(_ context: ServerContext) -> String { CurrentPrincipal.value?.name ?? Principal.anonymousName }

    private static func modelName(_ name: String) throws -> String {
        guard !name.isEmpty else { throw ServingError.invalidArgument("a model name is required") }
        return name
    }

    /// Serval serves one repository; Triton clients name it with an empty string.
    private static func checkRepository(_ name: String) throws {
        guard name.isEmpty else { throw ServingError.invalidArgument("unknown repository '\(name)': Serval serves one repository, named by an empty string") }
    }
}

/// Reads the W3C trace context from gRPC metadata.
struct MetadataExtractor: Extractor {
    func extract(key: String, from metadata: Metadata) -> String? {
        metadata[stringValues: key].first { _ in true }
    }
}
