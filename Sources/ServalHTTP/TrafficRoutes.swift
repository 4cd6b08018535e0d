import Foundation
import Hummingbird
import ServalRegistry
import ServalServing
import ServalWire

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

    struct ShadowFigures: Encodable {
        var target: String
        var version: String?
        var percent: Double
        var requests: Int
        var dropped: Int
        var failed: Int
        var rows: Int
        var disagreeingRows: Int
        var disagreementRate: Double

        enum CodingKeys: String, CodingKey {
            case target, version, percent, requests, dropped, failed, rows, disagreeingRows = "disagreeing_rows", disagreementRate = "disagreement_rate"
        }
    }

    struct TrafficResponse: Encodable {
        var name: String
        var policy: TrafficPolicy
        var arms: [Arm]
        var shadows: [ShadowFigures]

        func encode(to encoder: Encoder) throws {
            try policy.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(name, forKey: .name)
            try container.encode(arms, forKey: .arms)
            try container.encode(shadows, forKey: .shadowFigures)
        }

        enum Keys: String, CodingKey { case name, arms, shadowFigures = "shadow_figures" }
    }

    func register(_ routes: inout RouteBuilder) {
        let shared = self.shared
        let lifecycle = shared.lifecycle
        routes.get("/v2/models/:model/traffic") { _, context in
            let model = try context.parameters.require("model")
            guard let (policy, arms) = try await lifecycle.traffic(model: model) else {
                throw ServingError.notFound("model '\(model)' has no traffic policy")
            }
            return try ControlPlane.response(TrafficResponse(name: model, policy: policy, arms: arms.map(Self.arm), shadows: await Self.shadows(lifecycle, model)))
        }
        routes.put("/v2/models/:model/traffic") { request, context in
            let model = try context.parameters.require("model")
            let policy = try ControlPlane.decode(TrafficPolicy.self, from: try await shared.collect(request))
            try await lifecycle.setTraffic(model: model, policy: policy, actor: RouteContext.actor(request, context), reason: request.uri.queryParameters.get("reason"))
            guard let (current, arms) = try await lifecycle.traffic(model: model) else { throw ServingError(.internalError, "policy vanished") }
            return try ControlPlane.response(TrafficResponse(name: model, policy: current, arms: arms.map(Self.arm), shadows: await Self.shadows(lifecycle, model)))
        }
        routes.delete("/v2/models/:model/traffic") { request, context in
            let model = try context.parameters.require("model")
            try await lifecycle.removeTraffic(model: model, actor: RouteContext.actor(request, context), reason: request.uri.queryParameters.get("reason"))
            return Response.json("{}")
        }
    }

    static func shadows(_ lifecycle: ModelLifecycle, _ model: String) async -> [ShadowFigures] {
        await lifecycle.shadows(model: model).map { report in
            ShadowFigures(target: report.target.name, version: report.version.map(String.init), percent: report.percent, requests: report.figures.requests,
                          dropped: report.figures.dropped, failed: report.figures.failed, rows: report.figures.rows,
                          disagreeingRows: report.figures.disagreeingRows, disagreementRate: report.figures.disagreementRate)
        }
    }

    static func arm(_ report: ModelLifecycle.ArmReport) -> Arm {
        Arm(target: report.target.name, version: report.version.map(String.init), weight: report.weight, requests: report.figures.requests,
            errors: report.figures.errors, p50Ms: report.figures.p50Milliseconds, p99Ms: report.figures.p99Milliseconds)
    }
}
