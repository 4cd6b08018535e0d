import Foundation
import ServalStore
import ServalTestSupport
import Testing

@Suite("Store (SQLite and PostgreSQL)")
struct StoreTests {
    static let schema = [Migration(id: "test-1", statements: [
        "CREATE TABLE items (id {{id}}, name TEXT NOT NULL, amount DOUBLE PRECISION, payload {{blob}}, counter BIGINT NOT NULL DEFAULT 0)",
    ])]

    @Test(arguments: TestStores.backends)
    func valuesRoundTripWithPlaceholdersOutsideLiterals(_ backend: SQLDialect) async throws {
        let store = try await TestStores.make(backend)
        try await store.migrate(Self.schema)
        try await store.execute("INSERT INTO items (name, amount, payload) VALUES (?, ?, ?)", [.text("what?"), .real(2.5), .blob([0, 255, 7])])
        try await store.execute("INSERT INTO items (name, amount, payload) VALUES ('literal ?', ?, ?)", [.null, .null])
        let rows = try await store.query("SELECT id, name, amount, payload FROM items ORDER BY id")
        #expect(rows.count == 2)
        #expect(rows[0]["name"] == .text("what?"))
        #expect(rows[0]["amount"] == .real(2.5))
        #expect(rows[0]["payload"] == .blob([0, 255, 7]))
        #expect(rows[1]["name"] == .text("literal ?"))
        #expect(rows[1]["amount"].isNull && rows[1]["payload"].isNull)
        #expect(rows[1]["id"].int == rows[0]["id"].int.map { $0 + 1 })
        await store.close()
    }

    /// A caller cancelled mid-transaction (a worker stopping at shutdown) must not leave the connection inside an
    /// open transaction: the store goes on taking transactions, and the cancelled one committed all or nothing.
    @Test(arguments: TestStores.backends)
    func aCancelledTransactionLeavesTheStoreUsable(_ backend: SQLDialect) async throws {
        let store = try await TestStores.make(backend)
        try await store.migrate(Self.schema)
        let cancelled = Task {
            try await store.transaction { connection in
                try await connection.execute("INSERT INTO items (name) VALUES (?)", [.text("first")])
                withUnsafeCurrentTask { $0?.cancel() }
                try await connection.execute("INSERT INTO items (name) VALUES (?)", [.text("second")])
            }
        }
        _ = await cancelled.result
        #expect([0, 2].contains(try await store.query("SELECT name FROM items").count))
        try await store.execute("INSERT INTO items (name) VALUES (?)", [.text("after")])
        #expect(try await store.query("SELECT name FROM items WHERE name = 'after'").count == 1)
        await store.close()
    }

    @Test(arguments: TestStores.backends)
    func aThrowingTransactionLeavesNothing(_ backend: SQLDialect) async throws {
        struct Abort: Error {}
        let store = try await TestStores.make(backend)
        try await store.migrate(Self.schema)
        await #expect(throws: Abort.self) {
            try await store.transaction { connection in
                try await connection.execute("INSERT INTO items (name) VALUES (?)", [.text("half")])
                throw Abort()
            }
        }
        #expect(try await store.query("SELECT name FROM items").isEmpty)
        await store.close()
    }

    @Test(arguments: TestStores.backends)
    func migrationsRunOnceAcrossOpens(_ backend: SQLDialect) async throws {
        let store = try await TestStores.make(backend)
        try await store.migrate(Self.schema)
        try await store.execute("INSERT INTO items (name) VALUES (?)", [.text("kept")])
        // Running the same list again (a restart) changes nothing; an added step runs.
        try await store.migrate(Self.schema + [Migration(id: "test-2", statements: ["CREATE INDEX items_name ON items (name)"])])
        #expect(try await store.query("SELECT name FROM items").map { $0["name"] } == [.text("kept")])
        let applied = try await store.query("SELECT id FROM serval_migrations ORDER BY id").compactMap { $0["id"].string }
        #expect(applied == ["test-1", "test-2"])
        await store.close()
    }

    @Test(arguments: TestStores.backends)
    func concurrentReadModifyWriteTransactionsSerialise(_ backend: SQLDialect) async throws {
        let store = try await TestStores.make(backend)
        try await store.migrate(Self.schema)
        try await store.execute("INSERT INTO items (name, counter) VALUES ('c', 0)")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    try await store.transaction { connection in
                        // Lock the row first (a no-op update), as the registry does, then read and write it back.
                        try await connection.execute("UPDATE items SET counter = counter WHERE name = 'c'")
                        let value = try await connection.queryOne("SELECT counter FROM items WHERE name = 'c'")?["counter"].int ?? -1
                        try await connection.execute("UPDATE items SET counter = ? WHERE name = 'c'", [.integer(Int64(value + 1))])
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await store.query("SELECT counter FROM items").first?["counter"].int == 20)
        await store.close()
    }

    @Test func sqliteStateSurvivesReopening() async throws {
        let directory = TestStores.temporaryDirectory()
        let first = try SQLiteStore(directory: directory)
        try await first.migrate(Self.schema)
        try await first.execute("INSERT INTO items (name) VALUES ('durable')")
        await first.close()
        let second = try SQLiteStore(directory: directory)
        #expect(try await second.query("SELECT name FROM items").first?["name"] == .text("durable"))
        #expect(try await second.query("PRAGMA journal_mode").first?["journal_mode"] == .text("wal"))
        await second.close()
    }

    @Test func unreachablePostgresIsUnavailable() async throws {
        // Port 1 on loopback refuses connections at once.
        let error = await #expect(throws: StoreError.self) { _ = try await PostgresStore(url: "postgres://serval@127.0.0.1:1/postgres", timeout: .milliseconds(300)) }
        #expect(error?.kind == .unavailable)
    }

    @Test func malformedDatabaseURLNamesTheFlag() async throws {
        let error = await #expect(throws: StoreError.self) { _ = try await PostgresStore(url: "mysql://x@y/z") }
        #expect(error?.kind == .invalidConfiguration)
        #expect(error?.message.contains("--database-url") == true)
    }
}
