import ArgumentParser
import Logging
import Foundation
import ServalPipeline
import ServalRegistry
import ServalServer
import ServalServing
import ServalWire

extension PipelineCommand {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a pipeline: version the data, train, evaluate against the champion, register with lineage, deploy.",
            discussion: """
                Registers and deploys through the server at --url, which keeps the run's record. With --model-repository \
                instead, it works on that repository and the state store (--data-dir or --database-url) directly, as \
                a server would; a server on the same store sees the changes within a second. Steps whose inputs are \
                unchanged reuse their cached outputs (under .serval/ beside the pipeline file). Exit status: 0 when the run \
                registered a version or nothing changed, 3 when a gate blocked the candidate, 1 when a step failed.
                """)
        @Argument(help: "The pipeline's YAML file.") var file: String
        @Option(help: "The server's HTTP address.") var url = "http://127.0.0.1:8000"
        @Option(name: .customLong("model-repository"), help: "Work on this repository and the store directly instead of through a server.")
        var modelRepository: String?
        @Option(name: .customLong("data-dir"), help: "With --model-repository: the state store's folder (SQLite). Default $SERVAL_DATA_DIR or ./serval-data.")
        var dataDir: String?
        @Option(name: .customLong("database-url"), help: "With --model-repository: the PostgreSQL state store; replaces --data-dir.")
        var databaseURL: String?
        @Option(help: "Candidates (matrix combinations) trained at once.") var jobs = 1
        @Flag(help: "Rerun every step, ignoring the cache.") var force = false
        @Option(help: "What started the run, recorded with it (manual, api, schedule, alert NAME).") var trigger = "manual"
        @Option(name: .customLong("run-id"), help: "The run's id (default: a new one).") var runId: String?
        @Option(help: "Who is making the change, recorded in the history. Default: $USER.") var actor: String?
        @Flag(help: "Print the final run record as JSON.") var json = false

        func run() async throws {
            guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
            let fileURL = URL(fileURLWithPath: file).standardizedFileURL
            guard let text = try? String(contentsOf: fileURL, encoding: .utf8) else { throw PipelineError("cannot read \(file)") }
            let definition = try PipelineDefinition.parse(text, file: file)
            let who = actor ?? ProcessInfo.processInfo.environment["USER"] ?? ProcessInfo.processInfo.userName
            let registry: any PipelineRegistry
            var local: ServalServer?
            if let modelRepository {
                var options = ServerOptions(repository: URL(fileURLWithPath: modelRepository).standardizedFileURL,
                                            dataDirectory: dataDir.map { URL(fileURLWithPath: $0) } ?? ServerOptions.defaultDataDirectory, grpc: nil)
                options.databaseURL = databaseURL
                options.controlMode = .explicit  // nothing loaded but what a label move checks
                options.frontends = false
                options.jobWorkers.workers = 0
                options.trafficGuardInterval = nil
                let logger = Logger(label: "serval.pipeline", factory: { _ in SwiftLogNoOpLogHandler() })
                let server = try await ServalServer(options: options, metrics: nil, logger: logger)
                local = server
                registry = LocalPipelineRegistry(lifecycle: server.lifecycle, pipelines: server.pipelines, actor: who)
            } else {
                registry = HTTPPipelineRegistry(client: try RegistryClient(url: url, actor: who))
            }
            let options = PipelineRunner.Options(runId: runId ?? PipelineRunner.newRunId(), trigger: trigger, actor: who, jobs: jobs, force: force)
            let runner = PipelineRunner(definition: definition, folder: fileURL.deletingLastPathComponent(), registry: registry,
                                        options: options, echo: { line in Self.print(line) })
            Self.print("pipeline \(definition.name) run \(options.runId) (\(trigger))")
            // Stopped (Ctrl-C, or the server shutting down): the train commands run in groups of their own, so they are
            // stopped too rather than left running.
            let stops = [SIGINT, SIGTERM].map { (number: Int32) -> DispatchSourceSignal in
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number)
                source.setEventHandler {
                    CommandStep.terminateAll()
                    Self.error("stopped by signal \(number); the run is closed as failed")
                    Foundation.exit(128 + number)
                }
                source.resume()
                return source
            }
            let record = await runner.run()
            stops.forEach { $0.cancel() }
            await local?.store.close()
            if json { Swift.print(try record.json()) }
            for step in record.steps {
                let duration = step.durationSecs.map { String(format: "%.2f s", $0) } ?? "-"
                Self.print("  \(step.name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(step.status.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(duration)"
                           + (step.detail.map { "  \($0.split(separator: "\n").first ?? "")" } ?? ""))
            }
            switch record.status {
            case .succeeded, .unchanged, .running:
                Self.print("\(record.status.rawValue): \(definition.model) v\(record.registeredVersion.map(String.init) ?? "-")"
                           + (record.deployment.map { ", \($0)" } ?? ""))
            case .blocked:
                Self.error(record.error ?? "a gate failed")
                throw ExitCode(3)
            case .failed:
                Self.error(record.error ?? "the run failed")
                throw ExitCode(1)
            }
        }

        /// A line to stdout, flushed (a server reads a triggered run's output from a file as it goes).
        static func print(_ line: String) {
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }

        static func error(_ line: String) {
            FileHandle.standardError.write(Data(("error: " + line + "\n").utf8))
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A pipeline's runs, newest first, from the server's store.")
        @Argument(help: "The pipeline's name.") var name: String
        @Option(help: "The server's HTTP address.") var url = "http://127.0.0.1:8000"
        @Option(help: "At most this many runs.") var limit = 20
        @Flag(help: "Print the server's JSON.") var json = false

        func run() async throws {
            let data = try await RegistryClient(url: url, actor: nil).sendRaw("GET", "v2/pipelines/\(name)/runs?limit=\(limit)")
            if json { print(String(decoding: data, as: UTF8.self)); return }
            struct Runs: Decodable { let runs: [PipelineRunRecord] }
            let runs = try JSONDecoder().decode(Runs.self, from: data).runs
            print(TextTable.render(["RUN", "TRIGGER", "STATUS", "STARTED", "ENDED", "VERSION", "METRICS"], runs.map { run in
                [run.id, run.trigger, run.status.rawValue, run.startedAt, run.endedAt ?? "-", run.registeredVersion.map { "v\($0)" } ?? "-",
                 (run.metrics ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\(String(format: "%.4f", $0.value))" }.joined(separator: " ")]
            }))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One run: its steps, metrics against the champion, gates and what it registered.")
        @Argument(help: "The run's id.") var runId: String
        @Option(help: "The pipeline's name (default: looked up among the server's pipelines).") var pipeline: String?
        @Option(help: "The server's HTTP address.") var url = "http://127.0.0.1:8000"
        @Flag(help: "Print the run record as JSON.") var json = false

        func run() async throws {
            let client = try RegistryClient(url: url, actor: nil)
            var names = pipeline.map { [$0] } ?? []
            if names.isEmpty {
                let listing = try await client.send("GET", "v2/pipelines") as? [String: Any]
                names = (listing?["pipelines"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
            }
            for name in names {
                guard let data = try? await client.sendRaw("GET", "v2/pipelines/\(name)/runs/\(runId)") else { continue }
                if json { print(String(decoding: data, as: UTF8.self)); return }
                let run = try PipelineRunRecord.decode(data)
                print("run \(run.id) of \(run.pipeline) (model \(run.model)): \(run.status.rawValue), trigger \(run.trigger)")
                print("started \(run.startedAt), ended \(run.endedAt ?? "-")" + (run.error.map { "\nerror: \($0)" } ?? ""))
                for input in run.data { print("data \(input.name): \(input.path) md5 \(input.md5)") }
                print(TextTable.render(["STEP", "STATUS", "SECONDS", "DETAIL"], run.steps.map {
                    [$0.name, $0.status.rawValue, $0.durationSecs.map { String(format: "%.2f", $0) } ?? "-", $0.detail?.split(separator: "\n").first.map(String.init) ?? ""]
                }))
                let metrics = Set((run.metrics ?? [:]).keys).union((run.championMetrics ?? [:]).keys).sorted()
                if !metrics.isEmpty {
                    print(TextTable.render(["METRIC", "CANDIDATE", "CHAMPION" + (run.championVersion.map { " (v\($0))" } ?? "")], metrics.map { name in
                        [name, run.metrics?[name].map { String(format: "%.6f", $0) } ?? "-", run.championMetrics?[name].map { String(format: "%.6f", $0) } ?? "-"]
                    }))
                }
                if !run.gates.isEmpty {
                    print(TextTable.render(["GATE", "RULE", "OUTCOME"], run.gates.map { [$0.metric, $0.rule, $0.outcome] }))
                }
                if let version = run.registeredVersion { print("registered v\(version)" + (run.deployment.map { "; \($0)" } ?? "")) }
                return
            }
            throw ValidationError("no run '\(runId)' in \(pipeline.map { "pipeline \($0)" } ?? "any pipeline of \(url)")")
        }
    }
}

/// The registry in the repository and state store themselves (`--model-repository`), through the same
/// `ModelLifecycle` a server uses, so the changes are validated and audited alike.
struct LocalPipelineRegistry: PipelineRegistry {
    let lifecycle: ModelLifecycle
    let pipelines: PipelineService
    let actor: String

    func champion(_ model: String) async throws -> (version: Int, file: Data)? {
        // From the registry, not the manager: in this mode nothing is loaded.
        guard let version = lifecycle.registry.table.labels(model)[TrafficPolicy.stableLabel] else { return nil }
        let file = await lifecycle.manager.repository.modelFile(model, version: version)
        return (version, try Data(contentsOf: file))
    }

    func version(_ model: String, sha256: String) async throws -> Int? {
        try await lifecycle.registry.versions(model).first { $0.sha256 == sha256 }?.version
    }

    func register(_ model: String, file: Data, metadata: VersionMetadata) async throws -> Int {
        try await lifecycle.register(model: model, file: file, metadata: metadata, actor: actor).version
    }

    func apply(_ model: String, _ deployment: Deployment) async throws {
        switch deployment {
        case .label(let label, let version):
            _ = try await lifecycle.moveLabel(model: model, label: label, version: String(version), actor: actor, reason: "pipeline deploy")
        case .traffic(let policy):
            try await lifecycle.setTraffic(model: model, policy: policy, actor: actor, reason: "pipeline deploy")
        }
    }

    func save(_ run: PipelineRunRecord) async throws { try await pipelines.report(run) }
}

/// The registry of a running server, through its REST API, as a pipeline run needs it.
struct HTTPPipelineRegistry: PipelineRegistry {
    let client: RegistryClient

    func champion(_ model: String) async throws -> (version: Int, file: Data)? {
        let labels: Any
        do { labels = try await client.send("GET", "v2/models/\(model)/labels") } catch let failure as RegistryClient.Failure where failure.status == 404 {
            return nil
        }
        guard let text = ((labels as? [String: Any])?["labels"] as? [String: Any])?[TrafficPolicy.stableLabel] as? String, let version = Int(text) else { return nil }
        return (version, try await client.sendRaw("GET", "v2/models/\(model)/versions/\(version)/model"))
    }

    func version(_ model: String, sha256: String) async throws -> Int? {
        let body: Any
        do { body = try await client.send("GET", "v2/models/\(model)/versions") } catch let failure as RegistryClient.Failure where failure.status == 404 {
            return nil
        }
        let versions = (body as? [String: Any])?["versions"] as? [[String: Any]] ?? []
        return versions.first { $0["sha256"] as? String == sha256 }.flatMap { ($0["version"] as? String).flatMap(Int.init) }
    }

    func register(_ model: String, file: Data, metadata: VersionMetadata) async throws -> Int {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let (body, contentType) = RegistryClient.multipart([(name: "model", filename: "model.onnx", bytes: file), (name: "metadata", filename: nil, bytes: try encoder.encode(metadata))])
        let answer = try await client.send("POST", "v2/models/\(model)/versions", body: body, contentType: contentType)
        guard let text = (answer as? [String: Any])?["version"] as? String, let version = Int(text) else {
            throw RegistryClient.Failure(description: "the server registered the model but did not say which version")
        }
        return version
    }

    func apply(_ model: String, _ deployment: Deployment) async throws {
        switch deployment {
        case .label(let label, let version):
            _ = try await client.send("PUT", "v2/models/\(model)/labels/\(label)", json: ["version": String(version), "reason": "pipeline deploy"])
        case .traffic(let policy):
            _ = try await client.sendRaw("PUT", "v2/models/\(model)/traffic?reason=pipeline%20deploy", json: try JSONEncoder().encode(policy))
        }
    }

    func save(_ run: PipelineRunRecord) async throws {
        _ = try await client.sendRaw("PUT", "v2/pipelines/\(run.pipeline)/runs/\(run.id)", json: Data(try run.json().utf8))
    }
}
