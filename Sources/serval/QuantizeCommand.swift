import ArgumentParser
import Foundation
import ServalEngine
import ServalONNX
import ServalTensor

/// `serval quantize IN.onnx OUT.onnx [--per-channel] [--calibration DIR]`: int8 weights for MatMul and Gemm
/// (dynamic), and for Conv (static, from calibration data), then a report of the size, speed and accuracy change
/// measured by running both models on the same inputs.
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a model to int8 (MatMul/Gemm dynamically, Conv statically with --calibration) and report size, speed and accuracy.",
        discussion: """
            The output uses standard ONNX operators (DynamicQuantizeLinear, MatMulInteger, QuantizeLinear, QLinearConv, \
            DequantizeLinear), so onnxruntime runs it too. The report compares the two models on --input files, on the \
            calibration data, or on generated inputs (integers 0-9, floats in [0, 1)).
            """)

    @Argument(help: "The float model (.onnx).")
    var input: String

    @Argument(help: "Where to write the quantized model (.onnx).")
    var output: String

    @Flag(name: .long, help: "One weight scale per output column instead of one per matrix (more accurate).")
    var perChannel = false

    @Option(name: .long, help: "A directory with NAME.npy for each model input (samples along the first dimension): Convs are then quantized statically, with activation ranges measured on this data.")
    var calibration: String?

    @Option(name: .long, help: "Weights with fewer elements stay float.")
    var minimumWeightElements = 256

    @Option(name: .customLong("input"), help: "NAME=PATH sample inputs (.npy/.pb/.json) for the accuracy and speed report.")
    var samples: [String] = []

    @Option(name: .long, help: "Intra-op threads for the speed comparison.")
    var threads = 1

    @Option(name: .long, help: "Measuring time per model for the speed comparison, in seconds (0 skips it).")
    var seconds = 2.0

    func run() throws {
        let original = try ONNXModel(contentsOf: URL(fileURLWithPath: input))
        var calibrationData: [String: Tensor]?
        if let calibration {
            calibrationData = try Dictionary(uniqueKeysWithValues: original.graph.inputs.map { input in
                let file = URL(fileURLWithPath: calibration).appendingPathComponent("\(input.name).npy").path
                guard FileManager.default.fileExists(atPath: file) else {
                    throw ValidationError("--calibration \(calibration) has no \(input.name).npy for model input '\(input.name)'")
                }
                return (input.name, try TensorFiles.read(file))
            })
        }
        let quantizer = ModelQuantizer(options: .init(perChannel: perChannel, minimumWeightElements: minimumWeightElements, calibration: calibrationData))
        let report = try quantizer.quantize(contentsOf: URL(fileURLWithPath: input), writingTo: URL(fileURLWithPath: output))
        let statics = report.quantized.filter { $0.hasSuffix("(static)") }.count
        print("quantized \(report.quantized.count - statics) MatMul/Gemm node(s) dynamically and \(statics) Conv node(s) statically to int8 "
              + "(\(perChannel ? "per-channel" : "per-tensor") weights)")
        // Reasons, each once with its count (a BERT lists a dozen attention products that have no weight).
        var reasons: [(String, Int)] = []
        for (_, reason) in report.skipped {
            if let index = reasons.firstIndex(where: { $0.0 == reason }) { reasons[index].1 += 1 } else { reasons.append((reason, 1)) }
        }
        for (reason, count) in reasons { print("  kept float: \(count) node(s): \(reason)") }
        guard !report.quantized.isEmpty else { throw ValidationError("nothing to quantize: no MatMul, Gemm or (with --calibration) Conv has constant float weights") }
        print(String(format: "weights %.2f MB float -> %.2f MB int8; model file %.2f MB -> %.2f MB (%.2fx)",
                     Double(report.floatWeightBytes) / 1e6, Double(report.int8WeightBytes) / 1e6,
                     Double(report.inputBytes) / 1e6, Double(report.outputBytes) / 1e6, Double(report.outputBytes) / Double(max(report.inputBytes, 1))))

        let quantized = try ONNXModel(contentsOf: URL(fileURLWithPath: output))
        let options = SessionOptions(intraOpThreads: threads)
        let floatSession = try Session(graph: original.graph, options: options)
        let int8Session = try Session(graph: quantized.graph, options: options)
        var feeds: [String: Value]
        if samples.isEmpty, let calibrationData {
            feeds = calibrationData.mapValues { Value.tensor($0) }
        } else if samples.isEmpty {
            var generator = SplitMix(seed: 7)
            feeds = [:]
            for input in original.graph.inputs { feeds[input.name] = .tensor(try sampleTensor(for: input, batch: 1, &generator)) }
        } else {
            feeds = try TensorFiles.inputs(samples).mapValues { Value.tensor($0) }
        }
        let expected = try floatSession.run(feeds), actual = try int8Session.run(feeds)
        print("accuracy on \(!samples.isEmpty ? "the given" : (calibrationData != nil ? "the calibration" : "generated")) inputs (float model as reference):")
        for output in original.graph.outputs {
            guard let reference = expected[output.name]?.tensor, let value = actual[output.name]?.tensor,
                  reference.dtype.isFloatingPoint, value.dtype == reference.dtype else { continue }
            let a = try reference.doubles(), b = try value.doubles()
            let largest = zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
            print(String(format: "  %@: cosine distance %.2e, max |difference| %.3e (max |float| %.3e)", output.name,
                         ModelQuantizer.cosineDistance(a, b), largest, a.reduce(0) { max($0, abs($1)) }))
        }
        if seconds > 0 {
            let floatTime = try latencies(floatSession, feeds, seconds: seconds, warmup: 3)
            let int8Time = try latencies(int8Session, feeds, seconds: seconds, warmup: 3)
            let (floatMedian, int8Median) = (floatTime[floatTime.count / 2], int8Time[int8Time.count / 2])
            print(String(format: "speed (%d thread(s), int8 kernel %@): float %.3f ms, int8 %.3f ms median (%.2fx faster)",
                         threads, integerKernelISA, floatMedian, int8Median, floatMedian / int8Median))
        }
    }
}
