import Foundation
import Logging
import NIOCore
import PostgresNIO

/// The shared backend: PostgreSQL through PostgresNIO's connection pool, for replicas that share state.
/// The same migrations and statements as SQLite run here; `?` placeholders become `$1, $2, ...`.
public final class PostgresStore: Store {
    public let dialect = SQLDialect.postgres
    public let location: String
    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let logger: Logger
    /// How long a transaction may wait for a connection and run before it fails as unavailable: the pool
    /// retries a database that is down, and an admin call should answer 503 rather than hang.
    private let timeout: Duration

    /// Connects to `url` (`postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]`).
    public init(url: String, timeout: Duration = .seconds(5), logger: Logger = Logger(label: "serval.store")) async throws {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
              let host = components.host, !host.isEmpty
        else {
            throw StoreError(.invalidConfiguration, "--database-url must look like postgres://user@host:5432/database, got '\(Self.redacted(url))'")
        }
        let sslMode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        let tls: PostgresClient.Configuration.TLS
        switch sslMode {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer(.makeClientConfiguration())
        case "require", "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        default: throw StoreError(.invalidConfiguration, "--database-url: sslmode must be disable, prefer or require, got '\(sslMode)'")
        }
        let database = components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: components.user ?? "postgres",
            password: components.password, database: database.isEmpty ? nil : database, tls: tls)
        configuration.options.connectTimeout = .seconds(3)
        configuration.options.maximumConnections = 8
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.logger = logger
        self.timeout = timeout
        self.location = "postgres://\(host):\(components.port ?? 5432)/\(database)"
        self.runner = Task { await client.run() }
        do {
            _ = try await Self.bounded(timeout, location: location) { try await client.query("SELECT 1", logger: logger) }
        } catch {
            runner.cancel()
            throw StoreError(.unavailable, "cannot reach \(location): \(Self.describe(error))")
        }
    }

    static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? url
    }

    public func transaction<T: Sendable>(_ body: @escaping @Sendable (any StoreConnection) async throws -> T) async throws -> T {
        let logger = self.logger
        let client = self.client
        do {
            return try await Self.bounded(timeout, location: location) {
                try await client.withTransaction(logger: logger) { connection in
                    try await body(PostgresStoreConnection(connection: connection, logger: logger))
                }
            }
        } catch let error as StoreError {
            throw error
        } catch let error as PostgresTransactionError {
            if let closure = error.closureError { throw closure }
            throw Self.storeError(error.beginError ?? error.commitError ?? error)
        } catch {
            throw Self.storeError(error)
        }
    }

    public func migrate(_ migrations: [Migration]) async throws { try await runMigrations(migrations) }

    public func listen(_ channel: String, onNotification: @escaping @Sendable () -> Void) async throws {
        try await client.withConnection { connection in
            try await connection.listen(on: channel) { notifications in
                for try await _ in notifications { onNotification() }
            }
        }
    }

    public func close() async {
        runner.cancel()
        _ = await runner.value
    }

    /// Runs `body`, failing with `unavailable` once `limit` has passed (the body is cancelled).
    static func bounded<T: Sendable>(_ limit: Duration, location: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw StoreError(.unavailable, "database \(location) did not answer within \(limit)")
            }
            return value
        }
    }

    static func storeError(_ error: Error) -> StoreError {
        if let psql = error as? PSQLError, psql.serverInfo != nil {
            return StoreError(.statement, describe(error))
        }
        return StoreError(.unavailable, "database unreachable: \(describe(error))")
    }

    static func describe(_ error: Error) -> String {
        if let psql = error as? PSQLError {
            if let message = psql.serverInfo?[.message] { return message }
            return "\(psql.code)" + (psql.underlying.map { ": \($0)" } ?? "")
        }
        return "\(error)"
    }
}

/// Statements on the connection that holds one PostgreSQL transaction.
struct PostgresStoreConnection: StoreConnection {
    let connection: PostgresConnection
    let logger: Logger
    var dialect: SQLDialect { .postgres }

    func execute(_ sql: String, _ arguments: [SQLValue]) async throws {
        _ = try await query(sql, arguments)
    }

    func query(_ sql: String, _ arguments: [SQLValue]) async throws -> [SQLRow] {
        var binds = PostgresBindings(capacity: arguments.count)
        for argument in arguments {
            switch argument {
            case .null: binds.appendNull()
            case .integer(let value): binds.append(value)
            case .real(let value): binds.append(value)
            case .text(let value): binds.append(value)
            case .blob(let bytes): binds.append(ByteBuffer(bytes: bytes))
            }
        }
        let statement = PostgresQuery(unsafeSQL: Self.numberPlaceholders(sql), binds: binds)
        do {
            var rows: [SQLRow] = []
            for try await row in try await connection.query(statement, logger: logger) {
                var columns: [String] = []
                var values: [SQLValue] = []
                for cell in row {
                    columns.append(cell.columnName)
                    values.append(try Self.value(cell))
                }
                rows.append(SQLRow(columns: columns, values: values))
            }
            return rows
        } catch {
            throw PostgresStore.storeError(error)
        }
    }

    static func value(_ cell: PostgresCell) throws -> SQLValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int8, .int4, .int2: return .integer(try cell.decode(Int64.self))
        case .float8, .float4, .numeric: return .real(try cell.decode(Double.self))
        case .bool: return .integer(try cell.decode(Bool.self) ? 1 : 0)
        case .bytea:
            var buffer = try cell.decode(ByteBuffer.self)
            return .blob(buffer.readBytes(length: buffer.readableBytes) ?? [])
        default: return .text(try cell.decode(String.self))
        }
    }

    /// `?` → `$n`, outside quoted literals and identifiers.
    static func numberPlaceholders(_ sql: String) -> String {
        var result = ""
        result.reserveCapacity(sql.utf8.count + 8)
        var index = 0
        var quote: Character?
        for character in sql {
            if let open = quote {
                if character == open { quote = nil }
                result.append(character)
            } else if character == "'" || character == "\"" {
                quote = character
                result.append(character)
            } else if character == "?" {
                index += 1
                result += "$\(index)"
            } else {
                result.append(character)
            }
        }
        return result
    }
}

extension PostgresStore {
    /// `CREATE DATABASE` (outside a transaction, as PostgreSQL requires). For tests and first-time setup.
    public func createDatabase(named name: String) async throws {
        guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
            throw StoreError(.invalidConfiguration, "database name '\(name)' must be letters, digits and _")
        }
        do { try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger) } catch { throw Self.storeError(error) }
    }
}
