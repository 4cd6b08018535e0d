import ArgumentParser
import Foundation
import ServalEngine
import ServalONNX

/// `serval inspect MODEL.onnx`: what the model needs and whether Serval can run it.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Show a model's inputs, outputs, opsets, operators, parameters and unsupported ops.")

    @Argument(help: "Path to an .onnx file.")
    var model: String

    func run() throws {
        let onnx = try ONNXModel(contentsOf: URL(fileURLWithPath: model))
        let graph = onnx.graph
        print("model:      \(model)")
        print("ir version: \(onnx.irVersion)\(onnx.producer.isEmpty ? "" : "   producer: \(onnx.producer)")")
        print("opsets:     " + graph.opsets.sorted { $0.key < $1.key }.map { "\($0.key.isEmpty ? "ai.onnx" : $0.key) \($0.value)" }.joined(separator: ", "))
        print("inputs:")
        for input in graph.inputs { print("  \(input.name): \(input.type)") }
        print("outputs:")
        let inferred = ShapeInference.infer(graph)
        for output in graph.outputs { print("  \(output.name): \(inferred[output.name] ?? output.type)") }
        var attributeValues = 0
        for node in graph.nodes {
            for attribute in node.attributes.values {
                switch attribute {
                case .floats(let values): attributeValues += values.count
                case .tensor(let tensor): attributeValues += tensor.count
                default: break
                }
            }
        }
        print("parameters: \(graph.parameterCount) in \(graph.initializers.count) initializers" + (attributeValues > 0 ? ", \(attributeValues) in node attributes" : ""))
        var histogram: [String: Int] = [:]
        for node in graph.nodes { histogram[node.qualifiedOpType, default: 0] += 1 }
        print("operators (\(graph.nodes.count) nodes):")
        for (op, count) in histogram.sorted(by: { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }) {
            print("  \(String(count).leftPadded(to: 5))  \(op)")
        }
        let unsupported = Session.unsupportedOperators(in: graph)
        print("unsupported: " + (unsupported.isEmpty ? "none" : unsupported.map(\.description).joined(separator: ", ")))
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
