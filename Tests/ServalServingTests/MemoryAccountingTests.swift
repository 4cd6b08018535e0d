import Foundation
import ServalONNX
import SwiftProtobuf
import Testing
@testable import ServalServing

/// A version's measured memory (what `--model-memory-limit` counts) against the process's real RSS growth.
struct MemoryAccountingTests {
    /// y = relu(x·W1ᵀ)·W2ᵀ with two 4096×4096 float weights (64 MiB each). `transB` makes the engine keep a
    /// transposed copy of each: the resident cost is about twice the file. Each buffer is above glibc's mmap
    /// threshold, so what the load frees goes back to the system and RSS shows what stays.
    static func largeModel() throws -> URL {
        let width = 4096
        func weight(_ name: String) -> Onnx_TensorProto {
            var tensor = Onnx_TensorProto()
            tensor.name = name
            tensor.dataType = 1
            tensor.dims = [Int64(width), Int64(width)]
            var values = [Float](repeating: 0, count: width * width)
            for index in stride(from: 0, to: values.count, by: 97) { values[index] = Float(index % 7) * 0.01 }
            tensor.rawData = values.withUnsafeBytes { Data($0) }
            return tensor
        }
        func info(_ name: String) -> Onnx_ValueInfoProto {
            var value = Onnx_ValueInfoProto()
            value.name = name
            var type = Onnx_TypeProto.Tensor()
            type.elemType = 1
            var batch = Onnx_TensorShapeProto.Dimension()
            batch.dimParam = "batch"
            var features = Onnx_TensorShapeProto.Dimension()
            features.dimValue = Int64(width)
            type.shape.dim = [batch, features]
            value.type.tensorType = type
            return value
        }
        func gemm(_ input: String, _ weight: String, _ output: String) -> Onnx_NodeProto {
            var node = Onnx_NodeProto()
            node.opType = "Gemm"
            node.input = [input, weight]
            node.output = [output]
            var transB = Onnx_AttributeProto()
            transB.name = "transB"
            transB.type = .int
            transB.i = 1
            node.attribute = [transB]
            return node
        }
        var relu = Onnx_NodeProto()
        relu.opType = "Relu"
        relu.input = ["h"]
        relu.output = ["r"]
        var graph = Onnx_GraphProto()
        graph.name = "large"
        graph.node = [gemm("x", "w1", "h"), relu, gemm("r", "w2", "y")]
        graph.initializer = [weight("w1"), weight("w2")]
        graph.input = [info("x")]
        graph.output = [info("y")]
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 17
        var model = Onnx_ModelProto()
        model.irVersion = 8
        model.opsetImport = [opset]
        model.graph = graph
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("serval-large-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let file = folder.appendingPathComponent("model.onnx")
        try model.serializedData().write(to: file)
        return file
    }

    static func residentBytes() throws -> Int {
        let statm = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8)
        let pages = Int(statm.split(separator: " ")[1])!
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    @Test func measuredMemoryIsWithinTwentyPercentOfTheRSSGrowth() throws {
        let file = try Self.largeModel()
        defer { try? FileManager.default.removeItem(at: file.deletingLastPathComponent()) }
        var config = ModelConfig()
        config.maxBatchSize = 8
        let before = try Self.residentBytes()
        let model = try ServedModel(name: "large", version: 1, file: file, config: config)
        let growth = try Self.residentBytes() - before
        let measured = model.memoryBytes
        // Weights twice over (graph and transposed copy) at least.
        #expect(measured >= 2 * 2 * 4096 * 4096 * 4)
        #expect(abs(Double(measured - growth)) <= 0.2 * Double(growth), "measured \(measured) bytes, RSS grew \(growth) bytes")
        withExtendedLifetime(model) {}
    }
}
