import Foundation
import ServalTensor
import ServalTestSupport
import ServalWire
import Synchronization
import Testing
@testable import ServalServing

/// Scale to zero on one node: idle unload and lazy reload on an injected clock, the memory budget's eviction
/// order, versions in flight never evicted, and the bounded cold-start queue.
struct ResidencyTests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("examples/models")

    /// A repository with `names` each holding a copy of the iris example, with `config` as their config.yaml.
    static func repository(_ names: [String], config: String = "") throws -> ModelRepository {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("serval-residency-\(UUID().uuidString)")
        for name in names {
            let folder = root.appendingPathComponent("\(name)/1")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: examples.appendingPathComponent("iris/1/model.onnx"), to: folder.appendingPathComponent("model.onnx"))
            try config.write(to: root.appendingPathComponent("\(name)/config.yaml"), atomically: true, encoding: .utf8)
        }
        return ModelRepository(root: root)
    }

    static func request(for model: ServedModel) -> InferenceRequest {
        var inputs: [String: Tensor] = [:]
        for input in model.inputs {
            inputs[input.name] = Tensor(zeros: DType(kserveName: input.datatype)!, shape: input.shape.map { $0 < 0 ? 1 : $0 })
        }
        return InferenceRequest(inputs: inputs)
    }

    static func state(_ manager: ModelManager, _ name: String) async -> String {
        guard let row = await manager.index().first(where: { $0.name == name }) else { return "absent" }
        return row.reason.isEmpty ? row.state.rawValue : "\(row.state.rawValue) \(row.reason)"
    }

    /// The resident bytes of one iris copy, as the manager measures it.
    static func irisBytes() async throws -> Int {
        let manager = ModelManager(repository: try repository(["iris"]), mode: .none)
        try await manager.reconcile()
        return try await manager.resolve("iris").memoryBytes
    }

    @Test func anIdleVersionUnloadsAndItsNextRequestLoadsItAgain() async throws {
        let clock = ManualClock()
        let manager = ModelManager(repository: try Self.repository(["iris"], config: "idle_unload_secs: 60\n"), mode: .none, clock: clock.read)
        try await manager.reconcile()
        let first = try await manager.resolve("iris")
        #expect(await Self.state(manager, "iris") == "READY")

        clock.set(59)
        #expect(await manager.sweep().isEmpty)
        clock.set(60)
        #expect(await manager.sweep().map(\.model) == ["iris"])
        #expect(await Self.state(manager, "iris") == "UNLOADED idle")
        // Unloaded for idleness still counts as available: the pod stays in its Service.
        #expect(await manager.allReady())
        #expect(try await manager.isAvailable("iris", version: 1))
        // A shadow never wakes it.
        await #expect(throws: ServingError.self) { try await manager.resolve("iris", version: 1, wake: false) }

        clock.set(100)
        let reloaded = try await manager.resolve("iris")
        #expect(reloaded !== first)
        #expect(await Self.state(manager, "iris") == "READY")
        let response = try await reloaded.infer(Self.request(for: reloaded))
        #expect(!response.outputs.isEmpty)
        // Idle time counts from the last request: just used, it stays.
        clock.set(159)
        #expect(await manager.sweep().isEmpty)
    }

    @Test func aModelWithoutIdleUnloadStaysLoaded() async throws {
        let clock = ManualClock()
        let manager = ModelManager(repository: try Self.repository(["iris"]), mode: .none, clock: clock.read)
        try await manager.reconcile()
        clock.set(1e6)
        #expect(await manager.sweep().isEmpty)
        #expect(await Self.state(manager, "iris") == "READY")
    }

    @Test func theMemoryBudgetEvictsTheLeastRecentlyUsedVersionFirst() async throws {
        let bytes = try await Self.irisBytes()
        let clock = ManualClock()
        // Room for two copies, not three.
        let manager = ModelManager(
            repository: try Self.repository(["a", "b", "c"]), mode: .none, residency: .init(memoryLimit: bytes * 5 / 2), clock: clock.read)
        // Loads at start-up go in name order, one second apart: a (t=0), b (t=1), then c evicts a.
        for name in ["a", "b", "c"] {
            try await manager.reconcile(only: [name])
            clock.set(clock.read() + 1)
        }
        #expect(await Self.state(manager, "a") == "UNLOADED memory")
        #expect(await Self.state(manager, "b") == "READY")
        #expect(await Self.state(manager, "c") == "READY")
        var loaded = 0
        for name in ["b", "c"] { if case .ready(let served)? = await manager.state(name, version: 1) { loaded += served.memoryBytes } }
        #expect(loaded > 0 && abs(loaded - 2 * bytes) <= bytes / 10)
        #expect(await manager.residentBytes == loaded)

        // b is used after c: c is now the least recently used, and waking a evicts it.
        clock.set(10)
        _ = try await manager.resolve("b")
        clock.set(11)
        _ = try await manager.resolve("a")
        #expect(await Self.state(manager, "a") == "READY")
        #expect(await Self.state(manager, "b") == "READY")
        #expect(await Self.state(manager, "c") == "UNLOADED memory")
        #expect(await manager.allReady())
    }

    @Test func aVersionWithRequestsInFlightIsNeverEvicted() async throws {
        let bytes = try await Self.irisBytes()
        let clock = ManualClock()
        let gate = BatchGate()
        let manager = ModelManager(
            repository: try Self.repository(["a", "b"]), mode: .none, residency: .init(memoryLimit: bytes * 3 / 2),
            executorWrapper: { GatedExecutor(inner: $0, gate: gate) }, clock: clock.read)
        try await manager.reconcile(only: ["a"])
        clock.set(1)
        try await manager.reconcile(only: ["b"])  // evicts a
        #expect(await Self.state(manager, "a") == "UNLOADED memory")

        // A request holds b; waking a finds nothing it may evict, and is refused for a retry.
        let served = try await manager.resolve("b")
        let held = Task { try await served.infer(Self.request(for: served)) }
        await gate.waitUntilStarted()
        #expect(served.usage.inFlight == 1)
        clock.set(100)
        do {
            _ = try await manager.resolve("a")
            Issue.record("waking a evicted b while it had a request in flight")
        } catch let error as ServingError {
            #expect(error.kind == .unavailable)
            #expect(error.retryAfterSeconds == 1)
            #expect(error.message.contains("requests in flight"))
        }
        #expect(await Self.state(manager, "b") == "READY")
        #expect(await Self.state(manager, "a") == "UNLOADED memory")

        // Once b's request finished, waking a evicts b.
        await gate.release()
        _ = try await held.value
        #expect(served.usage.inFlight == 0)
        _ = try await manager.resolve("a")
        #expect(await Self.state(manager, "a") == "READY")
        #expect(await Self.state(manager, "b") == "UNLOADED memory")
    }

    @Test func aModelLargerThanTheWholeBudgetFailsWithTheReason() async throws {
        let manager = ModelManager(repository: try Self.repository(["iris"]), mode: .none, residency: .init(memoryLimit: 64))
        try await manager.reconcile()
        let state = await Self.state(manager, "iris")
        #expect(state.hasPrefix("UNAVAILABLE"))
        #expect(state.contains("more than --model-memory-limit (64 bytes)"))
        #expect(await !manager.allReady())
    }

    @Test func coldStartWaitersAreBoundedAndTheRestGet503WithRetryAfter() async throws {
        let clock = ManualClock()
        let loads = BatchGate()
        let armed = Mutex(false)
        let manager = ModelManager(
            repository: try Self.repository(["iris"], config: "idle_unload_secs: 5\n"), mode: .none, residency: .init(coldStartMaxPending: 2),
            clock: clock.read, beforeLoad: { _, _ in if armed.withLock({ $0 }) { await loads.enter() } })
        try await manager.reconcile()
        clock.set(10)
        await manager.sweep()
        #expect(await Self.state(manager, "iris") == "UNLOADED idle")

        armed.withLock { $0 = true }
        let first = Task { try await manager.resolve("iris") }
        let second = Task { try await manager.resolve("iris") }
        while await manager.coldStartWaiters("iris", version: 1) < 2 { await Task.yield() }
        #expect(await Self.state(manager, "iris") == "LOADING")
        // Still available while it loads: readiness does not flap during a cold start.
        #expect(await manager.allReady())
        do {
            _ = try await manager.resolve("iris")
            Issue.record("a third waiter was queued beyond --cold-start-max-pending 2")
        } catch let error as ServingError {
            #expect(error.kind == .unavailable)
            #expect(error.retryAfterSeconds == 1)
            #expect(error.message.contains("--cold-start-max-pending 2"))
        }
        await loads.release()
        let a = try await first.value
        let b = try await second.value
        #expect(a === b)
        #expect(await loads.started == 1)
        #expect(await Self.state(manager, "iris") == "READY")
    }

    @Test func aWaiterGivesUpAfterTheColdStartTimeoutAndTheLoadCarriesOn() async throws {
        let clock = ManualClock()
        let loads = BatchGate()
        let timeouts = BatchGate()
        let armed = Mutex(false)
        let manager = ModelManager(
            repository: try Self.repository(["iris"], config: "idle_unload_secs: 5\n"), mode: .none, residency: .init(coldStartTimeout: 7),
            clock: clock.read, sleep: { _ in await timeouts.enter() }, beforeLoad: { _, _ in if armed.withLock({ $0 }) { await loads.enter() } })
        try await manager.reconcile()
        clock.set(10)
        await manager.sweep()
        armed.withLock { $0 = true }
        let waiter = Task { try await manager.resolve("iris") }
        await timeouts.waitUntilStarted()
        await timeouts.release()
        do {
            _ = try await waiter.value
            Issue.record("the waiter did not give up at --cold-start-timeout-secs")
        } catch let error as ServingError {
            #expect(error.kind == .unavailable)
            #expect(error.retryAfterSeconds == 1)
            #expect(error.message.contains("--cold-start-timeout-secs (7.0 s)"))
        }
        await loads.release()
        // The load finished for the next request.
        while await Self.state(manager, "iris") != "READY" { await Task.yield() }
        _ = try await manager.resolve("iris")
    }

    @Test func byteCountsParseDecimalAndBinaryUnits() {
        #expect(ByteCount.parse("2GB") == 2_000_000_000)
        #expect(ByteCount.parse("2G") == 2_000_000_000)
        #expect(ByteCount.parse("512Mi") == 512 * 1024 * 1024)
        #expect(ByteCount.parse("1.5GiB") == 1536 * 1024 * 1024)
        #expect(ByteCount.parse("1048576") == 1_048_576)
        #expect(ByteCount.parse("10 kb") == 10_000)
        #expect(ByteCount.parse("lots") == nil)
        #expect(ByteCount.parse("2XB") == nil)
        #expect(ByteCount.parse("") == nil)
    }
}
