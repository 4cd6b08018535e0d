import Testing
@testable import ServalServing

/// `serval tune`'s sweep and recommendation, on injected figures.
struct TuneTests {
    static func candidate(_ instances: Int, _ threads: Int, batch: Int = 0, delay: Int = 0) -> TuneCandidate {
        TuneCandidate(instanceCount: instances, threadsPerInstance: threads, maxBatchSize: batch, maxQueueDelayUs: delay)
    }

    static func measured(_ candidate: TuneCandidate, rps: Double, p99: Double, concurrency: Int = 16) -> TuneMeasurement {
        TuneMeasurement(candidate: candidate, concurrency: concurrency, throughput: rps, p50Milliseconds: p99 / 2, p99Milliseconds: p99, cpuMicrosecondsPerRequest: 100)
    }

    @Test func theSweepStaysWithinTheCPUBudget() {
        let full = TuneSweep.candidates(cpus: 4, batchable: true, quick: false)
        #expect(full.allSatisfy { $0.instanceCount * $0.threadsPerInstance <= 4 })
        let layouts = Set(full.map { [$0.instanceCount, $0.threadsPerInstance] })
        #expect(layouts == [[1, 1], [1, 2], [1, 4], [2, 1], [2, 2], [4, 1]])
        // Per layout: no batching, plus three batch sizes × three queue delays.
        #expect(full.count == layouts.count * (1 + 3 * 3))
        #expect(Set(full).count == full.count)
        #expect(full.filter { $0.maxBatchSize == 0 }.allSatisfy { $0.maxQueueDelayUs == 0 })
    }

    @Test func aModelThatCannotBatchIsSweptWithoutBatching() {
        let sweep = TuneSweep.candidates(cpus: 2, batchable: false, quick: false)
        #expect(sweep.map { [$0.instanceCount, $0.threadsPerInstance, $0.maxBatchSize] } == [[1, 1, 0], [1, 2, 0], [2, 1, 0]])
    }

    @Test func theQuickSweepUsesEveryCPUInTwoLayouts() {
        let quick = TuneSweep.candidates(cpus: 2, batchable: true, quick: true)
        #expect(quick == [Self.candidate(1, 2), Self.candidate(1, 2, batch: 32), Self.candidate(2, 1), Self.candidate(2, 1, batch: 32)])
        // An odd budget plans for the largest power of two within it.
        #expect(Set(TuneSweep.candidates(cpus: 3, batchable: false, quick: true).map(\.instanceCount)) == [1, 2])
        #expect(TuneSweep.candidates(cpus: 1, batchable: false, quick: true) == [Self.candidate(1, 1)])
    }

    @Test func theRecommendationIsTheFastestWithinTheLatencyBudget() {
        let measurements = [
            Self.measured(Self.candidate(1, 2), rps: 900, p99: 4),
            Self.measured(Self.candidate(2, 1, batch: 32), rps: 2000, p99: 12),  // fastest, but over budget
            Self.measured(Self.candidate(2, 1, batch: 8), rps: 1500, p99: 9),
        ]
        let chosen = TuneRecommendation.choose(measurements, budgetMilliseconds: 10)
        #expect(chosen?.measurement == measurements[2])
        #expect(chosen?.withinBudget == true)
        #expect(chosen?.perReplicaCapacity == 1200)
    }

    @Test func tiesGoToTheLowerP99ThenFewerInstances() {
        let a = Self.measured(Self.candidate(2, 1), rps: 1000, p99: 5)
        let b = Self.measured(Self.candidate(1, 2), rps: 1000, p99: 3)
        let c = Self.measured(Self.candidate(1, 2, batch: 8), rps: 1000, p99: 3)
        #expect(TuneRecommendation.choose([a, b], budgetMilliseconds: 10)?.measurement == b)
        #expect(TuneRecommendation.choose([c, b], budgetMilliseconds: 10)?.measurement == b)
        #expect(TuneRecommendation.choose([Self.measured(Self.candidate(2, 1), rps: 1000, p99: 3), b], budgetMilliseconds: 10)?.measurement == b)
    }

    @Test func theCurrentConfigurationStaysUnlessAnotherIsClearlyFaster() {
        let current = Self.candidate(1, 2, batch: 64)
        let slightlyFaster = [Self.measured(current, rps: 1000, p99: 2), Self.measured(Self.candidate(2, 1, batch: 8), rps: 1040, p99: 2)]
        #expect(TuneRecommendation.choose(slightlyFaster, budgetMilliseconds: 10, baseline: current)?.measurement.candidate == current)
        let clearlyFaster = [Self.measured(current, rps: 1000, p99: 2), Self.measured(Self.candidate(2, 1, batch: 8), rps: 1100, p99: 2)]
        #expect(TuneRecommendation.choose(clearlyFaster, budgetMilliseconds: 10, baseline: current)?.measurement.candidate == Self.candidate(2, 1, batch: 8))
        // A current configuration over the budget does not hold back one within it.
        let currentTooSlow = [Self.measured(current, rps: 1000, p99: 20), Self.measured(Self.candidate(2, 1), rps: 900, p99: 5)]
        #expect(TuneRecommendation.choose(currentTooSlow, budgetMilliseconds: 10, baseline: current)?.measurement.candidate == Self.candidate(2, 1))
    }

    @Test func withNothingWithinBudgetTheLowestP99IsRecommendedAndSaysSo() {
        let measurements = [Self.measured(Self.candidate(1, 2), rps: 900, p99: 40), Self.measured(Self.candidate(2, 1), rps: 800, p99: 30)]
        let chosen = TuneRecommendation.choose(measurements, budgetMilliseconds: 10)
        #expect(chosen?.measurement == measurements[1])
        #expect(chosen?.withinBudget == false)
        #expect(TuneRecommendation.choose([], budgetMilliseconds: 10) == nil)
    }

    @Test func aCandidateBecomesItsConfigYAML() throws {
        var base = ModelConfig()
        base.dynamicBatching = .init(preferredBatchSizes: [8])
        let config = Self.candidate(2, 1, batch: 32, delay: 200).applied(to: base)
        #expect(config.instanceCount == 2 && config.threadsPerInstance == 1 && config.maxBatchSize == 32)
        #expect(config.dynamicBatching == .init(maxQueueDelayUs: 200, preferredBatchSizes: [8]))
        let parsed = try ModelConfig.parse(Self.candidate(2, 1, batch: 32, delay: 200).yaml, file: "tune")
        #expect(parsed.instanceCount == 2 && parsed.threadsPerInstance == 1 && parsed.maxBatchSize == 32 && parsed.dynamicBatching?.maxQueueDelayUs == 200)
    }
}
