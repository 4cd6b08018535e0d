import Metrics
import ServalServing
import Synchronization

/// The job metrics: queue gauges from the store's census (`serval_jobs{model,status}`,
/// `serval_job_queue_depth{model}`, `serval_job_oldest_queued_age_seconds{model}`), and per-attempt counters and
/// durations recorded by the workers.
final class JobMetrics: Sendable {
    static let shared = JobMetrics()

    private struct Gauges {
        var jobs = GaugeSet(label: "serval_jobs")
        var depth = GaugeSet(label: "serval_job_queue_depth")
        var oldest = GaugeSet(label: "serval_job_oldest_queued_age_seconds")
    }

    private let gauges = Mutex(Gauges())

    /// Reads the census and publishes the gauges (a model whose jobs are all purged drops to 0).
    func publish(_ queue: JobQueue, now: Double) async throws {
        let census = try await queue.census()
        var jobs: [[String]: Int] = [:]
        var depth: [[String]: Int] = [:]
        var oldest: [[String]: Int] = [:]
        for group in census {
            jobs[[group.model, group.status.rawValue]] = group.count
            // Every model with jobs has a depth and an age (0 with nothing queued), so the series exist for alerts.
            depth[[group.model], default: 0] += group.status == .queued ? group.count : 0
            oldest[[group.model], default: 0] += group.status == .queued ? Int(max(0, now - group.oldestCreatedAt)) : 0
        }
        gauges.withLock { gauges in
            gauges.jobs.publish(names: ["model", "status"], jobs)
            gauges.depth.publish(names: ["model"], depth)
            gauges.oldest.publish(names: ["model"], oldest)
        }
    }

    /// One attempt's outcome (succeeded, retried, failed, discarded, released) and how long it ran.
    func recordAttempt(model: String, outcome: String, seconds: Double) {
        Counter(label: "serval_job_attempts_total", dimensions: [("model", model), ("outcome", outcome)]).increment()
        Timer(label: "serval_job_duration_seconds", dimensions: [("model", model)], preferredDisplayUnit: .seconds).recordSeconds(seconds)
    }
}
