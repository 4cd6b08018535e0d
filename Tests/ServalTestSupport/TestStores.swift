import Foundation
import ServalStore

/// The backends every store test runs against: SQLite always, PostgreSQL when SERVAL_TEST_DATABASE_URL names a
/// server (CI starts one). Each call gives an empty store: a new SQLite directory, or a new Postgres database.
public enum TestStores {
    public static var backends: [SQLDialect] {
        ProcessInfo.processInfo.environment["SERVAL_TEST_DATABASE_URL"] == nil ? [.sqlite] : [.sqlite, .postgres]
    }

    public static func make(_ dialect: SQLDialect) async throws -> any Store {
        switch dialect {
        case .sqlite:
            return try SQLiteStore(directory: temporaryDirectory())
        case .postgres:
            let url = try require(ProcessInfo.processInfo.environment["SERVAL_TEST_DATABASE_URL"])
            // A loaded CI machine can queue 20 concurrent transactions past the 5 s production bound.
            return try await PostgresStore(url: try await freshDatabase(admin: url), timeout: .seconds(30))
        }
    }

    public static func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("serval-store-\(UUID().uuidString)")
    }

    /// Creates an empty database on the server `admin` points at and returns its URL.
    public static func freshDatabase(admin: String) async throws -> String {
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let store = try await PostgresStore(url: admin)
        try await store.createDatabase(named: name)
        await store.close()
        var components = try require(URLComponents(string: admin))
        components.path = "/" + name
        return try require(components.string)
    }
}

private func require<T>(_ value: T?) throws -> T {
    guard let value else { throw StoreError(.invalidConfiguration, "missing test configuration") }
    return value
}
