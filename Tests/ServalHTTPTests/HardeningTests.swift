import Foundation
import Glibc
import ServalServing
import ServalTensor
import ServalWire
import Testing
@testable import ServalHTTP

/// Each hardening limit on a real server: what a request may declare (JSON depth and size, tensor elements, BYTES
/// element size, non-finite numbers, uploaded models) and what a connection may do (slow heads and bodies, too many
/// connections, a body refused early on a closing connection). Each refusal names its flag.
struct HardeningTests {
    static let iris = #"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#

    static func error(_ reply: TestServer.Reply) -> String { (try? reply.object()["error"] as? String) ?? reply.text }

    @Test func aShapeWhoseElementCountOverflowsIsRefusedNotACrash() async throws {
        try await TestServer.with { server in
            for shape in ["[4294967296,4294967296]", "[9223372036854775807,2]", "[67108865]"] {
                let body = #"{"inputs":[{"name":"X","shape":\#(shape),"datatype":"FP32","data":[1]}]}"#
                let reply = try await server.post("/v2/models/iris/infer", body)
                #expect(reply.status == 400, "\(shape): \(reply.text)")
                #expect(Self.error(reply).contains("--max-tensor-elements (67108864)"), "\(shape): \(reply.text)")
            }
            // The same through the binary extension and the job queue.
            let header = #"{"inputs":[{"name":"X","shape":[4294967296,4294967296],"datatype":"FP32","parameters":{"binary_data_size":16}}]}"#
            var body = Data(header.utf8)
            body.append(Data(count: 16))
            let binary = try await server.send("POST", "/v2/models/iris/infer", body: body, headers: ["Inference-Header-Content-Length": String(header.utf8.count)])
            #expect(binary.status == 400 && Self.error(binary).contains("--max-tensor-elements"), "\(binary.text)")
            let job = try await server.post("/v2/models/iris/jobs", #"{"inputs":[{"name":"X","shape":[4294967296,4294967296],"datatype":"FP32","data":[1]}]}"#)
            #expect(job.status == 400 && Self.error(job).contains("--max-tensor-elements"), "\(job.text)")
            #expect(try await server.post("/v2/models/iris/infer", Self.iris).status == 200)
        }
    }

    @Test func theTensorElementLimitCoversTheWholeRequest() async throws {
        try await TestServer.with(configure: { $0.http.limits.maxTensorElements = 6 }) { server, _ in
            let one = try await server.post("/v2/models/iris/infer", Self.iris)
            #expect(one.status == 200)
            let two = try await server.post("/v2/models/iris/infer", #"{"inputs":[{"name":"X","shape":[2,4],"datatype":"FP32","data":[1,2,3,4,5,6,7,8]}]}"#)
            #expect(two.status == 400)
            #expect(Self.error(two) == "input 'X': shape [2, 4] makes the request hold more than --max-tensor-elements (6) elements")
        }
    }

    @Test func jsonDepthAndSizeAreBounded() async throws {
        try await TestServer.with(configure: { $0.http.limits.maxJSONElements = 1000 }) { server, _ in
            let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
            let nested = try await server.post("/v2/models/iris/infer", #"{"inputs":"# + deep + "}")
            #expect(nested.status == 400)
            #expect(Self.error(nested).contains("nesting is deeper than --max-json-depth (64)"), "\(nested.text)")
            let many = "[" + Array(repeating: "1", count: 2000).joined(separator: ",") + "]"
            let large = try await server.post("/v2/models/iris/infer", #"{"inputs":[{"name":"X","shape":[500,4],"datatype":"FP32","data":"# + many + "}]}")
            #expect(large.status == 400)
            #expect(Self.error(large).contains("more than --max-json-elements (1000) values"), "\(large.text)")
            #expect(try await server.post("/v2/models/iris/infer", Self.iris).status == 200)
        }
    }

    @Test func aBytesElementOverTheLimitIsRefused() async throws {
        try await TestServer.with(configure: { $0.http.limits.maxBytesElementSize = 8 }) { server, _ in
            let json = try await server.post("/v2/models/iris/infer", #"{"inputs":[{"name":"X","shape":[1],"datatype":"BYTES","data":["123456789"]}]}"#)
            #expect(json.status == 400)
            #expect(Self.error(json) == "input 'X': a BYTES element of 9 bytes is longer than --max-bytes-element-size (8)")
            // The binary extension: a 4-byte length, then the bytes.
            let header = #"{"inputs":[{"name":"X","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":13}}]}"#
            var body = Data(header.utf8)
            withUnsafeBytes(of: UInt32(9).littleEndian) { body.append(contentsOf: $0) }
            body.append(Data("123456789".utf8))
            let binary = try await server.send("POST", "/v2/models/iris/infer", body: body, headers: ["Inference-Header-Content-Length": String(header.utf8.count)])
            #expect(binary.status == 400 && Self.error(binary).contains("--max-bytes-element-size (8)"), "\(binary.text)")
        }
    }

    @Test func nonFiniteInputsAreRefusedUnlessTheModelAllowsThem() async throws {
        let refusals = [
            #"[5.1, NaN, 1.4, 0.2]"#, #"[5.1, Infinity, 1.4, 0.2]"#, #"[5.1, "-Infinity", 1.4, 0.2]"#,
            #"[5.1, 1e40, 1.4, 0.2]"#,  // beyond FP32: it would become infinity
        ]
        try await TestServer.with { server in
            for data in refusals {
                let reply = try await server.post("/v2/models/iris/infer", #"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":"# + data + "}]}")
                #expect(reply.status == 400, "\(data): \(reply.text)")
                #expect(Self.error(reply).hasPrefix("input 'X' element 1 is not finite"), "\(data): \(reply.text)")
                #expect(Self.error(reply).contains("allow_non_finite: true"))
            }
            let tf = try await server.post("/v1/models/iris:predict", #"{"instances":[[5.1, NaN, 1.4, 0.2]]}"#)
            #expect(tf.status == 400 && Self.error(tf).contains("is not finite"), "\(tf.text)")
        }
        let repository = try TestServer.makeRepository()
        let config = repository.appendingPathComponent("iris/config.yaml")
        try (String(contentsOf: config, encoding: .utf8) + "\nallow_non_finite: true\n").write(to: config, atomically: true, encoding: .utf8)
        try await TestServer.with(repository: repository) { server in
            for data in refusals {
                let reply = try await server.post("/v2/models/iris/infer", #"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":"# + data + "}]}")
                #expect(reply.status == 200, "\(data): \(reply.text)")
                // Foundation's parser is strict: a bare NaN in the answer would fail here.
                #expect(throws: Never.self) { try JSONSerialization.jsonObject(with: reply.body) }
            }
        }
    }

    @Test func nonFiniteOutputsAreWrittenAsStrictJSON() throws {
        let tensor = Tensor(shape: [4], scalars: [Float.nan, .infinity, -.infinity, 1.5])
        let (json, _) = KServeCodec.encodeResponse(InferenceResponse(modelName: "m", modelVersion: "1", id: nil, outputs: [("y", .tensor(tensor))]), binary: .none)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let outputs = try #require(object["outputs"] as? [[String: Any]])
        let data = try #require(outputs.first?["data"] as? [Any])
        #expect(data.count == 4)
        #expect(data[0] as? String == "NaN" && data[1] as? String == "Infinity" && data[2] as? String == "-Infinity")
        #expect(data[3] as? Double == 1.5)
    }

    @Test func uploadsAreBoundedInSizeAndNodes() async throws {
        let model = try Data(contentsOf: TestServer.examples.appendingPathComponent("iris/1/model.onnx"))
        try await TestServer.with(configure: { $0.http.maxModelNodes = 1 }) { server, _ in
            let reply = try await server.upload("/v2/models/flowers/versions", parts: [("model", model)])
            #expect(reply.status == 400)
            #expect(Self.error(reply).contains("more than --max-model-nodes (1)"), "\(reply.text)")
        }
        try await TestServer.with(configure: { $0.http.maxModelSize = 256 }) { server, _ in
            let reply = try await server.upload("/v2/models/flowers/versions", parts: [("model", model)])
            #expect(reply.status == 413)
            #expect(Self.error(reply) == "request body is larger than --max-model-size (256 bytes)")
            #expect(try await server.get("/v2/models/flowers/versions").status == 404)
        }
    }

    // MARK: - Connections

    @Test func aSlowRequestHeadGets408AndTheConnectionCloses() async throws {
        try await TestServer.with(configure: { $0.http.connections.headerTimeout = .milliseconds(200) }) { server, _ in
            let answer = try await RawConnection.exchange(port: server.port, [Data("GET /v2 HTTP/1.1\r\nHost: serval\r\n".utf8)])
            #expect(answer.hasPrefix("HTTP/1.1 408"), "\(answer)")
            #expect(answer.contains("Connection: close"))
            #expect(answer.hasSuffix(#"{"error":"the request head was not complete within --http-header-timeout-secs (0.2 s)"}"#), "\(answer)")
        }
    }

    @Test func aPausedBodyGets408() async throws {
        try await TestServer.with(configure: { $0.http.connections.bodyIdleTimeout = .milliseconds(200) }) { server, _ in
            let head = "POST /v2/models/iris/infer HTTP/1.1\r\nHost: serval\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
            let answer = try await RawConnection.exchange(port: server.port, [Data(head.utf8), Data(#"{"inputs":"#.utf8)])
            #expect(answer.hasPrefix("HTTP/1.1 408"), "\(answer)")
            #expect(answer.hasSuffix(#"{"error":"the request body paused for longer than --http-body-timeout-secs (0.2 s)"}"#), "\(answer)")
        }
    }

    @Test func oneConnectionOverTheLimitGets503() async throws {
        try await TestServer.with(configure: { $0.http.connections.maxConnections = 2 }) { server, _ in
            let held = try (0..<2).map { _ in try RawConnection(port: server.port) }
            // An answer on each proves the server accepted (and counted) it; a connect alone does not.
            for connection in held {
                #expect(await connection.response(to: Data("GET /v2/health/live HTTP/1.1\r\nHost: serval\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 200"))
            }
            let answer = try await RawConnection.exchange(port: server.port, [Data("GET /v2 HTTP/1.1\r\nHost: serval\r\n\r\n".utf8)])
            #expect(answer.hasPrefix("HTTP/1.1 503"), "\(answer)")
            #expect(answer.contains("--http-max-connections (2)"))
            for connection in held { connection.close() }
            // Room again once they are gone: the count follows closes (which the server sees a moment later, so
            // the next connections may still be refused; a bounded number of attempts, no sleeping).
            var status = 0
            for _ in 0..<500 where status != 200 { status = try await server.get("/v2").status }
            #expect(status == 200)
        }
    }

    /// A client that writes its whole body before reading (as Python's requests does) gets the early answer at
    /// once on a `Connection: close` request, instead of blocking until its own timeout.
    @Test func anEarlyAnswerOnAClosingConnectionReachesAClientThatWritesItsWholeBodyFirst() async throws {
        try await TestServer.with(maxInputSize: 1024 * 1024) { server in
            let size = 32 * 1024 * 1024
            let head = "POST /v2/models/iris/infer HTTP/1.1\r\nHost: serval\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: \(size)\r\n\r\n"
            let answer = try await RawConnection.exchange(port: server.port, [Data(head.utf8), Data(repeating: 0x20, count: size)])
            #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer.prefix(200))")
            #expect(answer.hasSuffix(#"{"error":"request body is larger than --http-max-input-size (1048576 bytes)"}"#))
        }
    }
}

/// A blocking TCP client for what URLSession cannot do: send a request in pieces, or a body it never stops to
/// read between. Sends and reads give up after 20 s, so a server that stops reading fails the test instead of
/// hanging it.
/// A plain TCP client for the tests that need a connection a URLSession would not make: slow, paused,
/// cut short, held open or disconnected mid-request.
struct RawConnection {
    let descriptor: Int32

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    /// Writes all of `data`; false when the server closed or stopped reading for 20 s.
    func send(_ data: Data) -> Bool {
        data.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let sent = Glibc.send(descriptor, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                guard sent > 0 else { return false }
                offset += sent
            }
            return true
        }
    }

    /// Writes all of `text`, throwing when the server closed the connection.
    func send(_ text: String) throws {
        guard send(Data(text.utf8)) else { throw POSIXError(.EPIPE) }
    }

    /// Everything the server sends until it closes.
    func receiveAll() -> String {
        var received = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { break }
            received.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: received, as: UTF8.self)
    }

    func close() { _ = Glibc.close(descriptor) }

    /// Sends `request` and reads one whole response (its head, then `Content-Length` bytes of body), on a thread of
    /// its own; the connection stays open for the next. Empty when the server closed the connection first.
    func response(to request: Data) async -> String {
        await withCheckedContinuation { continuation in
            Thread {
                guard send(request) else { continuation.resume(returning: ""); return }
                var received: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let text = String(decoding: received, as: UTF8.self)
                    if let head = text.range(of: "\r\n\r\n") {
                        let length = text[..<head.lowerBound].split(separator: "\r\n")
                            .first { $0.lowercased().hasPrefix("content-length:") }
                            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                        if text.utf8.count - text.utf8.distance(from: text.startIndex, to: head.upperBound) >= length { break }
                    }
                    let count = recv(descriptor, &buffer, buffer.count, 0)
                    guard count > 0 else { break }
                    received.append(contentsOf: buffer[0..<count])
                }
                continuation.resume(returning: String(decoding: received, as: UTF8.self))
            }.start()
        }
    }

    /// Connects, sends each piece in turn, then reads to the end, on a thread of its own (the socket calls block).
    static func exchange(port: Int, _ pieces: [Data]) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                do {
                    let connection = try RawConnection(port: port)
                    defer { connection.close() }
                    for piece in pieces where !connection.send(piece) { break }
                    continuation.resume(returning: connection.receiveAll())
                } catch {
                    continuation.resume(throwing: error)
                }
            }.start()
        }
    }
}
