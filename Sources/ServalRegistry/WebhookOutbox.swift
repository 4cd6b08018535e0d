import Foundation
import ServalStore

/// Registry events for webhooks, written to a durable outbox in the same transaction as the history entry they
/// announce, so a restart loses none and a rolled-back change sends none. `WebhookDelivery` (ServalServing)
/// sends them, signed, with retries.
public enum WebhookOutbox {
    /// The history actions that become events.
    public static let eventActions: Set<HistoryAction> = [.register, .label, .rollback, .autoRollback, .promote]

    /// A configured receiver.
    public struct Webhook: Sendable, Equatable, Codable {
        public var url: String
        public var secret: String

        public init(url: String, secret: String) {
            self.url = url
            self.secret = secret
        }
    }

    /// One delivery of one event to one receiver, as `GET /v2/webhooks/deliveries` lists it.
    public struct Delivery: Sendable, Equatable {
        public let id: Int
        public let eventId: String
        public let url: String
        public let event: String
        public let body: String
        public let createdAt: String
        public let attempts: Int
        public let nextAttemptAt: Double
        public let deliveredAt: String?
        public let lastStatus: Int?
        public let lastError: String?
        /// Every attempt so far, oldest first.
        public let attemptLog: [Attempt]
        /// The key this delivery is signed with, kept with the row so a later change of webhooks does not re-sign
        /// old events. Never shown by the delivery log.
        public let secret: String
    }

    /// One send of a delivery.
    public struct Attempt: Sendable, Equatable, Codable {
        public var time: String
        public var status: Int?
        public var error: String?
    }

    static let migration = Migration(id: "registry-3-webhooks", statements: [
        "CREATE TABLE registry_webhooks (url TEXT PRIMARY KEY, secret TEXT NOT NULL, created_at TEXT NOT NULL)",
        """
        CREATE TABLE registry_outbox (id {{id}}, event_id TEXT NOT NULL, url TEXT NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL,
          secret TEXT NOT NULL, created_at TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at DOUBLE PRECISION NOT NULL,
          delivered_at TEXT, last_status BIGINT, last_error TEXT)
        """,
        "CREATE INDEX registry_outbox_due ON registry_outbox (delivered_at, next_attempt_at)",
    ])

    /// Queues the event of a history entry for every configured webhook (and `extra` receivers, such as a guard's
    /// own webhook), inside the caller's transaction.
    static func enqueue(
        _ connection: any StoreConnection, model: String, time: String, actor: String, action: HistoryAction, details: [String: JSONDocument],
        reason: String?, extra: [Webhook] = [], now: Double
    ) async throws {
        guard eventActions.contains(action) || !extra.isEmpty else { return }
        var receivers = extra
        if eventActions.contains(action) {
            for row in try await connection.query("SELECT url, secret FROM registry_webhooks ORDER BY url") {
                if let url = row["url"].string, let secret = row["secret"].string { receivers.append(Webhook(url: url, secret: secret)) }
            }
        }
        guard !receivers.isEmpty else { return }
        let eventId = "evt_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let event: JSONDocument = [
            "id": .string(eventId), "type": .string(action.rawValue), "model": .string(model), "time": .string(time),
            "actor": .string(actor), "details": .object(details), "reason": JSONDocument(reason),
        ]
        for receiver in receivers {
            try await connection.execute(
                "INSERT INTO registry_outbox (event_id, url, event, body, secret, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [.text(eventId), .text(receiver.url), .text(action.rawValue), .text(event.text), .text(receiver.secret), .text(time), .real(now)])
        }
    }

    /// Queues one delivery of an event that is not a registry change (an async job's callback) inside the caller's
    /// transaction, so it commits together with the state change it announces. `eventId` names the subject (the
    /// job id) and is sent as `Serval-Event-Id`.
    public static func enqueue(
        _ connection: any StoreConnection, eventId: String, event: String, url: String, body: String, secret: String, time: String, now: Double
    ) async throws {
        try await connection.execute(
            "INSERT INTO registry_outbox (event_id, url, event, body, secret, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [.text(eventId), .text(url), .text(event), .text(body), .text(secret), .text(time), .real(now)])
    }

    /// The deliveries queued for one event id, oldest first.
    public static func deliveries(_ connection: any StoreConnection, eventId: String) async throws -> [Delivery] {
        try await connection.query("SELECT * FROM registry_outbox WHERE event_id = ? ORDER BY id", [.text(eventId)]).map(delivery)
    }

    /// Removes the deliveries of the given event ids (a purged job takes its callback log with it).
    public static func remove(_ connection: any StoreConnection, eventIds: [String]) async throws {
        for id in eventIds { try await connection.execute("DELETE FROM registry_outbox WHERE event_id = ?", [.text(id)]) }
    }

    static func delivery(_ row: SQLRow) -> Delivery {
        Delivery(
            id: row["id"].int ?? 0, eventId: row["event_id"].string ?? "", url: row["url"].string ?? "", event: row["event"].string ?? "",
            body: row["body"].string ?? "", createdAt: row["created_at"].string ?? "", attempts: row["attempts"].int ?? 0,
            nextAttemptAt: row["next_attempt_at"].double ?? 0, deliveredAt: row["delivered_at"].string, lastStatus: row["last_status"].int,
            lastError: row["last_error"].string,
            attemptLog: (try? JSONDecoder().decode([Attempt].self, from: Data((row["attempt_log"].string ?? "[]").utf8))) ?? [],
            secret: row["secret"].string ?? "")
    }
}

extension Registry {
    /// Replaces the configured webhooks.
    public func setWebhooks(_ webhooks: [WebhookOutbox.Webhook]) async throws {
        let time = StoreClock.timestamp(Date())
        try await store.transaction { connection in
            try await connection.execute("DELETE FROM registry_webhooks")
            for webhook in webhooks {
                try await connection.execute("INSERT INTO registry_webhooks (url, secret, created_at) VALUES (?, ?, ?)",
                                             [.text(webhook.url), .text(webhook.secret), .text(time)])
            }
        }
    }

    /// Adds webhooks (the `--registry-webhook` flags) without removing others; an existing URL keeps its row.
    public func addWebhooks(_ webhooks: [WebhookOutbox.Webhook]) async throws {
        let time = StoreClock.timestamp(Date())
        try await store.transaction { connection in
            for webhook in webhooks {
                try await connection.execute(
                    "INSERT INTO registry_webhooks (url, secret, created_at) VALUES (?, ?, ?) ON CONFLICT (url) DO UPDATE SET secret = excluded.secret",
                    [.text(webhook.url), .text(webhook.secret), .text(time)])
            }
        }
    }

    public func webhooks() async throws -> [WebhookOutbox.Webhook] {
        try await store.query("SELECT url, secret FROM registry_webhooks ORDER BY url").compactMap { row in
            guard let url = row["url"].string, let secret = row["secret"].string else { return nil }
            return WebhookOutbox.Webhook(url: url, secret: secret)
        }
    }

    /// Claims up to `limit` due deliveries for `lease` seconds (so another replica does not send them too).
    public func claimDueDeliveries(now: Double, lease: Double, limit: Int = 16) async throws -> [WebhookOutbox.Delivery] {
        try await store.transaction { connection in
            let due = try await connection.query(
                "SELECT * FROM registry_outbox WHERE delivered_at IS NULL AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                [.real(now), .integer(Int64(limit))])
            var claimed: [WebhookOutbox.Delivery] = []
            for row in due {
                let delivery = WebhookOutbox.delivery(row)
                let won = try await connection.query(
                    "UPDATE registry_outbox SET next_attempt_at = ? WHERE id = ? AND next_attempt_at = ? AND delivered_at IS NULL RETURNING id",
                    [.real(now + lease), .integer(Int64(delivery.id)), .real(delivery.nextAttemptAt)])
                if !won.isEmpty { claimed.append(delivery) }
            }
            return claimed
        }
    }

    /// Records one attempt: delivered, or failed with the time of the next attempt. Each attempt is appended to
    /// the delivery's `attempt_log` (time, status, error).
    public func recordAttempt(_ id: Int, status: Int?, error: String?, delivered: Bool, nextAttemptAt: Double) async throws {
        let time = StoreClock.timestamp(Date())
        try await store.transaction { connection in
            let row = try await connection.queryOne("SELECT attempt_log FROM registry_outbox WHERE id = ?", [.integer(Int64(id))])
            var log = (try? JSONDecoder().decode([WebhookOutbox.Attempt].self, from: Data((row?["attempt_log"].string ?? "[]").utf8))) ?? []
            log.append(WebhookOutbox.Attempt(time: time, status: status, error: error))
            let text = String(decoding: try JSONEncoder().encode(log), as: UTF8.self)
            try await connection.execute(
                """
                UPDATE registry_outbox SET attempts = attempts + 1, last_status = ?, last_error = ?, delivered_at = ?, next_attempt_at = ?,
                  attempt_log = ? WHERE id = ?
                """,
                [SQLValue(status), SQLValue(error), delivered ? .text(time) : .null, .real(nextAttemptAt), .text(text), .integer(Int64(id))])
        }
    }

    public func deliveries(limit: Int = 100) async throws -> [WebhookOutbox.Delivery] {
        try await store.query("SELECT * FROM registry_outbox ORDER BY id DESC LIMIT ?", [.integer(Int64(limit))]).map(WebhookOutbox.delivery)
    }
}
