import Foundation
import Hummingbird
import ServalRegistry
import ServalServing

/// `/v2/models/{m}/traffic`: the traffic policy (canary and A/B weights, shadows, guard, progressive promotion)
/// with each arm's live figures.
struct TrafficRoutes {
    let shared: RouteContext
    init(_ shared: RouteContext) { self.shared = shared }

    struct Arm: Encodable {
        var target: String
        var version: String?
        var weight: Int
        var requests: Int
        var errors: Int
        var p50Ms: Double
        var p99Ms: Double

        enum CodingKeys: String, CodingKey { case target, version, weight, requests, errors, p50Ms = "p50_ms", p99Ms = "p99_ms" }
    }

    struct TrafficResponse: Encodable {
        var name: String
        var policy: TrafficPolicy
        var arms: [Arm]

        func encode(to encoder: Encoder) throws {
            try policy.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(name, forKey: .name)
            try container.encode(arms, forKey: .arms)
        }

        enum Keys: String, CodingKey { case name, arms }
    }

    func register(_ routes: inout RouteBuilder) {
        let shared = self.shared
        let lifecycle = shared.lifecycle
        routes.get("/v2/models/:model/traffic") { _, context in
            let model = try context.parameters.require("model")
            guard let (policy, arms) = try await lifecycle.traffic(model: model) else {
                throw ServingError.notFound("model '\(model)' has no traffic policy")
            }
            return try ControlPlane.response(TrafficResponse(name: model, policy: policy, arms: arms.map(Self.arm)))
        }
        routes.put("/v2/models/:model/traffic") { request, context in
            let model = try context.parameters.require("model")
            let policy = try ControlPlane.decode(TrafficPolicy.self, from: try await shared.collect(request))
            try await lifecycle.setTraffic(model: model, policy: policy, actor: RouteContext.actor(request), reason: request.uri.queryParameters.get("reason"))
            guard let (current, arms) = try await lifecycle.traffic(model: model) else { throw ServingError(.internalError, "policy vanished") }
            return try ControlPlane.response(TrafficResponse(name: model, policy: current, arms: arms.map(Self.arm)))
        }
        routes.delete("/v2/models/:model/traffic") { request, context in
            let model = try context.parameters.require("model")
            try await lifecycle.removeTraffic(model: model, actor: RouteContext.actor(request), reason: request.uri.queryParameters.get("reason"))
            return Response.json("{}")
        }
    }

    static func arm(_ report: ModelLifecycle.ArmReport) -> Arm {
        Arm(target: report.target.name, version: report.version.map(String.init), weight: report.weight, requests: report.figures.requests,
            errors: report.figures.errors, p50Ms: report.figures.p50Milliseconds, p99Ms: report.figures.p99Milliseconds)
    }
}
