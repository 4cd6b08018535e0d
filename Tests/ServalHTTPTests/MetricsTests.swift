import Foundation
import Testing

/// `GET /metrics`: Prometheus text with per-model counters that move with traffic.
@Suite(.serialized) struct MetricsTests {
    /// The value of the sample line starting with `prefix` (metric name and labels), or 0 when absent.
    static func sample(_ text: String, _ prefix: String) -> Double {
        for line in text.split(separator: "\n") where line.hasPrefix(prefix + " ") {
            return Double(line.split(separator: " ").last ?? "0") ?? 0
        }
        return 0
    }

    @Test func countsRowsExecutionsSuccessAndFailures() async throws {
        // A model name no other test uses: counters are process-wide and suites run in parallel.
        let repository = try TestServer.makeRepository()
        try FileManager.default.moveItem(at: repository.appendingPathComponent("iris"), to: repository.appendingPathComponent("iris_metrics"))
        try await TestServer.with(repository: repository) { (server: TestServer) async throws in
            let labels = #"{model="iris_metrics",version="1"}"#
            let before = try await server.get("/metrics").text
            #expect(try await server.post("/v2/models/iris_metrics/infer", KServeTests.iris).status == 200)
            #expect(try await server.post("/v2/models/iris_metrics/infer", #"{"inputs":[]}"#).status == 400)
            let reply = try await server.get("/metrics")
            #expect(reply.status == 200)
            let after = reply.text
            func delta(_ name: String) -> Double { Self.sample(after, name) - Self.sample(before, name) }
            #expect(delta("serval_inference_request_success_total" + labels) == 1)
            #expect(delta("serval_inference_count_total" + labels) == 2)
            #expect(delta("serval_inference_exec_count_total" + labels) == 1)
            #expect(delta(#"serval_inference_request_failure_total{model="iris_metrics",version="1",reason="invalid"}"#) == 1)
            #expect(Self.sample(after, #"serval_model_ready{model="iris_metrics",version="1"}"#) == 1)
            #expect(after.contains("# TYPE serval_inference_queue_duration_seconds histogram"))
            #expect(Self.sample(after, "serval_process_resident_memory_bytes") > 0)
        }
    }
}
