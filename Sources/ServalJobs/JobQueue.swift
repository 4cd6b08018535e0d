import Crypto
import Foundation
import ServalRegistry
import ServalStore

/// The durable job queue on `ServalStore`. Every change of state is one conditional UPDATE: a claim takes a queued
/// job, and completion, failure, renewal and release hold only while the row still names this worker and attempt.
/// So a job's result is written once even when two workers race after a lease expired. Callbacks are queued in the
/// registry's webhook outbox in the same transaction as the final state they announce.
///
/// Every call takes `now` (epoch seconds) from the caller, so tests drive time.
public struct JobQueue: Sendable {
    public let store: any Store
    /// Signs callbacks (`--webhook-secret`); empty: unsigned.
    public let callbackSecret: String
    /// Seconds before attempt n+1 after a failure of attempt n: `retryBase` × 2^(n−1), capped at 60.
    public let retryBase: Double

    public init(store: any Store, callbackSecret: String = "", retryBase: Double = 1) async throws {
        self.store = store
        self.callbackSecret = callbackSecret
        self.retryBase = retryBase
        try await store.migrate(Registry.migrations + Self.migrations)
    }

    public static let migrations: [Migration] = [
        Migration(id: "jobs-1", statements: [
            """
            CREATE TABLE jobs (seq {{id}}, id TEXT NOT NULL UNIQUE, model TEXT NOT NULL, version BIGINT, pinned_version BIGINT NOT NULL,
              status TEXT NOT NULL, priority BIGINT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, max_attempts BIGINT NOT NULL,
              created_at DOUBLE PRECISION NOT NULL, started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION,
              available_at DOUBLE PRECISION NOT NULL, deadline_at DOUBLE PRECISION, lease_owner TEXT, lease_expires_at DOUBLE PRECISION,
              request_body {{blob}} NOT NULL, header_length BIGINT, result_body {{blob}}, result_header_length BIGINT,
              error TEXT, error_status BIGINT, attempt_errors TEXT NOT NULL, callback_url TEXT, idempotency_key TEXT UNIQUE, body_hash TEXT NOT NULL)
            """,
            "CREATE INDEX jobs_claim ON jobs (status, priority, seq)",
            "CREATE INDEX jobs_model ON jobs (model, seq)",
            "CREATE INDEX jobs_finished ON jobs (finished_at)",
        ]),
        // The principal that submitted the job (the security issue): the audit trail of the data plane's writes.
        Migration(id: "jobs-2-submitted-by", statements: ["ALTER TABLE jobs ADD COLUMN submitted_by TEXT"]),
    ]

    /// Every column but the payloads.
    static let columns = """
        seq, id, model, version, pinned_version, status, priority, attempts, max_attempts, created_at, started_at, finished_at, available_at,
        deadline_at, lease_owner, lease_expires_at, error, error_status, attempt_errors, callback_url, idempotency_key, body_hash, submitted_by
        """

    // MARK: - Submitting and reading

    /// Commits a new job, or, for an idempotency key already used with the same target and body, returns the
    /// original (`created` false). The same key with anything different is a 409.
    public func submit(_ submission: JobSubmission, now: Double) async throws -> (job: Job, created: Bool) {
        let hash = Self.hash(submission)
        let attempt: @Sendable (any StoreConnection) async throws -> (job: Job, created: Bool) = { connection in
            if let key = submission.idempotencyKey,
               let row = try await connection.queryOne("SELECT \(Self.columns) FROM jobs WHERE idempotency_key = ?", [.text(key)]) {
                let existing = Self.job(row)
                guard row["body_hash"].string == hash else {
                    throw JobError(status: 409, "Idempotency-Key '\(key)' was already used for job \(existing.id) with a different request")
                }
                return (existing, false)
            }
            let job = Job(
                id: Self.newID(), model: submission.model, version: submission.version, pinnedVersion: submission.version != nil, status: .queued,
                priority: submission.priority, attempts: 0, maxAttempts: submission.maxAttempts, createdAt: now, availableAt: now,
                deadlineAt: submission.deadlineSeconds.map { now + $0 }, attemptErrors: [], callbackURL: submission.callbackURL,
                idempotencyKey: submission.idempotencyKey, submittedBy: submission.submittedBy)
            try await connection.execute(
                """
                INSERT INTO jobs (id, model, version, pinned_version, status, priority, max_attempts, created_at, available_at, deadline_at,
                  request_body, header_length, attempt_errors, callback_url, idempotency_key, body_hash, submitted_by)
                VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, '[]', ?, ?, ?, ?)
                """,
                [.text(job.id), .text(job.model), SQLValue(job.version), .integer(job.pinnedVersion ? 1 : 0), .integer(Int64(job.priority)),
                 .integer(Int64(job.maxAttempts)), .real(now), .real(now), SQLValue(job.deadlineAt), .blob(submission.body),
                 SQLValue(submission.headerLength), SQLValue(job.callbackURL), SQLValue(job.idempotencyKey), .text(hash), SQLValue(job.submittedBy)])
            try await Self.notify(connection)
            return (job, true)
        }
        do {
            return try await store.transaction(attempt)
        } catch let error as StoreError where submission.idempotencyKey != nil && error.kind == .statement {
            // Another replica inserted the same key between this one's read and insert: the key's row decides.
            return try await store.transaction(attempt)
        }
    }

    public func job(_ id: String) async throws -> Job? {
        try await store.query("SELECT \(Self.columns) FROM jobs WHERE id = ?", [.text(id)]).first.map(Self.job)
    }

    /// The stored answer of a succeeded job.
    public func result(_ id: String) async throws -> JobResult? {
        guard let row = try await store.query("SELECT result_body, result_header_length FROM jobs WHERE id = ? AND status = 'succeeded'", [.text(id)]).first,
              let body = row["result_body"].bytes else { return nil }
        return JobResult(body: body, headerLength: row["result_header_length"].int)
    }

    /// The callback deliveries of a job, oldest first.
    public func callbacks(_ id: String) async throws -> [WebhookOutbox.Delivery] {
        try await store.transaction { try await WebhookOutbox.deliveries($0, eventId: id) }
    }

    /// Jobs newest first, filtered by model and status, `limit` (1...1000) a page; `next` is the id to pass as
    /// `after` for the following page, nil on the last.
    public func list(model: String?, status: JobStatus?, limit: Int, after: String?) async throws -> (jobs: [Job], next: String?) {
        try await store.transaction { connection in
            var conditions: [String] = []
            var arguments: [SQLValue] = []
            if let model {
                conditions.append("model = ?")
                arguments.append(.text(model))
            }
            if let status {
                conditions.append("status = ?")
                arguments.append(.text(status.rawValue))
            }
            if let after {
                guard let row = try await connection.queryOne("SELECT seq FROM jobs WHERE id = ?", [.text(after)]), let seq = row["seq"].int else {
                    throw JobError(status: 400, "query parameter 'after': no job '\(after)'")
                }
                conditions.append("seq < ?")
                arguments.append(.integer(Int64(seq)))
            }
            let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
            let rows = try await connection.query(
                "SELECT \(Self.columns) FROM jobs \(filter) ORDER BY seq DESC LIMIT ?", arguments + [.integer(Int64(limit + 1))])
            let jobs = rows.prefix(limit).map(Self.job)
            return (Array(jobs), rows.count > limit ? jobs.last?.id : nil)
        }
    }

    // MARK: - Cancelling

    /// Cancels a queued or running job (a running one's answer, when it comes, is discarded). A final job is a 409.
    public func cancel(_ id: String, now: Double) async throws -> Job? {
        let secret = callbackSecret
        return try await store.transaction { connection in
            guard let row = try await connection.queryOne("SELECT \(Self.columns) FROM jobs WHERE id = ?", [.text(id)]) else { return nil }
            let job = Self.job(row)
            guard !job.status.isFinal else { throw JobError(status: 409, "job \(id) is already \(job.status.rawValue)") }
            let updated = try await connection.query(
                """
                UPDATE jobs SET status = 'cancelled', finished_at = ?, lease_owner = NULL, lease_expires_at = NULL, error = 'cancelled by the client'
                WHERE id = ? AND status IN ('queued', 'running') RETURNING \(Self.columns)
                """, [.real(now), .text(id)])
            guard let cancelled = updated.first.map(Self.job) else { throw JobError(status: 409, "job \(id) ended while being cancelled") }
            try await Self.queueCallback(connection, cancelled, body: Self.errorBody(cancelled), secret: secret, now: now)
            return cancelled
        }
    }

    // MARK: - Workers

    /// Ends queued jobs past their deadline (`expired`) and takes back jobs whose lease ran out (or, with
    /// `abandoned`, every running job: what a restarted single-process server left running), each requeued with
    /// backoff and its attempt counted, or `failed` once out of attempts. Returns how many jobs changed.
    @discardableResult
    public func sweep(now: Double, abandoned: Bool = false) async throws -> Int {
        let secret = callbackSecret, retryBase = self.retryBase
        return try await store.transaction { connection in
            var changed = 0
            let expired = try await connection.query(
                """
                UPDATE jobs SET status = 'expired', finished_at = ?, error = 'the deadline passed before the job ran'
                WHERE status = 'queued' AND deadline_at IS NOT NULL AND deadline_at <= ? RETURNING \(Self.columns)
                """, [.real(now), .real(now)])
            for row in expired {
                let job = Self.job(row)
                try await Self.queueCallback(connection, job, body: Self.errorBody(job), secret: secret, now: now)
            }
            changed += expired.count
            let lapsed = abandoned
                ? try await connection.query("SELECT \(Self.columns) FROM jobs WHERE status = 'running'")
                : try await connection.query("SELECT \(Self.columns) FROM jobs WHERE status = 'running' AND lease_expires_at <= ?", [.real(now)])
            for row in lapsed {
                let job = Self.job(row)
                let reason = abandoned ? "the server stopped while the job ran" : "the worker's lease expired (worker \(job.leaseOwner ?? "?") stopped renewing it)"
                let outcome = try await Self.endAttempt(
                    connection, job, worker: job.leaseOwner, error: reason, status: 503, retryable: true, retryBase: retryBase, secret: secret, now: now)
                if outcome != nil { changed += 1 }
            }
            return changed
        }
    }

    /// Claims up to `limit` jobs, highest priority first, then oldest, for `lease` seconds. On PostgreSQL the
    /// candidates are locked with SKIP LOCKED, so concurrent workers take different jobs without waiting.
    public func claim(worker: String, now: Double, lease: Double, limit: Int = 1) async throws -> [JobClaim] {
        try await store.transaction { connection in
            let skipLocked = connection.dialect == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
            let candidates = try await connection.query(
                "SELECT id FROM jobs WHERE status = 'queued' AND available_at <= ? ORDER BY priority DESC, seq LIMIT ?\(skipLocked)",
                [.real(now), .integer(Int64(limit))])
            var claims: [JobClaim] = []
            for candidate in candidates {
                guard let id = candidate["id"].string else { continue }
                let rows = try await connection.query(
                    """
                    UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?,
                      started_at = COALESCE(started_at, ?) WHERE id = ? AND status = 'queued'
                    RETURNING \(Self.columns), request_body, header_length
                    """, [.text(worker), .real(now + lease), .real(now), .text(id)])
                guard let row = rows.first else { continue }
                let job = Self.job(row)
                claims.append(JobClaim(job: job, worker: worker, attempt: job.attempts, body: row["request_body"].bytes ?? [], headerLength: row["header_length"].int))
            }
            return claims
        }
    }

    /// Extends the lease; false when the job is no longer this worker's (cancelled, or taken back after expiry).
    public func renew(_ claim: JobClaim, now: Double, lease: Double) async throws -> Bool {
        try await !store.query(
            "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND status = 'running' AND lease_owner = ? AND attempts = ? RETURNING id",
            [.real(now + lease), .text(claim.job.id), .text(claim.worker), .integer(Int64(claim.attempt))]).isEmpty
    }

    /// Writes the answer, once: false when the job is no longer this worker's attempt (nothing is written then).
    /// `callbackBody` is the JSON the callback carries.
    public func complete(_ claim: JobClaim, version: Int, result: JobResult, callbackBody: String, now: Double) async throws -> Bool {
        let secret = callbackSecret
        return try await store.transaction { connection in
            let rows = try await connection.query(
                """
                UPDATE jobs SET status = 'succeeded', version = ?, result_body = ?, result_header_length = ?, finished_at = ?,
                  lease_owner = NULL, lease_expires_at = NULL, error = NULL
                WHERE id = ? AND status = 'running' AND lease_owner = ? AND attempts = ? RETURNING \(Self.columns)
                """,
                [.integer(Int64(version)), .blob(result.body), SQLValue(result.headerLength), .real(now), .text(claim.job.id), .text(claim.worker),
                 .integer(Int64(claim.attempt))])
            guard let row = rows.first else { return false }
            try await Self.queueCallback(connection, Self.job(row), body: callbackBody, secret: secret, now: now)
            return true
        }
    }

    /// Records a failed attempt: requeued after backoff while attempts remain and the error is `retryable`,
    /// else `failed` with `status` (the HTTP status the synchronous call would have answered). nil when the job was
    /// no longer this worker's.
    public func fail(_ claim: JobClaim, error: String, status: Int, retryable: Bool, now: Double) async throws -> JobStatus? {
        let secret = callbackSecret, retryBase = self.retryBase
        return try await store.transaction { connection in
            guard let row = try await connection.queryOne("SELECT \(Self.columns) FROM jobs WHERE id = ?", [.text(claim.job.id)]) else { return nil }
            let job = Self.job(row)
            guard job.status == .running, job.leaseOwner == claim.worker, job.attempts == claim.attempt else { return nil }
            return try await Self.endAttempt(
                connection, job, worker: claim.worker, error: error, status: status, retryable: retryable, retryBase: retryBase, secret: secret, now: now)
        }
    }

    /// Gives a job back without counting the attempt (a worker draining on SIGTERM before the job ran).
    public func release(_ claim: JobClaim, now: Double) async throws {
        try await store.transaction { connection in
            try await connection.execute(
                """
                UPDATE jobs SET status = 'queued', attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL, available_at = ?
                WHERE id = ? AND status = 'running' AND lease_owner = ? AND attempts = ?
                """, [.real(now), .text(claim.job.id), .text(claim.worker), .integer(Int64(claim.attempt))])
            try await Self.notify(connection)
        }
    }

    /// Deletes final jobs that finished at or before `cutoff`, with their payloads and callback log. Returns how many.
    @discardableResult
    public func purge(finishedBefore cutoff: Double, limit: Int = 1000) async throws -> Int {
        try await store.transaction { connection in
            let ids = try await connection.query(
                "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at <= ? ORDER BY finished_at LIMIT ?",
                [.real(cutoff), .integer(Int64(limit))]).compactMap { $0["id"].string }
            for id in ids { try await connection.execute("DELETE FROM jobs WHERE id = ?", [.text(id)]) }
            try await WebhookOutbox.remove(connection, eventIds: ids)
            return ids.count
        }
    }

    /// Jobs by model and status, with the oldest creation time in each group (for the queue gauges).
    public func census() async throws -> [(model: String, status: JobStatus, count: Int, oldestCreatedAt: Double)] {
        try await store.query("SELECT model, status, COUNT(*) AS n, MIN(created_at) AS oldest FROM jobs GROUP BY model, status").compactMap { row in
            guard let model = row["model"].string, let status = row["status"].string.flatMap(JobStatus.init(rawValue:)) else { return nil }
            return (model, status, row["n"].int ?? 0, row["oldest"].double ?? 0)
        }
    }

    // MARK: - Internals

    /// The channel workers on other processes LISTEN on (PostgreSQL); the notification is sent at commit.
    public static let channel = "serval_jobs"

    static func notify(_ connection: any StoreConnection) async throws {
        if connection.dialect == .postgres { try await connection.execute("NOTIFY \(channel)") }
    }

    /// Ends the current attempt of `job` with an error: back to the queue after backoff, or failed for good.
    private static func endAttempt(
        _ connection: any StoreConnection, _ job: Job, worker: String?, error: String, status: Int, retryable: Bool, retryBase: Double,
        secret: String, now: Double
    ) async throws -> JobStatus? {
        var errors = job.attemptErrors
        errors.append(JobAttemptError(attempt: job.attempts, error: error, at: now))
        let log = String(decoding: try JSONEncoder().encode(errors), as: UTF8.self)
        let again = retryable && job.attempts < job.maxAttempts
        let owner: SQLValue = worker.map { .text($0) } ?? .null
        let ownerCondition = worker == nil ? "lease_owner IS NULL" : "lease_owner = ?"
        let matchArguments: [SQLValue] = [.text(job.id)] + (worker == nil ? [] : [owner]) + [.integer(Int64(job.attempts))]
        if again {
            let backoff = min(60, retryBase * pow(2, Double(max(job.attempts - 1, 0))))
            let rows = try await connection.query(
                """
                UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, available_at = ?, attempt_errors = ?, error = ?
                WHERE id = ? AND status = 'running' AND \(ownerCondition) AND attempts = ? RETURNING id
                """, [.real(now + backoff), .text(log), .text(error)] + matchArguments)
            if !rows.isEmpty { try await notify(connection) }
            return rows.isEmpty ? nil : .queued
        }
        let rows = try await connection.query(
            """
            UPDATE jobs SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL, finished_at = ?, attempt_errors = ?, error = ?, error_status = ?
            WHERE id = ? AND status = 'running' AND \(ownerCondition) AND attempts = ? RETURNING \(columns)
            """, [.real(now), .text(log), .text(error), .integer(Int64(status))] + matchArguments)
        guard let row = rows.first else { return nil }
        let failed = Self.job(row)
        try await queueCallback(connection, failed, body: errorBody(failed), secret: secret, now: now)
        return .failed
    }

    private static func queueCallback(_ connection: any StoreConnection, _ job: Job, body: String, secret: String, now: Double) async throws {
        guard let url = job.callbackURL else { return }
        try await WebhookOutbox.enqueue(
            connection, eventId: job.id, event: "job.\(job.status.rawValue)", url: url, body: body, secret: secret,
            time: StoreClock.timestamp(Date(timeIntervalSince1970: now)), now: now)
    }

    /// The callback body of a job that ended without an answer.
    static func errorBody(_ job: Job) -> String {
        JobJSON.object([("id", .string(job.id)), ("model", .string(job.model)), ("status", .string(job.status.rawValue)),
                        ("error", .string(job.error ?? job.status.rawValue))])
    }

    static func job(_ row: SQLRow) -> Job {
        Job(
            id: row["id"].string ?? "", model: row["model"].string ?? "", version: row["version"].int, pinnedVersion: (row["pinned_version"].int ?? 0) != 0,
            status: row["status"].string.flatMap(JobStatus.init(rawValue:)) ?? .failed, priority: row["priority"].int ?? 0,
            attempts: row["attempts"].int ?? 0, maxAttempts: row["max_attempts"].int ?? 1, createdAt: row["created_at"].double ?? 0,
            startedAt: row["started_at"].double, finishedAt: row["finished_at"].double, availableAt: row["available_at"].double ?? 0,
            deadlineAt: row["deadline_at"].double, leaseOwner: row["lease_owner"].string, leaseExpiresAt: row["lease_expires_at"].double,
            error: row["error"].string, errorStatus: row["error_status"].int,
            attemptErrors: (try? JSONDecoder().decode([JobAttemptError].self, from: Data((row["attempt_errors"].string ?? "[]").utf8))) ?? [],
            callbackURL: row["callback_url"].string, idempotencyKey: row["idempotency_key"].string, submittedBy: row["submitted_by"].string)
    }

    /// SHA-256 over the target and the body, so a key reused for another model or payload is told apart.
    static func hash(_ submission: JobSubmission) -> String {
        var hasher = SHA256()
        hasher.update(data: Data("\(submission.model)\n\(submission.version.map(String.init) ?? "")\n\(submission.headerLength.map(String.init) ?? "")\n".utf8))
        hasher.update(data: submission.body)
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    static func newID() -> String { "job_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "") }
}
