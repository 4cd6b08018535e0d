import Metrics
import ServalServing
import Synchronization

/// The monitor's side of the request path: decides whether a request is sampled and hands it to a bounded queue.
/// It never waits: when the queue is full the observation is dropped and counted
/// (`serval_payload_log_dropped_total`), and inference goes on.
public final class ObservationIntake: InferenceObserver, Sendable {
    private struct State {
        var rates: [String: Double] = [:]
        var queue: [Observation] = []
        var dropped: [String: Int] = [:]
    }

    private let state = Mutex(State())
    public let capacity: Int
    private let bell: AsyncStream<Void>.Continuation
    let rings: AsyncStream<Void>

    /// `capacity`: observations waiting at most before new ones are dropped.
    public init(capacity: Int = 4096) {
        self.capacity = capacity
        (rings, bell) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Which models are monitored and at what sample rate (the rest are not looked at).
    func setRates(_ rates: [String: Double]) { state.withLock { $0.rates = rates } }

    public func observe(_ observation: Observation) {
        let accepted: Bool? = state.withLock { state in
            guard let rate = state.rates[observation.model] else { return nil }
            if rate < 1 && Double.random(in: 0..<1) >= rate { return nil }
            guard state.queue.count < capacity else {
                state.dropped[observation.model, default: 0] += 1
                return false
            }
            state.queue.append(observation)
            return true
        }
        switch accepted {
        case true?: bell.yield()
        case false?: Counter(label: "serval_payload_log_dropped_total", dimensions: [("model", observation.model)]).increment()
        case nil: break
        }
    }

    /// Everything queued, oldest first.
    func drain() -> [Observation] {
        state.withLock { state in
            defer { state.queue.removeAll(keepingCapacity: true) }
            return state.queue
        }
    }

    /// Observations dropped so far, by model.
    public func dropped(_ model: String) -> Int { state.withLock { $0.dropped[model] ?? 0 } }
}
