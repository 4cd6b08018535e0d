import Foundation
import Logging
import ServalMonitor
import ServalRegistry
import ServalStore
import ServiceLifecycle

/// The pipelines a server runs (`serve --pipelines DIR`): it starts a run when a watched alert fires for the
/// pipeline's model, when its schedule comes due, or when asked over the API, honouring one run at a time and
/// the cooldown (`TriggerPolicy`). Each run is a child process (`serval pipeline run`) that reports its record
/// back through the REST API. Every trigger decision, and every run's end, is an entry in the model's history.
public actor PipelineService {
    /// A pipeline file the server loaded.
    public struct Loaded: Sendable {
        public let definition: PipelineDefinition
        public let file: URL
    }

    /// How a run's child process is started; the server passes its own executable and address.
    public struct Launcher: Sendable {
        public let executable: URL
        public init(executable: URL) { self.executable = executable }
    }

    public nonisolated let pipelines: [Loaded]
    public nonisolated let runs: PipelineRunLog
    let registry: Registry
    let dataLog: DataVersionLog
    let launcher: Launcher
    let now: @Sendable () -> Double
    let logger: Logger
    private var policies: [String: TriggerPolicy] = [:]
    private var serverURL: String
    private var processes: [String: Process] = [:]

    public init(pipelines: [Loaded], store: any Store, registry: Registry, launcher: Launcher, serverURL: String,
                now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }, logger: Logger) async throws {
        self.pipelines = pipelines
        self.runs = try await PipelineRunLog(store: store)
        self.dataLog = try await DataVersionLog(store: store)
        self.registry = registry
        self.launcher = launcher
        self.serverURL = serverURL
        self.now = now
        self.logger = logger
        let start = now()
        for pipeline in pipelines { policies[pipeline.definition.name] = TriggerPolicy(pipeline.definition.triggers, now: start) }
    }

    /// Reads every `*.yaml` / `*.yml` pipeline file in `directory`; a bad file stops the server with its error.
    public static func load(directory: URL) throws -> [Loaded] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory.path) } catch {
            throw PipelineError("--pipelines \(directory.path): cannot read the folder")
        }
        var loaded: [Loaded] = []
        for name in names.sorted() where name.hasSuffix(".yaml") || name.hasSuffix(".yml") {
            let file = directory.appendingPathComponent(name).standardizedFileURL
            guard let text = try? String(contentsOf: file, encoding: .utf8) else { throw PipelineError("cannot read \(file.path)") }
            let definition = try PipelineDefinition.parse(text, file: file.path)
            if let other = loaded.first(where: { $0.definition.name == definition.name }) {
                throw PipelineError("\(file.path): pipeline name '\(definition.name)' is also used by \(other.file.path)")
            }
            loaded.append(Loaded(definition: definition, file: file))
        }
        return loaded
    }

    public func pipeline(_ name: String) -> Loaded? { pipelines.first { $0.definition.name == name } }

    /// The address runs report to (known once the HTTP listener is bound).
    public func setServerURL(_ url: String) { serverURL = url }

    /// Runs marked running when the server starts belong to a process that died with the previous server: they
    /// are closed as failed, so nothing waits on them.
    public func closeInterrupted() async throws {
        for var run in try await runs.unfinished() {
            run.status = .failed
            run.error = "the server stopped during the run"
            run.endedAt = StoreClock.timestamp(Date(timeIntervalSince1970: now()))
            try await report(run)
        }
    }

    /// Asks `name` to run; the decision (started or not, and why) is recorded in the model's history. Returns it
    /// with the new run's id when one started.
    @discardableResult
    public func trigger(_ name: String, _ trigger: TriggerPolicy.Trigger, actor: String, details: [String: JSONDocument] = [:]) async throws
        -> (decision: TriggerPolicy.Decision, runId: String?) {
        guard let pipeline = pipeline(name), var policy = policies[name] else {
            throw PipelineError("no pipeline named '\(name)' (loaded: \(pipelines.map(\.definition.name).joined(separator: ", ")))")
        }
        let decision = policy.decide(trigger, now: now())
        policies[name] = policy
        return (decision, try await carryOut(decision, pipeline, actor: actor, details: details))
    }

    /// Starts the run a decision allows (a failed start frees the pipeline again), records the decision in the
    /// model's history either way, and returns the run's id when one started.
    @discardableResult
    private func carryOut(_ decision: TriggerPolicy.Decision, _ pipeline: Loaded, actor: String, details: [String: JSONDocument]) async throws -> String? {
        var runId: String?
        var failure: Error?
        if decision.start {
            let id = PipelineRunner.newRunId(Date(timeIntervalSince1970: now()))
            do {
                try await start(pipeline, runId: id, trigger: decision.trigger.description)
                runId = id
            } catch {
                policies[pipeline.definition.name]?.finished()
                failure = error
            }
        }
        try await audit(pipeline, decision, runId: runId, actor: actor, details: details)
        if let failure { throw failure }
        return runId
    }

    private func audit(_ pipeline: Loaded, _ decision: TriggerPolicy.Decision, runId: String?, actor: String, details extra: [String: JSONDocument]) async throws {
        var details = extra
        details["pipeline"] = .string(pipeline.definition.name)
        details["trigger"] = .string(decision.trigger.description)
        details["started"] = .bool(decision.start)
        if let runId { details["run_id"] = .string(runId) }
        try await registry.record(pipeline.definition.model, action: .pipelineTrigger, actor: actor, details: details, reason: decision.reason)
        logger.info("pipeline trigger", metadata: ["pipeline": "\(pipeline.definition.name)", "trigger": "\(decision.trigger)", "started": "\(decision.start)",
                                                   "reason": "\(decision.reason)"])
    }

    /// A monitoring alert: a fired alert starts the pipelines of that model that watch it.
    public func alert(_ event: AlertEvent) async {
        guard event.transition.firing else { return }
        for pipeline in pipelines where pipeline.definition.model == event.model {
            var details: [String: JSONDocument] = ["alert": .string(event.transition.name.rawValue), "version": .string(String(event.version))]
            if let value = event.transition.value, value.isFinite { details["value"] = .number(value) }
            if let threshold = event.transition.threshold, threshold.isFinite { details["threshold"] = .number(threshold) }
            do {
                try await trigger(pipeline.definition.name, .alert(event.transition.name.rawValue), actor: Actor.pipeline, details: details)
            } catch {
                logger.error("pipeline trigger failed", metadata: ["pipeline": "\(pipeline.definition.name)", "error": "\(error)"])
            }
        }
    }

    /// Starts the runs whose schedule has come due.
    public func tick() async throws {
        for pipeline in pipelines {
            let name = pipeline.definition.name
            guard var policy = policies[name], policy.triggers.everySeconds != nil else { continue }
            let due = policy.tick(now: now())
            policies[name] = policy
            guard let decision = due else { continue }
            do {
                try await carryOut(decision, pipeline, actor: Actor.pipeline, details: [:])
            } catch {
                logger.error("cannot start a pipeline run", metadata: ["pipeline": "\(name)", "error": "\(error)"])
            }
        }
    }

    /// Saves a run's record as the run reports it; the first time it is final, the model's history gets a
    /// `pipeline_run` entry and the data snapshots it used are recorded.
    public func report(_ run: PipelineRunRecord) async throws {
        let previous = try await runs.save(run)
        guard run.status != .running, previous == nil || previous == .running else { return }
        var details: [String: JSONDocument] = ["pipeline": .string(run.pipeline), "run_id": .string(run.id), "status": .string(run.status.rawValue),
                                               "trigger": .string(run.trigger)]
        if let version = run.registeredVersion { details["version"] = .string(String(version)) }
        if let deployment = run.deployment { details["deployment"] = .string(deployment) }
        try await registry.record(run.model, action: .pipelineRun, actor: Actor.pipeline, details: details, reason: run.error)
        for input in run.data {
            try await dataLog.record(DataSnapshot(path: input.path, md5: input.md5, size: input.size, nfiles: nil, rows: input.rows,
                                                  time: StoreClock.date(run.startedAt) ?? Date(), actor: "pipeline \(run.pipeline)"))
        }
    }

    private func start(_ pipeline: Loaded, runId: String, trigger: String) async throws {
        let name = pipeline.definition.name
        var record = PipelineRunRecord(id: runId, pipeline: name, model: pipeline.definition.model, trigger: trigger,
                                       startedAt: StoreClock.timestamp(Date(timeIntervalSince1970: now())))
        record.steps = []
        try await runs.save(record)
        let folder = pipeline.file.deletingLastPathComponent()
        let logFolder = folder.appendingPathComponent(".serval/runs/\(name)/\(runId)")
        try FileManager.default.createDirectory(at: logFolder, withIntermediateDirectories: true)
        let logFile = logFolder.appendingPathComponent("run.log")
        guard FileManager.default.createFile(atPath: logFile.path, contents: nil) else { throw PipelineError("cannot write \(logFile.path)") }
        let output = try FileHandle(forWritingTo: logFile)
        let process = Process()
        process.executableURL = launcher.executable
        process.arguments = ["pipeline", "run", pipeline.file.path, "--url", serverURL, "--trigger", trigger, "--run-id", runId, "--actor", "pipeline/\(name)"]
        process.currentDirectoryURL = folder
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        process.terminationHandler = { [weak self] process in
            try? output.close()
            let status = process.terminationStatus
            guard let self else { return }
            Task { await self.ended(name, runId: runId, status: status) }
        }
        try process.run()
        processes[runId] = process
        logger.info("pipeline run started", metadata: ["pipeline": "\(name)", "run": "\(runId)", "log": "\(logFile.path)"])
    }

    /// A run's process exited: the pipeline may run again, and a run that never reported its end is closed.
    private func ended(_ name: String, runId: String, status: Int32) async {
        processes[runId] = nil
        policies[name]?.finished()
        do {
            if var run = try await runs.run(runId), run.status == .running {
                run.status = .failed
                run.error = "the run process exited with status \(status) before reporting its end"
                run.endedAt = StoreClock.timestamp(Date(timeIntervalSince1970: now()))
                try await report(run)
            }
        } catch {
            logger.error("cannot close a pipeline run", metadata: ["run": "\(runId)", "error": "\(error)"])
        }
        logger.info("pipeline run ended", metadata: ["pipeline": "\(name)", "run": "\(runId)", "exit": "\(status)"])
    }

    /// Stops running children (the server is shutting down): a run cannot register into a server that is gone.
    /// Each is closed as failed when its process ends, or at the next start.
    public func stopAll() {
        for process in processes.values where process.isRunning { process.terminate() }
    }

    /// On graceful shutdown, stops the runs this server started.
    public struct StopOnShutdown: Service {
        let service: PipelineService
        public init(_ service: PipelineService) { self.service = service }
        public func run() async throws {
            try? await gracefulShutdown()
            await service.stopAll()
        }
    }
}
