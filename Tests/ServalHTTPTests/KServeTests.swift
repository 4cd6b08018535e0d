import Foundation
import ServalServing
import Testing

/// KServe v2 REST against a live server.
@Suite(.serialized) struct KServeTests {
    /// Two iris rows as a KServe v2 JSON body.
    static let iris = #"{"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]}"#

    @Test func healthAndServerMetadata() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            #expect(try await server.get("/v2/health/live").status == 200)
            let ready = try await server.get("/v2/health/ready")
            #expect(ready.status == 200)
            #expect(try ready.object()["ready"] as? Bool == true)
            let metadata = try await server.get("/v2").object()
            #expect(metadata["name"] as? String == "serval")
            #expect((metadata["extensions"] as? [String])?.contains("model_repository") == true)
        }
    }

    @Test func modelMetadataListsTensorsWithVariableBatch() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let metadata = try await server.get("/v2/models/iris").object()
            #expect(metadata["platform"] as? String == "onnx_onnxv1")
            let inputs = try #require(metadata["inputs"] as? [[String: Any]])
            #expect(inputs.first?["name"] as? String == "X")
            #expect(inputs.first?["datatype"] as? String == "FP32")
            #expect(inputs.first?["shape"] as? [Int] == [-1, 4])
            #expect(try await server.get("/v2/models/iris/versions/1").status == 200)
            #expect(try await server.get("/v2/models/iris/versions/1/ready").status == 200)
        }
    }

    @Test func infersWithNestedDataAndEchoesId() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let body = Self.iris.dropLast() + #", "id": "request-7"}"#
            let reply = try await server.post("/v2/models/iris/infer", String(body))
            #expect(reply.status == 200)
            let response = try reply.object()
            #expect(response["id"] as? String == "request-7")
            #expect(response["model_version"] as? String == "1")
            let outputs = try #require(response["outputs"] as? [[String: Any]])
            let label = try #require(outputs.first { $0["name"] as? String == "label" })
            #expect(label["data"] as? [Int] == [0, 2])
            #expect(label["datatype"] as? String == "INT64")
        }
    }

    @Test func flatDataWithoutContentTypeAndRequestedOutputs() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            // tritonclient sends no Content-Type and Python's default ", " separators.
            let body = #"{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}], "outputs": [{"name": "probabilities"}]}"#
            let reply = try await server.post("/v2/models/iris/versions/1/infer", body)
            #expect(reply.status == 200)
            let outputs = try #require(try reply.object()["outputs"] as? [[String: Any]])
            #expect(outputs.map { $0["name"] as? String } == ["probabilities"])
            #expect(outputs[0]["shape"] as? [Int] == [1, 3])
        }
    }

    @Test(arguments: [
        (#"{"inputs":[{"name":"X","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#, "input 'X' has shape [1, 3], expected [-1, 4]"),
        (#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"INT64","data":[1,2,3,4]}]}"#, "input 'X' has datatype INT64, expected FP32"),
        (#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[1,2,3]}]}"#, "input 'X': data has 3 elements, shape [1, 4] needs 4"),
        (#"{"inputs":[]}"#, "missing input 'X'"),
        (#"{"inputs":[{"name":"Y","shape":[1],"datatype":"FP32","data":[1]}]}"#, "unexpected input 'Y'"),
        (#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"nope"}]}"#, "unknown output 'nope'"),
        (#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[1,2,"a",4]}]}"#, "input 'X': data must hold numbers"),
        (#"{"inputs":[{"name":"X""#, "invalid JSON"),
        (#"[1,2]"#, "request body must be a JSON object"),
    ])
    func badRequestsGet400NamingTheProblem(body: String, message: String) async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let reply = try await server.post("/v2/models/iris/infer", body)
            #expect(reply.status == 400)
            let error = try #require(try reply.object()["error"] as? String)
            #expect(error.contains(message), "\(error)")
        }
    }

    @Test func unknownModelOrVersionIs404() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let model = try await server.post("/v2/models/nope/infer", Self.iris)
            #expect(model.status == 404)
            #expect(try model.object()["error"] as? String == "unknown model 'nope'")
            #expect(try await server.get("/v2/models/iris/versions/9").status == 404)
            #expect(try await server.get("/v2/nothing/here").status == 404)
        }
    }

    @Test func oversizedBodyIs413() async throws {
        try await TestServer.with(maxInputSize: 64) { (server: TestServer) async throws in
            let reply = try await server.post("/v2/models/iris/infer", Self.iris)
            #expect(reply.status == 413)
            #expect((try reply.object()["error"] as? String)?.contains("--http-max-input-size") == true)
        }
    }

    @Test func configShowsEffectiveSettings() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let reply = try await server.get("/v2/models/iris/config").object()
            let config = try #require(reply["config"] as? [String: Any])
            #expect(config["instance_count"] as? Int == 1)
            #expect(config["max_batch_size"] as? Int == 64)
            #expect(config["warmup_batch_sizes"] as? [Int] == [1, 64])
            #expect((config["version_policy"] as? [String: Any])?["latest"] as? Int == 1)
        }
    }
}
