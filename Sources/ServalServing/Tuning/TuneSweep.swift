import Foundation

/// One configuration `serval tune` tries: how many instances of the model run at once, the intra-op threads each
/// uses, and how the batcher forms batches (Triton's `instance_group`, `max_batch_size`, `max_queue_delay_us`).
public struct TuneCandidate: Sendable, Hashable, Codable {
    public var instanceCount: Int
    public var threadsPerInstance: Int
    /// 0: no batching (every request runs alone).
    public var maxBatchSize: Int
    public var maxQueueDelayUs: Int

    public init(instanceCount: Int, threadsPerInstance: Int, maxBatchSize: Int, maxQueueDelayUs: Int) {
        self.instanceCount = instanceCount
        self.threadsPerInstance = threadsPerInstance
        self.maxBatchSize = maxBatchSize
        self.maxQueueDelayUs = maxQueueDelayUs
    }

    enum CodingKeys: String, CodingKey {
        case instanceCount = "instance_count", threadsPerInstance = "threads_per_instance", maxBatchSize = "max_batch_size"
        case maxQueueDelayUs = "max_queue_delay_us"
    }

    /// `base` (the model's own config.yaml) with this candidate's fields set.
    public func applied(to base: ModelConfig) -> ModelConfig {
        var config = base
        config.instanceCount = instanceCount
        config.threadsPerInstance = threadsPerInstance
        config.maxBatchSize = maxBatchSize
        var batching = base.dynamicBatching ?? ModelConfig.DynamicBatching()
        batching.maxQueueDelayUs = maxQueueDelayUs
        config.dynamicBatching = batching
        return config
    }

    /// The fields as a `config.yaml` block, ready to paste.
    public var yaml: String {
        """
        instance_count: \(instanceCount)
        threads_per_instance: \(threadsPerInstance)
        max_batch_size: \(maxBatchSize)
        dynamic_batching:
          max_queue_delay_us: \(maxQueueDelayUs)
        """
    }

    /// Short form for tables: `2x1 batch 32 delay 500us`.
    public var label: String { "\(instanceCount)x\(threadsPerInstance) batch \(maxBatchSize) delay \(maxQueueDelayUs)us" }
}

/// The configurations `serval tune` sweeps: instances × threads within the CPU budget (powers of two, never more
/// threads in all than CPUs), each with the batch sizes and queue delays worth trying for the model.
public enum TuneSweep {
    public static func candidates(cpus: Int, batchable: Bool, quick: Bool) -> [TuneCandidate] {
        let cpus = max(1, cpus)
        let powers = Array(sequence(first: 1, next: { $0 * 2 <= cpus ? $0 * 2 : nil }))
        var layouts: [(instances: Int, threads: Int)] = []
        for instances in powers {
            for threads in powers where instances * threads <= cpus {
                // Quick: only the layouts that use every CPU, as one wide instance and as many narrow ones.
                if quick, instances * threads != powers.last! || (instances != 1 && threads != 1) { continue }
                layouts.append((instances, threads))
            }
        }
        let batchSizes = batchable ? (quick ? [0, 32] : [0, 8, 32, 64]) : [0]
        let delays = quick ? [0] : [0, 200, 1000]
        var result: [TuneCandidate] = []
        for layout in layouts {
            for size in batchSizes {
                for delay in size == 0 ? [0] : delays {
                    result.append(TuneCandidate(instanceCount: layout.instances, threadsPerInstance: layout.threads, maxBatchSize: size, maxQueueDelayUs: delay))
                }
            }
        }
        return result
    }
}

/// What one candidate did at one client concurrency.
public struct TuneMeasurement: Sendable, Equatable {
    public let candidate: TuneCandidate
    public let concurrency: Int
    public let throughput: Double
    public let p50Milliseconds: Double
    public let p99Milliseconds: Double
    /// CPU time (user + system) the process spent per answered request, in microseconds.
    public let cpuMicrosecondsPerRequest: Double

    public init(candidate: TuneCandidate, concurrency: Int, throughput: Double, p50Milliseconds: Double, p99Milliseconds: Double, cpuMicrosecondsPerRequest: Double) {
        self.candidate = candidate
        self.concurrency = concurrency
        self.throughput = throughput
        self.p50Milliseconds = p50Milliseconds
        self.p99Milliseconds = p99Milliseconds
        self.cpuMicrosecondsPerRequest = cpuMicrosecondsPerRequest
    }
}

/// The configuration `serval tune` recommends and the capacity an autoscaler should plan per replica.
public struct TuneRecommendation: Sendable, Equatable {
    public let measurement: TuneMeasurement
    /// False when no configuration kept p99 within the budget: then this is the one with the lowest p99.
    public let withinBudget: Bool
    /// Requests per second one replica should be planned for: the recommended throughput less 20% headroom, so
    /// a replica at its HPA target still meets the latency budget while a new one starts.
    public var perReplicaCapacity: Double { (measurement.throughput * 0.8).rounded(.down) }

    /// The highest throughput whose p99 is within `budgetMilliseconds` (ties: the lower p99, then fewer instances,
    /// then the smaller batch); nil for no measurements. With a `baseline` (the model's current configuration), another
    /// configuration is recommended only when it beats the baseline's best within budget by more than `margin`
    /// (default 5%): short measurements are noisy, and a change that is not clearly better is not worth making.
    public static func choose(
        _ measurements: [TuneMeasurement], budgetMilliseconds: Double, baseline: TuneCandidate? = nil, margin: Double = 0.05
    ) -> TuneRecommendation? {
        let within = measurements.filter { $0.p99Milliseconds <= budgetMilliseconds }
        if let best = within.max(by: { order($0, $1) }) {
            if let baseline, best.candidate != baseline,
               let current = within.filter({ $0.candidate == baseline }).max(by: { order($0, $1) }),
               best.throughput <= current.throughput * (1 + margin) {
                return TuneRecommendation(measurement: current, withinBudget: true)
            }
            return TuneRecommendation(measurement: best, withinBudget: true)
        }
        guard let fastest = measurements.min(by: { ($0.p99Milliseconds, -$0.throughput) < ($1.p99Milliseconds, -$1.throughput) }) else { return nil }
        return TuneRecommendation(measurement: fastest, withinBudget: false)
    }

    /// True when `a` ranks below `b`.
    private static func order(_ a: TuneMeasurement, _ b: TuneMeasurement) -> Bool {
        if a.throughput != b.throughput { return a.throughput < b.throughput }
        if a.p99Milliseconds != b.p99Milliseconds { return a.p99Milliseconds > b.p99Milliseconds }
        if a.candidate.instanceCount != b.candidate.instanceCount { return a.candidate.instanceCount > b.candidate.instanceCount }
        return a.candidate.maxBatchSize > b.candidate.maxBatchSize
    }
}
