import Foundation
import Synchronization

/// A token bucket's settings: `rate` tokens a second, up to `burst` saved.
public struct RateLimit: Sendable, Equatable {
    public let rate: Double
    public let burst: Double

    public init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// `200/s`, `12000/m`, `500000/h` or a bare number (per second).
    public static func parseRate(_ text: String) -> Double? {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let amount = Double(parts[0]), amount > 0, amount.isFinite else { return nil }
        guard parts.count == 2 else { return amount }
        switch parts[1] {
        case "s", "sec", "second": return amount
        case "m", "min", "minute": return amount / 60
        case "h", "hour": return amount / 3600
        default: return nil
        }
    }
}

/// One token bucket per principal (anonymous callers share one). Each request takes a token; a bucket refills at
/// its rate up to its burst. Refused requests learn how long until a token is back (`Retry-After`).
public final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: Double
    }

    private let buckets = Mutex<[String: Bucket]>([:])
    /// Monotonic seconds; tests inject their own.
    private let clock: @Sendable () -> Double

    public init(clock: @escaping @Sendable () -> Double) { self.clock = clock }

    /// nil when `principal` may go ahead (a token is taken), else the seconds until it may retry.
    public func admit(_ principal: String, _ limit: RateLimit) -> Double? {
        let now = clock()
        return buckets.withLock { buckets in
            var bucket = buckets[principal] ?? Bucket(tokens: limit.burst, updated: now)
            bucket.tokens = min(limit.burst, bucket.tokens + max(0, now - bucket.updated) * limit.rate)
            bucket.updated = now
            defer { buckets[principal] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return (1 - bucket.tokens) / limit.rate
        }
    }
}
