import GRPCCore
import ServalServing
import ServalWire

/// `grpc.health.v1.Health/Check` for Kubernetes gRPC probes and load balancers: the empty service name
/// (and `inference.GRPCInferenceService`) is SERVING while the server is ready; a model name is SERVING
/// while that model has a ready version; an unknown name answers NOT_FOUND, as the health protocol says.
struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
    let router: Router
    let state: ServerState

    func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws -> Grpc_Health_V1_HealthCheckResponse {
        let serving: Bool
        switch request.service {
        case "", "inference.GRPCInferenceService":
            serving = await state.isReady(router.manager)
        default:
            do {
                serving = try await state.isReady(router, model: request.service, .latest)
            } catch let error as ServingError where error.kind == .notFound {
                throw RPCError(code: .notFound, message: "unknown service '\(request.service)'")
            }
        }
        return .with { $0.status = serving ? .serving : .notServing }
    }
}
