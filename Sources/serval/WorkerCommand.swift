import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ServalHTTP
import ServalServer
import ServalServing

/// The async-job flags `serve` and `worker` share.
struct JobOptions: ParsableArguments {
    @Option(name: .customLong("job-workers"), help: "Jobs this process runs at once (0: none; the API still accepts them).")
    var jobWorkers = 1

    @Option(name: .customLong("job-lease-secs"), help: "Seconds a worker holds a job without renewing before it is requeued.")
    var jobLeaseSecs = 60

    @Option(name: .customLong("job-result-ttl-secs"), help: "Seconds a finished job and its result are kept before they are purged.")
    var jobResultTTLSecs = 86_400

    @Option(name: .customLong("job-max-attempts"), help: "Attempts of a job that does not set parameters.max_attempts.")
    var jobMaxAttempts = 3

    @Option(name: .customLong("webhook-secret-file"), help: "File whose content is the HMAC-SHA256 key job callbacks and registry webhooks are signed with.")
    var webhookSecretFile: String?

    func validate() throws {
        guard jobWorkers >= 0, jobLeaseSecs > 0, jobResultTTLSecs > 0 else {
            throw ValidationError("--job-workers must be 0 or more; --job-lease-secs and --job-result-ttl-secs must be positive")
        }
        guard (1...100).contains(jobMaxAttempts) else { throw ValidationError("--job-max-attempts must be between 1 and 100") }
    }

    func apply(to options: inout ServerOptions) throws {
        options.jobWorkers.workers = jobWorkers
        options.jobWorkers.leaseSeconds = Double(jobLeaseSecs)
        options.jobWorkers.resultTTLSeconds = Double(jobResultTTLSecs)
        options.jobMaxAttempts = jobMaxAttempts
        if let file = webhookSecretFile { options.webhookSecret = try Self.secret(file, flag: "--webhook-secret-file") }
    }

    static func secret(_ file: String, flag: String) throws -> String {
        guard let secret = try? String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !secret.isEmpty else {
            throw ValidationError("\(flag) \(file) cannot be read or is empty")
        }
        return secret
    }
}

/// `serval worker`: runs async jobs from the shared queue and serves nothing, the process Kubernetes scales on
/// queue depth (down to zero). It loads the repository's models like `serve` and drains on SIGTERM.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Run async inference jobs from the queue (no HTTP or gRPC listener).")

    @Option(name: .customLong("model-repository"), help: "Folder with <model>/[config.yaml] and <model>/<version>/model.onnx.")
    var modelRepository: String

    @Option(name: .customLong("database-url"), help: "PostgreSQL URL of the queue the servers share (postgres://user@host:5432/db).")
    var databaseURL: String?

    @Option(name: .customLong("data-dir"), help: "Folder of the SQLite state store, when the queue is not on PostgreSQL (one process only).")
    var dataDir: String?

    @Option(name: .customLong("exit-timeout-secs"), help: "On SIGTERM, how long running jobs may take before their leases are given back.")
    var exitTimeoutSecs = 30

    @OptionGroup var jobs: JobOptions

    func validate() throws {
        try jobs.validate()
        guard jobs.jobWorkers > 0 else { throw ValidationError("--job-workers must be at least 1 for a worker") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(ServalMetrics.factory(registry: registry))
        let logger = Logger(label: "serval-worker")
        var options = ServerOptions(
            repository: URL(fileURLWithPath: modelRepository),
            dataDirectory: dataDir.map { URL(fileURLWithPath: $0) } ?? ServerOptions.defaultDataDirectory, grpc: nil)
        options.frontends = false
        options.databaseURL = databaseURL
        options.exitTimeout = .seconds(exitTimeoutSecs)
        options.trafficGuardInterval = nil  // the serving replicas run the guard over their own traffic
        try jobs.apply(to: &options)
        let server = try await ServalServer(options: options, metrics: registry, logger: logger)
        logger.info("worker running", metadata: ["workers": "\(jobs.jobWorkers)", "store": "\(server.store.location)"])
        try await server.run(server.serviceGroup())
    }
}
