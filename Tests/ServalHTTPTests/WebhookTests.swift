import Crypto
import Foundation
import Hummingbird
import Logging
import ServalServing
import ServiceLifecycle
import Synchronization
import Testing

/// A webhook receiver on an ephemeral port: records every delivery and answers the scripted statuses in turn
/// (then 200), with `Retry-After: 0` on a 503.
final class WebhookReceiver: Sendable {
    struct Received: Sendable {
        let headers: [String: String]
        let body: String
    }

    private let state: Mutex<(received: [Received], script: [Int])>
    init(script: [Int] = []) { state = Mutex(([], script)) }

    var received: [Received] { state.withLock { $0.received } }

    func answer(_ request: Request) async throws -> Response {
        let body = try await request.body.collect(upTo: 1 << 20)
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
        let status = state.withLock { state -> Int in
            state.received.append(Received(headers: headers, body: String(buffer: body)))
            return state.script.isEmpty ? 200 : state.script.removeFirst()
        }
        var response = Response(status: .init(code: status))
        if status == 503 { response.headers[.retryAfter] = "0" }
        return response
    }

    /// Runs the receiver for the duration of `body`, passing its URL.
    static func with(script: [Int] = [], _ body: (WebhookReceiver, String) async throws -> Void) async throws {
        let receiver = WebhookReceiver(script: script)
        let router = Router()
        router.post("/hook") { request, _ in try await receiver.answer(request) }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) }, logger: Logger(label: "receiver"))
        let group = ServiceGroup(configuration: .init(services: [app], logger: Logger(label: "receiver")))
        let running = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        let port = await iterator.next() ?? 0
        do { try await body(receiver, "http://127.0.0.1:\(port)/hook") } catch {
            await group.triggerGracefulShutdown()
            _ = try? await running.value
            throw error
        }
        await group.triggerGracefulShutdown()
        try await running.value
    }
}

/// Registry events reach webhooks from a durable outbox: signed, retried, and never lost across a restart.
struct WebhookTests {
    static func expectedSignature(secret: String, id: String, timestamp: String, body: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(id).\(timestamp).\(body)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return "v1," + Data(mac).base64EncodedString()
    }

    @Test func eventsAreDeliveredSignedAndRetriedAfterA503() async throws {
        try await WebhookReceiver.with(script: [503]) { receiver, url in
            try await TestServer.with { (server: TestServer) async throws in
                let set = try await server.put("/v2/webhooks", json: ["webhooks": [["url": url, "secret": "s3cret"]]])
                #expect(set.status == 200)
                #expect(try await server.upload("/v2/models/iris/versions", parts: [("model", RegistryRouteTests.irisFile)], actor: "alice").status == 201)
                #expect(try await server.put("/v2/models/iris/labels/stable", json: ["version": "1"]).status == 200)
                #expect(try await server.server.webhooks.deliverDue() == 1)  // the first attempt of the first event got 503
                #expect(try await server.server.webhooks.deliverDue() == 1)  // its retry (Retry-After: 0)
                let received = receiver.received
                #expect(received.count == 3)
                let delivered = received.dropFirst()
                let events = delivered.compactMap { try? JSONSerialization.jsonObject(with: Data($0.body.utf8)) as? [String: Any] }
                #expect(Set(events.compactMap { $0["type"] as? String }) == ["register", "label"])
                for item in delivered {
                    let id = try #require(item.headers["serval-event-id"]), timestamp = try #require(item.headers["serval-timestamp"])
                    #expect(item.headers["serval-signature"] == Self.expectedSignature(secret: "s3cret", id: id, timestamp: timestamp, body: item.body))
                    #expect((try JSONSerialization.jsonObject(with: Data(item.body.utf8)) as? [String: Any])?["id"] as? String == id)
                }
                let register = try #require(events.first { $0["type"] as? String == "register" })
                #expect(register["actor"] as? String == "alice" && register["model"] as? String == "iris")
                let log = try #require(try await server.get("/v2/webhooks/deliveries").object()["deliveries"] as? [[String: Any]])
                #expect(log.count == 2 && log.allSatisfy { $0["status"] as? String == "delivered" })
                #expect(log.contains { $0["attempts"] as? Int == 2 && $0["last_status"] as? Int == 200 })
                #expect(try await server.get("/v2/webhooks").object()["webhooks"] as? [[String: String]] == [["url": url]])
            }
        }
    }

    @Test func anEventQueuedBeforeARestartIsDeliveredAfterIt() async throws {
        let repository = try TestServer.makeRepository()
        let data = TestServer.makeDataDirectory()
        try await WebhookReceiver.with { receiver, url in
            try await TestServer.with(repository: repository, dataDirectory: data) { (server: TestServer) async throws in
                #expect(try await server.put("/v2/webhooks", json: ["webhooks": [["url": url, "secret": "k"]]]).status == 200)
                #expect(try await server.put("/v2/models/iris/labels/stable", json: ["version": "1"], actor: "before-restart").status == 200)
            }
            #expect(receiver.received.isEmpty)
            try await TestServer.with(repository: repository, dataDirectory: data) { (server: TestServer) async throws in
                #expect(try await server.server.webhooks.deliverDue() == 1)
            }
            let event = try #require(receiver.received.first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.body.utf8)) as? [String: Any] })
            #expect(event["type"] as? String == "label" && event["actor"] as? String == "before-restart")
        }
    }

    @Test func aRefusedChangeQueuesNothingAndBadReceiversAre400() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            #expect(try await server.put("/v2/webhooks", json: ["webhooks": [["url": "http://127.0.0.1:9/hook"]]]).status == 200)
            #expect(try await server.put("/v2/models/iris/labels/stable", json: ["version": "7"]).status == 404)
            #expect((try await server.get("/v2/webhooks/deliveries").object()["deliveries"] as? [Any])?.isEmpty == true)
            let bad = try await server.put("/v2/webhooks", json: ["webhooks": [["url": "ftp://x"]]])
            #expect(bad.status == 400 && RegistryRouteTests.error(bad) == "webhooks[0].url must be an http(s) URL, got 'ftp://x'")
        }
    }

    @Test func retriesBackOffExponentiallyUpTo60SecondsOrFollowRetryAfter() {
        #expect((1...8).map { WebhookDelivery.retryDelay(attempt: $0, retryAfter: nil, now: 0) } == [1, 2, 4, 8, 16, 32, 60, 60])
        #expect(WebhookDelivery.retryDelay(attempt: 3, retryAfter: "120", now: 0) == 120)
        #expect(WebhookDelivery.retryDelay(attempt: 1, retryAfter: "Thu, 01 Jan 1970 00:00:30 GMT", now: 10) == 20)
    }
}

extension WebhookTests {
    @Test func theGuardsOwnWebhookHearsOfAnAutomaticRollback() async throws {
        try await WebhookReceiver.with { receiver, url in
            try await TrafficRouteTests.withCanary(model: "iris_hook") { server in
                let rule: [String: Any] = ["min_requests": 10, "max_error_rate": 0.05, "window_secs": 60, "webhook": url]
                #expect(try await server.put("/v2/models/iris_hook/traffic", json: TrafficRouteTests.split(90, 10, extra: ["guard": rule])).status == 200)
                let router = server.server.router
                for _ in 0..<20 {
                    router.statistics.record(model: "iris_hook", arm: "stable", time: router.clock(), milliseconds: 1, failed: false)
                    router.statistics.record(model: "iris_hook", arm: "canary", time: router.clock(), milliseconds: 1, failed: true)
                }
                try await server.lifecycle.runTrafficGuard()
                #expect(try await server.server.webhooks.deliverDue() == 1)
                let event = try #require(receiver.received.first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.body.utf8)) as? [String: Any] })
                #expect(event["type"] as? String == "auto_rollback" && event["model"] as? String == "iris_hook")
                let details = try #require(event["details"] as? [String: Any])
                #expect(details["arm"] as? String == "canary" && details["error_rate"] as? Double == 1)
                #expect((event["reason"] as? String)?.contains("max_error_rate") == true)
            }
        }
    }
}
