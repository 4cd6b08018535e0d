import Foundation
import ServalStore

/// Versions with lineage, labels with an undo stack for rollback, and the append-only history, kept in the
/// store. Every pointer change is one transaction that writes the new state and its history entry together;
/// the in-memory `RoutingTable` is updated from what committed, so the request path never reads the store.
public actor Registry {
    public let store: any Store
    public nonisolated let table: RoutingTable
    private let now: @Sendable () -> Date
    /// The newest history id this replica has loaded; another replica's change shows as a higher one.
    private var seenRevision = 0
    /// Bumped by every local write, so a refresh that overlapped one does not overwrite its newer state.
    private var localWrites = 0

    public init(store: any Store, table: RoutingTable = RoutingTable(), now: @escaping @Sendable () -> Date = Date.init) async throws {
        self.store = store
        self.table = table
        self.now = now
        try await store.migrate(Self.migrations)
        _ = try await refresh()
    }

    public static let migrations: [Migration] = [
        Migration(id: "registry-1", statements: [
            "CREATE TABLE registry_models (name TEXT PRIMARY KEY, revision BIGINT NOT NULL DEFAULT 0, created_at TEXT NOT NULL)",
            """
            CREATE TABLE registry_versions (model TEXT NOT NULL, version BIGINT NOT NULL, sha256 TEXT NOT NULL, size BIGINT NOT NULL,
              created_at TEXT NOT NULL, actor TEXT NOT NULL, metadata TEXT, PRIMARY KEY (model, version))
            """,
            "CREATE TABLE registry_labels (model TEXT NOT NULL, label TEXT NOT NULL, version BIGINT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (model, label))",
            "CREATE TABLE registry_label_past (id {{id}}, model TEXT NOT NULL, label TEXT NOT NULL, version BIGINT NOT NULL)",
            "CREATE INDEX registry_label_past_label ON registry_label_past (model, label, id)",
            """
            CREATE TABLE registry_history (id {{id}}, model TEXT NOT NULL, time TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
              details TEXT NOT NULL, reason TEXT)
            """,
            "CREATE INDEX registry_history_model ON registry_history (model, id)",
        ]),
        Migration(id: "registry-2-traffic", statements: [
            "CREATE TABLE registry_traffic (model TEXT PRIMARY KEY, policy TEXT NOT NULL, updated_at TEXT NOT NULL)",
        ]),
        WebhookOutbox.migration,
        Migration(id: "registry-4-outbox-attempts", statements: [
            "CREATE INDEX registry_outbox_event ON registry_outbox (event_id)",
            "ALTER TABLE registry_outbox ADD COLUMN attempt_log TEXT NOT NULL DEFAULT '[]'",
        ]),
        Migration(id: "registry-5-monitoring", statements: [
            "CREATE TABLE registry_monitoring (model TEXT PRIMARY KEY, config TEXT NOT NULL, updated_at TEXT NOT NULL, actor TEXT NOT NULL)",
        ]),
    ]

    // MARK: - Reading

    /// Reloads every model's pointers from the store when another writer changed them; returns the models
    /// whose pointers changed.
    @discardableResult
    public func refresh() async throws -> Set<String> {
        while true {
            let writes = localWrites
            let (revision, models) = try await readAll()
            guard writes == localWrites else { continue }
            seenRevision = revision
            return table.replace(models)
        }
    }

    private func readAll() async throws -> (Int, [String: RoutingTable.ModelPointers]) {
        try await store.transaction { connection -> (Int, [String: RoutingTable.ModelPointers]) in
            let revision = try await connection.queryOne("SELECT COALESCE(MAX(id), 0) AS revision FROM registry_history")?["revision"].int ?? 0
            var models: [String: RoutingTable.ModelPointers] = [:]
            for row in try await connection.query("SELECT name FROM registry_models") {
                if let name = row["name"].string { models[name] = .init() }
            }
            for (name, pointers) in try await Self.pointers(connection, model: nil) { models[name] = pointers }
            return (revision, models)
        }
    }

    /// The models with history entries committed (by any replica) since the last refresh: one indexed query,
    /// empty when nothing changed.
    public func modelsChangedSinceRefresh() async throws -> Set<String> {
        let rows = try await store.query("SELECT DISTINCT model FROM registry_history WHERE id > ?", [.integer(Int64(seenRevision))])
        return Set(rows.compactMap { $0["model"].string })
    }

    public func versions(_ model: String) async throws -> [VersionRecord] {
        try await store.query(
            "SELECT model, version, sha256, size, created_at, actor, metadata FROM registry_versions WHERE model = ? ORDER BY version",
            [.text(model)]
        ).map(Self.versionRecord)
    }

    public func history(_ model: String, limit: Int = 100) async throws -> [HistoryEntry] {
        try await store.query(
            "SELECT id, model, time, actor, action, details, reason FROM registry_history WHERE model = ? ORDER BY id DESC LIMIT ?",
            [.text(model), .integer(Int64(limit))]
        ).compactMap(Self.historyEntry)
    }

    // MARK: - Writing

    /// The first time the store sees a model, it records it and takes its `version_labels` from config.yaml
    /// (actor `config`). After that the store decides and the config's labels are ignored.
    public func seed(_ model: String, labels: [String: Int]) async throws {
        let time = StoreClock.timestamp(now())
        let created = try await store.transaction { connection -> Bool in
            if try await connection.queryOne("SELECT name FROM registry_models WHERE name = ?", [.text(model)]) != nil { return false }
            try await connection.execute("INSERT INTO registry_models (name, revision, created_at) VALUES (?, 0, ?)", [.text(model), .text(time)])
            for (label, version) in labels.sorted(by: { $0.key < $1.key }) {
                try await connection.execute(
                    "INSERT INTO registry_labels (model, label, version, updated_at) VALUES (?, ?, ?, ?)",
                    [.text(model), .text(label), .integer(Int64(version)), .text(time)])
                try await Self.appendHistory(connection, model: model, time: time, actor: Actor.config, action: .label,
                                             details: ["label": .string(label), "from": nil, "to": .string(String(version))], reason: "version_labels in config.yaml")
            }
            return true
        }
        if created { try await reload(model) }
    }

    /// Records a version (its file is already in the repository). Registering the same version twice is a no-op
    /// that returns the first record.
    @discardableResult
    public func register(
        _ model: String, version: Int, sha256: String, size: Int, metadata: VersionMetadata?, actor: String
    ) async throws -> VersionRecord {
        let time = StoreClock.timestamp(now())
        let metadataText = try metadata.map { String(decoding: try Self.encoder.encode($0), as: UTF8.self) }
        let record = try await store.transaction { connection -> VersionRecord in
            try await Self.lockModel(connection, model, time: time)
            if let existing = try await connection.queryOne(
                "SELECT model, version, sha256, size, created_at, actor, metadata FROM registry_versions WHERE model = ? AND version = ?",
                [.text(model), .integer(Int64(version))])
            {
                return Self.versionRecord(existing)
            }
            try await connection.execute(
                "INSERT INTO registry_versions (model, version, sha256, size, created_at, actor, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [.text(model), .integer(Int64(version)), .text(sha256), .integer(Int64(size)), .text(time), .text(actor), SQLValue(metadataText)])
            try await Self.appendHistory(connection, model: model, time: time, actor: actor, action: .register,
                                         details: ["version": .string(String(version)), "sha256": .string(sha256), "size": .number(Double(size))], reason: nil)
            return VersionRecord(model: model, version: version, sha256: sha256, size: size, createdAt: time, actor: actor, metadata: metadata)
        }
        try await reload(model)
        return record
    }

    /// Points `label` at `version`; the previous target goes on the label's undo stack.
    public func moveLabel(_ model: String, label: String, to version: Int, actor: String, reason: String?) async throws -> LabelMove {
        let time = StoreClock.timestamp(now())
        let move = try await store.transaction { connection -> LabelMove in
            try await Self.lockModel(connection, model, time: time)
            let current = try await Self.pointLabel(connection, model, label, to: version, time: time)
            try await Self.appendHistory(connection, model: model, time: time, actor: actor, action: .label,
                                         details: ["label": .string(label), "from": JSONDocument(current.map(String.init)), "to": .string(String(version))], reason: reason)
            return LabelMove(label: label, from: current, to: version)
        }
        try await reload(model)
        return move
    }

    /// Removes a label; its last target goes on the undo stack, so a rollback brings it back.
    public func removeLabel(_ model: String, label: String, actor: String, reason: String?) async throws -> LabelMove {
        let time = StoreClock.timestamp(now())
        let move = try await store.transaction { connection -> LabelMove in
            try await Self.lockModel(connection, model, time: time)
            guard let current = try await Self.currentTarget(connection, model, label) else {
                throw RegistryError(.notFound, "model '\(model)' has no label '\(label)'")
            }
            try await Self.pushPast(connection, model, label, current)
            try await connection.execute("DELETE FROM registry_labels WHERE model = ? AND label = ?", [.text(model), .text(label)])
            try await Self.appendHistory(connection, model: model, time: time, actor: actor, action: .unlabel,
                                         details: ["label": .string(label), "from": .string(String(current)), "to": nil], reason: reason)
            return LabelMove(label: label, from: current, to: nil)
        }
        try await reload(model)
        return move
    }

    /// Moves `label` back to the target it had before its last move. Each further rollback walks one step
    /// further back; targets for which `isAvailable` is false (versions that are gone) are skipped.
    public func rollback(
        _ model: String, label: String, actor: String, reason: String?, isAvailable: @escaping @Sendable (Int) -> Bool
    ) async throws -> LabelMove {
        let time = StoreClock.timestamp(now())
        let move = try await store.transaction { connection -> LabelMove in
            try await Self.lockModel(connection, model, time: time)
            let current = try await Self.currentTarget(connection, model, label)
            let past = try await connection.query(
                "SELECT id, version FROM registry_label_past WHERE model = ? AND label = ? ORDER BY id DESC", [.text(model), .text(label)])
            if current == nil && past.isEmpty { throw RegistryError(.notFound, "model '\(model)' has no label '\(label)'") }
            for entry in past {
                guard let id = entry["id"].int, let version = entry["version"].int else { continue }
                try await connection.execute("DELETE FROM registry_label_past WHERE id = ?", [.integer(Int64(id))])
                guard version != current, isAvailable(version) else { continue }
                try await Self.setLabel(connection, model, label, version, time: time)
                try await Self.appendHistory(connection, model: model, time: time, actor: actor, action: .rollback,
                                             details: ["label": .string(label), "from": JSONDocument(current.map(String.init)), "to": .string(String(version))], reason: reason)
                return LabelMove(label: label, from: current, to: version)
            }
            throw RegistryError(.conflict, "label '\(label)' of model '\(model)' has no earlier target to roll back to")
        }
        try await reload(model)
        return move
    }

    /// Sets (or, with nil, removes) the model's traffic policy, with a history entry carrying the weights before
    /// and after and any figures behind an automatic change.
    public func setTraffic(
        _ model: String, _ policy: TrafficPolicy?, actor: String, reason: String?, action: HistoryAction = .traffic,
        details extra: [String: JSONDocument] = [:], notify receivers: [WebhookOutbox.Webhook] = []
    ) async throws {
        let time = StoreClock.timestamp(now())
        let text = try policy.map { String(decoding: try Self.encoder.encode($0), as: UTF8.self) }
        try await store.transaction { connection in
            try await Self.lockModel(connection, model, time: time)
            try await Self.writeTraffic(connection, model, text, time: time, actor: actor, reason: reason, action: action, extra: extra, receivers: receivers)
        }
        try await reload(model)
    }

    /// Progressive promotion's last step, in one transaction: `label` moves to `version` (the previous target onto
    /// its undo stack), the policy becomes `policy`, and one `promote` entry records both.
    public func promote(
        _ model: String, label: String, to version: Int, policy: TrafficPolicy, actor: String, details extra: [String: JSONDocument]
    ) async throws {
        let time = StoreClock.timestamp(now())
        let text = String(decoding: try Self.encoder.encode(policy), as: UTF8.self)
        try await store.transaction { connection in
            try await Self.lockModel(connection, model, time: time)
            let current = try await Self.pointLabel(connection, model, label, to: version, time: time)
            var details = extra
            details["label"] = .string(label)
            details["from"] = JSONDocument(current.map(String.init))
            details["to"] = .string(String(version))
            try await Self.writeTraffic(connection, model, text, time: time, actor: actor, reason: nil, action: .promote, extra: details)
        }
        try await reload(model)
    }

    static func writeTraffic(
        _ connection: any StoreConnection, _ model: String, _ text: String?, time: String, actor: String, reason: String?,
        action: HistoryAction, extra: [String: JSONDocument], receivers: [WebhookOutbox.Webhook] = []
    ) async throws {
        let previous = try await connection.queryOne("SELECT policy FROM registry_traffic WHERE model = ?", [.text(model)])?["policy"].string
        func weights(_ text: String?) -> JSONDocument {
            guard let text, let policy = try? JSONDecoder().decode(TrafficPolicy.self, from: Data(text.utf8)) else { return nil }
            return .object(policy.weights.mapValues { .number(Double($0)) })
        }
        if let text {
            try await connection.execute(
                "INSERT INTO registry_traffic (model, policy, updated_at) VALUES (?, ?, ?) ON CONFLICT (model) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
                [.text(model), .text(text), .text(time)])
        } else {
            try await connection.execute("DELETE FROM registry_traffic WHERE model = ?", [.text(model)])
        }
        var details = extra
        details["from_weights"] = weights(previous)
        details["to_weights"] = weights(text)
        try await appendHistory(connection, model: model, time: time, actor: actor, action: action, details: details, reason: reason, extraReceivers: receivers)
    }

    /// Appends an entry that changes no pointer (load, unload, traffic figures).
    public func record(_ model: String, action: HistoryAction, actor: String, details: [String: JSONDocument], reason: String?) async throws {
        let time = StoreClock.timestamp(now())
        try await store.transaction { connection in
            try await Self.lockModel(connection, model, time: time)
            try await Self.appendHistory(connection, model: model, time: time, actor: actor, action: action, details: details, reason: reason)
        }
    }

    /// Monitoring settings set through the API (JSON text) by model; a model absent here follows its `config.yaml`.
    public func monitoringSettings() async throws -> [String: String] {
        var settings: [String: String] = [:]
        for row in try await store.query("SELECT model, config FROM registry_monitoring") {
            if let model = row["model"].string, let config = row["config"].string { settings[model] = config }
        }
        return settings
    }

    /// Replaces a model's monitoring settings (nil: back to its `config.yaml`) and records the change, from and to,
    /// in its history, in one transaction.
    public func setMonitoring(_ model: String, settings: String?, actor: String, reason: String?) async throws {
        let time = StoreClock.timestamp(now())
        try await store.transaction { connection in
            try await Self.lockModel(connection, model, time: time)
            let previous = try await connection.queryOne("SELECT config FROM registry_monitoring WHERE model = ?", [.text(model)])?["config"].string
            if let settings {
                try await connection.execute(
                    """
                    INSERT INTO registry_monitoring (model, config, updated_at, actor) VALUES (?, ?, ?, ?)
                    ON CONFLICT (model) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at, actor = excluded.actor
                    """,
                    [.text(model), .text(settings), .text(time), .text(actor)])
            } else {
                try await connection.execute("DELETE FROM registry_monitoring WHERE model = ?", [.text(model)])
            }
            func document(_ text: String?) -> JSONDocument {
                guard let text, let value = try? JSONDecoder().decode(JSONDocument.self, from: Data(text.utf8)) else { return .null }
                return value
            }
            try await Self.appendHistory(connection, model: model, time: time, actor: actor, action: .monitoring,
                                         details: ["from": document(previous), "to": document(settings)], reason: reason)
        }
    }

    /// The version number a new registration gets: one past every number on disk or ever recorded.
    public func nextVersion(_ model: String, onDisk: [Int]) async throws -> Int {
        let recorded = try await store.query("SELECT COALESCE(MAX(version), 0) AS top FROM registry_versions WHERE model = ?", [.text(model)]).first?["top"].int ?? 0
        return max(recorded, onDisk.max() ?? 0) + 1
    }

    /// The result of a label change.
    public struct LabelMove: Sendable, Equatable {
        public let label: String
        public let from: Int?
        public let to: Int?

        public init(label: String, from: Int?, to: Int?) {
            self.label = label
            self.from = from
            self.to = to
        }
    }

    // MARK: - Statements

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// Takes the model's row lock first (creating the row if needed), so pointer changes to one model serialise
    /// across transactions and replicas.
    static func lockModel(_ connection: any StoreConnection, _ model: String, time: String) async throws {
        let locked = try await connection.query("UPDATE registry_models SET revision = revision + 1 WHERE name = ? RETURNING revision", [.text(model)])
        if locked.isEmpty {
            try await connection.execute(
                "INSERT INTO registry_models (name, revision, created_at) VALUES (?, 1, ?) ON CONFLICT (name) DO UPDATE SET revision = registry_models.revision + 1",
                [.text(model), .text(time)])
        }
    }

    /// Points `label` at `version`, pushing the previous target (if different) onto the label's undo stack;
    /// returns the previous target.
    static func pointLabel(_ connection: any StoreConnection, _ model: String, _ label: String, to version: Int, time: String) async throws -> Int? {
        let current = try await currentTarget(connection, model, label)
        if let current, current != version { try await pushPast(connection, model, label, current) }
        try await setLabel(connection, model, label, version, time: time)
        return current
    }

    /// Puts `version` on top of the label's undo stack.
    static func pushPast(_ connection: any StoreConnection, _ model: String, _ label: String, _ version: Int) async throws {
        try await connection.execute("INSERT INTO registry_label_past (model, label, version) VALUES (?, ?, ?)",
                                     [.text(model), .text(label), .integer(Int64(version))])
    }

    static func currentTarget(_ connection: any StoreConnection, _ model: String, _ label: String) async throws -> Int? {
        try await connection.queryOne("SELECT version FROM registry_labels WHERE model = ? AND label = ?", [.text(model), .text(label)])?["version"].int
    }

    static func setLabel(_ connection: any StoreConnection, _ model: String, _ label: String, _ version: Int, time: String) async throws {
        try await connection.execute(
            """
            INSERT INTO registry_labels (model, label, version, updated_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (model, label) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at
            """,
            [.text(model), .text(label), .integer(Int64(version)), .text(time)])
    }

    /// Appends a history entry and, for the actions webhooks announce, queues its event in the outbox, in the
    /// caller's transaction. `extraReceivers` get the event too (a guard's own webhook).
    static func appendHistory(
        _ connection: any StoreConnection, model: String, time: String, actor: String, action: HistoryAction,
        details: [String: JSONDocument], reason: String?, extraReceivers: [WebhookOutbox.Webhook] = []
    ) async throws {
        try await connection.execute(
            "INSERT INTO registry_history (model, time, actor, action, details, reason) VALUES (?, ?, ?, ?, ?, ?)",
            [.text(model), .text(time), .text(actor), .text(action.rawValue), .text(JSONDocument.object(details).text), SQLValue(reason)])
        try await WebhookOutbox.enqueue(
            connection, model: model, time: time, actor: actor, action: action, details: details, reason: reason, extra: extraReceivers,
            now: Date().timeIntervalSince1970)
    }

    /// Reloads one model's labels after a local commit, so this replica routes by it at once.
    private func reload(_ model: String) async throws {
        localWrites += 1
        let pointers = try await store.transaction { try await Self.pointers($0, model: model)[model] ?? .init() }
        table.update(model, pointers)
    }

    /// Labels and rollback targets of one model (or all), as the routing table holds them.
    static func pointers(_ connection: any StoreConnection, model: String?) async throws -> [String: RoutingTable.ModelPointers] {
        let filter = model == nil ? "" : " WHERE model = ?"
        let arguments: [SQLValue] = model.map { [.text($0)] } ?? []
        var result: [String: RoutingTable.ModelPointers] = [:]
        for row in try await connection.query("SELECT model, label, version FROM registry_labels" + filter, arguments) {
            guard let name = row["model"].string, let label = row["label"].string, let version = row["version"].int else { continue }
            result[name, default: .init()].labels[label] = version
        }
        for row in try await connection.query("SELECT model, policy, updated_at FROM registry_traffic" + filter, arguments) {
            guard let name = row["model"].string, let text = row["policy"].string,
                  let policy = try? JSONDecoder().decode(TrafficPolicy.self, from: Data(text.utf8)) else { continue }
            result[name, default: .init()].traffic = policy
            result[name, default: .init()].trafficSince = row["updated_at"].string
        }
        let tops = "SELECT model, label, version FROM registry_label_past WHERE id IN (SELECT MAX(id) FROM registry_label_past GROUP BY model, label)"
        for row in try await connection.query(tops + (model == nil ? "" : " AND model = ?"), arguments) {
            guard let name = row["model"].string, let label = row["label"].string, let version = row["version"].int else { continue }
            result[name, default: .init()].previous[label] = version
        }
        return result
    }

    static func versionRecord(_ row: SQLRow) -> VersionRecord {
        let metadata = row["metadata"].string.flatMap { try? JSONDecoder().decode(VersionMetadata.self, from: Data($0.utf8)) }
        return VersionRecord(
            model: row["model"].string ?? "", version: row["version"].int ?? 0, sha256: row["sha256"].string ?? "",
            size: row["size"].int ?? 0, createdAt: row["created_at"].string ?? "", actor: row["actor"].string ?? "", metadata: metadata)
    }

    static func historyEntry(_ row: SQLRow) -> HistoryEntry? {
        guard let action = row["action"].string.flatMap(HistoryAction.init(rawValue:)) else { return nil }
        return HistoryEntry(
            id: row["id"].int ?? 0, model: row["model"].string ?? "", time: row["time"].string ?? "", actor: row["actor"].string ?? "",
            action: action, details: row["details"].string ?? "{}", reason: row["reason"].string)
    }
}
