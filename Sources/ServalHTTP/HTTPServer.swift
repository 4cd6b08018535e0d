import Foundation
import Hummingbird
import Logging
import Prometheus
import NIOCore
import ServalServing
import ServiceLifecycle

/// Settings of the HTTP frontend (`serval serve` flags).
public struct HTTPConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Largest accepted request body in bytes (Triton's --http-max-input-size, default 64 MB).
    public var maxInputSize: Int
    public var serverVersion: String
    /// Log each request at info level (off by default: it costs throughput).
    public var accessLog = false

    public init(host: String = "127.0.0.1", port: Int = 8000, maxInputSize: Int = 64 * 1024 * 1024, serverVersion: String = ServerInfo.version) {
        self.host = host
        self.port = port
        self.maxInputSize = maxInputSize
        self.serverVersion = serverVersion
    }
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
