import Foundation
import ServalServing
import ServalTestSupport
import Testing
#if canImport(Glibc)
import Glibc
import ServalWire
#endif

/// Protocol details a new user found wrong, each fixed and pinned here.
struct ProtocolDetailTests {
    @Test func clientErrorsAreCountedWithTheirOwnStatusNot500() async throws {
        let repository = try TestServer.makeRepository()
        try FileManager.default.moveItem(at: repository.appendingPathComponent("iris"), to: repository.appendingPathComponent("iris_status"))
        try await TestServer.with(repository: repository) { (server: TestServer) async throws in
            #expect(try await server.post("/v2/models/iris_status/infer", "{}").status == 400)
            #expect(try await server.get("/v2/models/iris_status/versions/9").status == 404)
            let text = try await server.get("/metrics").text
            let route = #"http_route="/v2/models/{model}/infer",http_request_method="POST""#
            #expect(text.contains(#"hb_requests{\#(route),http_response_status_code="400"}"#))
            #expect(!text.split(separator: "\n").contains { $0.contains(route) && $0.contains(#"http_response_status_code="500""#) })
        }
    }

    @Test func labelsInForceAreExportedAsInfoMetrics() async throws {
        let repository = try TestServer.makeRepository()
        try FileManager.default.moveItem(at: repository.appendingPathComponent("iris"), to: repository.appendingPathComponent("iris_labels"))
        try RepositoryTests.addVersion(repository, model: "iris_labels", version: 2)
        try "version_policy: all\n".write(to: repository.appendingPathComponent("iris_labels/config.yaml"), atomically: true, encoding: .utf8)
        try await TestServer.with(repository: repository) { (server: TestServer) async throws in
            #expect(try await server.put("/v2/models/iris_labels/labels/stable", json: ["version": "1"]).status == 200)
            #expect(try await server.put("/v2/models/iris_labels/labels/stable", json: ["version": "2"]).status == 200)
            let text = try await server.get("/metrics").text
            #expect(MetricsTests.sample(text, #"serval_model_label_info{model="iris_labels",label="stable",version="2"}"#) == 1)
            #expect(MetricsTests.sample(text, #"serval_model_label_info{model="iris_labels",label="stable",version="1"}"#) == 0)
        }
    }

    @Test func tfServingMetadataUsesTensorFlowDTypes() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let text = try await server.get("/v1/models/iris/metadata").text
            #expect(text.contains(#""X":{"dtype":"DT_FLOAT""#))
            #expect(text.contains(#""label":{"dtype":"DT_INT64""#))
            #expect(!text.contains("FP32"))
        }
    }

    @Test func aKnownPathWithTheWrongMethodIs405WithAllow() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let infer = try await server.get("/v2/models/iris/infer")
            #expect(infer.status == 405)
            #expect(infer.headers["Allow"] == "POST")
            #expect((try infer.object()["error"] as? String)?.contains("POST") == true)
            let labels = try await server.send("POST", "/v2/models/iris/labels/stable", body: nil)
            #expect(labels.status == 405)
            #expect(labels.headers["Allow"] == "PUT, DELETE")
            #expect(try await server.get("/v2/nothing/here").status == 404)
        }
    }

    @Test func linearAndTreeModelsReportTheirWeightBytes() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let config = try await server.get("/v2/models/iris/config").object()
            #expect((config["weight_bytes"] as? Int ?? 0) > 0)
            let stats = try await server.get("/v2/models/iris/stats").object()
            let usage = ((stats["model_stats"] as? [[String: Any]])?.first?["memory_usage"] as? [[String: Any]])?.first
            #expect((usage?["byte_size"] as? Int ?? 0) > 0)
        }
    }

    @Test func zeroRowsAnswerZeroRows() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let reply = try await server.post("/v2/models/iris/infer", #"{"inputs":[{"name":"X","shape":[0,4],"datatype":"FP32","data":[]}]}"#)
            #expect(reply.status == 200)
            let outputs = try #require(try reply.object()["outputs"] as? [[String: Any]])
            #expect(outputs.allSatisfy { ($0["shape"] as? [Int])?.first == 0 })
        }
    }

    @Test func aRequestWhoseClientDisconnectsLeavesTheQueue() async throws {
        let gate = BatchGate()
        let repository = try TestServer.makeRepository()
        try "max_batch_size: 1\n".write(to: repository.appendingPathComponent("mlp/config.yaml"), atomically: true, encoding: .utf8)
        try await TestServer.with(repository: repository, executorWrapper: { GatedExecutor(inner: $0, gate: gate) }) { server, _ in
            let mlp = try await server.manager.resolve("mlp", version: nil)
            let row = "[" + Array(repeating: "0.5", count: 64).joined(separator: ",") + "]"
            let body = #"{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":\#(row)}]}"#
            let held = Task { try await server.post("/v2/models/mlp/infer", body) }
            await gate.waitUntilStarted()
            // A second request queues behind the held batch; then its client goes away.
            let port = try #require(server.baseURL.port)
            let socket = try RawConnection(port: port)
            try socket.send("POST /v2/models/mlp/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            #expect(await eventually { await mlp.pendingRequests == 2 })
            socket.close()
            #expect(await eventually { await mlp.pendingRequests == 1 }, "the disconnected request is still queued")
            #expect(mlp.statistics.snapshot.failures["cancelled"] == 1)
            await gate.release()
            #expect(try await held.value.status == 200)
            // Only the held request ever ran.
            #expect(mlp.statistics.snapshot.executionCount == 1)
        }
    }
}

/// Polls `condition` until it holds; false if it still does not after a generous bound (a hung test fails
/// instead of hanging CI). Not a timing assertion: the bound only stops the wait.
func eventually(_ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .seconds(20)
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        await Task.yield()
    }
    return false
}

