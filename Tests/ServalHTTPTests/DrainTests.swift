import Foundation
import ServalHTTP
import ServalServing
import ServalTensor
import Testing

/// Graceful shutdown: readiness turns false, the request in flight still completes.
@Suite(.serialized) struct DrainTests {
    /// Holds every batch until released, and reports when one has started.
    actor Gate {
        private var open = false
        private var held: [CheckedContinuation<Void, Never>] = []
        private var startedWaiters: [CheckedContinuation<Void, Never>] = []
        private(set) var started = 0

        func enter() async {
            started += 1
            startedWaiters.forEach { $0.resume() }
            startedWaiters.removeAll()
            if !open { await withCheckedContinuation { held.append($0) } }
        }

        func waitUntilStarted() async {
            while started == 0 { await withCheckedContinuation { startedWaiters.append($0) } }
        }

        func release() {
            open = true
            held.forEach { $0.resume() }
            held.removeAll()
        }
    }

    struct GatedExecutor: BatchExecutor {
        let inner: any BatchExecutor
        let gate: Gate
        func execute(_ feeds: [String: Value]) async throws -> [String: Value] {
            await gate.enter()
            return try await inner.execute(feeds)
        }
    }

    @Test func inFlightRequestFinishesAfterShutdownBegins() async throws {
        let gate = Gate()
        let state = ServerState()
        try await TestServer.with(state: state, executorWrapper: { GatedExecutor(inner: $0, gate: gate) }) { server, group in
            let inFlight = Task { try await server.post("/v2/models/iris/infer", KServeTests.iris) }
            await gate.waitUntilStarted()
            await group.triggerGracefulShutdown()
            while !state.isDraining { await Task.yield() }
            #expect(state.isDraining)
            await gate.release()
            let reply = try await inFlight.value
            #expect(reply.status == 200)
            #expect((try reply.object()["outputs"] as? [[String: Any]])?.count == 2)
        }
    }
}
