import ServalEngine
import ServalONNX
import Testing

/// Patterns the optimizer rewrites in real exports; the golden tests check the rewritten graphs still match onnxruntime.
struct FusionTests {
    @Test func spelledOutLayerNormalizationBecomesOneNode() throws {
        let model = try ONNXModel(contentsOf: Fixtures.root.appendingPathComponent("bert_tiny_opset13/model.onnx"))
        #expect(model.graph.nodes.filter { $0.opType == "ReduceMean" }.count == 10)
        let session = try Session(graph: model.graph)
        let ops = session.optimizedGraph.nodes.map(\.opType)
        #expect(ops.filter { $0 == "LayerNormalization" }.count == 5)
        #expect(!ops.contains("ReduceMean") && !ops.contains("Pow") && !ops.contains("Sqrt"))
    }

    /// The feed-forward's erf GELU (Div √2, Erf, Add 1, Mul x, Mul 0.5) runs inside the MatMul's output pass.
    @Test func erfGeluFoldsIntoTheFeedForwardMatMul() throws {
        let model = try ONNXModel(contentsOf: Fixtures.root.appendingPathComponent("bert_tiny/model.onnx"))
        #expect(model.graph.nodes.filter { $0.opType == "Erf" }.count == 2)
        let nodes = try Session(graph: model.graph).optimizedGraph.nodes
        #expect(!nodes.contains { $0.opType == "Erf" || $0.opType == "Gelu" })
        let geluMatMuls = nodes.filter { node in
            if case .string("Gelu")? = node.attributes["activation"] { return node.opType == "FusedMatMul" }
            return false
        }
        #expect(geluMatMuls.count == 2)
    }

    /// Each layer's MatMul, Div, Add mask, Softmax and MatMul become one Attention kernel (BERT exported both ways).
    @Test(arguments: ["bert_tiny", "bert_tiny_opset13"])
    func scaledDotProductAttentionBecomesOneKernel(_ name: String) throws {
        let model = try ONNXModel(contentsOf: Fixtures.root.appendingPathComponent("\(name)/model.onnx"))
        let nodes = try Session(graph: model.graph).optimizedGraph.nodes
        #expect(nodes.filter { $0.opType == "Attention" }.count == 2)
        #expect(!nodes.contains { $0.opType == "Softmax" })
        #expect(nodes.allSatisfy { $0.opType != "Attention" || $0.inputs[3].isEmpty == false })
    }
}
