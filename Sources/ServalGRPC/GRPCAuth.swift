import GRPCCore
import GRPCNIOTransportHTTP2
import ServalAuth
import ServalTLS
import ServalWire

/// Every RPC's access rule, the gRPC side of `EndpointAccess`: the same scopes per kind of call as on REST.
enum GRPCAccess {
    struct Rule: Sendable, Equatable {
        let scopes: Set<Scope>
        /// True when the request message names a model (checked against a key's allow-list per message).
        let modelScoped: Bool
    }

    static let inferenceService = "inference.GRPCInferenceService"
    static let healthService = "grpc.health.v1.Health"

    /// The rule for `service/method`; nil for an RPC no service here answers (any authenticated caller may learn so).
    static func rule(service: String, method: String) -> Rule? {
        if service == healthService { return Rule(scopes: [.health], modelScoped: false) }
        guard service == inferenceService else { return nil }
        switch method {
        case "ServerLive", "ServerReady": return Rule(scopes: [.health], modelScoped: false)
        case "ServerMetadata": return Rule(scopes: [.read], modelScoped: false)
        case "ModelReady", "ModelMetadata", "ModelConfig", "ModelStatistics", "RepositoryIndex": return Rule(scopes: [.read], modelScoped: true)
        case "ModelInfer", "ModelStreamInfer": return Rule(scopes: [.infer], modelScoped: true)
        case "RepositoryModelLoad", "RepositoryModelUnload": return Rule(scopes: [.admin], modelScoped: false)
        default: return nil
        }
    }

    /// The model a request message names, `.all` for calls about every model (an index, statistics without a name).
    static func models(of message: Any) -> AccessRule.Models {
        switch message {
        case let request as Inference_ModelInferRequest: return .one(request.modelName)
        case let request as Inference_ModelReadyRequest: return .one(request.name)
        case let request as Inference_ModelMetadataRequest: return .one(request.name)
        case let request as Inference_ModelConfigRequest: return .one(request.name)
        case let request as Inference_ModelStatisticsRequest: return request.name.isEmpty ? .all : .one(request.name)
        case is Inference_RepositoryIndexRequest: return .all
        default: return .none
        }
    }
}

/// Authenticates every RPC from its `authorization` metadata (`Bearer <API key or JWT>`) and checks it against
/// `GRPCAccess`, as the REST middleware does: UNAUTHENTICATED without valid credentials, PERMISSION_DENIED naming
/// the missing scope or model, RESOURCE_EXHAUSTED past the principal's rate (health checks are never limited).
/// A key's model allow-list is checked on each request message, so every message of a stream is covered.
struct AuthInterceptor: ServerInterceptor {
    let authenticator: Authenticator

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let header = request.metadata[stringValues: "authorization"].first(where: { _ in true })
        var authenticated: Principal
        do {
            authenticated = try await authenticator.authenticate(authorization: header)
        } catch let error as AuthenticationError {
            throw RPCError(code: .unauthenticated, message: error.message)
        }
        // Without a bearer, a client certificate verified by the handshake (mTLS) names the principal.
        var anonymous = header == nil
        if anonymous, let peer = (context.transportSpecific as? HTTP2ServerTransport.Posix.Context)?.peerCertificate {
            authenticated = authenticator.principal(certificateSubject: ServingCertificate.subject(of: peer))
            anonymous = false
        }
        let principal = authenticated
        let rule = GRPCAccess.rule(service: context.descriptor.service.fullyQualifiedService, method: context.descriptor.method)
        do {
            try authenticator.authorize(principal, anonymous: anonymous, rule: rule.map { AccessRule($0.scopes) })
        } catch .unauthenticated(let message) {
            throw RPCError(code: .unauthenticated, message: message)
        } catch .forbidden(let message) {
            throw RPCError(code: .permissionDenied, message: message)
        } catch .rateLimited(let message, _) {
            throw RPCError(code: .resourceExhausted, message: message)
        }
        // Unary handlers run inside `next`, so they see the principal (the history's actor for load and unload).
        guard let rule, rule.modelScoped, principal.models != nil else { return try await CurrentPrincipal.$value.withValue(principal) { try await next(request, context) } }
        let scopes = rule.scopes
        let checked = request.messages.map { message -> Input in
            if case .forbidden(let reason) = principal.decide(AccessRule(scopes, models: GRPCAccess.models(of: message))) {
                throw RPCError(code: .permissionDenied, message: reason)
            }
            return message
        }
        return try await CurrentPrincipal.$value.withValue(principal) {
            try await next(StreamingServerRequest(metadata: request.metadata, messages: RPCAsyncSequence(wrapping: checked)), context)
        }
    }
}
