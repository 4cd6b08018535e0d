import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Metrics
import Prometheus
import ServalHTTP
import ServalServer
import ServalServing
import ServiceLifecycle
import Testing
import ServalWire

/// One Prometheus registry for the test process (swift-metrics can be bootstrapped once).
enum TestMetrics {
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(ServalMetrics.factory(registry: registry))
        return registry
    }()
}

/// A real `serval` server (the same assembly `serval serve` uses) on ephemeral ports, over a temporary copy of a
/// model repository, with its state in a temporary data directory (or `databaseURL`).
struct TestServer {
    let baseURL: URL
    let server: ServalServer
    let repository: URL
    let dataDirectory: URL
    /// The `--admin-port` listener, when the options ask for one.
    var adminURL: URL?
    var manager: ModelManager { server.manager }
    var lifecycle: ModelLifecycle { server.lifecycle }
    var port: Int { baseURL.port! }

    /// A repository folder with the example models (iris, mlp) copied in.
    static func makeRepository() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("serval-repo-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: examples, to: root)
        return root
    }

    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("examples/models")

    static func makeDataDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("serval-data-\(UUID().uuidString)")
    }

    /// Starts the server, runs `body`, then shuts the server down gracefully.
    static func with(
        repository: URL? = nil, dataDirectory: URL? = nil, databaseURL: String? = nil, mode: ModelManager.ControlMode = .none,
        maxInputSize: Int = 64 * 1024 * 1024, executorWrapper: (@Sendable (any BatchExecutor) -> any BatchExecutor)? = nil,
        configure: (inout ServerOptions) -> Void = { _ in }, _ body: (TestServer, ServiceGroup) async throws -> Void
    ) async throws {
        let root = try repository ?? makeRepository()
        let data = dataDirectory ?? makeDataDirectory()
        let logger = Logger(label: "serval-test")
        var options = ServerOptions(
            repository: root, dataDirectory: data, http: HTTPConfiguration(host: "127.0.0.1", port: 0, maxInputSize: maxInputSize), grpc: nil)
        options.controlMode = mode
        options.databaseURL = databaseURL
        options.storeRefreshInterval = .milliseconds(100)
        options.trafficGuardInterval = nil  // tests drive the guard with runTrafficGuard(now:)
        options.webhookInterval = nil  // and deliveries with server.webhooks.deliverDue()
        options.executorWrapper = executorWrapper
        configure(&options)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let (adminPorts, adminContinuation) = AsyncStream.makeStream(of: Int.self)
        let server = try await ServalServer(options: options, metrics: TestMetrics.registry, logger: logger, onHTTPListening: { port in
            continuation.yield(port)
        }, onAdminListening: { port in adminContinuation.yield(port) })
        let group = server.serviceGroup(signals: [])
        let running = Task { try await server.run(group) }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw ServingError.unavailable("server did not start") }
        var adminURL: URL?
        if options.adminPort != nil {
            var admins = adminPorts.makeAsyncIterator()
            guard let adminPort = await admins.next() else { throw ServingError.unavailable("admin listener did not start") }
            adminURL = URL(string: "http://127.0.0.1:\(adminPort)")
        }
        do {
            try await body(TestServer(baseURL: URL(string: "http://127.0.0.1:\(port)")!, server: server, repository: root, dataDirectory: data, adminURL: adminURL), group)
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
        repository: URL? = nil, dataDirectory: URL? = nil, databaseURL: String? = nil, mode: ModelManager.ControlMode = .none,
        maxInputSize: Int = 64 * 1024 * 1024, _ body: (TestServer) async throws -> Void
    ) async throws {
        try await with(repository: repository, dataDirectory: dataDirectory, databaseURL: databaseURL, mode: mode, maxInputSize: maxInputSize) {
            server, _ in try await body(server)
        }
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

    func post(_ path: String, json: Any, actor: String? = nil) async throws -> Reply {
        try await send("POST", path, body: try JSONSerialization.data(withJSONObject: json), headers: actor.map { ["Serval-Actor": $0] } ?? [:])
    }

    func put(_ path: String, json: Any, actor: String? = nil) async throws -> Reply {
        try await send("PUT", path, body: try JSONSerialization.data(withJSONObject: json), headers: actor.map { ["Serval-Actor": $0] } ?? [:])
    }

    func delete(_ path: String) async throws -> Reply { try await send("DELETE", path, body: nil) }

    /// `multipart/form-data` with the given parts (name → bytes), as curl -F sends it.
    func upload(_ path: String, parts: [(String, Data)], actor: String? = nil) async throws -> Reply {
        let boundary = "serval-test-\(UUID().uuidString)"
        var body = Data()
        for (name, bytes) in parts {
            body.append(Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"\(name)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8))
            body.append(bytes)
            body.append(Data("\r\n".utf8))
        }
        body.append(Data("--\(boundary)--\r\n".utf8))
        var headers = ["Content-Type": "multipart/form-data; boundary=\(boundary)"]
        if let actor { headers["Serval-Actor"] = actor }
        return try await send("POST", path, body: body, headers: headers)
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
