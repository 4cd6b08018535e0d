import Foundation
import Testing

/// Triton's binary tensor data extension, byte for byte.
@Suite(.serialized) struct BinaryTensorTests {
    static func body(json: String, floats: [Float]) -> (Data, Int) {
        var data = Data(json.utf8)
        let headerLength = data.count
        floats.withUnsafeBytes { data.append(contentsOf: $0) }
        return (data, headerLength)
    }

    @Test func binaryInputAndBinaryOutputs() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let rows: [Float] = [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]
            let (body, headerLength) = Self.body(
                json: #"{"inputs":[{"name":"X","shape":[2,4],"datatype":"FP32","parameters":{"binary_data_size":32}}],"parameters":{"binary_data_output":true}}"#,
                floats: rows)
            let reply = try await server.send("POST", "/v2/models/iris/infer", body: body, headers: ["Inference-Header-Content-Length": String(headerLength)])
            #expect(reply.status == 200)
            let length = try #require(reply.headers["Inference-Header-Content-Length"].flatMap { Int($0) })
            let header = try #require(try JSONSerialization.jsonObject(with: reply.body.prefix(length)) as? [String: Any])
            let outputs = try #require(header["outputs"] as? [[String: Any]])
            #expect(outputs.map { ($0["parameters"] as? [String: Any])?["binary_data_size"] as? Int } == [16, 24])
            let payload = reply.body.dropFirst(length)
            #expect(payload.count == 40)
            let labels = payload.prefix(16).withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
            #expect(labels == [0, 2])
            // The same request in JSON gives the same probabilities, bit for bit.
            let json = try await server.post("/v2/models/iris/infer", KServeTests.iris).object()
            let probabilities = try #require((json["outputs"] as? [[String: Any]])?.last?["data"] as? [Double]).map { Float($0) }
            let binaryProbabilities = payload.dropFirst(16).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            #expect(binaryProbabilities == probabilities)
        }
    }

    @Test func wrongBinarySizeNamesTheInput() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let (body, headerLength) = Self.body(
                json: #"{"inputs":[{"name":"X","shape":[2,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}"#,
                floats: [1, 2, 3, 4])
            let reply = try await server.send("POST", "/v2/models/iris/infer", body: body, headers: ["Inference-Header-Content-Length": String(headerLength)])
            #expect(reply.status == 400)
            #expect((try reply.object()["error"] as? String)?.contains("input 'X': binary_data_size is 16 bytes, shape [2, 4] of FP32 needs 32") == true)
        }
    }

    @Test func headerLengthPastTheBodyIs400() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let reply = try await server.send("POST", "/v2/models/iris/infer", body: Data("{}".utf8), headers: ["Inference-Header-Content-Length": "999"])
            #expect(reply.status == 400)
        }
    }
}
