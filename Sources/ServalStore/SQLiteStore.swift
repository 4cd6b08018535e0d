import Foundation
import GRDB

/// The embedded backend: one SQLite file (`DIR/serval.sqlite`) through GRDB, in WAL mode. Transactions are
/// serialised by an async lock and begin with `BEGIN IMMEDIATE`, so each one holds the write lock from its start.
public final class SQLiteStore: Store {
    public let dialect = SQLDialect.sqlite
    public let location: String
    private let queue: DatabaseQueue
    private let lock = AsyncLock()

    public init(directory: URL) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError(.invalidConfiguration, "cannot create data directory \(directory.path): \(error.localizedDescription)")
        }
        let file = directory.appendingPathComponent("serval.sqlite")
        location = file.path
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        // A transaction spans several GRDB accesses (one per statement, so the body can be async). That is safe
        // here because every access goes through `lock`: no other statement can run inside an open transaction.
        configuration.allowsUnsafeTransactions = true
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            queue = try DatabaseQueue(path: file.path, configuration: configuration)
        } catch {
            throw StoreError(.unavailable, "cannot open \(file.path): \(error)")
        }
    }

    public func transaction<T: Sendable>(_ body: @escaping @Sendable (any StoreConnection) async throws -> T) async throws -> T {
        let queue = self.queue
        return try await lock.withLock {
            let connection = SQLiteConnection(queue: queue)
            try await connection.run("BEGIN IMMEDIATE")
            let value: T
            do {
                value = try await body(connection)
            } catch {
                // GRDB's async access refuses to start in a cancelled task, so COMMIT and ROLLBACK run in a task
                // of their own: a cancelled caller must never leave the connection inside an open transaction.
                try? await Task { try await connection.run("ROLLBACK") }.value
                throw error
            }
            do {
                try await Task { try await connection.run("COMMIT") }.value
            } catch {
                try? await Task { try await connection.run("ROLLBACK") }.value
                throw StoreError(.statement, "commit failed: \(error)")
            }
            return value
        }
    }

    public func migrate(_ migrations: [Migration]) async throws { try await runMigrations(migrations) }

    public func listen(_ channel: String, onNotification: @escaping @Sendable () -> Void) async throws {}

    public func close() async {
        try? queue.close()
    }
}

/// Statements of one SQLite transaction, each run on GRDB's serial queue.
struct SQLiteConnection: StoreConnection {
    let queue: DatabaseQueue
    var dialect: SQLDialect { .sqlite }

    func run(_ sql: String) async throws {
        try await queue.writeWithoutTransaction { db in try db.execute(sql: sql) }
    }

    func execute(_ sql: String, _ arguments: [SQLValue]) async throws {
        let values = StatementArguments(arguments.map(\.databaseValue))
        do {
            try await queue.writeWithoutTransaction { db in try db.execute(sql: sql, arguments: values) }
        } catch {
            throw StoreError(.statement, "\(error)")
        }
    }

    func query(_ sql: String, _ arguments: [SQLValue]) async throws -> [SQLRow] {
        let values = StatementArguments(arguments.map(\.databaseValue))
        do {
            return try await queue.writeWithoutTransaction { db in
                try Row.fetchAll(db, sql: sql, arguments: values).map { row in
                    SQLRow(columns: Array(row.columnNames), values: row.databaseValues.map(SQLValue.init))
                }
            }
        } catch {
            throw StoreError(.statement, "\(error)")
        }
    }
}

extension SQLValue {
    var databaseValue: DatabaseValue {
        switch self {
        case .null: return .null
        case .integer(let value): return value.databaseValue
        case .real(let value): return value.databaseValue
        case .text(let value): return value.databaseValue
        case .blob(let bytes): return Data(bytes).databaseValue
        }
    }

    init(_ value: DatabaseValue) {
        switch value.storage {
        case .null: self = .null
        case .int64(let number): self = .integer(number)
        case .double(let number): self = .real(number)
        case .string(let text): self = .text(text)
        case .blob(let data): self = .blob(Array(data))
        }
    }
}
