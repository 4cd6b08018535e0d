import Foundation
import Testing

/// TF Serving REST payloads against a live server.
@Suite(.serialized) struct TFServingTests {
    @Test func predictRowFormatWithSeveralOutputs() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let reply = try await server.post("/v1/models/iris:predict", #"{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}"#)
            #expect(reply.status == 200)
            let predictions = try #require(try reply.object()["predictions"] as? [[String: Any]])
            #expect(predictions.count == 2)
            #expect(predictions.map { $0["label"] as? Int } == [0, 2])
            #expect((predictions[0]["probabilities"] as? [Double])?.count == 3)
        }
    }

    @Test func predictColumnarFormatWithVersion() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let reply = try await server.post("/v1/models/iris/versions/1:predict", #"{"inputs": {"X": [[5.1, 3.5, 1.4, 0.2]]}}"#)
            #expect(reply.status == 200)
            let outputs = try #require(try reply.object()["outputs"] as? [String: Any])
            #expect(outputs["label"] as? [Int] == [0])
        }
    }

    @Test func predictSingleOutputModelGivesPlainRows() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let row = (0..<64).map { _ in "0.5" }.joined(separator: ",")
            let reply = try await server.post("/v1/models/mlp:predict", #"{"signature_name": "serving_default", "instances": [[\#(row)]]}"#)
            #expect(reply.status == 200)
            let predictions = try #require(try reply.object()["predictions"] as? [[Double]])
            #expect(predictions.count == 1 && predictions[0].count == 10)
            #expect(abs(predictions[0].reduce(0, +) - 1) < 1e-4)
        }
    }

    @Test func statusAndMetadata() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let status = try await server.get("/v1/models/iris").object()
            let versions = try #require(status["model_version_status"] as? [[String: Any]])
            #expect(versions.first?["state"] as? String == "AVAILABLE")
            #expect(versions.first?["version"] as? String == "1")
            let metadata = try await server.get("/v1/models/iris/metadata")
            #expect(metadata.status == 200)
            #expect(metadata.text.contains("serving_default"))
            #expect(try await server.get("/v1/models/absent").status == 404)
        }
    }

    @Test func errorsUseTheErrorField() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let both = try await server.post("/v1/models/iris:predict", #"{"instances": [[1,2,3,4]], "inputs": [[1,2,3,4]]}"#)
            #expect(both.status == 400)
            #expect((try both.object()["error"] as? String)?.contains("either 'instances' or 'inputs'") == true)
            let ragged = try await server.post("/v1/models/iris:predict", #"{"instances": [[1,2,3,4], [1,2]]}"#)
            #expect(ragged.status == 400)
            let method = try await server.post("/v1/models/iris:classify", #"{"examples": []}"#)
            #expect(method.status == 400)
            #expect(try await server.post("/v1/models/absent:predict", #"{"instances": [[1]]}"#).status == 404)
        }
    }
}
