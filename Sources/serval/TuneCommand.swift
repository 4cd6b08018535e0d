import ArgumentParser
import Foundation
import ServalServing
import ServalTensor
import ServalWire

/// `serval tune`: right-sizes a model in the manner of Triton's Model Analyzer. Each configuration of the sweep
/// (instances × threads within the CPU budget × batch size × queue delay) is loaded in-process behind the real
/// batcher and driven by a closed-loop load generator at each concurrency; the best one within the latency
/// budget is printed as a `config.yaml` block with the per-replica capacity an autoscaler should plan for.
struct TuneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tune", abstract: "Sweep instance count, threads, batch size and queue delay for a model; recommend a config.yaml block.")

    @Option(name: .customLong("model-repository"), help: "The model repository.")
    var modelRepository: String

    @Option(help: "The model to tune.")
    var model: String

    @Option(help: "The version to tune (default: the highest on disk).")
    var version: Int?

    @Option(name: .customLong("latency-budget-ms"), help: "The p99 latency a recommended configuration must stay within.")
    var latencyBudgetMs = 10.0

    @Option(help: "CPUs to plan for (default: the budget this process may use: quota, affinity, cpuset).")
    var cpus: Int?

    @Option(help: "Comma-separated client concurrencies (default 1,4,16,64; --quick 1,16).")
    var concurrency: String?

    @Option(name: .customLong("duration-secs"), help: "Seconds of load per configuration and concurrency (default 5; --quick 1).")
    var durationSecs: Double?

    @Flag(help: "A short sweep (layouts using every CPU, batch 0 or 32, no queue delay) that finishes in under a minute.")
    var quick = false

    @Flag(help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        guard latencyBudgetMs > 0 else { throw ValidationError("--latency-budget-ms must be positive") }
        if let cpus, cpus < 1 { throw ValidationError("--cpus must be at least 1") }
        if let durationSecs, !(durationSecs > 0) { throw ValidationError("--duration-secs must be positive") }
    }

    /// A problem with what tune was asked to do, reported on one line.
    struct TuneError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    func concurrencies() throws -> [Int] {
        guard let concurrency else { return quick ? [1, 16] : [1, 4, 16, 64] }
        let values = concurrency.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw TuneError("--concurrency takes positive integers separated by commas, e.g. 1,4,16, got '\(concurrency)'")
        }
        return values.map { $0! }
    }

    func run() async throws {
        let loads = try concurrencies()
        let repository = ModelRepository(root: URL(fileURLWithPath: modelRepository))
        guard let entry = try repository.scan().first(where: { $0.name == model }) else {
            throw TuneError("no model '\(model)' in \(modelRepository)")
        }
        let base = try entry.config.get()
        guard let number = version ?? entry.versions.keys.max(), let file = entry.versions[number]?.url else {
            throw TuneError("model '\(model)' has no version \(version.map(String.init) ?? "folder") with a model.onnx")
        }
        let budget = cpus ?? CPUBudget.available()
        let seconds = durationSecs ?? (quick ? 1 : 5)
        // One load with the model's own configuration tells whether it can batch, and gives the request.
        let probe = try ServedModel(name: model, version: number, file: file, config: base)
        let batchable = !probe.inputs.isEmpty && (probe.inputs + probe.outputs).allSatisfy { $0.shape.first == -1 }
        let request = try Self.sampleRequest(for: probe)
        // The model's current configuration is always measured: tune recommends a change only when it is clearly better.
        let current = TuneCandidate(
            instanceCount: probe.config.instanceCount ?? 1, threadsPerInstance: probe.config.threadsPerInstance ?? 1,
            maxBatchSize: probe.config.maxBatchSize ?? 0, maxQueueDelayUs: probe.config.dynamicBatching?.maxQueueDelayUs ?? 0)
        var candidates = TuneSweep.candidates(cpus: budget, batchable: batchable, quick: quick)
        if !candidates.contains(current) { candidates.insert(current, at: 0) }
        if !json {
            print("tuning \(model) version \(number): \(candidates.count) configurations × concurrency \(loads.map(String.init).joined(separator: ",")), \(seconds) s each, \(budget) CPU(s), p99 budget \(latencyBudgetMs) ms")
            print(Self.row(["configuration", "concurrency", "req/s", "p50 ms", "p99 ms", "CPU µs/req"]))
        }
        var measurements: [TuneMeasurement] = []
        for candidate in candidates {
            // The probe already is the current configuration, loaded.
            let served = candidate == current ? probe : try ServedModel(name: model, version: number, file: file, config: candidate.applied(to: base))
            // What the server would really run: the thread count after the CPU budget's clamp.
            var actual = candidate
            actual.threadsPerInstance = served.config.threadsPerInstance ?? candidate.threadsPerInstance
            for clients in loads {
                let outcome = await ClosedLoopLoad.run(served, request: request, concurrency: clients, seconds: seconds)
                let measurement = TuneMeasurement(
                    candidate: actual, concurrency: clients, throughput: outcome.throughput, p50Milliseconds: outcome.percentile(0.5),
                    p99Milliseconds: outcome.percentile(0.99), cpuMicrosecondsPerRequest: outcome.requests > 0 ? outcome.cpuSeconds * 1e6 / Double(outcome.requests) : 0)
                measurements.append(measurement)
                if !json {
                    print(Self.row([actual.label, String(clients), String(format: "%.0f", measurement.throughput), String(format: "%.3f", measurement.p50Milliseconds),
                                    String(format: "%.3f", measurement.p99Milliseconds), String(format: "%.0f", measurement.cpuMicrosecondsPerRequest)]))
                }
            }
        }
        guard let recommendation = TuneRecommendation.choose(measurements, budgetMilliseconds: latencyBudgetMs, baseline: current) else {
            throw TuneError("no measurements were taken")
        }
        if json {
            print(Self.json(measurements, recommendation))
            return
        }
        let best = recommendation.measurement
        print("")
        if recommendation.withinBudget {
            let note = best.candidate == current ? " (the current configuration: nothing measured was more than 5% faster)" : ""
            print("recommended\(note): \(best.candidate.label) at concurrency \(best.concurrency): \(String(format: "%.0f", best.throughput)) req/s, p99 \(String(format: "%.3f", best.p99Milliseconds)) ms (budget \(latencyBudgetMs) ms)")
        } else {
            print("no configuration kept p99 within \(latencyBudgetMs) ms; the lowest p99 is \(best.candidate.label) at concurrency \(best.concurrency): \(String(format: "%.3f", best.p99Milliseconds)) ms")
        }
        print("per-replica capacity (80% of that throughput, for an HPA target): \(String(format: "%.0f", recommendation.perReplicaCapacity)) req/s")
        print("  (the model's own, measured in-process: a replica serving over HTTP/JSON or gRPC also spends CPU decoding each request,")
        print("   so for small models the protocol, not the model, sets a replica's capacity; bench/RESULTS.md \"Serving\" measures both)")
        print("\n# \(model)/config.yaml\n" + best.candidate.yaml)
    }

    static func row(_ cells: [String]) -> String {
        let widths = [34, 12, 10, 10, 10, 11]
        return zip(cells, widths).map { $0.padding(toLength: max($1, $0.count), withPad: " ", startingAt: 0) }.joined(separator: " ")
    }

    /// One row per input (batch 1, other variable dimensions 1), random data as `serval bench` makes it.
    static func sampleRequest(for model: ServedModel) throws -> InferenceRequest {
        var generator = SplitMix(seed: 7)
        var inputs: [String: Tensor] = [:]
        for input in model.inputs {
            guard let dtype = DType(kserveName: input.datatype) else { throw TuneError("input '\(input.name)' has datatype \(input.datatype), which tune cannot generate") }
            inputs[input.name] = try sampleTensor(dtype, shape: input.shape.map { $0 < 0 ? 1 : $0 }, &generator)
        }
        return InferenceRequest(inputs: inputs)
    }

    static func json(_ measurements: [TuneMeasurement], _ recommendation: TuneRecommendation) -> String {
        func config(_ candidate: TuneCandidate) -> String {
            "{\"instance_count\":\(candidate.instanceCount),\"threads_per_instance\":\(candidate.threadsPerInstance),\"max_batch_size\":\(candidate.maxBatchSize),\"max_queue_delay_us\":\(candidate.maxQueueDelayUs)}"
        }
        func number(_ value: Double) -> String { String(format: "%.3f", value) }
        let rows = measurements.map { m in
            "{\"config\":\(config(m.candidate)),\"concurrency\":\(m.concurrency),\"throughput_rps\":\(number(m.throughput)),\"p50_ms\":\(number(m.p50Milliseconds)),\"p99_ms\":\(number(m.p99Milliseconds)),\"cpu_us_per_request\":\(number(m.cpuMicrosecondsPerRequest))}"
        }
        let best = recommendation.measurement
        return "{\"configs\":[\(rows.joined(separator: ","))],\"recommendation\":{\"config\":\(config(best.candidate)),\"concurrency\":\(best.concurrency),\"throughput_rps\":\(number(best.throughput)),\"p99_ms\":\(number(best.p99Milliseconds)),\"per_replica_capacity_rps\":\(number(recommendation.perReplicaCapacity)),\"within_budget\":\(recommendation.withinBudget)}}"
    }
}
