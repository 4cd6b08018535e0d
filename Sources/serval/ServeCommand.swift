import ArgumentParser
import ServalAuth
import Foundation
import Logging
import Metrics
import Prometheus
import ServalGRPC
import ServalHTTP
import ServalServer
import ServalServing
import ServiceLifecycle

/// `serval serve --model-repository DIR`: KServe v2 REST and gRPC, and TF Serving REST, over a model repository.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve the models of a repository over HTTP (KServe v2 and TF Serving REST) and gRPC (KServe v2).")

    @Option(name: .customLong("model-repository"), help: "Folder with <model>/[config.yaml] and <model>/<version>/model.onnx.")
    var modelRepository: String

    @Option(name: .customLong("http-port"), help: "HTTP port (0 picks a free one).")
    var httpPort = 8000

    @Option(name: .customLong("grpc-port"), help: "gRPC port for inference.GRPCInferenceService (0 disables gRPC).")
    var grpcPort = 8001

    @Option(name: .customLong("grpc-max-message-size"), help: "Largest gRPC request or response message in bytes.")
    var grpcMaxMessageSize = 64 * 1024 * 1024

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(name: .customLong("model-control-mode"), help: "none (load at start), poll (rescan the repository), explicit (load/unload API).")
    var modelControlMode = "none"

    @Option(name: .customLong("repository-poll-secs"), help: "Seconds between repository scans in poll mode.")
    var repositoryPollSecs = 15

    @Option(name: .customLong("load-model"), help: "In explicit mode, a model to load at start (repeatable).")
    var loadModel: [String] = []

    @Option(name: .customLong("exit-timeout-secs"), help: "On SIGTERM, how long in-flight requests may take before exit.")
    var exitTimeoutSecs = 30

    @Option(name: .customLong("http-max-input-size"), help: "Largest request body in bytes.")
    var httpMaxInputSize = 64 * 1024 * 1024

    @Option(name: .customLong("model-memory-limit"), help: "Bytes all loaded model versions may hold together (e.g. 2GB, 512Mi); least recently used idle versions are unloaded to make room. Default: no limit.")
    var modelMemoryLimit: String?

    @Option(name: .customLong("cold-start-max-pending"), help: "Requests that may wait for one version's cold start (load after an idle unload); beyond it, 503 with Retry-After.")
    var coldStartMaxPending = 64

    @Option(name: .customLong("cold-start-timeout-secs"), help: "Seconds a request waits for a cold start before it gets 503 with Retry-After.")
    var coldStartTimeoutSecs = 30.0

    @Option(name: .customLong("auth-config"), help: "auth.yaml: API keys (SHA-256), JWT issuer, scopes, rate limits. Without it every endpoint is open.")
    var authConfig: String?

    @OptionGroup(title: "TLS and the admin port")
    var tls: TLSOptions

    @Option(name: .customLong("log-format"), help: "text or json.")
    var logFormat = "text"

    @Flag(name: .customLong("access-log"), help: "Log every HTTP request (method, path, status, duration) with its request id.")
    var accessLog = false

    @Option(name: .customLong("data-dir"), help: "Folder for the state store (SQLite): labels, history, lineage. Default $SERVAL_DATA_DIR or ./serval-data.")
    var dataDir: String?

    @Option(name: .customLong("registry-webhook"), help: "URL that receives register, label, rollback, auto_rollback and promote events (repeatable).")
    var registryWebhook: [String] = []

    @Option(name: .customLong("registry-webhook-secret-file"), help: "File whose content is the HMAC-SHA256 key deliveries are signed with.")
    var registryWebhookSecretFile: String?

    @Option(name: .customLong("database-url"), help: "PostgreSQL URL for state shared by replicas (postgres://user@host:5432/db); replaces --data-dir.")
    var databaseURL: String?

    @Option(name: .customLong("monitoring-resolution-secs"), help: "Seconds between the points of the monitoring history (drift share, accuracy, rate, p99).")
    var monitoringResolutionSecs = 60.0

    @Option(name: .customLong("otlp-endpoint"), help: "Send request traces over OTLP/gRPC to this collector (e.g. http://127.0.0.1:4317). Off by default.")
    var otlpEndpoint: String?

    @Option(help: "Folder of retraining pipeline files (*.yaml) whose triggers (monitoring alerts, schedules, POST /v2/pipelines/{name}/runs) this server runs.")
    var pipelines: String?

    @OptionGroup var jobs: JobOptions

    @OptionGroup(title: "Request limits") var limits: LimitOptions

    func validate() throws {
        guard ModelManager.ControlMode(rawValue: modelControlMode) != nil else {
            throw ValidationError("--model-control-mode must be none, poll or explicit")
        }
        guard ["text", "json"].contains(logFormat) else { throw ValidationError("--log-format must be text or json") }
        guard repositoryPollSecs > 0, exitTimeoutSecs >= 0, httpMaxInputSize > 0, grpcMaxMessageSize > 0 else {
            throw ValidationError("--repository-poll-secs, --http-max-input-size and --grpc-max-message-size must be positive")
        }
        for url in registryWebhook where URL(string: url).map({ ["http", "https"].contains($0.scheme ?? "") && $0.host != nil }) != true {
            throw ValidationError("--registry-webhook must be an http(s) URL, got '\(url)'")
        }
        if !registryWebhook.isEmpty, registryWebhookSecretFile == nil {
            throw ValidationError("--registry-webhook needs --registry-webhook-secret-file (the key deliveries are signed with)")
        }
        guard grpcPort >= 0, grpcPort <= 65535, httpPort >= 0, httpPort <= 65535 else { throw ValidationError("ports must be 0-65535") }
        if let limit = modelMemoryLimit, ByteCount.parse(limit) == nil || ByteCount.parse(limit)! <= 0 {
            throw ValidationError("--model-memory-limit must be a positive size such as 2GB, 512Mi or 1073741824, got '\(limit)'")
        }
        guard coldStartMaxPending >= 0, coldStartTimeoutSecs > 0 else {
            throw ValidationError("--cold-start-max-pending must be 0 or more and --cold-start-timeout-secs positive")
        }
        try jobs.validate()
        try limits.validate()
        try tls.validate(httpPort: httpPort)
    }

    func run() async throws {
        let json = logFormat == "json"
        // The authenticated principal of the request (REST or gRPC) on every line logged while it runs.
        let principal = Logger.MetadataProvider { CurrentPrincipal.value.map { ["principal": .string($0.name)] } ?? [:] }
        LoggingSystem.bootstrap({ label, provider -> any LogHandler in
            json ? JSONLogHandler(label: label, metadataProvider: provider) : StreamLogHandler.standardError(label: label, metadataProvider: provider)
        }, metadataProvider: principal)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(ServalMetrics.factory(registry: registry))
        let logger = Logger(label: "serval")
        var http = HTTPConfiguration(host: host, port: httpPort, maxInputSize: httpMaxInputSize)
        http.accessLog = accessLog
        limits.apply(to: &http)
        if let authConfig {
            let config = try AuthConfig.load(URL(fileURLWithPath: authConfig))
            http.authenticator = try await Authenticator.make(config: config, clock: { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 })
            logger.info("authentication on", metadata: ["keys": "\(config.keys.count)", "jwt": "\(config.jwt != nil)", "anonymous": "\(config.anonymousScopes.map(\.rawValue).sorted())"])
        }
        var options = ServerOptions(
            repository: URL(fileURLWithPath: modelRepository),
            dataDirectory: dataDir.map { URL(fileURLWithPath: $0) } ?? ServerOptions.defaultDataDirectory, http: http,
            grpc: grpcPort == 0 ? nil : GRPCConfiguration(host: host, port: grpcPort, maxMessageSize: grpcMaxMessageSize))
        options.grpc?.authenticator = http.authenticator
        options.grpc?.limits = http.limits
        options.controlMode = ModelManager.ControlMode(rawValue: modelControlMode)!
        options.loadModels = loadModel
        options.repositoryPollInterval = .seconds(repositoryPollSecs)
        options.databaseURL = databaseURL
        options.exitTimeout = .seconds(exitTimeoutSecs)
        guard monitoringResolutionSecs > 0 else { throw ValidationError("--monitoring-resolution-secs must be positive") }
        options.monitoringResolution = monitoringResolutionSecs
        options.otlpEndpoint = otlpEndpoint
        options.pipelinesDirectory = pipelines.map { URL(fileURLWithPath: $0).standardizedFileURL }
        options.registryWebhooks = registryWebhook
        if let file = registryWebhookSecretFile { options.webhookSecret = try JobOptions.secret(file, flag: "--registry-webhook-secret-file") }
        options.residency = ModelManager.Residency(
            memoryLimit: modelMemoryLimit.flatMap(ByteCount.parse), coldStartMaxPending: coldStartMaxPending, coldStartTimeout: coldStartTimeoutSecs)
        try jobs.apply(to: &options)
        tls.apply(to: &options)
        let cpus = CPUBudget.limits()
        logger.info("cpu budget", metadata: ["cpus": "\(cpus.budget)", "sources": "\(cpus)"])
        let host = self.host, adminHost = tls.adminHost
        let security = options.tls == nil ? "plaintext" : options.tls?.clientCA == nil ? "tls" : "mtls"
        let surface = options.adminPort == nil ? "all" : "inference"
        let server = try await ServalServer(options: options, metrics: registry, logger: logger, onHTTPListening: { port in
            logger.info("serving", metadata: ["http": "\(host):\(port)", "security": "\(security)", "surface": "\(surface)"])
        }, onGRPCListening: { port in
            logger.info("serving", metadata: ["grpc": "\(host):\(port)", "security": "\(security)"])
        }, onAdminListening: { port in
            logger.info("serving", metadata: ["admin": "\(adminHost):\(port)", "security": "\(security)"])
        })
        try await server.run(server.serviceGroup())
    }
}

/// One JSON object per log line (`--log-format json`), for log shippers.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [String: String] = ["level": event.level.rawValue, "message": event.message.description, "label": label,
                                        "time": Date().ISO8601Format()]
        let provided = metadataProvider?.get() ?? [:]
        for (key, value) in provided.merging(metadata, uniquingKeysWith: { $1 }).merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            fields[key] = value.description
        }
        if let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) {
            FileHandle.standardError.write(data + Data("\n".utf8))
        }
    }
}
