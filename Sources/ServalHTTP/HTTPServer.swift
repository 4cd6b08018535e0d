import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Prometheus
import ServalAuth
import ServalJobs
import ServalMonitor
import ServalPipeline
import ServalServing
import ServiceLifecycle
import ServalWire

/// Settings of the HTTP frontend (`serval serve` flags).
public struct HTTPConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Largest accepted request body in bytes (Triton's --http-max-input-size, default 64 MB); also the upload limit.
    public var maxInputSize: Int
    public var serverVersion: String
    /// Log each request at info level (off by default: it costs throughput).
    public var accessLog = false
    /// Authentication, scopes and rate limits (`--auth-config`); nil: every endpoint is open.
    public var authenticator: Authenticator?

    public init(host: String = "127.0.0.1", port: Int = 8000, maxInputSize: Int = 64 * 1024 * 1024, serverVersion: String = ServerInfo.version) {
        self.host = host
        self.port = port
        self.maxInputSize = maxInputSize
        self.serverVersion = serverVersion
    }
}

/// Builds the Hummingbird application: KServe v2, Triton's extensions, TF Serving REST and the registry routes,
/// all over one `ModelLifecycle` (and its `Router`).
public enum HTTPServer {
    public static func makeApplication(
        lifecycle: ModelLifecycle, configuration: HTTPConfiguration, state: ServerState = ServerState(), jobs: JobService? = nil,
        monitor: Monitor? = nil, pipelines: PipelineService? = nil, services: [any Service] = [], metrics: PrometheusCollectorRegistry? = nil, logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = HTTPRouter(context: ServalRequestContext.self)
        // Outermost first: metrics see the status the error middleware produced, so a 400 counts as a 400.
        if configuration.accessLog { router.add(middleware: LogRequestsMiddleware(.info)) }
        if metrics != nil { router.add(middleware: MetricsMiddleware()) }
        // Middleware applies to the routes registered after it, so the error middleware comes before every route.
        let table = RouteTable()
        router.add(middleware: ErrorMiddleware(routes: table))
        if let authenticator = configuration.authenticator {
            // Before routing: a request is authenticated and checked before any route (or the 404) sees it.
            router.add(middleware: BearerAuthenticator(authenticator: authenticator))
            router.add(middleware: AccessMiddleware(authenticator: authenticator, routes: table))
        }
        var builder = RouteBuilder(router: router, table: table)
        if let metrics {
            builder.get("/metrics") { _, _ in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: .init(byteBuffer: ByteBuffer(string: ServalMetrics.scrape(metrics))))
            }
        }
        let shared = RouteContext(lifecycle: lifecycle, configuration: configuration, state: state, jobs: jobs)
        KServeRoutes(shared).register(&builder)
        RepositoryRoutes(shared).register(&builder)
        TFServingRoutes(shared).register(&builder)
        RegistryRoutes(shared).register(&builder)
        TrafficRoutes(shared).register(&builder)
        WebhookRoutes(shared).register(&builder)
        if let jobs { JobRoutes(shared: shared, jobs: jobs).register(&builder) }
        if let monitor { MonitoringRoutes(shared: shared, monitor: monitor).register(&builder) }
        if let pipelines { PipelineRoutes(shared: shared, pipelines: pipelines).register(&builder) }
        return Application(
            router: router,
            server: .http1(configuration: .init(additionalChannelHandlers: [ClientDisconnectHandler()])),
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port), serverName: "serval"),
            services: services,
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
            logger: logger)
    }
}

/// What every route file shares: the lifecycle (router, manager, registry), the HTTP settings and server state.
struct RouteContext: Sendable {
    let lifecycle: ModelLifecycle
    let configuration: HTTPConfiguration
    let state: ServerState
    /// The async jobs API; nil when this server has none.
    let jobs: JobService?
    var router: ServalServing.Router { lifecycle.router }
    var manager: ModelManager { lifecycle.manager }

    init(lifecycle: ModelLifecycle, configuration: HTTPConfiguration, state: ServerState, jobs: JobService?) {
        self.lifecycle = lifecycle
        self.jobs = jobs
        self.configuration = configuration
        self.state = state
    }

    /// Reads the body up to --http-max-input-size; a larger body is refused while streaming.
    func collect(_ request: Request) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: configuration.maxInputSize)
        } catch is NIOTooManyBytesError {
            throw ServingError(.payloadTooLarge, "request body is larger than --http-max-input-size (\(configuration.maxInputSize) bytes)")
        }
    }

    /// Who is making a control-plane change: the authenticated principal, or (without `--auth-config`) the
    /// `Serval-Actor` header.
    static func actor(_ request: Request, _ context: ServalRequestContext) -> String {
        if let principal = context.identity { return principal.name }
        let value = request.headers[HTTPHeaders.actor]?.trimmingCharacters(in: .whitespaces) ?? ""
        return value.isEmpty ? "anonymous" : String(value.prefix(200))
    }
}

/// Header names Serval adds to HTTP.
enum HTTPHeaders {
    static let modelVersion = HTTPField.Name("Serval-Model-Version")!
    static let actor = HTTPField.Name("Serval-Actor")!
    static let routingKey = HTTPField.Name("Serval-Routing-Key")!
    static let inferenceHeaderLength = HTTPField.Name("Inference-Header-Content-Length")!
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let prefer = HTTPField.Name("Prefer")!
    static let preferenceApplied = HTTPField.Name("Preference-Applied")!
    /// The request id a response answers (the client's v2 `id`, or the one Serval assigned): the key for feedback.
    static let requestID = HTTPField.Name("Serval-Request-Id")!
}
