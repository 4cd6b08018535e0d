import Foundation
import Logging
import OTel
import Prometheus
import ServalGRPC
import ServalHTTP
import ServalJobs
import ServalMonitor
import ServalPipeline
import ServalRegistry
import ServalServing
import ServalStore
import ServalTLS
import NIOSSL
import ServalWire
import ServiceLifecycle
import Tracing
import UnixSignals

/// Everything `serval serve` runs, in one place: the options it is given.
public struct ServerOptions: Sendable {
    public var repository: URL
    public var controlMode: ModelManager.ControlMode = .none
    /// Explicit mode: models to load at start.
    public var loadModels: [String] = []
    public var repositoryPollInterval: Duration = .seconds(15)
    /// Where the SQLite state file lives (`--data-dir`), unless `databaseURL` names a PostgreSQL server.
    public var dataDirectory: URL
    public var databaseURL: String?
    /// How often this replica checks the store for changes made elsewhere (labels moved on another replica).
    public var storeRefreshInterval: Duration = .seconds(1)
    /// How often the traffic guard and progressive promotion run; nil: never (tests drive them directly).
    public var trafficGuardInterval: Duration? = .seconds(1)
    /// `--registry-webhook` URLs, signed with `webhookSecret` (also used for a guard's own webhook).
    public var registryWebhooks: [String] = []
    public var webhookSecret: String?
    /// How often queued webhook events are sent; nil: never (tests drive `webhooks.deliverDue()`).
    public var webhookInterval: Duration? = .milliseconds(500)
    public var http: HTTPConfiguration
    /// false: no HTTP or gRPC listener, only the background services and job workers (`serval worker`).
    public var frontends = true
    /// nil: no gRPC listener.
    public var grpc: GRPCConfiguration?
    /// `--tls-cert`, `--tls-key`, `--tls-client-ca`: TLS on the HTTP, admin and gRPC listeners; nil: plaintext.
    public var tls: TLSSettings?
    /// `--admin-port` (and `--admin-host`): a second HTTP listener serving every route, while `http` serves only
    /// inference (health, infer, predict, jobs, feedback, the contract); nil: one listener serves everything.
    public var adminPort: Int?
    public var adminHost = "127.0.0.1"
    public var exitTimeout: Duration = .seconds(30)
    /// Async jobs: `--job-workers` (0: this process runs none, the API still takes them), lease, result TTL.
    public var jobWorkers = JobWorkerSettings()
    /// `--job-max-attempts`: attempts of a job that does not set `parameters.max_attempts`.
    public var jobMaxAttempts = 3
    /// Seconds before the second attempt of a failed job (doubling after each, capped at 60).
    public var jobRetryBase: Double = 1
    /// `--otlp-endpoint`: where request traces go over OTLP/gRPC (e.g. `http://127.0.0.1:4317`); nil: tracing is off.
    public var otlpEndpoint: String?
    /// Seconds between the points of each monitored version's history (`--monitoring-resolution-secs`).
    public var monitoringResolution: Double = 60
    /// `--pipelines DIR`: retraining pipeline files the server triggers; nil: none (runs started elsewhere still report here).
    public var pipelinesDirectory: URL?
    /// The `serval` executable a triggered run starts (default: this process's own executable).
    public var pipelineExecutable: URL?
    /// How often pipeline schedules (`triggers.every`) are checked; nil: never (tests call `pipelines.tick()`).
    public var pipelineScheduleInterval: Duration? = .seconds(1)
    /// Tests wrap each version's executor to hold batches in flight.
    public var executorWrapper: (@Sendable (any BatchExecutor) -> any BatchExecutor)?
    /// The memory budget and cold-start queue (`--model-memory-limit`, `--cold-start-max-pending`, `--cold-start-timeout-secs`).
    public var residency = ModelManager.Residency()
    /// How often idle versions are unloaded and the memory budget trimmed (nil: never, for tests that sweep themselves).
    public var residencySweepInterval: Duration? = .seconds(1)

    public init(repository: URL, dataDirectory: URL, http: HTTPConfiguration = HTTPConfiguration(), grpc: GRPCConfiguration? = GRPCConfiguration()) {
        self.repository = repository
        self.dataDirectory = dataDirectory
        self.http = http
        self.grpc = grpc
    }

    /// `--data-dir` default: `$SERVAL_DATA_DIR`, else `./serval-data`.
    public static var defaultDataDirectory: URL {
        URL(fileURLWithPath: ProcessInfo.processInfo.environment["SERVAL_DATA_DIR"] ?? "serval-data")
    }
}

/// The one assembly of a Serval server: store → registry → model manager (pinned by the registry's labels) →
/// lifecycle and router → HTTP and gRPC frontends, the repository poller, the store watcher and the drain,
/// in one service group. `serval serve` and the test servers all build through here.
public final class ServalServer: Sendable {
    public let store: any Store
    public let registry: Registry
    public let lifecycle: ModelLifecycle
    public let state: ServerState
    /// Sends queued registry events and job callbacks.
    public let webhooks: WebhookDelivery
    /// The async jobs API and its queue.
    public let jobs: JobService
    /// Drift and performance monitoring of the models that ask for it.
    public let monitor: Monitor
    /// Retraining pipelines: their triggers and run records.
    public let pipelines: PipelineService
    private let services: [any Service]
    /// Every REST route the HTTP frontend registered, as "METHOD /path/:param" (empty without frontends).
    public let httpRoutes: [String]
    /// The certificate the listeners offer (with TLS): `reloadCertificate()` (SIGHUP) replaces it while serving.
    public let certificate: ServingCertificate?
    private let exitTimeout: Duration
    private let logger: Logger

    public var manager: ModelManager { lifecycle.manager }
    public var router: Router { lifecycle.router }

    /// Opens the store, loads the models, and prepares the services (nothing listens until `run`).
    public init(
        options: ServerOptions, metrics: PrometheusCollectorRegistry?, logger: Logger,
        onHTTPListening: @escaping @Sendable (Int) async -> Void = { _ in },
        onGRPCListening: @escaping @Sendable (Int) async -> Void = { _ in },
        onAdminListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        self.logger = logger
        var options = options
        let certificate = try options.tls.map { try ServingCertificate($0) }
        self.certificate = certificate
        if let certificate {
            options.http.tls = HTTPTLS(context: try NIOSSLContext(configuration: try certificate.serverConfiguration()), verifiesClients: certificate.settings.clientCA != nil)
            options.grpc?.tls = certificate
        }
        store = try await StoreFactory.open(databaseURL: options.databaseURL, dataDirectory: options.dataDirectory)
        logger.info("state store", metadata: ["location": "\(store.location)"])
        registry = try await Registry(store: store)
        let manager = ModelManager(
            repository: ModelRepository(root: options.repository), mode: options.controlMode, pins: registry.table, residency: options.residency,
            logger: logger, executorWrapper: options.executorWrapper)
        let monitor = try await Monitor(
            manager: manager, repositoryRoot: options.repository, registry: registry, externalURL: "http://\(options.http.host):\(options.http.port)",
            webhookSecret: options.webhookSecret ?? "", seriesInterval: options.monitoringResolution, logger: logger)
        self.monitor = monitor
        var tracing: (tracer: any Tracer, service: any Service)?
        if let endpoint = options.otlpEndpoint { tracing = try Self.tracing(endpoint: endpoint) }
        lifecycle = ModelLifecycle(
            manager: manager, registry: registry, guardWebhookSecret: options.webhookSecret, observer: monitor.intake, tracer: tracing?.tracer, logger: logger)
        if !options.registryWebhooks.isEmpty {
            try await registry.addWebhooks(options.registryWebhooks.map { WebhookOutbox.Webhook(url: $0, secret: options.webhookSecret ?? "") })
        }
        webhooks = WebhookDelivery(registry: registry, logger: logger)
        await lifecycle.removeAbandonedUploads()
        if options.controlMode == .explicit {
            for name in options.loadModels { try await lifecycle.load(model: name, actor: nil) }
        } else {
            try await lifecycle.reconcile()
        }
        try await monitor.reconfigure()
        let state = ServerState()
        self.state = state
        let pipelines = try await PipelineService(
            pipelines: try options.pipelinesDirectory.map { try PipelineService.load(directory: $0) } ?? [], store: store, registry: registry,
            launcher: .init(executable: options.pipelineExecutable ?? Self.ownExecutable), serverURL: Self.localURL(options.http.host, options.http.port),
            logger: logger)
        self.pipelines = pipelines
        try await pipelines.closeInterrupted()
        // Handed off: starting a run writes the store and spawns a process, which must not hold up the monitor's scoring.
        await monitor.onAlert { event in Task { await pipelines.alert(event) } }
        let queue = try await JobQueue(store: store, callbackSecret: options.webhookSecret ?? "", retryBase: options.jobRetryBase)
        jobs = JobService(queue: queue, runner: JobRunner(router: lifecycle.router, limits: options.http.limits), defaultMaxAttempts: options.jobMaxAttempts)
        var workerSettings = options.jobWorkers
        workerSettings.ownsQueue = store.dialect == .sqlite
        var background: [any Service] = [
            PeriodicService.storeWatcher(lifecycle, interval: options.storeRefreshInterval, logger: logger), MonitorService(monitor: monitor),
        ]
        if let interval = options.webhookInterval {
            background.append(PeriodicService.webhookSender(webhooks, interval: interval, logger: logger))
        }
        if let interval = options.trafficGuardInterval {
            background.append(PeriodicService.trafficGuard(lifecycle, interval: interval, logger: logger))
        }
        if let interval = options.pipelineScheduleInterval, !pipelines.pipelines.isEmpty {
            background.append(PeriodicService(name: "pipeline schedules", interval: interval, logger: logger) { try await pipelines.tick() })
        }
        if !pipelines.pipelines.isEmpty { background.append(PipelineService.StopOnShutdown(pipelines)) }
        if let interval = options.residencySweepInterval {
            // Idle unload and the memory budget's trim: a scan of the loaded versions, on the manager's actor.
            background.append(PeriodicService(name: "model residency", interval: interval, logger: logger) { await manager.sweep() })
        }
        if options.controlMode == .poll {
            background.append(PeriodicService.repositoryPoller(lifecycle, interval: options.repositoryPollInterval, logger: logger))
        }
        // The group shuts down in reverse order: readiness flips first, then the job workers, gRPC and HTTP drain;
        // the trace exporter goes last, after it has flushed the spans of the requests that drained.
        var services: [any Service] = tracing.map { [$0.service] } ?? []
        if let certificate {
            background.append(CertificateReloadOnHangup(certificate: certificate, logger: logger))
        }
        if options.frontends {
            // Pipeline runs call the registry and traffic APIs: they go to the listener that serves them.
            let scheme = options.tls == nil ? "http" : "https"
            var publicHTTP = options.http
            var adminRoutes: [String]?
            if let adminPort = options.adminPort {
                publicHTTP.surface = .inference
                var adminHTTP = options.http
                adminHTTP.host = options.adminHost
                adminHTTP.port = adminPort
                let adminHost = adminHTTP.host
                let admin = HTTPServer.makeApplication(
                    lifecycle: lifecycle, configuration: adminHTTP, state: state, jobs: jobs, monitor: monitor, pipelines: pipelines, metrics: metrics, logger: logger,
                    onServerRunning: { port in
                        await pipelines.setServerURL(Self.localURL(adminHost, port, scheme: scheme))
                        await onAdminListening(port)
                    })
                services.append(admin.application)
                adminRoutes = admin.routes
            }
            let adminPort = options.adminPort, publicHost = options.http.host
            let http = HTTPServer.makeApplication(
                lifecycle: lifecycle, configuration: publicHTTP, state: state, jobs: jobs, monitor: monitor, pipelines: pipelines, services: background, metrics: metrics,
                logger: logger,
                onServerRunning: { port in
                    if adminPort == nil { await pipelines.setServerURL(Self.localURL(publicHost, port, scheme: scheme)) }
                    await onHTTPListening(port)
                })
            services.append(http.application)
            httpRoutes = adminRoutes ?? http.routes
        } else {
            services += background
            httpRoutes = []
        }
        if options.frontends, let grpc = options.grpc {
            services.append(GRPCFrontend(lifecycle: lifecycle, configuration: grpc, state: state, onListening: onGRPCListening))
        }
        if workerSettings.workers > 0 {
            // After the frontends, so it drains before them (the group stops services in reverse order).
            services.append(JobWorker(queue: queue, runner: jobs.runner, doorbell: jobs.doorbell, settings: workerSettings, logger: logger))
        }
        services.append(DrainOnShutdown(state: state))
        self.services = services
        exitTimeout = options.exitTimeout
    }

    /// A tracer exporting over OTLP/gRPC to `endpoint`, and the service that batches and sends its spans. Only traces:
    /// metrics stay on `/metrics` and logs on stderr. The OTEL_* environment variables still apply (e.g.
    /// OTEL_BSP_SCHEDULE_DELAY for the export interval).
    /// This process's executable (`/proc/self/exe`), which triggered pipeline runs start as `serval pipeline run`.
    static var ownExecutable: URL {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return URL(fileURLWithPath: path) }
        return URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
    }

    /// The address a run started on this machine reaches the server at (a wildcard listener through loopback).
    static func localURL(_ host: String, _ port: Int, scheme: String = "http") -> String {
        let reachable = host == "0.0.0.0" || host == "::" || host.isEmpty ? "127.0.0.1" : host
        return "\(scheme)://\(reachable.contains(":") ? "[\(reachable)]" : reachable):\(port)"
    }

    /// Reads the TLS files again (what SIGHUP does); new connections get the new certificate, open ones keep
    /// theirs. Throws, and keeps the old pair, when the files are unusable.
    public func reloadCertificate() throws {
        try certificate?.reload()
    }

    static func tracing(endpoint: String) throws -> (tracer: any Tracer, service: any Service) {
        guard let url = URL(string: endpoint), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw ServingError.invalidArgument("--otlp-endpoint must be an http(s) URL such as http://127.0.0.1:4317, got '\(endpoint)'")
        }
        var configuration = OTel.Configuration.default
        configuration.serviceName = "serval"
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.traces.enabled = true
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.protocol = .grpc
        configuration.traces.otlpExporter.endpoint = endpoint
        configuration.propagators = [.traceContext]
        configuration.traces.sampler = .parentBasedAlwaysOn
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        return (backend.factory, backend.service)
    }

    /// The service group of this server; `signals` start a graceful shutdown (empty for tests).
    public func serviceGroup(signals: [UnixSignal] = [.sigterm, .sigint]) -> ServiceGroup {
        var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: signals, logger: logger)
        configuration.maximumGracefulShutdownDuration = exitTimeout
        return ServiceGroup(configuration: configuration)
    }

    /// Runs until a signal (or `group`'s shutdown) ends it, then closes the store.
    public func run(_ group: ServiceGroup) async throws {
        do {
            try await group.run()
        } catch {
            await store.close()
            throw error
        }
        await store.close()
    }
}
