import Foundation
import ServalRegistry
import ServalServing
import ServalStore
import ServalTensor
import ServalWire

/// The payload log in `ServalStore`: one row per sampled request, keyed by model and request id (a request id
/// sent again replaces its row). `entry` is the JSON line `GET .../logs` returns; `window` keeps the monitored
/// features and predictions compactly, so a restarted server refills its windows without re-reading tensors, and
/// replicas sharing the store add each other's rows to their windows (`replica` names who logged a row).
struct PayloadLog: Sendable {
    let store: any Store
    /// This process's name in `replica` and in the alert lease.
    let replica: String

    static let migrations: [Migration] = [
        Migration(id: "monitor-1-payloads", statements: [
            """
            CREATE TABLE monitor_payloads (seq {{id}}, model TEXT NOT NULL, request_id TEXT NOT NULL, version BIGINT NOT NULL, arm TEXT,
              logged_at DOUBLE PRECISION NOT NULL, latency_ms DOUBLE PRECISION NOT NULL, rows BIGINT NOT NULL, entry TEXT NOT NULL,
              monitored TEXT, ground_truth TEXT, feedback_at DOUBLE PRECISION, UNIQUE (model, request_id))
            """,
            "CREATE INDEX monitor_payloads_time ON monitor_payloads (model, logged_at)",
        ]),
        Migration(id: "monitor-2-alerts", statements: [
            "CREATE TABLE monitor_alerts (model TEXT NOT NULL, version BIGINT NOT NULL, book TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (model, version))",
        ]),
        Migration(id: "monitor-4-labelled-index", statements: [
            // Feedback queries read only labelled rows: a partial index keeps them cheap however large the log grows.
            "CREATE INDEX monitor_payloads_labelled ON monitor_payloads (model, version, logged_at) WHERE ground_truth IS NOT NULL",
        ]),
        Migration(id: "monitor-3-series", statements: [
            """
            CREATE TABLE monitor_series (model TEXT NOT NULL, version BIGINT NOT NULL, at DOUBLE PRECISION NOT NULL, drift_share DOUBLE PRECISION,
              accuracy DOUBLE PRECISION, estimated_accuracy DOUBLE PRECISION, requests_per_second DOUBLE PRECISION, p99_ms DOUBLE PRECISION,
              PRIMARY KEY (model, version, at))
            """,
        ]),
        Migration(id: "monitor-5-replicas", statements: [
            // Which replica logged a row, so replicas sharing the store add each other's rows to their windows.
            "ALTER TABLE monitor_payloads ADD COLUMN replica TEXT",
            "CREATE INDEX monitor_payloads_sequence ON monitor_payloads (model, seq)",
            // One replica at a time evaluates alerts (and sends their webhooks): the holder of this lease.
            "CREATE TABLE monitor_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
        ]),
    ]

    init(store: any Store, replica: String) async throws {
        self.store = store
        self.replica = replica
        try await store.migrate(Registry.migrations + Self.migrations)
    }

    /// Every saved alert book.
    func alertBooks() async throws -> [(model: String, version: Int, book: AlertBook)] {
        try await store.query("SELECT model, version, book FROM monitor_alerts").compactMap { row in
            guard let model = row["model"].string, let version = row["version"].int, let text = row["book"].string,
                  let book = try? JSONDecoder().decode(AlertBook.self, from: Data(text.utf8)) else { return nil }
            return (model, version, book)
        }
    }

    /// Saves one version's alert book and queues the webhook deliveries its transitions announce, together.
    func saveAlerts(model: String, version: Int, book: AlertBook, now: Double, deliveries: [(id: String, body: String)], url: String, secret: String) async throws {
        let text = String(decoding: try JSONEncoder().encode(book), as: UTF8.self)
        try await store.transaction { connection in
            try await connection.execute(
                """
                INSERT INTO monitor_alerts (model, version, book, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (model, version) DO UPDATE SET book = excluded.book, updated_at = excluded.updated_at
                """,
                [.text(model), .integer(Int64(version)), .text(text), .real(now)])
            for delivery in deliveries {
                try await WebhookOutbox.enqueue(connection, eventId: delivery.id, event: "alert", url: url, body: delivery.body, secret: secret,
                                                time: StoreClock.timestamp(Date(timeIntervalSince1970: now)), now: now)
            }
        }
    }

    func appendSeries(model: String, version: Int, _ point: HistoryPoint, keep seconds: Double) async throws {
        try await store.transaction { connection in
            try await connection.execute(
                """
                INSERT INTO monitor_series (model, version, at, drift_share, accuracy, estimated_accuracy, requests_per_second, p99_ms)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model, version, at) DO NOTHING
                """,
                [.text(model), .integer(Int64(version)), .real(point.at), SQLValue(point.driftShare), SQLValue(point.accuracy),
                 SQLValue(point.estimatedAccuracy), SQLValue(point.requestsPerSecond), SQLValue(point.p99Milliseconds)])
            try await connection.execute("DELETE FROM monitor_series WHERE model = ? AND at < ?", [.text(model), .real(point.at - seconds)])
        }
    }

    func series(model: String, version: Int, since: Double) async throws -> [HistoryPoint] {
        try await store.query(
            """
            SELECT at, drift_share, accuracy, estimated_accuracy, requests_per_second, p99_ms FROM monitor_series
            WHERE model = ? AND version = ? AND at >= ? ORDER BY at
            """, [.text(model), .integer(Int64(version)), .real(since)]
        ).compactMap { row in
            guard let at = row["at"].double else { return nil }
            return HistoryPoint(at: at, driftShare: row["drift_share"].double, accuracy: row["accuracy"].double,
                               estimatedAccuracy: row["estimated_accuracy"].double, requestsPerSecond: row["requests_per_second"].double,
                               p99Milliseconds: row["p99_ms"].double)
        }
    }

    /// What is labelled of one version: rows and requests, and when feedback last came. Feedback given, replaced
    /// or purged changes one of them, so realised figures are recomputed only when these change.
    struct LabelledTotal: Sendable, Equatable {
        var rows: Int
        var requests: Int
        var latest: Double
    }

    /// Labelled so far, by version.
    func labelledTotals(model: String) async throws -> [Int: LabelledTotal] {
        var totals: [Int: LabelledTotal] = [:]
        for row in try await store.query(
            """
            SELECT version, SUM(rows) AS labelled, COUNT(*) AS requests, MAX(feedback_at) AS latest FROM monitor_payloads
            WHERE model = ? AND ground_truth IS NOT NULL GROUP BY version
            """, [.text(model)]) {
            if let version = row["version"].int {
                totals[version] = LabelledTotal(rows: row["labelled"].int ?? 0, requests: row["requests"].int ?? 0, latest: row["latest"].double ?? 0)
            }
        }
        return totals
    }

    /// One row as it is written.
    struct Entry: Sendable {
        var model: String
        var requestID: String
        var version: Int
        var arm: String?
        var time: Double
        var latencyMilliseconds: Double
        var rows: Int
        var entry: String
        var window: String?
    }

    /// Writes a batch in one transaction, many rows per statement (a request id sent twice keeps its last row).
    func write(_ entries: [Entry]) async throws {
        guard !entries.isEmpty else { return }
        var latest: [String: Int] = [:]
        for (index, entry) in entries.enumerated() { latest[entry.model + "\u{0}" + entry.requestID] = index }
        let unique = entries.indices.filter { latest[entries[$0].model + "\u{0}" + entries[$0].requestID] == $0 }.map { entries[$0] }
        try await store.transaction { connection in
            for start in stride(from: 0, to: unique.count, by: 100) {
                let part = unique[start..<min(unique.count, start + 100)]
                var arguments: [SQLValue] = []
                arguments.reserveCapacity(part.count * 10)
                for entry in part {
                    arguments += [.text(entry.model), .text(entry.requestID), .integer(Int64(entry.version)), SQLValue(entry.arm), .real(entry.time),
                                  .real(entry.latencyMilliseconds), .integer(Int64(entry.rows)), .text(entry.entry), SQLValue(entry.window), .text(replica)]
                }
                try await connection.execute(
                    """
                    INSERT INTO monitor_payloads (model, request_id, version, arm, logged_at, latency_ms, rows, entry, monitored, replica)
                    VALUES \(Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", count: part.count).joined(separator: ", "))
                    ON CONFLICT (model, request_id) DO UPDATE SET version = excluded.version, arm = excluded.arm, logged_at = excluded.logged_at,
                      latency_ms = excluded.latency_ms, rows = excluded.rows, entry = excluded.entry, monitored = excluded.monitored,
                      replica = excluded.replica, ground_truth = NULL, feedback_at = NULL
                    """, arguments)
            }
        }
    }

    /// Whether `model` has any labelled row (read through the partial index, so it costs nothing without feedback).
    func hasFeedback(model: String) async throws -> Bool {
        try await store.query("SELECT 1 AS one FROM monitor_payloads WHERE model = ? AND ground_truth IS NOT NULL LIMIT 1", [.text(model)]).isEmpty == false
    }

    /// Log lines of `model`, oldest first: from `since` (epoch seconds) on when given, else the newest `limit`.
    func lines(model: String, limit: Int, since: Double?) async throws -> [String] {
        let rows: [SQLRow]
        if let since {
            rows = try await store.query(
                "SELECT entry, ground_truth FROM monitor_payloads WHERE model = ? AND logged_at >= ? ORDER BY logged_at, seq LIMIT ?",
                [.text(model), .real(since), .integer(Int64(limit))])
        } else {
            rows = try await store.query(
                "SELECT entry, ground_truth FROM monitor_payloads WHERE model = ? ORDER BY seq DESC LIMIT ?", [.text(model), .integer(Int64(limit))]
            ).reversed()
        }
        return rows.compactMap { row in
            guard let entry = row["entry"].string else { return nil }
            guard let truth = row["ground_truth"].string else { return entry }
            return String(entry.dropLast()) + ",\"ground_truth\":" + truth + "}"
        }
    }

    /// One logged request's compact rows, for a window.
    struct WindowRow: Sendable {
        var sequence: Int
        var version: Int
        var time: Double
        var window: String
    }

    /// The newest `limit` rows' compact windows of one model, oldest first (for refilling windows at start).
    func recentWindows(model: String, limit: Int) async throws -> [WindowRow] {
        try await store.query(
            "SELECT seq, version, logged_at, monitored FROM monitor_payloads WHERE model = ? AND monitored IS NOT NULL ORDER BY seq DESC LIMIT ?",
            [.text(model), .integer(Int64(limit))]
        ).reversed().compactMap(Self.windowRow)
    }

    /// The newest sequence number logged for `model` by any replica (0 before the first).
    func lastSequence(model: String) async throws -> Int {
        try await store.query("SELECT MAX(seq) AS top FROM monitor_payloads WHERE model = ?", [.text(model)]).first?["top"].int ?? 0
    }

    /// Rows other replicas logged for `model` with a sequence number in (`after`, `through`], at most the newest
    /// `limit`, oldest first.
    func othersWindows(model: String, after: Int, through: Int, limit: Int) async throws -> [WindowRow] {
        try await store.query(
            """
            SELECT seq, version, logged_at, monitored FROM monitor_payloads
            WHERE model = ? AND seq > ? AND seq <= ? AND monitored IS NOT NULL AND (replica IS NULL OR replica <> ?) ORDER BY seq DESC LIMIT ?
            """,
            [.text(model), .integer(Int64(after)), .integer(Int64(through)), .text(replica), .integer(Int64(limit))]
        ).reversed().compactMap(Self.windowRow)
    }

    private static func windowRow(_ row: SQLRow) -> WindowRow? {
        guard let sequence = row["seq"].int, let version = row["version"].int, let time = row["logged_at"].double,
              let window = row["monitored"].string else { return nil }
        return WindowRow(sequence: sequence, version: version, time: time, window: window)
    }

    /// Gives the lease `name` up if this replica holds it (at shutdown, so another need not wait for it to lapse).
    func releaseLease(_ name: String) async throws {
        try await store.execute("DELETE FROM monitor_leases WHERE name = ? AND holder = ?", [.text(name), .text(replica)])
    }

    /// Takes or renews the lease `name` for this replica until `now + seconds`. Another replica's lease is taken
    /// only once it has lapsed (its holder stopped renewing). `held`: this replica holds it now; `takenOver`: it
    /// was another's (a replica that stopped, or this process before a restart) until this call.
    func holdLease(_ name: String, now: Double, seconds: Double) async throws -> (held: Bool, takenOver: Bool) {
        let replica = self.replica
        return try await store.transaction { connection in
            let before = try await connection.queryOne("SELECT holder FROM monitor_leases WHERE name = ?", [.text(name)])?["holder"].string
            try await connection.execute(
                """
                INSERT INTO monitor_leases (name, holder, expires_at) VALUES (?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                WHERE monitor_leases.holder = excluded.holder OR monitor_leases.expires_at < ?
                """, [.text(name), .text(replica), .real(now + seconds), .real(now)])
            let held = try await connection.queryOne("SELECT holder FROM monitor_leases WHERE name = ?", [.text(name)])?["holder"].string == replica
            return (held, held && before != nil && before != replica)
        }
    }

    /// How many rows each logged request of `ids` carried, and its compact rows (nil for ids never logged).
    func logged(model: String, ids: [String]) async throws -> [String: (rows: Int, monitored: String?)] {
        var found: [String: (rows: Int, monitored: String?)] = [:]
        for chunk in stride(from: 0, to: ids.count, by: 500).map({ Array(ids[$0..<min(ids.count, $0 + 500)]) }) {
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            for row in try await store.query("SELECT request_id, rows, monitored FROM monitor_payloads WHERE model = ? AND request_id IN (\(marks))",
                                             [.text(model)] + chunk.map { .text($0) }) {
                if let id = row["request_id"].string, let rows = row["rows"].int { found[id] = (rows, row["monitored"].string) }
            }
        }
        return found
    }

    /// Records ground truth (a JSON array, one value per row) for logged requests, replacing earlier feedback.
    func setGroundTruth(model: String, _ truths: [(id: String, json: String)], now: Double) async throws {
        try await store.transaction { connection in
            for truth in truths {
                try await connection.execute("UPDATE monitor_payloads SET ground_truth = ?, feedback_at = ? WHERE model = ? AND request_id = ?",
                                             [.text(truth.json), .real(now), .text(model), .text(truth.id)])
            }
        }
    }

    /// The newest `limit` labelled requests of one version, oldest first: their compact rows and ground truth.
    func labelled(model: String, version: Int, limit: Int) async throws -> [(rows: MonitoredRows, truth: String)] {
        try await store.query(
            """
            SELECT monitored, ground_truth FROM monitor_payloads WHERE model = ? AND version = ? AND ground_truth IS NOT NULL AND monitored IS NOT NULL
            ORDER BY logged_at DESC, seq DESC LIMIT ?
            """,
            [.text(model), .integer(Int64(version)), .integer(Int64(limit))]
        ).reversed().compactMap { row in
            guard let text = row["monitored"].string, let rows = MonitoredRows.parse(text), let truth = row["ground_truth"].string else { return nil }
            return (rows, truth)
        }
    }

    /// Deletes `model`'s rows older than `maxAge` seconds and beyond its newest `maxRows`; returns how many went.
    @discardableResult
    func purge(model: String, maxRows: Int, maxAge: Double, now: Double) async throws -> Int {
        try await store.transaction { connection in
            let before = try await connection.queryOne("SELECT COUNT(*) AS n FROM monitor_payloads WHERE model = ?", [.text(model)])?["n"].int ?? 0
            try await connection.execute("DELETE FROM monitor_payloads WHERE model = ? AND logged_at < ?", [.text(model), .real(now - maxAge)])
            if let edge = try await connection.queryOne(
                "SELECT seq FROM monitor_payloads WHERE model = ? ORDER BY seq DESC LIMIT 1 OFFSET ?", [.text(model), .integer(Int64(maxRows))])?["seq"].int {
                try await connection.execute("DELETE FROM monitor_payloads WHERE model = ? AND seq <= ?", [.text(model), .integer(Int64(edge))])
            }
            let after = try await connection.queryOne("SELECT COUNT(*) AS n FROM monitor_payloads WHERE model = ?", [.text(model)])?["n"].int ?? 0
            return before - after
        }
    }

    /// The JSON line of one observation: id, model, version, arm, time, latency, inputs and outputs (v2 tensors).
    static func line(_ observation: Observation, id: String) -> String {
        var json = JSONWriter(capacity: 512)
        json.raw("{\"id\":")
        json.string(id)
        json.raw(",\"model\":")
        json.string(observation.model)
        json.raw(",\"version\":")
        json.string(String(observation.version))
        json.raw(",\"arm\":")
        if let arm = observation.arm { json.string(arm) } else { json.raw("null") }
        json.raw(",\"time\":")
        json.string(StoreClock.timestamp(Date(timeIntervalSince1970: observation.time)))
        json.raw(",\"latency_ms\":")
        json.number((observation.latency * 1e6).rounded() / 1e3)
        json.raw(",\"inputs\":")
        KServeCodec.encodeInputs(observation.request.inputs, into: &json)
        json.raw(",\"outputs\":[")
        for (index, output) in observation.response.outputs.enumerated() {
            if index > 0 { json.raw(",") }
            KServeCodec.encodeOutput(name: output.name, value: output.value, into: &json)
        }
        json.raw("]}")
        return json.text
    }
}

/// One point of a version's history at the monitor's coarse resolution, as stored and as the report page draws it.
public struct HistoryPoint: Sendable {
    public var at: Double
    public var driftShare: Double?
    public var accuracy: Double?
    public var estimatedAccuracy: Double?
    public var requestsPerSecond: Double?
    public var p99Milliseconds: Double?
}
