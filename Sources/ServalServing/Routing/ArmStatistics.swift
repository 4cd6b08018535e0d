import Synchronization

/// What the guard and `GET .../traffic` read for one arm over a window.
public struct ArmFigures: Sendable, Equatable {
    public var requests = 0
    public var errors = 0
    public var p50Milliseconds = 0.0
    public var p99Milliseconds = 0.0

    public init(requests: Int = 0, errors: Int = 0, p50Milliseconds: Double = 0, p99Milliseconds: Double = 0) {
        self.requests = requests
        self.errors = errors
        self.p50Milliseconds = p50Milliseconds
        self.p99Milliseconds = p99Milliseconds
    }

    public var errorRate: Double { requests == 0 ? 0 : Double(errors) / Double(requests) }
}

/// Recent outcomes per model and arm: a bounded ring of (time, latency, failed) per arm, so figures over the
/// guard's window cost one lock and one sort of at most `capacity` latencies, and recording costs one lock.
public final class TrafficStatistics: Sendable {
    final class Ring: Sendable {
        struct Event {
            var time: Double
            var milliseconds: Double
            var failed: Bool
        }

        private let events: Mutex<(buffer: [Event], next: Int)>
        private let capacity: Int

        init(capacity: Int) {
            self.capacity = capacity
            events = Mutex(([], 0))
        }

        func record(_ event: Event) {
            events.withLock { state in
                if state.buffer.count < capacity {
                    state.buffer.append(event)
                } else {
                    state.buffer[state.next] = event
                    state.next = (state.next + 1) % capacity
                }
            }
        }

        func figures(since start: Double) -> ArmFigures {
            var latencies: [Double] = []
            var errors = 0
            events.withLock { state in
                latencies.reserveCapacity(state.buffer.count)
                for event in state.buffer where event.time >= start {
                    latencies.append(event.milliseconds)
                    if event.failed { errors += 1 }
                }
            }
            guard !latencies.isEmpty else { return ArmFigures() }
            latencies.sort()
            // Nearest-rank quantile: the smallest latency with at least q of the requests at or below it.
            func quantile(_ q: Double) -> Double {
                let rank = Int((q * Double(latencies.count)).rounded(.up))
                return latencies[min(max(rank, 1), latencies.count) - 1]
            }
            return ArmFigures(requests: latencies.count, errors: errors, p50Milliseconds: quantile(0.5), p99Milliseconds: quantile(0.99))
        }
    }

    /// A model's arm, hashed from the two strings as they are: no key string built per request.
    struct ArmKey: Hashable {
        let model: String
        let arm: String
    }

    private let rings = Mutex<[ArmKey: Ring]>([:])
    private let capacity: Int

    public init(capacity: Int = 20_000) { self.capacity = capacity }

    private func ring(_ model: String, _ arm: String) -> Ring {
        rings.withLock { rings in
            let key = ArmKey(model: model, arm: arm)
            if let ring = rings[key] { return ring }
            let ring = Ring(capacity: capacity)
            rings[key] = ring
            return ring
        }
    }

    /// Records one request's outcome at `time` (seconds on the router's clock).
    public func record(model: String, arm: String, time: Double, milliseconds: Double, failed: Bool) {
        ring(model, arm).record(.init(time: time, milliseconds: milliseconds, failed: failed))
    }

    /// Figures of the requests recorded at or after `since`.
    public func figures(model: String, arm: String, since: Double) -> ArmFigures {
        ring(model, arm).figures(since: since)
    }
}
