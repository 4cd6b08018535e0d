import Foundation
@testable import ServalMonitor
import Testing

/// Monitoring over HTTP on a live server with the iris example (which ships a `monitoring:` section and its
/// reference): request ids, the payload log, feedback joined by id, status, and settings changes with history.
@Suite struct MonitoringRouteTests {
    static func infer(_ server: TestServer, id: String?, rows: [[Double]]) async throws -> TestServer.Reply {
        var body: [String: Any] = ["inputs": [["name": "X", "shape": [rows.count, 4], "datatype": "FP32", "data": rows.flatMap { $0 }]]]
        if let id { body["id"] = id }
        return try await server.post("/v2/models/iris/infer", json: body)
    }

    static let setosa = [5.1, 3.5, 1.4, 0.2], virginica = [6.7, 3.0, 5.2, 2.3]

    @Test func aRequestWithoutAnIdGetsOneInTheBodyAndTheHeaderOnEveryFrontend() async throws {
        try await TestServer.with { server in
            let reply = try await Self.infer(server, id: nil, rows: [Self.setosa])
            let id = try #require(reply.headers["Serval-Request-Id"])
            #expect(id.count == 32)
            #expect(try reply.object()["id"] as? String == id)
            let mine = try await Self.infer(server, id: "client-7", rows: [Self.setosa])
            #expect(mine.headers["Serval-Request-Id"] == "client-7")
            let tf = try await server.post("/v1/models/iris:predict", json: ["instances": [Self.setosa]])
            #expect(tf.status == 200)
            #expect(tf.headers["Serval-Request-Id"]?.count == 32)
        }
    }

    @Test func feedbackJoinsByIdAndSendingAgainReplacesIt() async throws {
        try await TestServer.with { server in
            #expect(try await Self.infer(server, id: "two-rows", rows: [Self.setosa, Self.virginica]).status == 200)
            // Right away: the prediction may still be on its way to the log; feedback finds it anyway.
            let first = try await server.post("/v2/models/iris/feedback", json: ["id": "two-rows", "ground_truth": [0, 2]])
            #expect(first.status == 200)
            #expect(try first.object()["rows"] as? Int == 2)
            await server.server.monitor.evaluate(now: Date().timeIntervalSince1970)
            var status = try await server.get("/v2/models/iris/monitoring/status").object()
            var performance = try #require(status["performance"] as? [String: Any])
            #expect(performance["labelled_rows"] as? Int == 2)
            #expect((performance["realised"] as? [String: Double])?["accuracy"] == 1)
            // The same id again, both rows wrong: replaced, not added.
            #expect(try await server.post("/v2/models/iris/feedback", json: ["items": [["id": "two-rows", "ground_truth": ["1", "1"]]]]).status == 200)
            await server.server.monitor.evaluate(now: Date().timeIntervalSince1970 + 2)
            status = try await server.get("/v2/models/iris/monitoring/status").object()
            performance = try #require(status["performance"] as? [String: Any])
            #expect(performance["labelled_rows"] as? Int == 2)
            #expect((performance["realised"] as? [String: Double])?["accuracy"] == 0)
            // The log line carries the ground truth.
            let log = try await server.get("/v2/models/iris/logs?limit=10").text
            #expect(log.contains("\"id\":\"two-rows\"") && log.contains("\"ground_truth\":[\"1\",\"1\"]"))
        }
    }

    @Test func badFeedbackNamesTheIdAndWritesNothing() async throws {
        try await TestServer.with { server in
            #expect(try await Self.infer(server, id: "one", rows: [Self.setosa]).status == 200)
            let unknown = try await server.post("/v2/models/iris/feedback", json: ["items": [["id": "one", "ground_truth": 0], ["id": "ghost", "ground_truth": 0]]])
            #expect(unknown.status == 404)
            #expect(unknown.text.contains("'ghost'"))
            let count = try await server.post("/v2/models/iris/feedback", json: ["id": "one", "ground_truth": [0, 1]])
            #expect(count.status == 400)
            #expect(count.text.contains("'one'") && count.text.contains("1 row"))
            let type = try await server.post("/v2/models/iris/feedback", json: ["id": "one", "ground_truth": 0.5])
            #expect(type.status == 400)
            #expect(type.text.contains("class label"))
            let shape = try await server.post("/v2/models/iris/feedback", json: ["ground_truth": 0])
            #expect(shape.status == 400)
            #expect(shape.text.contains("id"))
            // Nothing was written by the refused calls: the first item of the 404 call has no ground truth.
            #expect(!(try await server.get("/v2/models/iris/logs").text.contains("ground_truth")))
            let unmonitored = try await server.post("/v2/models/mlp/feedback", json: ["id": "x", "ground_truth": 1])
            #expect(unmonitored.status == 404)
            #expect(unmonitored.text.contains("no monitoring configured"))
        }
    }

    @Test func aWindowBelowThirtyRowsIsInsufficientData() async throws {
        try await TestServer.with { server in
            #expect(try await Self.infer(server, id: nil, rows: Array(repeating: Self.setosa, count: 29)).status == 200)
            await server.server.monitor.flush()
            let status = try await server.get("/v2/models/iris/monitoring/status").object()
            #expect(status["status"] as? String == "insufficient_data")
            let window = try #require(status["window"] as? [String: Any])
            #expect(window["rows"] as? Int == 29)
            #expect(window["partial"] as? Bool == true)
            #expect((status["dataset_drift"] as? [String: Any])?["drifted"] is NSNull)
            let features = try #require(status["features"] as? [[String: Any]])
            #expect(features.map { $0["name"] as? String } == ["sepal_length", "sepal_width", "petal_length", "petal_width"])
            #expect(features.allSatisfy { $0["drifted"] is NSNull })
            let mlp = try await server.get("/v2/models/mlp/monitoring/status")
            #expect(mlp.status == 404)
            #expect(try await server.get("/v2/models/nope/monitoring/status").status == 404)
        }
    }

    @Test func anEvaluationWithNothingNewRecomputesNothing() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let monitor = server.server.monitor
            let now = Date().timeIntervalSince1970
            #expect(try await Self.infer(server, id: "batch", rows: Array(repeating: Self.setosa, count: 40)).status == 200)
            await monitor.flush()
            await monitor.evaluate(now: now)
            let scored = await monitor.scorings
            // No row since: the window is not scored again, and the status is the same.
            await monitor.evaluate(now: now + 1)
            await monitor.evaluate(now: now + 2)
            #expect(await monitor.scorings == scored)
            #expect(try await monitor.status("iris", version: 1, now: now + 2).rows == 40)
            // One row more: scored once.
            #expect(try await Self.infer(server, id: "one", rows: [Self.virginica]).status == 200)
            await monitor.flush()
            await monitor.evaluate(now: now + 3)
            #expect(await monitor.scorings == scored + 1)
            #expect(try await monitor.status("iris", version: 1, now: now + 3).rows == 41)
            // Realised figures: computed when feedback comes, not again while nothing more is labelled.
            #expect(try await server.post("/v2/models/iris/feedback", json: ["id": "one", "ground_truth": 2]).status == 200)
            let refreshed = await monitor.realisedRefreshes
            await monitor.evaluate(now: now + 4)
            await monitor.evaluate(now: now + 5)
            #expect(await monitor.realisedRefreshes == refreshed)
            #expect(try await monitor.status("iris", version: 1, now: now + 5).performance.realised?["accuracy"] == 1)
            #expect(try await server.post("/v2/models/iris/feedback", json: ["id": "one", "ground_truth": 0]).status == 200)
            #expect(await monitor.realisedRefreshes == refreshed + 1)
            await monitor.evaluate(now: now + 6)
            #expect(try await monitor.status("iris", version: 1, now: now + 6).performance.realised?["accuracy"] == 0)
        }
    }

    @Test func changingTheSettingsIsValidatedAndAudited() async throws {
        try await TestServer.with { server in
            let initial = try await server.get("/v2/models/iris/monitoring").object()
            #expect(initial["source"] as? String == "config")
            var settings = try #require(initial["monitoring"] as? [String: Any])
            settings["window"] = 0
            let refused = try await server.put("/v2/models/iris/monitoring", json: settings, actor: "carol")
            #expect(refused.status == 400)
            #expect(refused.text.contains("window: expected an integer"))
            settings["window"] = 100
            let changed = try await server.put("/v2/models/iris/monitoring", json: settings, actor: "carol")
            #expect(changed.status == 200)
            let now = try await server.get("/v2/models/iris/monitoring").object()
            #expect(now["source"] as? String == "api")
            #expect((now["monitoring"] as? [String: Any])?["window"] as? Int == 100)
            let missing = try await server.put("/v2/models/iris/monitoring", json: ["reference": "nowhere.csv"], actor: "carol")
            #expect(missing.status == 400)
            #expect(missing.text.contains("nowhere.csv"))
            let history = try #require(try await server.get("/v2/models/iris/history").object()["entries"] as? [[String: Any]])
            let entry = try #require(history.first { $0["action"] as? String == "monitoring" })
            #expect(entry["actor"] as? String == "carol")
            #expect(history.filter { $0["action"] as? String == "monitoring" }.count == 1)  // the refused calls left no entry
            #expect(try await server.delete("/v2/models/iris/monitoring").status == 200)
            #expect(try await server.get("/v2/models/iris/monitoring").object()["source"] as? String == "config")
        }
    }

    @Test func theLogIsJSONLinesAndItsLimitIsChecked() async throws {
        try await TestServer.with { server in
            for index in 0..<3 { #expect(try await Self.infer(server, id: "r\(index)", rows: [Self.setosa]).status == 200) }
            await server.server.monitor.flush()
            let reply = try await server.get("/v2/models/iris/logs?limit=2")
            #expect(reply.headers["Content-Type"] == "application/x-ndjson")
            let lines = reply.text.split(separator: "\n")
            #expect(lines.count == 2)
            let last = try #require(try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any])
            #expect(last["id"] as? String == "r2")
            #expect(last["version"] as? String == "1")
            #expect((last["inputs"] as? [[String: Any]])?.first?["name"] as? String == "X")
            #expect((last["outputs"] as? [[String: Any]])?.count == 2)
            let bad = try await server.get("/v2/models/iris/logs?limit=5000")
            #expect(bad.status == 400)
            #expect(bad.text.contains("limit"))
        }
    }
}

/// Two replicas on one PostgreSQL (CI sets SERVAL_TEST_DATABASE_URL), both monitoring iris: each adds the other's
/// logged rows to its window, so both score the model's whole traffic and report the same status; one of them at
/// a time holds the alert lease, and the other takes it over once it lapses.
struct ReplicaMonitoringTests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SERVAL_TEST_DATABASE_URL"] != nil))
    func eachReplicaScoresTheRowsSentToEither() async throws {
        let url = try await ServalStoreTestDatabase.fresh()
        let repository = try TestServer.makeRepository()
        try await TestServer.with(repository: repository, databaseURL: url) { (first: TestServer) async throws in
            try await TestServer.with(repository: repository, databaseURL: url) { (second: TestServer) async throws in
                let now = Date().timeIntervalSince1970
                let (a, b) = (first.server.monitor, second.server.monitor)
                await a.evaluate(now: now)
                await b.evaluate(now: now)
                let (aLeads, bLeads) = (await a.leadsAlerts, await b.leadsAlerts)
                #expect(aLeads && !bLeads)
                let setosa = MonitoringRouteTests.setosa, virginica = MonitoringRouteTests.virginica
                #expect(try await MonitoringRouteTests.infer(first, id: nil, rows: Array(repeating: setosa, count: 40)).status == 200)
                #expect(try await MonitoringRouteTests.infer(second, id: nil, rows: Array(repeating: virginica, count: 30)).status == 200)
                #expect(try await MonitoringRouteTests.infer(first, id: nil, rows: Array(repeating: virginica, count: 5)).status == 200)
                await a.flush()
                await b.flush()
                await a.evaluate(now: now + 1)
                await b.evaluate(now: now + 1)
                let one = try await first.get("/v2/models/iris/monitoring/status").object()
                let other = try await second.get("/v2/models/iris/monitoring/status").object()
                #expect((one["window"] as? [String: Any])?["rows"] as? Int == 75)
                #expect((other["window"] as? [String: Any])?["rows"] as? Int == 75)
                let scores = { (status: [String: Any]) in (status["features"] as? [[String: Any]])?.compactMap { $0["score"] as? Double } ?? [] }
                #expect(scores(one).count == 4)
                #expect(scores(one) == scores(other))
                // Nothing is added twice: later evaluations read the same rows again and skip them.
                await b.evaluate(now: now + 2)
                await b.evaluate(now: now + 3)
                #expect(try await b.status("iris", version: nil, now: now + 5).rows == 75)
                // The first replica stops renewing: once its lease lapses the second takes over, and the first yields.
                await b.evaluate(now: now + 1 + Monitor.alertLeaseSeconds + 1)
                let takenOver = await b.leadsAlerts
                #expect(takenOver)
                await a.evaluate(now: now + 1 + Monitor.alertLeaseSeconds + 2)
                let yielded = await !a.leadsAlerts
                #expect(yielded)
            }
        }
    }
}
