import ArgumentParser
import Foundation
import ServalEngine
import ServalONNX
import ServalTensor

/// `serval bench MODEL.onnx --batch 1,8,64 --threads N`: latency per batch size, plus peak memory.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure inference latency (median, p90) per batch size and peak RSS.")

    @Argument(help: "Path to an .onnx file.")
    var model: String

    @Option(name: .long, help: "Comma-separated batch sizes (replace the first dimension of every input).")
    var batch: String = "1"

    @Option(name: .long, help: "NAME=PATH inputs (.npy/.pb/.json) to use instead of random data; the batch is their first dimension.")
    var input: [String] = []

    @Option(name: .long, help: "Intra-op threads.")
    var threads = 1

    @Option(name: .long, help: "Minimum measuring time per batch size, in seconds.")
    var seconds = 1.0

    @Option(name: .long, help: "Warm-up runs per batch size.")
    var warmup = 3

    @Flag(name: .long, help: "Print one JSON object per batch size.")
    var json = false

    @Flag(name: .long, help: "After timing, print the time spent per op type over the measured runs.")
    var profile = false

    func run() throws {
        let onnx = try ONNXModel(contentsOf: URL(fileURLWithPath: model))
        let session = try Session(graph: onnx.graph, options: SessionOptions(intraOpThreads: threads))
        var feedSets: [(Int, [String: Value])] = []
        if !input.isEmpty {
            let tensors = try TensorFiles.inputs(input)
            let rows = tensors.values.first?.shape.first ?? 1
            let feeds = tensors.mapValues { Value.tensor($0) }
            feedSets.append((rows, feeds))
        } else {
            let sizes = batch.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !sizes.isEmpty, sizes.allSatisfy({ $0 > 0 }) else { throw ValidationError("--batch takes positive integers, e.g. 1,8,64") }
            var generator = SplitMix(seed: 42)
            for size in sizes {
                var feeds: [String: Value] = [:]
                for input in onnx.graph.inputs { feeds[input.name] = .tensor(try sampleTensor(for: input, batch: size, &generator)) }
                feedSets.append((size, feeds))
            }
        }
        if !json { print("model \(model), threads \(threads), OpenBLAS core \(BLAS.coreName)") }
        for (rows, feeds) in feedSets {
            let samples = try latencies(session, feeds, seconds: seconds, warmup: warmup)
            if profile {
                let profiled = RunProfile()
                for _ in 0..<samples.count { _ = try session.run(feeds, profile: profiled) }
                let total = Double(profiled.entries.reduce(0) { $0 + $1.nanoseconds })
                print("profile, batch \(rows), \(samples.count) runs:")
                for entry in profiled.entries {
                    print(String(format: "  %-28@ %7d calls %10.3f ms/run %5.1f%%", entry.opType as NSString, entry.calls / samples.count,
                                 Double(entry.nanoseconds) / 1e6 / Double(samples.count), 100 * Double(entry.nanoseconds) / max(total, 1)))
                }
            }
            let median = samples[samples.count / 2], p90 = samples[min(samples.count - 1, samples.count * 9 / 10)]
            let peak = peakResidentMegabytes()
            if json {
                let line: [String: Any] = ["batch": rows, "median_ms": median, "p90_ms": p90, "runs": samples.count,
                                           "items_per_s": Double(rows) / (median / 1000), "peak_rss_mb": peak, "threads": threads]
                print(String(decoding: try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]), as: UTF8.self))
            } else {
                print(String(format: "batch %5d  median %9.3f ms  p90 %9.3f ms  %10.1f items/s  peak RSS %.1f MB  (%d runs)",
                             rows, median, p90, Double(rows) / (median / 1000), peak, samples.count))
            }
        }
    }
}

/// Deterministic sample data for an input: the first dimension set to `batch` when it is symbolic or 1, other unknown
/// dimensions 1; integers 0-9 (valid token ids and class indices), floats in [0, 1).
func sampleTensor(for input: ValueInfo, batch: Int, _ generator: inout SplitMix) throws -> Tensor {
    guard case .tensor(let dtype?, let dims) = input.type else { throw ValidationError("input \(input.name) is not a tensor of known type") }
    var shape = (dims ?? []).map { $0.value ?? 1 }
    if let first = dims?.first, first.value == nil || first.value == 1 { shape[0] = batch }
    return try sampleTensor(dtype, shape: shape, &generator)
}

/// Random data of `dtype` and `shape`: floats in [0, 1), integers 0-9, random booleans, "a" for strings.
func sampleTensor(_ dtype: DType, shape: [Int], _ generator: inout SplitMix) throws -> Tensor {
    let count = shape.reduce(1, *)
    switch dtype {
    case .bool: return Tensor(shape: shape, scalars: (0..<count).map { _ in generator.next() & 1 == 1 })
    case .string: return Tensor(shape: shape, strings: (0..<count).map { _ in "a" })
    case _ where dtype.isInteger: return try Tensor(shape: shape, scalars: (0..<count).map { _ in Int64(generator.next() % 10) }).converted(to: dtype)
    default: return try Tensor(shape: shape, scalars: (0..<count).map { _ in generator.nextUnit() }).converted(to: dtype)
    }
}

/// Run times in milliseconds, sorted, after `warmup` runs: at least 10 runs and at least `seconds` of them.
func latencies(_ session: Session, _ feeds: [String: Value], seconds: Double, warmup: Int) throws -> [Double] {
    for _ in 0..<warmup { _ = try session.run(feeds) }
    var samples: [Double] = []
    let start = DispatchTime.now().uptimeNanoseconds
    while samples.count < 10 || Double(DispatchTime.now().uptimeNanoseconds - start) < seconds * 1e9 {
        let begin = DispatchTime.now().uptimeNanoseconds
        _ = try session.run(feeds)
        samples.append(Double(DispatchTime.now().uptimeNanoseconds - begin) / 1e6)
    }
    return samples.sorted()
}

/// Peak resident set size of this process (VmHWM), in MiB.
func peakResidentMegabytes() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kilobytes = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
        return kilobytes / 1024
    }
    return 0
}

/// Small deterministic generator for benchmark inputs.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextUnit() -> Float { Float(next() >> 40) / Float(1 << 24) }
}
