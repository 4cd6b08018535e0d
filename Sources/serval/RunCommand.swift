import ArgumentParser
import Foundation
import ServalEngine
import ServalONNX
import ServalTensor

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
                    let json = try JSONSerialization.data(withJSONObject: try TensorFiles.json(name: name, value: value), options: [.sortedKeys])
                    try json.write(to: base.appendingPathExtension("json"))
                }
            }
        } else {
            let outputs = try ordered.map { try TensorFiles.json(name: $0.0, value: $0.1) }
            let json = try JSONSerialization.data(withJSONObject: ["outputs": outputs], options: [.sortedKeys])
            print(String(decoding: json, as: UTF8.self))
        }
    }
}
