import Foundation
import Hummingbird
import Logging
import Prometheus
import NIOCore
import ServalServing
import ServiceLifecycle
import Synchronization

/// Settings of the HTTP frontend (`serval serve` flags).
public struct HTTPConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Largest accepted request body in bytes (Triton's --http-max-input-size, default 64 MB).
    public var maxInputSize: Int
    public var serverVersion: String
    /// Log each request at info level (off by default: it costs throughput).
    public var accessLog = false

    public init(host: String = "127.0.0.1", port: Int = 8000, maxInputSize: Int = 64 * 1024 * 1024, serverVersion: String = "0.1.0") {
        self.host = host
        self.port = port
        self.maxInputSize = maxInputSize
        self.serverVersion = serverVersion
    }
}

/// Server-wide state the routes read: whether a graceful shutdown has started (readiness turns false).
public final class ServerState: Sendable {
    private let draining = Mutex(false)
    public init() {}
    public var isDraining: Bool { draining.withLock { $0 } }
    public func beginDraining() { draining.withLock { $0 = true } }
}

/// Builds the Hummingbird application: KServe v2 and TF Serving REST routes over one `ModelManager`.
public enum HTTPServer {
    public static func makeApplication(
        manager: ModelManager, configuration: HTTPConfiguration, state: ServerState = ServerState(),
        services: [any Service] = [], metrics: PrometheusCollectorRegistry? = nil, logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        if configuration.accessLog { router.add(middleware: LogRequestsMiddleware(.info)) }
        router.add(middleware: ErrorMiddleware())
        if let metrics {
            router.add(middleware: MetricsMiddleware())
            router.get("/metrics") { _, _ in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: .init(byteBuffer: ByteBuffer(string: ServalMetrics.scrape(metrics))))
            }
        }
        let routes = Routes(manager: manager, configuration: configuration, state: state)
        routes.register(on: router)
        return Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port), serverName: "serval"),
            services: services,
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
            logger: logger)
    }
}

/// Flips readiness to false as soon as graceful shutdown begins, so load balancers stop sending traffic
/// while in-flight requests finish. List it *after* the application in the service group: groups shut down
/// in reverse order, so readiness turns false before the HTTP server starts draining.
public struct DrainOnShutdown: Service {
    let state: ServerState
    public init(state: ServerState) { self.state = state }
    public func run() async throws {
        try? await gracefulShutdown()
        state.beginDraining()
    }
}

/// `--model-control-mode poll`: re-reads the repository every `interval` until shutdown.
public struct RepositoryPoller: Service {
    let manager: ModelManager
    let interval: Duration
    let logger: Logger

    public init(manager: ModelManager, interval: Duration, logger: Logger) {
        self.manager = manager
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                do { try await manager.reconcile() } catch { logger.error("repository poll failed: \(error)") }
            }
        }
    }
}
