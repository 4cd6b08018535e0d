import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
@testable import ServalGRPC
import ServalAuth
import ServalHTTP
import ServalServer
import ServalServing
import ServiceLifecycle
import Testing
import ServalWire

/// A real gRPC frontend on an ephemeral port over a temporary repository (the example models plus `echo`,
/// an identity model for every datatype), and a grpc-swift client connected to it over the socket.
struct GRPCTestServer {
    let inference: Inference_GRPCInferenceService.Client<HTTP2ClientTransport.Posix>
    let health: Grpc_Health_V1_Health.Client<HTTP2ClientTransport.Posix>
    let manager: ModelManager
    let lifecycle: ModelLifecycle
    let state: ServerState
    /// The service group running the frontend (and the readiness flipper), for shutdown tests.
    let group: ServiceGroup

    static let testsFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    /// examples/models plus `echo`; `configs` writes `<model>/config.yaml` files, `extra` adds files (path → bytes).
    static func makeRepository(configs: [String: String] = [:], extra: [String: Data] = [:]) throws -> URL {
        let files = FileManager.default
        let root = files.temporaryDirectory.appendingPathComponent("serval-grpc-repo-\(UUID().uuidString)")
        try files.copyItem(at: testsFolder.deletingLastPathComponent().appendingPathComponent("examples/models"), to: root)
        try files.createDirectory(at: root.appendingPathComponent("echo/1"), withIntermediateDirectories: true)
        try files.copyItem(at: testsFolder.appendingPathComponent("Fixtures/echo_all_types.onnx"), to: root.appendingPathComponent("echo/1/model.onnx"))
        for (model, yaml) in configs { try Data(yaml.utf8).write(to: root.appendingPathComponent("\(model)/config.yaml")) }
        for (path, bytes) in extra {
            let url = root.appendingPathComponent(path)
            try files.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try bytes.write(to: url)
        }
        return root
    }

    /// Starts the server, runs `body` with a connected client, then shuts both down.
    static func with(
        repository: URL? = nil, mode: ModelManager.ControlMode = .none, maxMessageSize: Int = 64 * 1024 * 1024,
        executorWrapper: (@Sendable (any BatchExecutor) -> any BatchExecutor)? = nil, authenticator: Authenticator? = nil,
        _ body: (GRPCTestServer) async throws -> Void
    ) async throws {
        let root = try repository ?? makeRepository()
        let logger = Logger(label: "serval-grpc-test")
        var options = ServerOptions(
            repository: root, dataDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("serval-data-\(UUID().uuidString)"),
            http: HTTPConfiguration(host: "127.0.0.1", port: 0), grpc: GRPCConfiguration(host: "127.0.0.1", port: 0, maxMessageSize: maxMessageSize))
        options.controlMode = mode
        options.executorWrapper = executorWrapper
        options.grpc?.authenticator = authenticator
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let server = try await ServalServer(options: options, metrics: nil, logger: logger, onGRPCListening: { port in continuation.yield(port) })
        let manager = server.manager
        let state = server.state
        let group = server.serviceGroup(signals: [])
        let running = Task { try await server.run(group) }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw ServingError.unavailable("gRPC server did not start") }
        let outcome: Result<Void, any Error>
        do {
            try await withGRPCClient(
                transport: .http2NIOPosix(
                    target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext,
                    config: .defaults { $0.http2.maxFrameSize = 1 << 20 })
            ) { client in
                try await body(GRPCTestServer(
                    inference: Inference_GRPCInferenceService.Client(wrapping: client), health: Grpc_Health_V1_Health.Client(wrapping: client),
                    manager: manager, lifecycle: server.lifecycle, state: state, group: group))
            }
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        await group.triggerGracefulShutdown()
        try await running.value
        try outcome.get()
    }

    /// The status code and message of the RPC error `body` throws (fails the test if it does not throw one).
    static func status(_ body: () async throws -> Void) async -> (code: RPCError.Code, message: String)? {
        do {
            try await body()
            Issue.record("expected an RPC error")
            return nil
        } catch let error as RPCError {
            return (error.code, error.message)
        } catch {
            Issue.record("expected an RPC error, got \(error)")
            return nil
        }
    }
}

/// Request builders shared by the tests.
enum Requests {
    static func input(_ name: String, _ datatype: String, _ shape: [Int64], fp32 values: [Float]? = nil) -> Inference_ModelInferRequest.InferInputTensor {
        .with {
            $0.name = name
            $0.datatype = datatype
            $0.shape = shape
            if let values { $0.contents.fp32Contents = values }
        }
    }

    /// An mlp request (input [rows, 64]) with typed FP32 contents.
    static func mlp(rows: Int = 2, id: String = "") -> Inference_ModelInferRequest {
        .with {
            $0.modelName = "mlp"
            $0.id = id
            $0.inputs = [input("input", "FP32", [Int64(rows), 64], fp32: (0..<(rows * 64)).map { Float($0 % 17) / 17 - 0.5 })]
        }
    }

    /// The same request with its inputs moved to raw_input_contents.
    static func raw(_ typed: Inference_ModelInferRequest) -> Inference_ModelInferRequest {
        var request = typed
        request.rawInputContents = typed.inputs.map { input in
            input.contents.fp32Contents.withUnsafeBufferPointer { Data(buffer: $0) }
        }
        for index in request.inputs.indices { request.inputs[index].clearContents() }
        return request
    }

    /// An iris request: 4 float features per row.
    static func iris(rows: Int = 1) -> Inference_ModelInferRequest {
        .with {
            $0.modelName = "iris"
            $0.inputs = [input("X", "FP32", [Int64(rows), 4], fp32: (0..<(rows * 4)).map { Float($0 % 5) + 0.5 })]
        }
    }
}
