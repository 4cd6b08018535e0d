import Foundation
import HTTPTypes
import Hummingbird
import NIOSSL
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
    /// What one request may declare: JSON depth and size, tensor elements, BYTES element size.
    public var limits = WireLimits.standard
    /// Largest model file `POST /v2/models/{m}/versions` accepts (`--max-model-size`; models outgrow request bodies).
    public var maxModelSize = 1 << 30
    /// Most graph nodes an uploaded model may have (`--max-model-nodes`).
    public var maxModelNodes = 1_000_000
    /// Slow and idle clients, and the most connections open at once.
    public var connections = HTTPConnectionLimits()
    /// TLS on this listener (`--tls-cert`, `--tls-key`; `--tls-client-ca` for mTLS); nil: plaintext.
    public var tls: HTTPTLS?
    /// Which routes this listener serves: all of them, or with `--admin-port` the inference surface on the
    /// public port and everything on the admin port.
    public var surface = HTTPSurface.all

    public init(host: String = "127.0.0.1", port: Int = 8000, maxInputSize: Int = 64 * 1024 * 1024, serverVersion: String = ServerInfo.version) {
        self.host = host
        self.port = port
        self.maxInputSize = maxInputSize
        self.serverVersion = serverVersion
    }
}

/// TLS for an HTTP listener: the server context (its certificate reloadable, see `ServingCertificate`) and
/// whether clients present certificates, whose subject is then the principal when no bearer is given.
public struct HTTPTLS: Sendable {
    public let context: NIOSSLContext
    public let verifiesClients: Bool

    public init(context: NIOSSLContext, verifiesClients: Bool) {
        self.context = context
        self.verifiesClients = verifiesClients
    }
}

/// The routes one listener serves. With `--admin-port`, the public port serves `inference` (health, inference,
/// jobs, feedback and the contract) and the admin port serves `all`, so the control plane, the read APIs and
/// `/metrics` can be bound where only operators reach them.
public enum HTTPSurface: Sendable {
    case all
    case inference

    func serves(_ rule: EndpointAccess.Rule) -> Bool {
        switch self {
        case .all: true
        case .inference: rule.scopes.isEmpty || rule.scopes.contains(.infer) || rule.scopes == [.health]
        }
    }
}

/// Builds the Hummingbird application: KServe v2, Triton's extensions, TF Serving REST and the registry routes,
/// all over one `ModelLifecycle` (and its `Router`).
public enum HTTPServer {
    /// The application, and every route it registered as "METHOD /path/:param" (the OpenAPI check compares them
    /// with the spec's paths).
    public static func makeApplication(
        lifecycle: ModelLifecycle, configuration: HTTPConfiguration, state: ServerState = ServerState(), jobs: JobService? = nil,
        monitor: Monitor? = nil, pipelines: PipelineService? = nil, services: [any Service] = [], metrics: PrometheusCollectorRegistry? = nil, logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> (application: some ApplicationProtocol, routes: [String]) {
        let router = HTTPRouter(context: ServalRequestContext.self)
        // Outermost first: metrics see the status the error middleware produced, so a 400 counts as a 400.
        if configuration.accessLog { router.add(middleware: LogRequestsMiddleware(.info)) }
        if metrics != nil { router.add(middleware: MetricsMiddleware()) }
        // Middleware applies to the routes registered after it, so the error middleware comes before every route.
        let table = RouteTable()
        router.add(middleware: ErrorMiddleware(routes: table))
        let access = configuration.authenticator.map(RequestAccess.init)
        if let authenticator = configuration.authenticator {
            // Before routing: credentials are read, and wrong ones refused, before any route (or the 404) sees them.
            router.add(middleware: BearerAuthenticator(authenticator: authenticator, certificates: configuration.tls?.verifiesClients ?? false))
        }
        // Each route checks its own rule (RouteBuilder); requests no route matches are checked after the routes.
        var builder = RouteBuilder(router: router, table: table, surface: configuration.surface, access: access)
        builder.get("/openapi.json") { _, _ in Response.json(OpenAPIDocument.json) }
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
        // Added after every route, so it wraps only the not-found responder.
        if let access { router.add(middleware: UnmatchedAccessMiddleware(access: access, routes: table)) }
        let application = Application(
            router: router,
            server: GuardedHTTP1Channel.builder(
                configuration: .init(additionalChannelHandlers: [ClientDisconnectHandler(), RequestGuard()], idleTimeout: ConnectionGuard.amount(configuration.connections.idleTimeout)),
                limits: configuration.connections, connections: ConnectionCount(), tls: configuration.tls?.context),
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port), serverName: "serval"),
            services: services,
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
            logger: logger)
        return (application, table.routes.map { "\($0.method.rawValue) \($0.path)" })
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
        try await collect(request, upTo: configuration.maxInputSize, flag: "--http-max-input-size")
    }

    func collect(_ request: Request, upTo limit: Int, flag: String) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw ServingError(.payloadTooLarge, "request body is larger than \(flag) (\(limit) bytes)")
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
