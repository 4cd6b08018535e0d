import ServalEngine
import ServalTensor
import Testing

/// The fused attention kernel against the spelled-out MatMul, Div, Add, Softmax, MatMul graph it replaces.
struct AttentionTests {
    static func graph(kShape: [Int], maskShape: [Int]) -> Graph {
        Graph(
            nodes: [
                Node(opType: "MatMul", inputs: ["q", "k"], outputs: ["scores"]),
                Node(opType: "Div", inputs: ["scores", "scale"], outputs: ["scaled"]),
                Node(opType: "Add", inputs: ["scaled", "mask"], outputs: ["masked"]),
                Node(opType: "Softmax", inputs: ["masked"], outputs: ["weights"], attributes: ["axis": .int(-1)]),
                Node(opType: "MatMul", inputs: ["weights", "v"], outputs: ["y"]),
            ],
            inputs: [
                ValueInfo(name: "q", type: .tensor(dtype: .float32, shape: nil)),
                ValueInfo(name: "k", type: .tensor(dtype: .float32, shape: kShape.map { .fixed($0) })),
                ValueInfo(name: "v", type: .tensor(dtype: .float32, shape: nil)),
                ValueInfo(name: "mask", type: .tensor(dtype: .float32, shape: maskShape.map { .fixed($0) })),
            ],
            outputs: [ValueInfo(name: "y", type: .tensor(dtype: .float32, shape: nil))],
            initializers: ["scale": .scalar(Float(2.5))],
            opsets: ["": 17])
    }

    static func tensor(_ shape: [Int], seed: Int) -> Tensor {
        let count = shape.reduce(1, *)
        return Tensor(shape: shape, scalars: (0..<count).map { Float(($0 * 37 + seed * 11) % 23) / 7 - 1.5 })
    }

    /// Fast path (equal leading dimensions, mask broadcast over heads and rows) and fallback (k broadcast over the batch).
    @Test(arguments: [([2, 3, 5, 4], [2, 1, 1, 4]), ([1, 3, 5, 4], [1, 1, 4])])
    func fusedAttentionMatchesTheSpelledOutGraph(kShape: [Int], maskShape: [Int]) throws {
        let graph = Self.graph(kShape: kShape, maskShape: maskShape)
        let feeds: [String: Value] = [
            "q": .tensor(Self.tensor([2, 3, 4, 5], seed: 1)), "k": .tensor(Self.tensor(kShape, seed: 2)),
            "v": .tensor(Self.tensor([2, 3, 4, 6], seed: 3)),
            "mask": .tensor(Tensor(shape: maskShape, scalars: (0..<maskShape.reduce(1, *)).map { $0 % 3 == 2 ? Float(-10_000) : 0 })),
        ]
        let fused = try Session(graph: graph)
        #expect(fused.optimizedGraph.nodes.map(\.opType) == ["Attention"])
        let y = try #require(try fused.run(feeds)["y"]?.tensor)
        let reference = try #require(try Session(graph: graph, options: SessionOptions(optimize: false)).run(feeds)["y"]?.tensor)
        #expect(y.shape == [2, 3, 4, 6])
        for (a, b) in zip(y.scalars(as: Float.self), reference.scalars(as: Float.self)) { #expect(abs(a - b) <= 1e-5 * max(abs(b), 1e-2)) }
    }
}
