import Foundation
import Hummingbird
import ServalRegistry
import ServalServing
import ServalWire

/// `/v2/webhooks`: the receivers of registry events, and the delivery log.
struct WebhookRoutes {
    let shared: RouteContext
    init(_ shared: RouteContext) { self.shared = shared }

    struct WebhooksRequest: Decodable {
        struct Entry: Decodable {
            var url: String
            var secret: String?
        }
        var webhooks: [Entry]
    }

    struct WebhookBody: Encodable {
        var url: String
        var secret: String?
    }

    struct DeliveryBody: Encodable {
        var id: Int
        var eventId: String
        var event: String
        var url: String
        var createdAt: String
        var attempts: Int
        var status: String
        var deliveredAt: String?
        var lastStatus: Int?
        var lastError: String?

        enum CodingKeys: String, CodingKey {
            case id, eventId = "event_id", event, url, createdAt = "created_at", attempts, status, deliveredAt = "delivered_at"
            case lastStatus = "last_status", lastError = "last_error"
        }
    }

    func register(_ routes: inout RouteBuilder) {
        let lifecycle = shared.lifecycle
        let shared = self.shared
        routes.get("/v2/webhooks") { _, _ in
            let webhooks = try await lifecycle.webhooks()
            // Secrets are shown only once, when set.
            return try ControlPlane.response(["webhooks": webhooks.map { WebhookBody(url: $0.url, secret: nil) }])
        }
        routes.put("/v2/webhooks") { request, _ in
            let body = try ControlPlane.decode(WebhooksRequest.self, from: try await shared.collect(request))
            var webhooks: [WebhookOutbox.Webhook] = []
            for (index, entry) in body.webhooks.enumerated() {
                guard let url = URL(string: entry.url), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                    throw ServingError.invalidArgument("webhooks[\(index)].url must be an http(s) URL, got '\(entry.url)'")
                }
                let secret = entry.secret ?? Self.newSecret()
                guard !secret.isEmpty else { throw ServingError.invalidArgument("webhooks[\(index)].secret must not be empty") }
                webhooks.append(.init(url: entry.url, secret: secret))
            }
            try await lifecycle.setWebhooks(webhooks)
            return try ControlPlane.response(["webhooks": webhooks.map { WebhookBody(url: $0.url, secret: $0.secret) }])
        }
        routes.get("/v2/webhooks/deliveries") { request, _ in
            let limit = try RegistryRoutes.limit(request)
            let deliveries = try await lifecycle.deliveries(limit: limit)
            return try ControlPlane.response(["deliveries": deliveries.map { delivery in
                DeliveryBody(
                    id: delivery.id, eventId: delivery.eventId, event: delivery.event, url: delivery.url, createdAt: delivery.createdAt,
                    attempts: delivery.attempts, status: delivery.deliveredAt != nil ? "delivered" : (delivery.attempts == 0 ? "pending" : "retrying"),
                    deliveredAt: delivery.deliveredAt, lastStatus: delivery.lastStatus, lastError: delivery.lastError)
            }])
        }
    }

    /// 32 random bytes, base64url, prefixed `whsec_`.
    static func newSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return "whsec_" + Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
