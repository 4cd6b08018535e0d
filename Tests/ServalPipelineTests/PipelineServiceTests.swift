import Foundation
import ServalMonitor
import ServalPipeline
import ServalRegistry
import ServalStore
import ServalTestSupport
import Synchronization
import Testing

/// The server side of pipelines on both store backends: run records, the history entries of trigger decisions and
/// run ends (each once), and runs left behind by a stopped server being closed.
@Suite("Pipeline service")
struct PipelineServiceTests {
    static let pipelineText = """
        name: retrain
        model: iris
        data: {train: data/train.csv, eval: data/eval.csv}
        train: {run: "true"}
        evaluate: {label_column: species, metrics: [accuracy]}
        deploy: {strategy: direct}
        triggers: {on_alert: [accuracy], cooldown: 10m}
        """

    static func service(_ store: any Store, text: String = pipelineText, now: @escaping @Sendable () -> Double = { 1_000 }) async throws
        -> (PipelineService, Registry) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("serval-pipelines-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try text.write(to: folder.appendingPathComponent("retrain.yaml"), atomically: true, encoding: .utf8)
        let registry = try await Registry(store: store)
        // The "serval" it starts is /bin/true: the child exits at once without reporting, as a crashed run would.
        let service = try await PipelineService(pipelines: try PipelineService.load(directory: folder), store: store, registry: registry,
                                                launcher: .init(executable: URL(fileURLWithPath: "/bin/true")), serverURL: "http://127.0.0.1:1",
                                                now: now, logger: .init(label: "test"))
        return (service, registry)
    }

    static func record(_ id: String, _ status: PipelineRunRecord.Status) -> PipelineRunRecord {
        var run = PipelineRunRecord(id: id, pipeline: "retrain", model: "iris", trigger: "manual", startedAt: "2026-12-02T10:00:00.000Z")
        run.status = status
        run.data = [.init(name: "train", path: "data/train.csv", md5: "0123456789abcdef0123456789abcdef", size: 10, rows: 2)]
        if status != .running {
            run.endedAt = "2026-12-02T10:01:00.000Z"
            run.registeredVersion = 3
        }
        return run
    }

    @Test(arguments: TestStores.backends)
    func aRunsEndIsRecordedOnceInTheHistoryWithItsDataVersions(_ backend: SQLDialect) async throws {
        let store = try await TestStores.make(backend)
        let (service, registry) = try await Self.service(store)
        try await service.report(Self.record("r1", .running))
        #expect(try await registry.history("iris").isEmpty)
        try await service.report(Self.record("r1", .succeeded))
        try await service.report(Self.record("r1", .succeeded))  // a repeated report adds nothing
        let entries = try await registry.history("iris")
        #expect(entries.map(\.action) == [.pipelineRun])
        #expect(entries.first.map { JSONDocument.parse($0.details) } == .object([
            "pipeline": .string("retrain"), "run_id": .string("r1"), "status": .string("succeeded"), "trigger": .string("manual"), "version": .string("3"),
        ]))
        #expect(try await service.runs.run("r1") == Self.record("r1", .succeeded))
        #expect(try await service.runs.runs(pipeline: "retrain").map(\.id) == ["r1"])
        let versions = try await DataVersionLog(store: store).versions("data/train.csv")
        #expect(versions.map(\.md5) == ["0123456789abcdef0123456789abcdef"])
        await store.close()
    }

    @Test(arguments: TestStores.backends)
    func aRunLeftRunningByAStoppedServerIsClosedAsFailed(_ backend: SQLDialect) async throws {
        let store = try await TestStores.make(backend)
        let (service, registry) = try await Self.service(store)
        try await service.report(Self.record("r2", .running))
        try await service.closeInterrupted()
        let run = try #require(try await service.runs.run("r2"))
        #expect(run.status == .failed && run.error == "the server stopped during the run")
        #expect(try await registry.history("iris").first?.action == .pipelineRun)
        #expect(try await service.runs.unfinished().isEmpty)
        await store.close()
    }

    @Test func everyTriggerDecisionIsInTheModelsHistory() async throws {
        let store = try await TestStores.make(.sqlite)
        let clock = Mutex<Double>(1_000)
        let (service, registry) = try await Self.service(store, now: { clock.withLock { $0 } })
        await service.alert(AlertEvent(model: "iris", version: 1, transition: .init(name: .datasetDrift, firing: true, startsAt: 1_000)))  // not watched
        await service.alert(AlertEvent(model: "iris", version: 1, transition: .init(name: .accuracy, firing: false, startsAt: 1_000)))  // resolved: no trigger
        await service.alert(AlertEvent(model: "iris", version: 1, transition: .init(name: .accuracy, firing: true, startsAt: 1_000, value: 0.5, threshold: 0.9)))
        clock.withLock { $0 += 60 }
        await service.alert(AlertEvent(model: "iris", version: 1, transition: .init(name: .accuracy, firing: true, startsAt: 1_060)))
        let triggers = try await registry.history("iris").filter { $0.action == .pipelineTrigger }.reversed().map { entry in
            (JSONDocument.parse(entry.details), entry.reason ?? "")
        }
        #expect(triggers.count == 3)
        guard triggers.count == 3 else { return }
        #expect(triggers[0].0.field("trigger") == .string("alert dataset_drift") && triggers[0].0.field("started") == .bool(false))
        #expect(triggers[0].1.contains("does not watch dataset_drift"))
        #expect(triggers[1].0.field("started") == .bool(true) && triggers[1].0.field("value") == .number(0.5))
        let runId = try #require(triggers[1].0.field("run_id")?.stringValue)
        #expect(try await service.runs.run(runId)?.trigger == "alert accuracy")
        // Within the cooldown (or while the first run is still going): refused.
        #expect(triggers[2].0.field("started") == .bool(false))
        await store.close()
    }
}

extension PipelineServiceTests {
    @Test func aScheduleStartsARunWhenItComesDueAndNotBefore() async throws {
        let store = try await TestStores.make(.sqlite)
        let clock = Mutex<Double>(1_000)
        let text = Self.pipelineText.replacingOccurrences(of: "triggers: {on_alert: [accuracy], cooldown: 10m}", with: "triggers: {every: 1h, cooldown: 10m}")
        let (service, registry) = try await Self.service(store, text: text, now: { clock.withLock { $0 } })
        clock.withLock { $0 += 3_599 }
        try await service.tick()
        #expect(try await registry.history("iris").isEmpty)
        clock.withLock { $0 += 1 }
        try await service.tick()
        let entry = try #require(try await registry.history("iris").first)
        #expect(entry.action == .pipelineTrigger && entry.reason == "started by schedule")
        let runId = try #require(JSONDocument.parse(entry.details).field("run_id")?.stringValue)
        #expect(try await service.runs.run(runId)?.trigger == "schedule")
        await store.close()
    }
}

extension JSONDocument {
    func field(_ name: String) -> JSONDocument? {
        if case .object(let fields) = self { return fields[name] }
        return nil
    }

    var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }
}
