import Foundation
import ServalHTTP
import ServalServing
import ServalTensor
import ServalTestSupport
import Testing

/// Graceful shutdown: readiness turns false, the request in flight still completes.
@Suite(.serialized) struct DrainTests {
    @Test func inFlightRequestFinishesAfterShutdownBegins() async throws {
        let gate = BatchGate()
        try await TestServer.with(executorWrapper: { GatedExecutor(inner: $0, gate: gate) }) { server, group in
            let state = server.server.state
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
