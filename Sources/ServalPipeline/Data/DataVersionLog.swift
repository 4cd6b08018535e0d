import Foundation
import ServalStore

/// The versions `serval data add` took, kept in the state store (SQLite or PostgreSQL) for `serval data log` and
/// for lineage: one row per new hash of a path.
public struct DataVersionLog: Sendable {
    let store: any Store

    public init(store: any Store) async throws {
        self.store = store
        try await store.migrate(Self.migrations)
    }

    public static let migrations: [Migration] = [
        Migration(id: "data-1", statements: [
            """
            CREATE TABLE data_versions (seq {{id}}, path TEXT NOT NULL, md5 TEXT NOT NULL, size BIGINT NOT NULL, nfiles BIGINT,
              row_count BIGINT, recorded_at TEXT NOT NULL, actor TEXT NOT NULL)
            """,
            "CREATE INDEX data_versions_path ON data_versions (path, seq)",
        ])
    ]

    /// Records a snapshot unless the path's newest version has the same hash; true when it was recorded.
    @discardableResult
    public func record(_ snapshot: DataSnapshot) async throws -> Bool {
        try await store.transaction { connection in
            let newest = try await connection.queryOne("SELECT md5 FROM data_versions WHERE path = ? ORDER BY seq DESC LIMIT 1", [.text(snapshot.path)])
            if newest?["md5"].string == snapshot.md5 { return false }
            try await connection.execute(
                "INSERT INTO data_versions (path, md5, size, nfiles, row_count, recorded_at, actor) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [.text(snapshot.path), .text(snapshot.md5), .integer(Int64(snapshot.size)), SQLValue(snapshot.nfiles), SQLValue(snapshot.rows),
                 .text(StoreClock.timestamp(snapshot.time)), .text(snapshot.actor)])
            return true
        }
    }

    /// A path's versions, newest first.
    public func versions(_ path: String) async throws -> [DataSnapshot] {
        try await store.query("SELECT path, md5, size, nfiles, row_count, recorded_at, actor FROM data_versions WHERE path = ? ORDER BY seq DESC", [.text(path)])
            .map { row in
                DataSnapshot(path: row["path"].string ?? path, md5: row["md5"].string ?? "", size: row["size"].int ?? 0, nfiles: row["nfiles"].int,
                             rows: row["row_count"].int, time: StoreClock.date(row["recorded_at"].string ?? "") ?? .distantPast,
                             actor: row["actor"].string ?? "")
            }
    }
}
