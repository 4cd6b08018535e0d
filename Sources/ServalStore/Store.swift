import Foundation

/// Which SQL the backend speaks where the two differ (placeholders, identity columns, binary type).
public enum SQLDialect: String, Sendable {
    case sqlite
    case postgres
}

/// Statements inside one transaction. SQL is written once with `?` placeholders; each backend adapts it.
public protocol StoreConnection: Sendable {
    var dialect: SQLDialect { get }
    func execute(_ sql: String, _ arguments: [SQLValue]) async throws
    func query(_ sql: String, _ arguments: [SQLValue]) async throws -> [SQLRow]
}

extension StoreConnection {
    public func execute(_ sql: String) async throws { try await execute(sql, []) }
    public func query(_ sql: String) async throws -> [SQLRow] { try await query(sql, []) }
    public func queryOne(_ sql: String, _ arguments: [SQLValue] = []) async throws -> SQLRow? {
        try await query(sql, arguments).first
    }
}

/// Durable mutable state (labels, traffic, history, jobs, logs, runs) behind one interface: SQLite in a data
/// directory on one machine, PostgreSQL when replicas share state. Every write goes through a transaction, so a
/// pointer change and its history entry commit together or not at all.
public protocol Store: Sendable {
    var dialect: SQLDialect { get }
    /// A short description for logs (the file path, or the database host without credentials).
    var location: String { get }
    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    /// Writers are serialised, so a read-modify-write inside one transaction sees no concurrent change.
    func transaction<T: Sendable>(_ body: @escaping @Sendable (any StoreConnection) async throws -> T) async throws -> T
    /// Applies the migrations that have not run yet, in order, each in its own transaction.
    func migrate(_ migrations: [Migration]) async throws
    /// Releases connections; further calls fail.
    func close() async
    /// Calls `onNotification` for each `NOTIFY channel` until the task is cancelled (PostgreSQL's LISTEN, so other
    /// processes sharing the database can wake this one). SQLite has one process per file: it returns at once.
    func listen(_ channel: String, onNotification: @escaping @Sendable () -> Void) async throws
}

extension Store {
    public func execute(_ sql: String, _ arguments: [SQLValue] = []) async throws {
        try await transaction { try await $0.execute(sql, arguments) }
    }

    public func query(_ sql: String, _ arguments: [SQLValue] = []) async throws -> [SQLRow] {
        try await transaction { try await $0.query(sql, arguments) }
    }
}

/// Why the store could not do what was asked. `unavailable` means the database could not be reached:
/// writes answer 503 and serving goes on with the state last read.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case unavailable
        case invalidConfiguration
        case statement
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// One schema step. Statements are written once; `{{id}}` becomes an auto-incrementing primary key and
/// `{{blob}}` the binary type of the backend.
public struct Migration: Sendable {
    public let id: String
    public let statements: [String]

    public init(id: String, statements: [String]) {
        self.id = id
        self.statements = statements
    }

    func sql(for dialect: SQLDialect) -> [String] {
        statements.map { statement in
            switch dialect {
            case .sqlite:
                return statement.replacingOccurrences(of: "{{id}}", with: "INTEGER PRIMARY KEY AUTOINCREMENT")
                    .replacingOccurrences(of: "{{blob}}", with: "BLOB")
            case .postgres:
                return statement.replacingOccurrences(of: "{{id}}", with: "BIGSERIAL PRIMARY KEY")
                    .replacingOccurrences(of: "{{blob}}", with: "BYTEA")
            }
        }
    }
}

/// Opens the store a server is configured with: PostgreSQL for a `postgres://` URL, else SQLite in `dataDirectory`.
public enum StoreFactory {
    public static func open(databaseURL: String?, dataDirectory: URL) async throws -> any Store {
        if let databaseURL {
            return try await PostgresStore(url: databaseURL)
        }
        return try SQLiteStore(directory: dataDirectory)
    }
}

extension Store {
    /// The shared migration runner: a `serval_migrations` table records which steps ran. On PostgreSQL each step
    /// holds an advisory lock for its transaction, so processes starting together apply each step once.
    func runMigrations(_ migrations: [Migration]) async throws {
        let dialect = self.dialect
        let lock: @Sendable (any StoreConnection) async throws -> Void = { connection in
            if dialect == .postgres { try await connection.execute("SELECT pg_advisory_xact_lock(7420531)") }
        }
        try await transaction { connection in
            try await lock(connection)
            try await connection.execute("CREATE TABLE IF NOT EXISTS serval_migrations (id TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        }
        for migration in migrations {
            try await transaction { connection in
                try await lock(connection)
                if try await connection.queryOne("SELECT id FROM serval_migrations WHERE id = ?", [.text(migration.id)]) != nil { return }
                for statement in migration.sql(for: dialect) { try await connection.execute(statement) }
                try await connection.execute("INSERT INTO serval_migrations (id, applied_at) VALUES (?, ?)", [.text(migration.id), .text(StoreClock.timestamp(Date()))])
            }
        }
    }
}

/// Times as stored: RFC 3339 UTC with milliseconds, which sorts as text.
public enum StoreClock {
    public static func timestamp(_ date: Date) -> String {
        Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(date)
    }

    /// A stored time read back; nil for text that is not one.
    public static func date(_ text: String) -> Date? {
        try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)
    }
}
