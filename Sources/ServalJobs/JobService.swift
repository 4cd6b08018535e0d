import Foundation
import ServalRegistry
import ServalServing
import ServalWire

/// What the jobs API does, for the HTTP routes: submission (validated against the model's signature, committed
/// before it answers, idempotent by key), reading, results, cancelling and listing. Frontends call this, never
/// the queue directly.
public struct JobService: Sendable {
    public let queue: JobQueue
    public let runner: JobRunner
    public let doorbell: Doorbell
    /// `--job-max-attempts`: attempts of a job that does not set `parameters.max_attempts`.
    public let defaultMaxAttempts: Int
    let clock: @Sendable () -> Double

    public init(
        queue: JobQueue, runner: JobRunner, doorbell: Doorbell = Doorbell(), defaultMaxAttempts: Int = 3,
        clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) {
        self.queue = queue
        self.runner = runner
        self.doorbell = doorbell
        self.defaultMaxAttempts = defaultMaxAttempts
        self.clock = clock
    }

    /// Largest page of `GET /v2/jobs`.
    public static let maxPageSize = 1000

    /// Validates the request, reads the job parameters from it, and commits the job (or finds the original of an
    /// idempotency key). `created` false: the key's earlier job, unchanged.
    public func submit(
        model: String, selector: ModelSelector, body: [UInt8], headerLength: Int?, idempotencyKey: String?, submittedBy: String? = nil
    ) async throws -> (job: Job, created: Bool) {
        let (request, _) = try runner.decode(body: body, headerLength: headerLength)
        let version: Int?
        switch selector {
        case .latest: version = nil
        case .version(let number): version = number
        case .label: version = try await runner.router.version(model, selector)
        }
        let route = try await runner.router.route(model, version.map { .version($0) } ?? .latest, routingKey: request.routingKey)
        try route.primary.validate(request)
        let parameters = try Self.parameters(request.parameters, defaultMaxAttempts: defaultMaxAttempts)
        if let key = idempotencyKey, key.isEmpty || key.utf8.count > 255 {
            throw ServingError.invalidArgument("header 'Idempotency-Key' must be 1 to 255 bytes")
        }
        let submission = JobSubmission(
            model: model, version: version, body: body, headerLength: headerLength, priority: parameters.priority, maxAttempts: parameters.maxAttempts,
            deadlineSeconds: parameters.deadline, callbackURL: parameters.callback, idempotencyKey: idempotencyKey, submittedBy: submittedBy)
        let outcome = try await queue.submit(submission, now: clock())
        if outcome.created { doorbell.ring() }
        return outcome
    }

    /// The job parameters of a v2 request: `callback_url`, `priority`, `deadline_secs`, `max_attempts`.
    static func parameters(
        _ values: [String: InferenceParameter], defaultMaxAttempts: Int
    ) throws -> (callback: String?, priority: Int, deadline: Double?, maxAttempts: Int) {
        func integer(_ name: String) throws -> Int? {
            switch values[name] {
            case nil: return nil
            case .int(let value)?: return Int(value)
            case .double(let value)? where value.rounded() == value && abs(value) < 1e15: return Int(value)
            default: throw ServingError.invalidArgument("parameters.\(name) must be an integer")
            }
        }
        var callback: String?
        switch values["callback_url"] {
        case nil: break
        case .string(let text)?:
            guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", url.host != nil else {
                throw ServingError.invalidArgument("parameters.callback_url must be an http or https URL, got '\(text)'")
            }
            callback = text
        default: throw ServingError.invalidArgument("parameters.callback_url must be a string (an http or https URL)")
        }
        let priority = try integer("priority") ?? 0
        var deadline: Double?
        switch values["deadline_secs"] {
        case nil: break
        case .int(let value)?: deadline = Double(value)
        case .double(let value)?: deadline = value
        default: throw ServingError.invalidArgument("parameters.deadline_secs must be a number of seconds")
        }
        if let deadline, !(deadline > 0) || !deadline.isFinite {
            throw ServingError.invalidArgument("parameters.deadline_secs must be a positive number of seconds, got \(deadline)")
        }
        let attempts = try integer("max_attempts") ?? defaultMaxAttempts
        guard (1...100).contains(attempts) else { throw ServingError.invalidArgument("parameters.max_attempts must be between 1 and 100, got \(attempts)") }
        return (callback, priority, deadline, attempts)
    }

    public func job(_ id: String) async throws -> (job: Job, callbacks: [WebhookOutbox.Delivery]) {
        guard let job = try await queue.job(id) else { throw ServingError.notFound("no job '\(id)'") }
        return (job, job.callbackURL == nil ? [] : try await queue.callbacks(id))
    }

    /// The stored answer of a succeeded job; the job's own error once it failed; 409 while it is not finished or
    /// when it was cancelled or expired.
    public func result(_ id: String) async throws -> JobResult {
        guard let job = try await queue.job(id) else { throw ServingError.notFound("no job '\(id)'") }
        switch job.status {
        case .succeeded:
            guard let result = try await queue.result(id) else { throw ServingError(.internalError, "job \(id) succeeded but its result is missing") }
            return result
        case .queued, .running:
            throw JobError(status: 409, "job \(id) is \(job.status.rawValue); its result is not ready yet")
        case .failed:
            throw JobError(status: job.errorStatus ?? 500, job.error ?? "job \(id) failed")
        case .cancelled, .expired:
            throw JobError(status: 409, "job \(id) is \(job.status.rawValue); it has no result")
        }
    }

    public func cancel(_ id: String) async throws -> Job {
        guard let job = try await queue.cancel(id, now: clock()) else { throw ServingError.notFound("no job '\(id)'") }
        return job
    }

    public func list(model: String?, status: String?, limit: Int?, after: String?) async throws -> (jobs: [Job], next: String?) {
        var wanted: JobStatus?
        if let status {
            guard let parsed = JobStatus(rawValue: status) else {
                throw ServingError.invalidArgument("query parameter 'status' must be one of \(JobStatus.allCases.map(\.rawValue).joined(separator: ", ")), got '\(status)'")
            }
            wanted = parsed
        }
        let size = limit ?? 100
        guard (1...Self.maxPageSize).contains(size) else {
            throw ServingError.invalidArgument("query parameter 'limit' must be between 1 and \(Self.maxPageSize), got \(size)")
        }
        return try await queue.list(model: model, status: wanted, limit: size, after: after)
    }
}
