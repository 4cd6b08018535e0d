import Foundation
import ServalRegistry
import ServalServing
import Testing

/// `/v2/models/{m}/traffic` against a live server: policies, sticky splits, the guard's automatic rollback and
/// progressive promotion (driven with `runTrafficGuard(now:)` and injected arm figures).
struct TrafficRouteTests {
    /// iris (as `model`) with versions 1 and 2 both loaded, `stable` → 1 and `canary` → 2. Tests that read
    /// process-wide metrics pass a model name of their own, since suites run in parallel.
    static func withCanary(model: String = "iris", _ body: (TestServer) async throws -> Void) async throws {
        let repository = try TestServer.makeRepository()
        if model != "iris" { try FileManager.default.moveItem(at: repository.appendingPathComponent("iris"), to: repository.appendingPathComponent(model)) }
        try RepositoryTests.addVersion(repository, model: model, version: 2)
        try await TestServer.with(repository: repository) { (server: TestServer) async throws in
            #expect(try await server.put("/v2/models/\(model)/labels/stable", json: ["version": "1"]).status == 200)
            #expect(try await server.put("/v2/models/\(model)/labels/canary", json: ["version": "2"]).status == 200)
            try await body(server)
        }
    }

    static func split(_ stable: Int, _ canary: Int, extra: [String: Any] = [:]) -> [String: Any] {
        var policy: [String: Any] = ["routes": [["label": "stable", "weight": stable], ["label": "canary", "weight": canary]]]
        policy.merge(extra) { $1 }
        return policy
    }

    static func servedVersion(_ server: TestServer, key: String? = nil) async throws -> String? {
        let headers = key.map { ["Serval-Routing-Key": $0] } ?? [:]
        let reply = try await server.send("POST", "/v2/models/iris/infer", body: Data(RegistryRouteTests.irisRow.utf8), headers: headers)
        return try reply.object()["model_version"] as? String
    }

    static func weights(_ server: TestServer) async throws -> [String: Int] {
        let arms = try #require(try await server.get("/v2/models/iris/traffic").object()["arms"] as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: arms.map { ($0["target"] as? String ?? "", $0["weight"] as? Int ?? -1) })
    }

    @Test func policiesAreValidatedShownAndAudited() async throws {
        try await Self.withCanary { server in
            #expect(try await server.get("/v2/models/iris/traffic").status == 404)
            let sum = try await server.put("/v2/models/iris/traffic", json: Self.split(90, 20))
            #expect(sum.status == 400 && RegistryRouteTests.error(sum) == "field 'routes': weights must sum to 100, they sum to 110")
            let negative = try await server.put("/v2/models/iris/traffic", json: Self.split(110, -10))
            #expect(negative.status == 400 && RegistryRouteTests.error(negative).contains("non-negative"))
            let unknown = try await server.put("/v2/models/iris/traffic", json: ["routes": [["label": "stable", "weight": 50], ["version": "9", "weight": 50]]])
            #expect(unknown.status == 400 && RegistryRouteTests.error(unknown) == "routes[1] names an unknown target 'v9'")
            let wrongType = try await server.put("/v2/models/iris/traffic", json: ["routes": [["label": "stable", "weight": "all"]]])
            #expect(wrongType.status == 400 && RegistryRouteTests.error(wrongType) == "request body: field 'routes[0].weight' must be an integer")
            #expect(try await server.put("/v2/models/nope/traffic", json: Self.split(90, 10)).status == 404)

            let set = try await server.put("/v2/models/iris/traffic", json: Self.split(90, 10), actor: "release")
            #expect(set.status == 200)
            #expect(try await Self.weights(server) == ["stable": 90, "canary": 10])
            let entry = try #require((try await server.get("/v2/models/iris/history?limit=1").object()["entries"] as? [[String: Any]])?.first)
            #expect(entry["action"] as? String == "traffic" && entry["actor"] as? String == "release")
            #expect((entry["details"] as? [String: Any])?["to_weights"] as? [String: Int] == ["stable": 90, "canary": 10])
            #expect(try await server.delete("/v2/models/iris/traffic").status == 200)
            #expect(try await server.get("/v2/models/iris/traffic").status == 404)
            #expect(try await server.delete("/v2/models/iris/traffic").status == 404)
        }
    }

    @Test func aRoutingKeyAlwaysGetsTheSameArm() async throws {
        try await Self.withCanary { server in
            #expect(try await server.put("/v2/models/iris/traffic", json: Self.split(50, 50)).status == 200)
            var seen: Set<String> = []
            for key in (0..<16).map({ "user-\($0)" }) {
                let first = try await Self.servedVersion(server, key: key)
                for _ in 0..<4 { #expect(try await Self.servedVersion(server, key: key) == first, "key \(key) switched arms") }
                if let first { seen.insert(first) }
            }
            #expect(seen == ["1", "2"])
            // parameters.routing_key in the v2 body works the same as the header.
            let body = #"{"parameters":{"routing_key":"user-3"},"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#
            let viaBody = try await server.post("/v2/models/iris/infer", body).object()["model_version"] as? String
            #expect(viaBody == (try await Self.servedVersion(server, key: "user-3")))
            // A versioned request is not subject to the policy.
            #expect(try await server.post("/v2/models/iris/versions/2/infer", RegistryRouteTests.irisRow).object()["model_version"] as? String == "2")
        }
    }

    @Test func theGuardRollsBackASlowCanaryAndRecordsTheFigures() async throws {
        try await Self.withCanary { server in
            let rule: [String: Any] = ["min_requests": 20, "max_error_rate": 0.05, "max_p99_latency_ratio": 2.0, "window_secs": 60]
            #expect(try await server.put("/v2/models/iris/traffic", json: Self.split(90, 10, extra: ["guard": rule])).status == 200)
            let router = server.server.router
            let now = router.clock()
            for index in 0..<50 {
                router.statistics.record(model: "iris", arm: "stable", time: now, milliseconds: 1 + Double(index % 3), failed: false)
                router.statistics.record(model: "iris", arm: "canary", time: now, milliseconds: 20, failed: false)
            }
            try await server.lifecycle.runTrafficGuard()
            #expect(try await Self.weights(server) == ["stable": 100, "canary": 0])
            for _ in 0..<10 { #expect(try await Self.servedVersion(server) == "1") }
            let entry = try #require((try await server.get("/v2/models/iris/history?limit=1").object()["entries"] as? [[String: Any]])?.first)
            #expect(entry["action"] as? String == "auto_rollback")
            #expect(entry["actor"] as? String == Actor.guardian)
            let details = try #require(entry["details"] as? [String: Any])
            #expect(details["arm"] as? String == "canary")
            #expect(details["p99_ms"] as? Double == 20)
            #expect((entry["reason"] as? String)?.contains("max_p99_latency_ratio") == true)
            // Only this test rolls iris back (the guard's webhook test uses a model of its own).
            let metrics = try await server.get("/metrics").text
            #expect(MetricsTests.sample(metrics, #"serval_traffic_rollbacks_total{model="iris"}"#) == 1)
        }
    }

    @Test func progressivePromotionStepsThenMovesStable() async throws {
        try await Self.withCanary { server in
            let progressive: [String: Any] = ["steps": [10, 50, 100], "interval_secs": 30]
            #expect(try await server.put("/v2/models/iris/traffic", json: Self.split(90, 10, extra: ["progressive": progressive])).status == 200)
            try await server.lifecycle.runTrafficGuard(now: Date())
            #expect(try await Self.weights(server) == ["stable": 90, "canary": 10])  // the interval has not passed
            try await server.lifecycle.runTrafficGuard(now: Date().addingTimeInterval(31))
            #expect(try await Self.weights(server) == ["stable": 50, "canary": 50])
            try await server.lifecycle.runTrafficGuard(now: Date().addingTimeInterval(62))
            #expect(try await Self.weights(server) == ["stable": 100])
            #expect(try await server.get("/v2/models/iris/labels").object()["labels"] as? [String: String] == ["stable": "2", "canary": "2"])
            #expect(try await Self.servedVersion(server) == "2")
            let actions = try #require(try await server.get("/v2/models/iris/history?limit=2").object()["entries"] as? [[String: Any]]).compactMap { $0["action"] as? String }
            #expect(actions == ["promote", "traffic"])
            // The promotion is one rollback away from undone.
            #expect(try await server.post("/v2/models/iris/labels/stable/rollback", json: [:]).object()["version"] as? String == "1")
        }
    }

    @Test func aPolicySurvivesARestart() async throws {
        let repository = try TestServer.makeRepository()
        try RepositoryTests.addVersion(repository, model: "iris", version: 2)
        let data = TestServer.makeDataDirectory()
        try await TestServer.with(repository: repository, dataDirectory: data) { (server: TestServer) async throws in
            #expect(try await server.put("/v2/models/iris/labels/stable", json: ["version": "1"]).status == 200)
            #expect(try await server.put("/v2/models/iris/traffic", json: ["routes": [["label": "stable", "weight": 70], ["version": "2", "weight": 30]]]).status == 200)
        }
        try await TestServer.with(repository: repository, dataDirectory: data) { (server: TestServer) async throws in
            #expect(try await Self.weights(server) == ["stable": 70, "v2": 30])
            #expect(await server.manager.readyVersions(of: "iris") == [2, 1])
        }
    }
}

/// Shadows: copies of unversioned requests go to the shadow after the primary answered; rows are compared.
struct ShadowRouteTests {
    @Test func aShadowsDisagreementIsCountedAndPrimaryAnswersAreUnchanged() async throws {
        let repository = try TestServer.makeRepository()
        // Version 2 is another iris classifier (gradient boosting): same signature; off the training data's
        // clusters the two disagree on some rows.
        let fixture = TestServer.examples.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Tests/Fixtures/sklearn_gradient_boosting_multiclass/model.onnx")
        try RepositoryTests.addVersion(repository, model: "iris", version: 2, bytes: try Data(contentsOf: fixture))
        try await TestServer.with(repository: repository) { (server: TestServer) async throws in
            #expect(try await server.put("/v2/models/iris/labels/stable", json: ["version": "1"]).status == 200)
            let policy: [String: Any] = ["routes": [["label": "stable", "weight": 100]], "shadow": [["version": "2", "percent": 100]]]
            #expect(try await server.put("/v2/models/iris/traffic", json: policy).status == 200)
            var expectedDisagreements = 0
            let rows: [[Double]] = [
                [6.55, 2.67, 1.25, 0.14], [7.25, 4.28, 4.64, 1.85], [6.17, 4.34, 5.9, 0.11], [7.43, 2.08, 5.38, 0.52], [7.45, 3.35, 2.8, 1.11],
                [4.11, 2.31, 5.02, 1.65], [6.46, 2.96, 6.98, 2.45], [6.74, 3.63, 5.13, 1.03], [4.54, 3.8, 4.15, 0.84], [5.94, 4.22, 6.6, 0.96],
                [6.29, 2.8, 4.57, 0.91], [5.57, 4.23, 2.36, 1.6],
            ]
            for row in rows {
                let body = #"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":\#(row)}]}"#
                let unversioned = try await server.post("/v2/models/iris/infer", body).object()
                let primary = try await server.post("/v2/models/iris/versions/1/infer", body).object()
                let shadow = try await server.post("/v2/models/iris/versions/2/infer", body).object()
                func label(_ answer: [String: Any]) -> Int? {
                    ((answer["outputs"] as? [[String: Any]])?.first { $0["name"] as? String == "label" }?["data"] as? [Int])?.first
                }
                #expect(unversioned["model_version"] as? String == "1")
                #expect(label(unversioned) == label(primary))
                if label(primary) != label(shadow) { expectedDisagreements += 1 }
            }
            let runner = server.server.router.shadows
            #expect(await eventually { runner.figures(model: "iris", target: "v2").requests == rows.count })
            let figures = runner.figures(model: "iris", target: "v2")
            #expect(figures.rows == rows.count)
            #expect(figures.disagreeingRows == expectedDisagreements)
            #expect(expectedDisagreements > 0, "pick rows on which the two classifiers differ")
            let shown = try #require((try await server.get("/v2/models/iris/traffic").object()["shadow_figures"] as? [[String: Any]])?.first)
            #expect(shown["disagreeing_rows"] as? Int == expectedDisagreements)
            let metrics = try await server.get("/metrics").text
            #expect(MetricsTests.sample(metrics, #"serval_shadow_requests_total{model="iris",version="2"}"#) >= Double(rows.count))
        }
    }
}
