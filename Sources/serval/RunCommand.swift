import ArgumentParser
import Foundation
import ServalEngine
import ServalONNX
import ServalTensor
import ServalWire

/// `serval run MODEL.onnx --input NAME=PATH ...`: one inference from files.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run a model once on inputs read from .npy, .pb or KServe v2 .json files.")

    @Argument(help: "Path to an .onnx file.")
    var model: String

    @Option(name: .long, help: "NAME=PATH for each model input (PATH ending in .npy, .pb or .json).")
    var input: [String] = []

    @Option(name: .long, help: "Write each output to DIR/<output>.npy (.json for maps) instead of printing JSON.")
    var outputDir: String?

    @Option(name: .long, help: "Intra-op threads.")
    var threads = 1

    func run() throws {
        let onnx = try ONNXModel(contentsOf: URL(fileURLWithPath: model))
        let session = try Session(graph: onnx.graph, options: SessionOptions(intraOpThreads: threads))
        let feeds = try TensorFiles.inputs(input).mapValues { Value.tensor($0) }
        let results = try session.run(feeds)
        let ordered = onnx.graph.outputs.compactMap { output in results[output.name].map { (output.name, $0) } }
        if let outputDir {
            try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true)
            for (name, value) in ordered {
                let file = name.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." ? $0 : "_" }
                let base = URL(fileURLWithPath: outputDir).appendingPathComponent(String(file))
                if case .tensor(let tensor) = value, tensor.dtype != .string {
                    try NPYFormat.encode(tensor).write(to: base.appendingPathExtension("npy"))
                } else {
                    var json = JSONWriter()
                    KServeCodec.encodeOutput(name: name, value: value, into: &json)
                    try Data(json.text.utf8).write(to: base.appendingPathExtension("json"))
                }
            }
        } else {
            // The same tensor JSON the REST and gRPC frontends answer with (ServalWire's KServe codec).
            var json = JSONWriter()
            json.raw("{\"outputs\":[")
            for (index, output) in ordered.enumerated() {
                if index > 0 { json.raw(",") }
                KServeCodec.encodeOutput(name: output.0, value: output.1, into: &json)
            }
            json.raw("]}")
            print(json.text)
        }
    }
}
