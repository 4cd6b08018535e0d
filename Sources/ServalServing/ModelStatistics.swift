import Synchronization

/// Per model-version counters in the shape of Triton's statistics extension: requests, rows (inference count),
/// executions (batches), and cumulative queue/compute durations; batch sizes by count.
public final class ModelStatistics: Sendable {
    public struct Duration: Sendable, Equatable {
        public var count: Int = 0
        public var nanoseconds: UInt64 = 0
        public init() {}
        mutating func add(_ ns: UInt64, count: Int = 1) {
            self.count += count
            nanoseconds += ns
        }
    }

    public struct BatchStatistics: Sendable, Equatable {
        public var computeInput = Duration()
        public var computeInfer = Duration()
        public var computeOutput = Duration()
        public init() {}
    }

    public struct Snapshot: Sendable, Equatable {
        public var success = Duration()
        public var fail = Duration()
        public var queue = Duration()
        public var computeInput = Duration()
        public var computeInfer = Duration()
        public var computeOutput = Duration()
        public var inferenceCount = 0
        public var executionCount = 0
        public var lastInferenceMilliseconds: UInt64 = 0
        public var batches: [Int: BatchStatistics] = [:]
        /// Failures by reason (e.g. "rejected", "timeout", "error").
        public var failures: [String: Int] = [:]
    }

    private let state = Mutex(Snapshot())

    public init() {}

    public var snapshot: Snapshot { state.withLock { $0 } }

    func recordBatch(size: Int, requests: Int, inputNs: UInt64, inferNs: UInt64, outputNs: UInt64, nowMs: UInt64) {
        state.withLock { s in
            s.executionCount += 1
            s.inferenceCount += size
            s.computeInput.add(inputNs, count: requests)
            s.computeInfer.add(inferNs, count: requests)
            s.computeOutput.add(outputNs, count: requests)
            var batch = s.batches[size] ?? BatchStatistics()
            batch.computeInput.add(inputNs)
            batch.computeInfer.add(inferNs)
            batch.computeOutput.add(outputNs)
            s.batches[size] = batch
            s.lastInferenceMilliseconds = nowMs
        }
    }

    func recordRequest(success: Bool, totalNs: UInt64, queueNs: UInt64, failure: String? = nil) {
        state.withLock { s in
            if success {
                s.success.add(totalNs)
                s.queue.add(queueNs)
            } else {
                s.fail.add(totalNs)
                s.failures[failure ?? "error", default: 0] += 1
            }
        }
    }
}
