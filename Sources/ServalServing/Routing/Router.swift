import ServalRegistry

/// What a request is sent to: the primary version that answers, and the shadows that get a copy afterwards.
/// Codecs decode against `primary`'s signature.
public struct Route: Sendable {
    public let model: String
    public let primary: ServedModel
    public let shadows: [ServedModel]

    public init(model: String, primary: ServedModel, shadows: [ServedModel] = []) {
        self.model = model
        self.primary = primary
        self.shadows = shadows
    }
}

/// The one place that chooses which loaded version serves a request. Every frontend resolves a `ModelSelector`
/// here and sends the decoded request through `infer`; none calls `ServedModel` for inference itself.
///
/// Resolution reads the in-memory `RoutingTable` and the manager's loaded versions, never the store:
/// a label move committed on any replica is in force here once the table is refreshed.
public final class Router: Sendable {
    public let manager: ModelManager
    public let table: RoutingTable

    /// The label unversioned requests follow when the model has one and no traffic policy.
    public static let defaultLabel = "stable"

    public init(manager: ModelManager, table: RoutingTable) {
        self.manager = manager
        self.table = table
    }

    /// Resolves `selector` for `model`: an unknown model, version or label is NOT_FOUND; a known version that is
    /// not ready is UNAVAILABLE, with its state.
    public func route(_ model: String, _ selector: ModelSelector) async throws -> Route {
        switch selector {
        case .version(let number):
            return Route(model: model, primary: try await manager.resolve(model, version: number))
        case .label(let label):
            guard let version = table.version(model, label: label) else {
                _ = try await manager.resolve(model)  // an unknown model is reported as such, not as a missing label
                throw ServingError.notFound("model '\(model)' has no label '\(label)'")
            }
            return Route(model: model, primary: try await manager.resolve(model, version: version))
        case .latest:
            if let stable = table.version(model, label: Self.defaultLabel) {
                return Route(model: model, primary: try await manager.resolve(model, version: stable))
            }
            return Route(model: model, primary: try await manager.resolve(model))
        }
    }

    /// Runs `request` on the route's primary version.
    public func infer(_ request: InferenceRequest, on route: Route) async throws -> InferenceResponse {
        try await route.primary.infer(request)
    }

    /// Resolves and runs in one call, for callers whose codec does not need the signature first.
    public func infer(_ request: InferenceRequest, model: String, _ selector: ModelSelector) async throws -> InferenceResponse {
        try await infer(request, on: try await route(model, selector))
    }

    /// The version `selector` resolves to without requiring it to be ready (for status and readiness calls).
    public func version(_ model: String, _ selector: ModelSelector) async throws -> Int? {
        switch selector {
        case .version(let number): return number
        case .label(let label):
            guard let version = table.version(model, label: label) else { throw ServingError.notFound("model '\(model)' has no label '\(label)'") }
            return version
        case .latest: return table.version(model, label: Self.defaultLabel)
        }
    }
}
