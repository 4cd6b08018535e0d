import Foundation
import ServalEngine
import ServalONNX
import ServalTensor
import SwiftProtobuf
import Testing

/// `ModelQuantizer` on the golden fixtures: the rewritten model uses the standard dynamic form, Serval fuses it
/// back into int8 kernel calls, and its outputs stay close to onnxruntime's float outputs.
struct QuantizerTests {
    static func quantized(_ name: String, perChannel: Bool) throws -> (model: ONNXModel, report: ModelQuantizer.Report) {
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("\(name)/model.onnx"))
        var report = ModelQuantizer.Report()
        let quantizer = ModelQuantizer(options: .init(perChannel: perChannel, minimumWeightElements: 0))
        let output = try quantizer.quantize(serialized: data, baseDirectory: nil, report: &report)
        return (try ONNXModel(serialized: output), report)
    }

    /// 1 − cos(a, b) over all elements.
    static func cosineDistance(_ a: Tensor, _ b: Tensor) throws -> Double {
        let x = try a.doubles(), y = try b.doubles()
        let dot = zip(x, y).reduce(0) { $0 + $1.0 * $1.1 }
        return 1 - dot / ((x.reduce(0) { $0 + $1 * $1 }).squareRoot() * (y.reduce(0) { $0 + $1 * $1 }).squareRoot())
    }

    /// Every output of the quantized model within 1% cosine distance of onnxruntime's float output.
    static func expectWithinOnePercent(_ results: [String: Value], of golden: GoldenCase, _ name: String) throws {
        for (output, expected) in golden.outputs {
            let actual = try #require(results[output]?.tensor)
            #expect(actual.shape == expected.shape)
            let distance = try cosineDistance(actual, expected)
            #expect(distance < 1e-2, "\(name)/\(output): cosine distance \(distance)")
        }
    }

    @Test(arguments: ["mlp_gemm", "mlp_matmul", "bert_tiny"], [false, true])
    func quantizedModelStaysCloseToFloat(_ name: String, perChannel: Bool) throws {
        let golden = try GoldenCase(name: name)
        let (model, report) = try Self.quantized(name, perChannel: perChannel)
        let floatProducts = golden.model.graph.nodes.filter { ($0.opType == "MatMul" || $0.opType == "Gemm") && golden.model.graph.initializers[$0.inputs[1]] != nil }
        #expect(report.quantized.count == floatProducts.count)
        #expect(model.graph.nodes.filter { $0.opType == "MatMulInteger" }.count == floatProducts.count)
        #expect(!model.graph.nodes.contains { $0.opType == "Gemm" })
        #expect(report.int8WeightBytes * 4 == report.floatWeightBytes)
        let session = try Session(graph: model.graph)
        // Every product runs as one fused int8 kernel call.
        #expect(session.optimizedGraph.nodes.filter { $0.opType == "DynamicQuantizeMatMul" }.count == floatProducts.count)
        #expect(!session.optimizedGraph.nodes.contains { $0.opType == "MatMulInteger" || $0.opType == "DynamicQuantizeLinear" })
        try Self.expectWithinOnePercent(try session.run(golden.inputs), of: golden, name)
    }

    /// One DynamicQuantizeLinear serves every product reading the same activation (BERT's Q, K and V projections).
    @Test func sharesActivationQuantizationBetweenProducts() throws {
        let (model, _) = try Self.quantized("bert_tiny", perChannel: false)
        let quantizers = model.graph.nodes.filter { $0.opType == "DynamicQuantizeLinear" }
        #expect(Set(quantizers.map { $0.inputs[0] }).count == quantizers.count)
        #expect(quantizers.count < model.graph.nodes.filter { $0.opType == "MatMulInteger" }.count)
    }

    @Test func smallWeightsStayFloat() throws {
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("mlp_matmul/model.onnx"))
        var report = ModelQuantizer.Report()
        _ = try ModelQuantizer(options: .init(minimumWeightElements: 500)).quantize(serialized: data, baseDirectory: nil, report: &report)
        // 24×32 = 768 elements is quantized; 32×8 = 256 is not.
        #expect(report.quantized.count == 1)
        #expect(report.skipped.count == 1)
        #expect(report.skipped.first?.reason.contains("256 elements") == true)
    }

    /// Static Conv quantization calibrated on the fixture's own inputs: every Conv becomes a QLinearConv, Relus after
    /// Convs are folded in, consecutive quantized Convs hand over uint8 tensors, and the outputs stay close to float.
    @Test(arguments: ["lenet", "resnet18_small", "mobilenet_v2_small"])
    func staticConvQuantizationStaysCloseToFloat(_ name: String) throws {
        let golden = try GoldenCase(name: name)
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("\(name)/model.onnx"))
        var report = ModelQuantizer.Report()
        let calibration = try golden.inputs.mapValues { try #require($0.tensor) }
        let quantizer = ModelQuantizer(options: .init(perChannel: true, calibration: calibration))
        let model = try ONNXModel(serialized: try quantizer.quantize(serialized: data, baseDirectory: nil, report: &report))
        let convs = golden.model.graph.nodes.filter { $0.opType == "Conv" }.count
        #expect(model.graph.nodes.filter { $0.opType == "QLinearConv" }.count == convs)
        #expect(!model.graph.nodes.contains { $0.opType == "Conv" })
        #expect(report.quantized.filter { $0.hasSuffix("(static)") }.count == convs)
        // Fewer Quantize/Dequantize pairs than Convs: chains of Convs pass uint8 tensors along.
        if name == "mobilenet_v2_small" {
            #expect(model.graph.nodes.filter { $0.opType == "QuantizeLinear" }.count < convs)
        }
        try Self.expectWithinOnePercent(try Session(graph: model.graph).run(golden.inputs), of: golden, name)
    }

    /// IR 3 models list their weights among the graph inputs too; the replaced float weights leave that list with them.
    @Test func weightsListedAsInputsLeaveWithTheirInitializers() throws {
        var proto = try Onnx_ModelProto(serializedBytes: try Data(contentsOf: Fixtures.root.appendingPathComponent("mlp_matmul/model.onnx")))
        for initializer in proto.graph.initializer {
            var input = Onnx_ValueInfoProto()
            input.name = initializer.name
            input.type.tensorType.elemType = initializer.dataType
            proto.graph.input.append(input)
        }
        var report = ModelQuantizer.Report()
        let output = try ModelQuantizer(options: .init(minimumWeightElements: 0)).quantize(serialized: try proto.serializedData(), baseDirectory: nil, report: &report)
        let quantized = try Onnx_ModelProto(serializedBytes: output)
        let initializers = Set(quantized.graph.initializer.map(\.name))
        #expect(quantized.graph.input.allSatisfy { $0.name == "input" || initializers.contains($0.name) })
        #expect(!quantized.graph.input.contains { $0.name == "w_1" })
        let model = try ONNXModel(serialized: output)
        #expect(model.graph.inputs.map(\.name) == ["input"])
    }

    @Test func calibrationMustCoverEveryInput() throws {
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("lenet/model.onnx"))
        var report = ModelQuantizer.Report()
        let quantizer = ModelQuantizer(options: .init(calibration: ["other": Tensor(zeros: .float32, shape: [1, 1, 28, 28])]))
        #expect { try quantizer.quantize(serialized: data, baseDirectory: nil, report: &report) } throws: { error in
            "\(error)".contains("no tensor for input 'input'")
        }
    }

    @Test func rejectsOpsetBeforeDynamicQuantizeLinear() throws {
        var proto = try Onnx_ModelProto(serializedBytes: try Data(contentsOf: Fixtures.root.appendingPathComponent("mlp_matmul/model.onnx")))
        proto.opsetImport[0].version = 10
        var report = ModelQuantizer.Report()
        #expect { try ModelQuantizer().quantize(serialized: try proto.serializedData(), baseDirectory: nil, report: &report) } throws: { error in
            "\(error)".contains("opset 11") && "\(error)".contains("opset 10")
        }
    }
}
