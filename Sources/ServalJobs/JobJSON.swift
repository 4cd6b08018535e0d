import ServalRegistry
import ServalWire

/// The JSON views of jobs that the routes and callbacks send.
public enum JobJSON {
    enum Field {
        case string(String)
        case int(Int)
        case null
        /// Already-encoded JSON.
        case raw(String)
    }

    static func object(_ fields: [(String, Field)]) -> String {
        var json = JSONWriter()
        write(fields, into: &json)
        return json.text
    }

    private static func write(_ fields: [(String, Field)], into json: inout JSONWriter) {
        json.raw("{")
        for (index, (name, value)) in fields.enumerated() {
            if index > 0 { json.raw(",") }
            json.string(name)
            json.raw(":")
            switch value {
            case .string(let text): json.string(text)
            case .int(let number): json.raw(String(number))
            case .null: json.raw("null")
            case .raw(let text): json.raw(text)
            }
        }
        json.raw("}")
    }

    private static func text(_ value: String?) -> Field { value.map { .string($0) } ?? .null }
    private static func time(_ seconds: Double?) -> Field { text(JobTime.text(seconds)) }

    /// The answer to a submission: `{"id","model","version","status","created_at"}`.
    public static func accepted(_ job: Job) -> String {
        object([("id", .string(job.id)), ("model", .string(job.model)), ("version", text(job.version.map(String.init))),
                ("status", .string(job.status.rawValue)), ("created_at", time(job.createdAt))])
    }

    /// `GET /v2/jobs/{id}`: the job, its attempts' errors, and its callback with every delivery attempt.
    public static func job(_ job: Job, callbacks: [WebhookOutbox.Delivery] = []) -> String {
        var fields: [(String, Field)] = [
            ("id", .string(job.id)), ("model", .string(job.model)), ("version", text(job.version.map(String.init))),
            ("status", .string(job.status.rawValue)), ("priority", .int(job.priority)), ("attempts", .int(job.attempts)),
            ("max_attempts", .int(job.maxAttempts)), ("created_at", time(job.createdAt)), ("started_at", time(job.startedAt)),
            ("finished_at", time(job.finishedAt)), ("deadline_at", time(job.deadlineAt)), ("error", text(job.error)),
            ("submitted_by", text(job.submittedBy)),
        ]
        let attempts = job.attemptErrors.map { attempt in
            object([("attempt", .int(attempt.attempt)), ("error", .string(attempt.error)), ("at", time(attempt.at))])
        }
        fields.append(("attempt_errors", .raw("[" + attempts.joined(separator: ",") + "]")))
        if let url = job.callbackURL {
            let delivery = callbacks.last
            let log = (delivery?.attemptLog ?? []).map { attempt in
                object([("time", .string(attempt.time)), ("status", attempt.status.map { .int($0) } ?? .null), ("error", text(attempt.error))])
            }
            let state = delivery == nil ? "waiting" : delivery?.deliveredAt != nil ? "delivered" : "pending"
            fields.append(("callback", .raw(object([
                ("url", .string(url)), ("state", .string(state)), ("attempts", .int(delivery?.attempts ?? 0)),
                ("delivered_at", text(delivery?.deliveredAt)), ("last_status", delivery?.lastStatus.map { .int($0) } ?? .null),
                ("last_error", text(delivery?.lastError)), ("log", .raw("[" + log.joined(separator: ",") + "]")),
            ]))))
        } else {
            fields.append(("callback", .null))
        }
        return object(fields)
    }

    /// `GET /v2/jobs`: a page of jobs and the cursor of the next.
    public static func list(_ jobs: [Job], next: String?) -> String {
        object([("jobs", .raw("[" + jobs.map { job($0) }.joined(separator: ",") + "]")), ("next", text(next))])
    }
}
