import ServalEngine
import ServalTensor
import Testing

struct ShapeInferenceTests {
    /// x: float[batch, 3, 4] → Reshape(x, [0, -1]) where the target is built from Shape(x) the way
    /// PyTorch exports it: Shape → Gather(0) → Unsqueeze, concatenated with a constant -1.
    static func flattenGraph() -> Graph {
        Graph(
            nodes: [
                Node(opType: "Shape", inputs: ["x"], outputs: ["shape"]),
                Node(opType: "Gather", inputs: ["shape", "one"], outputs: ["channels"], attributes: ["axis": .int(0)]),
                Node(opType: "Unsqueeze", inputs: ["channels", "axes"], outputs: ["channels_1d"]),
                Node(opType: "Concat", inputs: ["zero_1d", "channels_1d", "minus_one"], outputs: ["target"], attributes: ["axis": .int(0)]),
                Node(opType: "Reshape", inputs: ["x", "target"], outputs: ["y"]),
                Node(opType: "Relu", inputs: ["y"], outputs: ["z"]),
            ],
            inputs: [ValueInfo(name: "x", type: .tensor(dtype: .float32, shape: [.symbolic("batch"), .fixed(3), .fixed(4)]))],
            outputs: [ValueInfo(name: "z", type: .tensor(dtype: .float32, shape: nil))],
            initializers: [
                "one": Tensor.scalar(Int64(1)), "axes": Tensor(shape: [1], scalars: [Int64(0)]),
                "zero_1d": Tensor(shape: [1], scalars: [Int64(0)]), "minus_one": Tensor(shape: [1], scalars: [Int64(-1)]),
            ],
            opsets: ["": 17])
    }

    @Test func carriesSymbolicBatchDimension() throws {
        let session = try Session(graph: Self.flattenGraph())
        #expect(session.outputTypes[0].type.tensorShape == [.symbolic("batch"), .fixed(3), .fixed(4)])
    }

    @Test func foldsShapeSubgraphOverFixedDimensions() throws {
        let session = try Session(graph: Self.flattenGraph())
        // Gather picked the fixed dimension 3, so Shape, Gather, Unsqueeze and Concat all fold away.
        #expect(session.optimizedGraph.nodes.map(\.opType) == ["Reshape", "Relu"])
        let x = Tensor(shape: [2, 3, 4], scalars: (0..<24).map { Float($0) - 12 })
        let z = try #require(try session.run(["x": x])["z"]?.tensor)
        #expect(z.shape == [2, 3, 4])
        #expect(z.scalars(as: Float.self) == (0..<24).map { max(Float($0) - 12, 0) })
    }

    @Test func keepsShapeOfSymbolicDimension() throws {
        // Reshape(x, [-1, batch]): the gathered dimension is the symbolic batch, so the subgraph stays and runs.
        var graph = Self.flattenGraph()
        graph.initializers["one"] = Tensor.scalar(Int64(0))
        graph.nodes[3].inputs = ["minus_one", "channels_1d"]
        let session = try Session(graph: graph)
        #expect(session.optimizedGraph.nodes.contains { $0.opType == "Shape" })
        let z = try #require(try session.run(["x": Tensor(zeros: .float32, shape: [5, 3, 4])])["z"]?.tensor)
        #expect(z.shape == [12, 5])
    }

    @Test func infersConvPoolAndGemmShapes() {
        let graph = Graph(
            nodes: [
                Node(opType: "Conv", inputs: ["x", "w"], outputs: ["c"], attributes: ["pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2])]),
                Node(opType: "MaxPool", inputs: ["c"], outputs: ["p"], attributes: ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])]),
                Node(opType: "Flatten", inputs: ["p"], outputs: ["f"]),
                Node(opType: "Gemm", inputs: ["f", "g"], outputs: ["y"], attributes: ["transB": .int(1)]),
            ],
            inputs: [ValueInfo(name: "x", type: .tensor(dtype: .float32, shape: [.symbolic("N"), .fixed(3), .fixed(32), .fixed(32)]))],
            outputs: [ValueInfo(name: "y", type: .unknown)],
            initializers: ["w": Tensor(zeros: .float32, shape: [8, 3, 3, 3]), "g": Tensor(zeros: .float32, shape: [10, 512])],
            opsets: ["": 17])
        let facts = ShapeInference.infer(graph)
        #expect(facts["c"]?.tensorShape == [.symbolic("N"), .fixed(8), .fixed(16), .fixed(16)])
        #expect(facts["p"]?.tensorShape == [.symbolic("N"), .fixed(8), .fixed(8), .fixed(8)])
        #expect(facts["f"]?.tensorShape == [.symbolic("N"), .fixed(512)])
        #expect(facts["y"]?.tensorShape == [.symbolic("N"), .fixed(10)])
    }
}
