import CoreMetrics
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
    private let metrics: ModelMetrics

    public init(model: String = "", version: Int = 0) {
        metrics = ModelMetrics(model: model, version: version)
    }

    /// Requests queued or running, for the pending-requests gauge (the autoscaling signal).
    func setPending(_ count: Int) { metrics.pending.record(count) }

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
        metrics.rows.increment(by: size)
        metrics.executions.increment()
        metrics.batchSize.record(size)
        metrics.compute.recordNanoseconds(Int64(clamping: inputNs + inferNs + outputNs))
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
        if success {
            metrics.success.increment()
            metrics.queue.recordNanoseconds(Int64(clamping: queueNs))
            metrics.request.recordNanoseconds(Int64(clamping: totalNs))
        } else {
            metrics.failure(failure ?? "error").increment()
        }
    }
}

/// The Prometheus-facing counters of one model version (swift-metrics handles; names follow Prometheus
/// conventions: base units, `_total` counters, labels `model` and `version`).
struct ModelMetrics: Sendable {
    let dimensions: [(String, String)]
    let success: Counter
    let rows: Counter
    let executions: Counter
    let pending: Gauge
    let queue: Timer
    let compute: Timer
    let request: Timer
    let batchSize: Recorder

    init(model: String, version: Int) {
        dimensions = [("model", model), ("version", String(version))]
        success = Counter(label: "serval_inference_request_success_total", dimensions: dimensions)
        rows = Counter(label: "serval_inference_count_total", dimensions: dimensions)
        executions = Counter(label: "serval_inference_exec_count_total", dimensions: dimensions)
        pending = Gauge(label: "serval_inference_pending_requests", dimensions: dimensions)
        queue = Timer(label: "serval_inference_queue_duration_seconds", dimensions: dimensions)
        compute = Timer(label: "serval_inference_compute_duration_seconds", dimensions: dimensions)
        request = Timer(label: "serval_inference_request_duration_seconds", dimensions: dimensions)
        batchSize = Recorder(label: "serval_inference_batch_size", dimensions: dimensions)
    }

    func failure(_ reason: String) -> Counter {
        Counter(label: "serval_inference_request_failure_total", dimensions: dimensions + [("reason", reason)])
    }
}
