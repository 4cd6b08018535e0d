import Foundation
import ServalStore

/// Pipeline run records in the state store (SQLite or PostgreSQL), one row per run, the whole record as JSON
/// beside the columns the listings filter on.
public struct PipelineRunLog: Sendable {
    let store: any Store

    public init(store: any Store) async throws {
        self.store = store
        try await store.migrate(Self.migrations)
    }

    public static let migrations: [Migration] = [
        Migration(id: "pipeline-runs-1", statements: [
            """
            CREATE TABLE pipeline_runs (id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, model TEXT NOT NULL, trigger_name TEXT NOT NULL,
              status TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, record TEXT NOT NULL)
            """,
            "CREATE INDEX pipeline_runs_by_pipeline ON pipeline_runs (pipeline, started_at)",
        ])
    ]

    /// Inserts or replaces a run's record; returns the status it had before (nil for a new run).
    @discardableResult
    public func save(_ run: PipelineRunRecord) async throws -> PipelineRunRecord.Status? {
        let text = try run.json()
        return try await store.transaction { connection in
            let previous = try await connection.queryOne("SELECT status FROM pipeline_runs WHERE id = ?", [.text(run.id)])
            if let previous {
                try await connection.execute(
                    "UPDATE pipeline_runs SET status = ?, ended_at = ?, record = ? WHERE id = ?",
                    [.text(run.status.rawValue), SQLValue(run.endedAt), .text(text), .text(run.id)])
                return previous["status"].string.flatMap(PipelineRunRecord.Status.init(rawValue:))
            }
            try await connection.execute(
                "INSERT INTO pipeline_runs (id, pipeline, model, trigger_name, status, started_at, ended_at, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [.text(run.id), .text(run.pipeline), .text(run.model), .text(run.trigger), .text(run.status.rawValue), .text(run.startedAt),
                 SQLValue(run.endedAt), .text(text)])
            return nil
        }
    }

    public func run(_ id: String) async throws -> PipelineRunRecord? {
        guard let row = try await store.query("SELECT record FROM pipeline_runs WHERE id = ?", [.text(id)]).first, let text = row["record"].string else { return nil }
        return try PipelineRunRecord.decode(Data(text.utf8))
    }

    /// A pipeline's runs, newest first.
    public func runs(pipeline: String, limit: Int = 100) async throws -> [PipelineRunRecord] {
        try await store.query("SELECT record FROM pipeline_runs WHERE pipeline = ? ORDER BY started_at DESC, id DESC LIMIT ?",
                              [.text(pipeline), .integer(Int64(limit))])
            .compactMap { row in try row["record"].string.map { try PipelineRunRecord.decode(Data($0.utf8)) } }
    }

    /// The names of every pipeline with a recorded run.
    public func pipelines() async throws -> [String] {
        try await store.query("SELECT DISTINCT pipeline FROM pipeline_runs ORDER BY pipeline").compactMap { $0["pipeline"].string }
    }

    /// Runs still marked running (after a restart: runs whose process died with the old server).
    public func unfinished() async throws -> [PipelineRunRecord] {
        try await store.query("SELECT record FROM pipeline_runs WHERE status = ?", [.text(PipelineRunRecord.Status.running.rawValue)])
            .compactMap { row in try row["record"].string.map { try PipelineRunRecord.decode(Data($0.utf8)) } }
    }
}
