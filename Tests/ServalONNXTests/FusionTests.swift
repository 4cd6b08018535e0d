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
}
