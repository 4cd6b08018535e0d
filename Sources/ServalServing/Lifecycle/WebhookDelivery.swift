import Crypto
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Metrics
import ServalRegistry

/// Sends the registry's queued events and async jobs' callbacks (which add `Serval-Job-Id`): each POST carries the event JSON, `Serval-Event-Id`, `Serval-Timestamp`
/// and `Serval-Signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`. A receiver that fails (or does not
/// answer) is retried with exponential backoff capped at 60 s, or after its `Retry-After`. Deliveries are claimed
/// with a lease, so replicas sharing a store send each one once.
public struct WebhookDelivery: Sendable {
    /// Sends one request; returns the status and the `Retry-After` header. Tests inject their own.
    public typealias Sender = @Sendable (URLRequest) async throws -> (status: Int, retryAfter: String?)

    let registry: Registry
    let send: Sender
    let logger: Logger
    let now: @Sendable () -> Double

    public init(registry: Registry, logger: Logger, now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }, send: Sender? = nil) {
        self.registry = registry
        self.logger = logger
        self.now = now
        self.send = send ?? Self.urlSession
    }

    static let urlSession: Sender = { request in
        let (_, response) = try await URLSession.shared.data(for: request)
        let http = response as? HTTPURLResponse
        return (http?.statusCode ?? 0, http?.value(forHTTPHeaderField: "Retry-After"))
    }

    /// One pass: sends every due delivery once. Returns how many were delivered.
    @discardableResult
    public func deliverDue() async throws -> Int {
        let start = now()
        var delivered = 0
        for delivery in try await registry.claimDueDeliveries(now: start, lease: 30) {
            let secret = delivery.secret
            let timestamp = String(Int(now()))
            guard let url = URL(string: delivery.url) else {
                try await registry.recordAttempt(delivery.id, status: nil, error: "not a URL", delivered: false, nextAttemptAt: .infinity)
                continue
            }
            var request = URLRequest(url: url, timeoutInterval: 10)
            request.httpMethod = "POST"
            request.httpBody = Data(delivery.body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.setValue(delivery.eventId, forHTTPHeaderField: "Serval-Event-Id")
            let isJobCallback = delivery.event.hasPrefix("job.")
            if isJobCallback { request.setValue(delivery.eventId, forHTTPHeaderField: "Serval-Job-Id") }
            request.setValue(timestamp, forHTTPHeaderField: "Serval-Timestamp")
            if !secret.isEmpty {
                request.setValue(Self.signature(secret: secret, id: delivery.eventId, timestamp: timestamp, body: delivery.body), forHTTPHeaderField: "Serval-Signature")
            }
            let attempt = delivery.attempts + 1
            do {
                let (status, retryAfter) = try await send(request)
                if (200..<300).contains(status) {
                    try await registry.recordAttempt(delivery.id, status: status, error: nil, delivered: true, nextAttemptAt: now())
                    delivered += 1
                    if isJobCallback { Counter(label: "serval_job_callbacks_total", dimensions: [("outcome", "delivered")]).increment() }
                } else {
                    let wait = Self.retryDelay(attempt: attempt, retryAfter: retryAfter, now: now())
                    try await registry.recordAttempt(delivery.id, status: status, error: "HTTP \(status)", delivered: false, nextAttemptAt: now() + wait)
                    if isJobCallback { Counter(label: "serval_job_callbacks_total", dimensions: [("outcome", "failed")]).increment() }
                    logger.warning("webhook refused; will retry", metadata: ["url": "\(delivery.url)", "status": "\(status)", "retry_in_s": "\(wait)"])
                }
            } catch {
                let wait = Self.retryDelay(attempt: attempt, retryAfter: nil, now: now())
                try await registry.recordAttempt(delivery.id, status: nil, error: "\(error.localizedDescription)", delivered: false, nextAttemptAt: now() + wait)
                if isJobCallback { Counter(label: "serval_job_callbacks_total", dimensions: [("outcome", "failed")]).increment() }
                logger.warning("webhook unreachable; will retry", metadata: ["url": "\(delivery.url)", "error": "\(error.localizedDescription)", "retry_in_s": "\(wait)"])
            }
        }
        return delivered
    }

    /// `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the webhook's secret.
    public static func signature(secret: String, id: String, timestamp: String, body: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(id).\(timestamp).\(body)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return "v1," + Data(mac).base64EncodedString()
    }

    /// Seconds until the next attempt: the receiver's `Retry-After` (seconds or an HTTP date) when it sent one,
    /// else 1, 2, 4, ... capped at 60.
    public static func retryDelay(attempt: Int, retryAfter: String?, now: Double) -> Double {
        if let retryAfter {
            if let seconds = Double(retryAfter.trimmingCharacters(in: .whitespaces)), seconds >= 0 { return seconds }
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
            if let date = formatter.date(from: retryAfter) { return max(0, date.timeIntervalSince1970 - now) }
        }
        return min(60, pow(2, Double(max(attempt - 1, 0))))
    }
}
