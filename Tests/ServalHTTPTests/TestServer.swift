import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Metrics
import Prometheus
import ServalHTTP
import ServalServing
import ServiceLifecycle
import Testing

/// One Prometheus registry for the test process (swift-metrics can be bootstrapped once).
enum TestMetrics {
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(ServalMetrics.factory(registry: registry))
        return registry
    }()
}

/// A real `serval` HTTP server on an ephemeral port, over a temporary copy of a model repository.
struct TestServer {
    let baseURL: URL
    let manager: ModelManager
    let repository: URL

    /// A repository folder with the example models (iris, mlp) copied in.
    static func makeRepository() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("serval-repo-\(UUID().uuidString)")
        let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples/models")
        try FileManager.default.copyItem(at: examples, to: root)
        return root
    }

    /// Starts the server, runs `body`, then shuts the server down gracefully.
    static func with(
        repository: URL? = nil, mode: ModelManager.ControlMode = .none, maxInputSize: Int = 64 * 1024 * 1024,
        state: ServerState = ServerState(), executorWrapper: (@Sendable (any BatchExecutor) -> any BatchExecutor)? = nil,
        _ body: (TestServer, ServiceGroup) async throws -> Void
    ) async throws {
        let root = try repository ?? makeRepository()
        let metrics = TestMetrics.registry
        let logger = Logger(label: "serval-test")
        let manager = ModelManager(repository: ModelRepository(root: root), mode: mode, logger: logger, executorWrapper: executorWrapper)
        if mode != .explicit { try await manager.reconcile() }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = HTTPServer.makeApplication(
            manager: manager, configuration: HTTPConfiguration(host: "127.0.0.1", port: 0, maxInputSize: maxInputSize), state: state, metrics: metrics,
            logger: logger
        ) { port in continuation.yield(port) }
        let group = ServiceGroup(configuration: .init(services: [app, DrainOnShutdown(state: state)], logger: logger))
        let running = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw ServingError.unavailable("server did not start") }
        do {
            try await body(TestServer(baseURL: URL(string: "http://127.0.0.1:\(port)")!, manager: manager, repository: root), group)
        } catch {
            await group.triggerGracefulShutdown()
            _ = try? await running.value
            throw error
        }
        await group.triggerGracefulShutdown()
        try await running.value
    }

    /// Same as above for tests that do not need the service group.
    static func with(
        repository: URL? = nil, mode: ModelManager.ControlMode = .none, maxInputSize: Int = 64 * 1024 * 1024,
        _ body: (TestServer) async throws -> Void
    ) async throws {
        try await with(repository: repository, mode: mode, maxInputSize: maxInputSize) { server, _ in try await body(server) }
    }

    struct Reply {
        let status: Int
        let body: Data
        var headers: [String: String] = [:]
        var text: String { String(decoding: body, as: UTF8.self) }
        func json() throws -> Any { try JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]) }
        func object() throws -> [String: Any] { try #require(try json() as? [String: Any]) }
    }

    func get(_ path: String) async throws -> Reply { try await send("GET", path, body: nil) }

    func post(_ path: String, _ body: String) async throws -> Reply { try await send("POST", path, body: Data(body.utf8)) }

    func post(_ path: String, json: Any) async throws -> Reply {
        try await send("POST", path, body: try JSONSerialization.data(withJSONObject: json))
    }

    func send(_ method: String, _ path: String, body: Data?, headers: [String: String] = [:]) async throws -> Reply {
        var request = URLRequest(url: URL(string: path, relativeTo: baseURL)!)
        request.httpMethod = method
        request.httpBody = body
        for (key, value) in headers { request.setValue(value, forHTTPHeaderField: key) }
        return try await withCheckedThrowingContinuation { continuation in
            URLSession.shared.dataTask(with: request) { data, response, error in
                if let error { continuation.resume(throwing: error); return }
                let http = response as? HTTPURLResponse
                var headers: [String: String] = [:]
                for (key, value) in http?.allHeaderFields ?? [:] { headers["\(key)"] = "\(value)" }
                continuation.resume(returning: Reply(status: http?.statusCode ?? 0, body: data ?? Data(), headers: headers))
            }.resume()
        }
    }
}
