import Foundation
import ServalPipeline
import ServalRegistry
import Synchronization
import Testing

/// `PipelineRunner` on real commands (`/bin/sh`) and a real exported model: the step cache (change one input and
/// only the steps that read it rerun), the unchanged rerun, the gates, and each bad input stopping the run before
/// anything is registered. The registry side is an in-memory recorder of what the run asked for; the REST client
/// that does it against a server is exercised by scripts/e2e/pipeline.py.
@Suite("Pipeline runs")
struct PipelineRunTests {
    static let iris = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("examples/models/iris")

    /// What a run registered, deployed and reported.
    final class RecordingRegistry: PipelineRegistry, Sendable {
        struct State {
            var versions: [(sha256: String, file: Data, metadata: VersionMetadata)] = []
            var stable: Int?
            var deployments: [Deployment] = []
            var saved: [PipelineRunRecord] = []
        }

        let state = Mutex(State())

        func champion(_ model: String) async throws -> (version: Int, file: Data)? {
            state.withLock { state in state.stable.map { ($0, state.versions[$0 - 1].file) } }
        }

        func version(_ model: String, sha256: String) async throws -> Int? {
            state.withLock { $0.versions.firstIndex { $0.sha256 == sha256 }.map { $0 + 1 } }
        }

        func register(_ model: String, file: Data, metadata: VersionMetadata) async throws -> Int {
            state.withLock { state in
                state.versions.append((FileDigest.sha256(of: file), file, metadata))
                return state.versions.count
            }
        }

        func apply(_ model: String, _ deployment: Deployment) async throws {
            state.withLock { state in
                state.deployments.append(deployment)
                if case .label(_, let version) = deployment { state.stable = version }
            }
        }

        func save(_ run: PipelineRunRecord) async throws { state.withLock { $0.saved.append(run) } }

        var registered: Int { state.withLock { $0.versions.count } }
    }

    /// A pipeline folder: the iris model as what `train.sh` "trains" (it copies the model), its reference rows as
    /// train and eval data.
    struct Project {
        let folder: URL

        init(pipeline: String? = nil) throws {
            folder = FileManager.default.temporaryDirectory.appendingPathComponent("serval-pipeline-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder.appendingPathComponent("data"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: PipelineRunTests.iris.appendingPathComponent("1/model.onnx"), to: folder.appendingPathComponent("model.onnx"))
            let rows = try String(contentsOf: PipelineRunTests.iris.appendingPathComponent("reference.csv"), encoding: .utf8)
            try rows.write(to: folder.appendingPathComponent("data/train.csv"), atomically: true, encoding: .utf8)
            try rows.write(to: folder.appendingPathComponent("data/eval.csv"), atomically: true, encoding: .utf8)
            try "# trains by copying\ncp model.onnx \"$1\"\n".write(to: folder.appendingPathComponent("train.sh"), atomically: true, encoding: .utf8)
            try (pipeline ?? Self.pipeline()).write(to: folder.appendingPathComponent("pipeline.yaml"), atomically: true, encoding: .utf8)
        }

        static func pipeline(run: String = "echo training with C=${params.C} on ${data.train}; sh train.sh ${outputs.model}", gate: String = "accuracy: {min: 0.5}",
                             data: String = "{train: data/train.csv, eval: data/eval.csv}") -> String {
            """
            name: test
            model: iris
            data: \(data)
            params: {C: 1.0}
            deps: [train.sh, model.onnx]
            train:
              run: \(run)
            evaluate:
              label_column: species
              metrics: [accuracy, f1_macro]
              gates:
                \(gate)
            deploy: {strategy: canary, traffic: 10, progressive: {steps: [10, 50, 100], interval_secs: 5}, guard: {max_error_rate: 0.02}}
            """
        }

        func run(_ registry: RecordingRegistry, force: Bool = false) async throws -> (PipelineRunRecord, [String]) {
            let definition = try PipelineDefinition.parse(try String(contentsOf: folder.appendingPathComponent("pipeline.yaml"), encoding: .utf8), file: "pipeline.yaml")
            let lines = Mutex<[String]>([])
            let runner = PipelineRunner(definition: definition, folder: folder, registry: registry,
                                        options: .init(actor: "test", force: force), echo: { line in lines.withLock { $0.append(line) } })
            let record = await runner.run()
            return (record, lines.withLock { $0 })
        }

        func status(_ record: PipelineRunRecord, _ step: String) -> PipelineRunRecord.Step.Status? {
            record.steps.first { $0.name == step }?.status
        }

        func write(_ text: String, to path: String) throws {
            try text.write(to: folder.appendingPathComponent(path), atomically: true, encoding: .utf8)
        }

        func append(_ text: String, to path: String) throws {
            let handle = try FileHandle(forWritingTo: folder.appendingPathComponent(path))
            try handle.seekToEnd()
            handle.write(Data(text.utf8))
            try handle.close()
        }
    }

    @Test func theFirstRunRegistersWithLineageAndLabelsStableAndARerunIsUnchanged() async throws {
        let project = try Project()
        let registry = RecordingRegistry()
        let (first, lines) = try await project.run(registry)
        #expect(first.status == .succeeded, "\(first.error ?? "")")
        #expect(first.steps.map(\.name) == ["data", "train", "evaluate", "register", "deploy"])
        #expect(first.steps.allSatisfy { $0.status == .ran })
        #expect(lines.contains("[train] training with C=1.0 on data/train.csv"))
        #expect(first.registeredVersion == 1)
        // No champion: the gate against it is skipped and v1 becomes stable directly.
        #expect(registry.state.withLock { $0.deployments } == [.label("stable", version: 1)])
        let metadata = try #require(registry.state.withLock { $0.versions.first?.metadata })
        #expect(metadata.source?.pipeline == "test" && metadata.source?.runId == first.id)
        #expect(metadata.datasets?.map(\.name) == ["train", "eval"])
        #expect(metadata.datasets?.first?.md5 == (try DVCHash.file(project.folder.appendingPathComponent("data/train.csv")).md5))
        #expect(metadata.source?.deps?.keys.sorted() == ["model.onnx", "train.sh"])
        #expect(metadata.params?["C"] == .number(1.0))
        #expect(metadata.metrics?["accuracy"] == first.metrics?["accuracy"])
        // The data was versioned as `serval data add` does: a .dvc file beside it.
        #expect(FileManager.default.fileExists(atPath: project.folder.appendingPathComponent("data/train.csv.dvc").path))

        let (second, _) = try await project.run(registry)
        #expect(second.status == .unchanged)
        #expect(second.steps.allSatisfy { $0.status == .skipped }, "\(second.steps)")
        #expect(registry.registered == 1)
        #expect(registry.state.withLock { $0.deployments.count } == 1)
    }

    @Test func changingOneInputRerunsOnlyTheStepsThatReadIt() async throws {
        let project = try Project()
        let registry = RecordingRegistry()
        _ = try await project.run(registry)

        // New eval rows: training is reused, evaluation reruns.
        try project.append("5.0,3.4,1.5,0.2,0\n", to: "data/eval.csv")
        let (afterEval, _) = try await project.run(registry)
        #expect(project.status(afterEval, "train") == .cached)
        #expect(project.status(afterEval, "evaluate") == .ran)
        #expect(afterEval.status == .succeeded)
        #expect(registry.registered == 1)  // the same candidate: registered once

        // A changed dependency reruns training; it yields the same bytes, so the evaluation is reused.
        try project.append("# a comment\n", to: "train.sh")
        let (afterDeps, _) = try await project.run(registry)
        #expect(project.status(afterDeps, "train") == .ran)
        #expect(project.status(afterDeps, "evaluate") == .cached)

        // A changed parameter reruns training too.
        try project.write(Project.pipeline().replacingOccurrences(of: "params: {C: 1.0}", with: "params: {C: 2.0}"), to: "pipeline.yaml")
        let (afterParams, lines) = try await project.run(registry)
        #expect(project.status(afterParams, "train") == .ran)
        #expect(lines.contains("[train] training with C=2.0 on data/train.csv"))

        // --force reruns everything.
        let (forced, _) = try await project.run(registry, force: true)
        #expect(project.status(forced, "train") == .ran && project.status(forced, "evaluate") == .ran)
    }

    @Test func aSecondVersionIsACanaryBeatingTheChampionUnderTheGuard() async throws {
        let project = try Project(pipeline: Project.pipeline(gate: "accuracy: {min: 0.5, min_delta_vs_champion: 0.0}"))
        let registry = RecordingRegistry()
        _ = try await project.run(registry)
        // Another model file (the same graph with a doc_string appended, field 6): a new candidate, compared with v1.
        try project.write("# trains by copying\ncp model.onnx \"$1\"\nprintf '\\062\\001x' >> \"$1\"\n", to: "train.sh")
        let (second, _) = try await project.run(registry)
        #expect(second.status == .succeeded, "\(second.error ?? "")")
        #expect(second.championVersion == 1)
        #expect(second.championMetrics?["accuracy"] == second.metrics?["accuracy"])
        #expect(second.gates.contains { $0.rule.hasPrefix("delta vs champion") && $0.outcome == "passed" })
        let deployment = try #require(registry.state.withLock { $0.deployments.last })
        guard case .traffic(let policy) = deployment else { Issue.record("expected a traffic policy, got \(deployment)"); return }
        #expect(policy.routes == [.init(label: "stable", weight: 90), .init(version: "2", weight: 10)])
        #expect(policy.progressive == .init(steps: [10, 50, 100], intervalSecs: 5))
        #expect(policy.guard?.maxErrorRate == 0.02)
        #expect(throws: Never.self) { try policy.validate { _ in true } }
    }

    @Test func quantizingAModelWithNoWeightProductsKeepsTheFloatModelWithTheReason() async throws {
        let project = try Project(pipeline: Project.pipeline().replacingOccurrences(of: "deploy:", with: "quantize: {enabled: true}\ndeploy:"))
        let registry = RecordingRegistry()
        let (record, _) = try await project.run(registry)
        #expect(record.status == .succeeded, "\(record.error ?? "")")
        #expect(record.quantized == false)
        #expect(record.steps.first { $0.name == "quantize" }?.detail?.contains("float model kept: nothing to quantize") == true)
        #expect(registry.state.withLock { $0.versions.first?.metadata.tags?["quantized"] } == "false")
    }

    @Test(.timeLimit(.minutes(1)))
    func stoppingACommandKillsItAndEverythingItStarted() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("serval-stop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let log = folder.appendingPathComponent("train.log")
        let (started, signal) = AsyncStream<Void>.makeStream()
        // A background child holding the output pipe: the run returns only once it is gone too.
        let step = CommandStep(command: "sleep 300 & echo started; wait", folder: folder, environment: [:], log: log, prefix: "train")
        let run = Task { try await step.run(echo: { line in if line.hasSuffix("started") { signal.yield() } }) }
        for await _ in started { break }
        CommandStep.terminateAll(logging: log)
        let outcome = try await run.value
        #expect(outcome.status != 0)
        #expect(outcome.tail == ["started"])
    }

    @Test func aFailedGateBlocksTheRunAndRegistersNothing() async throws {
        let project = try Project(pipeline: Project.pipeline(gate: "accuracy: {min: 0.999}"))
        let registry = RecordingRegistry()
        let (record, lines) = try await project.run(registry)
        #expect(record.status == .blocked)
        #expect(record.error?.contains("gate failed: accuracy min 0.999") == true)
        #expect(lines.contains { $0.contains("accuracy") && $0.hasSuffix("failed") })
        #expect(registry.registered == 0 && registry.state.withLock { $0.deployments.isEmpty })
        #expect(project.status(record, "register") == .skipped)
    }

    @Test(arguments: [
        ("sh train.sh ${outputs.model}; echo 'out of memory' >&2; exit 3", "exited with status 3"),
        ("echo nothing", "wrote no model at ${outputs.model}"),
        ("echo 'not onnx' > ${outputs.model}", "not a model Serval can load"),
    ])
    func aBadTrainCommandFailsTheRunWithItsReason(command: String, reason: String) async throws {
        let project = try Project(pipeline: Project.pipeline(run: command))
        let registry = RecordingRegistry()
        let (record, _) = try await project.run(registry)
        #expect(record.status == .failed)
        #expect(record.error?.contains(reason) == true, "\(record.error ?? "")")
        #expect(registry.registered == 0)
        #expect(project.status(record, "train") == .failed)
        if reason.hasPrefix("exited") { #expect(record.error?.contains("out of memory") == true) }  // the log's tail
        // The record the registry last saw is the final one.
        #expect(registry.state.withLock { $0.saved.last } == record)
    }

    @Test func aMissingDataFileOrLabelColumnFailsBeforeAnythingIsRegistered() async throws {
        let missing = try Project(pipeline: Project.pipeline(data: "{train: data/none.csv, eval: data/eval.csv}"))
        let registry = RecordingRegistry()
        let (record, _) = try await missing.run(registry)
        #expect(record.status == .failed)
        #expect(record.error?.contains("data.train: data/none.csv does not exist") == true, "\(record.error ?? "")")
        #expect(missing.status(record, "train") == nil)

        let project = try Project(pipeline: Project.pipeline().replacingOccurrences(of: "label_column: species", with: "label_column: kind"))
        let (unlabelled, _) = try await project.run(registry)
        #expect(unlabelled.status == .failed)
        #expect(unlabelled.error?.contains("evaluate.label_column 'kind' is not a column") == true, "\(unlabelled.error ?? "")")
        #expect(registry.registered == 0)
    }
}
