import Foundation
import ServalStore

/// Where a job is in its life. `queued` and `running` are live; the others are final.
public enum JobStatus: String, Sendable, CaseIterable, Codable {
    case queued, running, succeeded, failed, cancelled, expired

    public var isFinal: Bool { self != .queued && self != .running }
}

/// One failed attempt, kept on the job (the dead letter keeps all of them).
public struct JobAttemptError: Sendable, Equatable, Codable {
    public var attempt: Int
    public var error: String
    /// Epoch seconds.
    public var at: Double
}

/// One async inference job as `GET /v2/jobs/{id}` shows it. Times are epoch seconds.
public struct Job: Sendable, Equatable {
    public var id: String
    public var model: String
    /// The version asked for, or (once it ran) the version that answered; nil while an unversioned job waits.
    public var version: Int?
    /// The version was part of the request path (`/versions/{v}/jobs`), so every attempt runs on it.
    public var pinnedVersion: Bool
    public var status: JobStatus
    public var priority: Int
    public var attempts: Int
    public var maxAttempts: Int
    public var createdAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?
    /// When the job may next be claimed (later than creation after a failed attempt's backoff).
    public var availableAt: Double
    public var deadlineAt: Double?
    public var leaseOwner: String?
    public var leaseExpiresAt: Double?
    public var error: String?
    /// The HTTP status the synchronous call would have answered with, for a failed job.
    public var errorStatus: Int?
    public var attemptErrors: [JobAttemptError]
    public var callbackURL: String?
    public var idempotencyKey: String?
    /// Who submitted it: the authenticated principal, or without `--auth-config` the `Serval-Actor` header.
    public var submittedBy: String? = nil
}

/// What a client submits: the v2 request body as it arrived (JSON, or a JSON header followed by binary tensors).
public struct JobSubmission: Sendable {
    public var model: String
    public var version: Int?
    public var body: [UInt8]
    /// `Inference-Header-Content-Length` for a binary body; nil for JSON.
    public var headerLength: Int?
    public var priority: Int
    public var maxAttempts: Int
    public var deadlineSeconds: Double?
    public var callbackURL: String?
    public var idempotencyKey: String?
    public var submittedBy: String?

    public init(
        model: String, version: Int?, body: [UInt8], headerLength: Int?, priority: Int = 0, maxAttempts: Int = 3, deadlineSeconds: Double? = nil,
        callbackURL: String? = nil, idempotencyKey: String? = nil, submittedBy: String? = nil
    ) {
        self.submittedBy = submittedBy
        self.model = model
        self.version = version
        self.body = body
        self.headerLength = headerLength
        self.priority = priority
        self.maxAttempts = maxAttempts
        self.deadlineSeconds = deadlineSeconds
        self.callbackURL = callbackURL
        self.idempotencyKey = idempotencyKey
    }
}

/// A finished job's answer, byte for byte as the synchronous call would have sent it.
public struct JobResult: Sendable, Equatable {
    public var body: [UInt8]
    /// Set when the body is a JSON header followed by binary outputs.
    public var headerLength: Int?

    public init(body: [UInt8], headerLength: Int?) {
        self.body = body
        self.headerLength = headerLength
    }
}

/// A job this worker holds a lease on. Completion is conditional on `attempt` and `worker` still owning it.
public struct JobClaim: Sendable {
    public let job: Job
    public let worker: String
    public let attempt: Int
    public let body: [UInt8]
    public let headerLength: Int?
}

/// Why a job call was refused; `status` is the HTTP status the routes answer with.
public struct JobError: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let message: String

    public init(status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { message }
}

/// RFC 3339 for job times.
enum JobTime {
    static func text(_ seconds: Double?) -> String? { seconds.map { StoreClock.timestamp(Date(timeIntervalSince1970: $0)) } }
}
