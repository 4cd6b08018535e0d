import Synchronization

/// Monotonic seconds that only move when a test moves them: the clock injected into managers, limiters and
/// guards, so tests never sleep.
public final class ManualClock: Sendable {
    private let now: Mutex<Double>

    public init(_ start: Double = 0) { now = Mutex(start) }

    public func read() -> Double { now.withLock { $0 } }
    public func set(_ value: Double) { now.withLock { $0 = value } }
    public func advance(_ seconds: Double) { now.withLock { $0 += seconds } }
}
