import ServalServing
import ServalTensor

/// Holds every batch until released and reports when one has started, so tests can keep a model instance
/// busy (in-flight requests, full queues, queue timeouts) without sleeping.
public actor BatchGate {
    private var open = false
    private var held: [CheckedContinuation<Void, Never>] = []
    private var startedWaiters: [CheckedContinuation<Void, Never>] = []
    public private(set) var started = 0

    public init() {}

    /// Waits here until `release` (at once after it); also what a test's injected load or sleep calls.
    public func enter() async {
        started += 1
        startedWaiters.forEach { $0.resume() }
        startedWaiters.removeAll()
        if !open { await withCheckedContinuation { held.append($0) } }
    }

    /// Returns once at least one batch has reached the gate.
    public func waitUntilStarted() async {
        while started == 0 { await withCheckedContinuation { startedWaiters.append($0) } }
    }

    /// Lets every held batch (and all later ones) run.
    public func release() {
        open = true
        held.forEach { $0.resume() }
        held.removeAll()
    }
}

/// Wraps a model's executor so each batch waits at the gate before it runs (`ModelManager.executorWrapper`).
public struct GatedExecutor: BatchExecutor {
    let inner: any BatchExecutor
    let gate: BatchGate

    public init(inner: any BatchExecutor, gate: BatchGate) {
        self.inner = inner
        self.gate = gate
    }

    public func execute(_ feeds: [String: Value]) async throws -> [String: Value] {
        await gate.enter()
        return try await inner.execute(feeds)
    }
}
