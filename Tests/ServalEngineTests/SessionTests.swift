import ServalEngine
import ServalTensor
import Testing

/// Input validation and load-time errors of `Session`, on small graphs built in code.
struct SessionTests {
    /// y = relu(x · W + b) with x: float[batch, 3].
    static func denseGraph() -> Graph {
        let weights = Tensor(shape: [3, 2], scalars: [Float(1), -1, 2, 0.5, -3, 1])
        let bias = Tensor(shape: [2], scalars: [Float(0.5), -0.5])
        return Graph(
            nodes: [
                Node(opType: "MatMul", inputs: ["x", "W"], outputs: ["h"]),
                Node(opType: "Add", inputs: ["h", "b"], outputs: ["z"]),
                Node(opType: "Relu", inputs: ["z"], outputs: ["y"]),
            ],
            inputs: [ValueInfo(name: "x", type: .tensor(dtype: .float32, shape: [.symbolic("batch"), .fixed(3)]))],
            outputs: [ValueInfo(name: "y", type: .tensor(dtype: .float32, shape: nil))],
            initializers: ["W": weights, "b": bias], opsets: ["": 17])
    }

    @Test func computesDenseLayer() throws {
        let session = try Session(graph: Self.denseGraph())
        let x = Tensor(shape: [2, 3], scalars: [Float(1), 2, 3, -1, 0, 1])
        let y = try #require(try session.run(["x": x])["y"]?.tensor)
        // Row 1: [1+4-9+0.5, -1+1+3-0.5] = [-3.5, 2.5] → relu; row 2: [-1-3+0.5, 1+1-0.5].
        #expect(y.shape == [2, 2])
        #expect(y.scalars(as: Float.self) == [0, 2.5, 0, 1.5])
    }

    @Test func rejectsMissingInputByName() throws {
        let session = try Session(graph: Self.denseGraph())
        #expect(throws: EngineError.missingInput(name: "x")) { try session.run([String: Tensor]()) }
    }

    @Test func rejectsUnknownInputName() throws {
        let session = try Session(graph: Self.denseGraph())
        let x = Tensor(shape: [1, 3], scalars: [Float](repeating: 0, count: 3))
        #expect(throws: EngineError.unexpectedInput(name: "features", known: ["x"])) { try session.run(["features": x, "x": x]) }
    }

    @Test func rejectsWrongDtypeNamingInput() throws {
        let session = try Session(graph: Self.denseGraph())
        let x = Tensor(shape: [1, 3], scalars: [Int64(1), 2, 3])
        #expect(throws: EngineError.inputTypeMismatch(name: "x", expected: "float", actual: "int64")) { try session.run(["x": x]) }
    }

    @Test func rejectsWrongRankNamingInput() throws {
        let session = try Session(graph: Self.denseGraph())
        let x = Tensor(shape: [3], scalars: [Float(1), 2, 3])
        #expect(throws: EngineError.inputShapeMismatch(name: "x", expected: "[batch, 3]", actual: "[3]")) { try session.run(["x": x]) }
    }

    @Test func rejectsWrongFixedDimensionNamingInput() throws {
        let session = try Session(graph: Self.denseGraph())
        let x = Tensor(shape: [2, 4], scalars: [Float](repeating: 0, count: 8))
        #expect(throws: EngineError.inputShapeMismatch(name: "x", expected: "[batch, 3]", actual: "[2, 4]")) { try session.run(["x": x]) }
    }

    @Test func acceptsAnyBatchSizeForSymbolicDimension() throws {
        let session = try Session(graph: Self.denseGraph())
        for batch in [1, 7, 64] {
            let y = try session.run(["x": Tensor(zeros: .float32, shape: [batch, 3])])["y"]?.tensor
            #expect(y?.shape == [batch, 2])
        }
    }

    @Test func listsAllUnsupportedOperatorsAtLoad() {
        var graph = Self.denseGraph()
        graph.nodes.append(Node(opType: "Unique", inputs: ["y"], outputs: ["u"]))
        graph.nodes.append(Node(opType: "Frobnicate", domain: "com.example", inputs: ["u"], outputs: ["v"]))
        graph.opsets["com.example"] = 2
        #expect(throws: EngineError.unsupportedOperators([
            UnsupportedOperator(domain: "", opType: "Unique", opset: 17),
            UnsupportedOperator(domain: "com.example", opType: "Frobnicate", opset: 2),
        ])) { try Session(graph: graph) }
    }

    @Test func reportsDanglingValueAtLoad() {
        var graph = Self.denseGraph()
        graph.nodes[1].inputs = ["h", "nowhere"]
        #expect { try Session(graph: graph) } throws: { error in
            "\(error)".contains("'nowhere'")
        }
    }

    @Test func kernelErrorsNameTheNode() throws {
        let graph = Graph(
            nodes: [Node(name: "join", opType: "Concat", inputs: ["a", "b"], outputs: ["c"], attributes: ["axis": .int(0)])],
            inputs: [ValueInfo(name: "a", type: .unknown), ValueInfo(name: "b", type: .unknown)],
            outputs: [ValueInfo(name: "c", type: .unknown)], initializers: [:], opsets: ["": 17])
        let session = try Session(graph: graph)
        #expect { try session.run(["a": Tensor(zeros: .float32, shape: [2, 3]), "b": Tensor(zeros: .float32, shape: [2, 4])]) } throws: { error in
            "\(error)".hasPrefix("node join:")
        }
    }

    @Test func identityIsRemovedButOutputNamesSurvive() throws {
        var graph = Self.denseGraph()
        graph.nodes.insert(Node(opType: "Identity", inputs: ["x"], outputs: ["x2"]), at: 0)
        graph.nodes[1].inputs[0] = "x2"
        graph.nodes.append(Node(opType: "Identity", inputs: ["y"], outputs: ["out"]))
        graph.outputs = [ValueInfo(name: "out", type: .unknown)]
        let session = try Session(graph: graph)
        #expect(session.optimizedGraph.nodes.filter { $0.opType == "Identity" }.count == 1)
        let out = try session.run(["x": Tensor(shape: [1, 3], scalars: [Float(1), 2, 3])])["out"]?.tensor
        #expect(out?.scalars(as: Float.self) == [0, 2.5])
    }

    @Test func foldsConstantSubgraphs() throws {
        // Shape(W) → Gather(0) is constant: folded at load, so only the MatMul+Add+Relu chain remains.
        var graph = Self.denseGraph()
        graph.initializers["zero"] = Tensor(shape: [], scalars: [Int64(0)])
        graph.nodes += [
            Node(opType: "Shape", inputs: ["W"], outputs: ["wshape"]),
            Node(opType: "Gather", inputs: ["wshape", "zero"], outputs: ["rows"]),
        ]
        graph.outputs.append(ValueInfo(name: "rows", type: .unknown))
        let session = try Session(graph: graph)
        #expect(!session.optimizedGraph.nodes.contains { $0.opType == "Shape" || $0.opType == "Gather" })
        let rows = try session.run(["x": Tensor(zeros: .float32, shape: [1, 3])])["rows"]?.tensor
        #expect(rows?.scalars(as: Int64.self) == [3])
    }

    /// MatMulInteger with B and its per-column zero points as weights (packed once at load) and as run-time
    /// inputs (packed per run): both give the exact integer product.
    @Test func integerMatMulWithWeightsPackedAtLoad() throws {
        let a = Tensor(shape: [2, 3], scalars: [UInt8(1), 2, 3, 250, 0, 7])
        let b = Tensor(shape: [3, 2], scalars: [UInt8(4), 200, 5, 0, 6, 9])
        let aZero = Tensor.scalar(UInt8(1)), bZero = Tensor(shape: [2], scalars: [UInt8(2), 100])
        // Σ_k (a - 1)(b - zero[column]) by hand.
        let expected: [Int32] = [0 * 2 + 1 * 3 + 2 * 4, 0 * 100 + 1 * -100 + 2 * -91,
                                 249 * 2 + -1 * 3 + 6 * 4, 249 * 100 + -1 * -100 + 6 * -91]
        func graph(weights: Bool) -> Graph {
            Graph(
                nodes: [Node(opType: "MatMulInteger", inputs: ["a", "b", "a_zero", "b_zero"], outputs: ["y"])],
                inputs: [ValueInfo(name: "a", type: .tensor(dtype: .uint8, shape: [.fixed(2), .fixed(3)]))]
                    + (weights ? [] : [ValueInfo(name: "b", type: .tensor(dtype: .uint8, shape: [.fixed(3), .fixed(2)]))]),
                outputs: [ValueInfo(name: "y", type: .tensor(dtype: .int32, shape: nil))],
                initializers: weights ? ["b": b, "a_zero": aZero, "b_zero": bZero] : ["a_zero": aZero, "b_zero": bZero], opsets: ["": 17])
        }
        let packed = try Session(graph: graph(weights: true)).run(["a": a])["y"]?.tensor
        let perRun = try Session(graph: graph(weights: false)).run(["a": a, "b": b])["y"]?.tensor
        #expect(packed?.shape == [2, 2])
        #expect(packed?.scalars(as: Int32.self) == expected)
        #expect(perRun?.scalars(as: Int32.self) == expected)
    }

    /// GELU written as (x · 0.5) · (1 + erf(x / √2)), the order torch traces Hugging Face's gelu in, is recognised too,
    /// and the fused kernel agrees with the spelled-out graph.
    @Test func erfGeluInTracedOrderIsFused() throws {
        let graph = Graph(
            nodes: [
                Node(opType: "Mul", inputs: ["x", "half"], outputs: ["h"]),
                Node(opType: "Div", inputs: ["x", "root2"], outputs: ["s"]),
                Node(opType: "Erf", inputs: ["s"], outputs: ["e"]),
                Node(opType: "Add", inputs: ["one", "e"], outputs: ["t"]),
                Node(opType: "Mul", inputs: ["h", "t"], outputs: ["y"]),
            ],
            inputs: [ValueInfo(name: "x", type: .tensor(dtype: .float32, shape: [.fixed(2), .fixed(5)]))],
            outputs: [ValueInfo(name: "y", type: .tensor(dtype: .float32, shape: nil))],
            initializers: ["half": .scalar(Float(0.5)), "root2": .scalar(Float(2).squareRoot()), "one": .scalar(Float(1))],
            opsets: ["": 17])
        let fused = try Session(graph: graph)
        #expect(fused.optimizedGraph.nodes.map(\.opType) == ["Gelu"])
        let x = Tensor(shape: [2, 5], scalars: [Float(-3), -1.5, -0.5, 0, 0.25, 0.5, 1, 2, 4, 8])
        let y = try #require(try fused.run(["x": x])["y"]?.tensor).scalars(as: Float.self)
        let reference = try #require(try Session(graph: graph, options: SessionOptions(optimize: false)).run(["x": x])["y"]?.tensor).scalars(as: Float.self)
        for (a, b) in zip(y, reference) { #expect(abs(a - b) <= 1e-4 * max(abs(b), 1e-2)) }
    }
}

/// Plans specialised per input shape: shape arithmetic on symbolic dimensions folds away, results stay right, and
/// the cache keeps only the most recent shapes.
struct ShapePlanTests {
    /// y = Reshape(x, [batch · rows, 2]) with the target shape computed from Shape(x) at run time.
    static func graph() -> Graph {
        Graph(
            nodes: [
                Node(opType: "Shape", inputs: ["x"], outputs: ["shape"]),
                Node(opType: "Gather", inputs: ["shape", "zero"], outputs: ["batch"], attributes: ["axis": .int(0)]),
                Node(opType: "Gather", inputs: ["shape", "one"], outputs: ["rows"], attributes: ["axis": .int(0)]),
                Node(opType: "Mul", inputs: ["batch", "rows"], outputs: ["count"]),
                Node(opType: "Unsqueeze", inputs: ["count", "axes"], outputs: ["count_1d"]),
                Node(opType: "Concat", inputs: ["count_1d", "two"], outputs: ["target"], attributes: ["axis": .int(0)]),
                Node(opType: "Reshape", inputs: ["x", "target"], outputs: ["flat"]),
                Node(opType: "Relu", inputs: ["flat"], outputs: ["y"]),
            ],
            inputs: [ValueInfo(name: "x", type: .tensor(dtype: .float32, shape: [.symbolic("batch"), .symbolic("rows"), .fixed(2)]))],
            outputs: [ValueInfo(name: "y", type: .tensor(dtype: .float32, shape: nil))],
            initializers: [
                "zero": .scalar(Int64(0)), "one": .scalar(Int64(1)), "axes": Tensor(shape: [1], scalars: [Int64(0)]),
                "two": Tensor(shape: [1], scalars: [Int64(2)]),
            ],
            opsets: ["": 17])
    }

    @Test func shapeSubgraphFoldsPerInputShape() throws {
        let session = try Session(graph: Self.graph(), options: SessionOptions(shapePlanCacheSize: 2))
        #expect(session.optimizedGraph.nodes.contains { $0.opType == "Shape" })
        for (batch, rows) in [(1, 3), (2, 5), (4, 1), (2, 5)] {
            let values = (0..<(batch * rows * 2)).map { Float($0) - 3 }
            let feeds: [String: Value] = ["x": .tensor(Tensor(shape: [batch, rows, 2], scalars: values))]
            #expect(session.steps(for: feeds) == ["Reshape", "Relu"])
            let y = try #require(try session.run(feeds)["y"]?.tensor)
            #expect(y.shape == [batch * rows, 2])
            #expect(y.scalars(as: Float.self) == values.map { max(0, $0) })
        }
        #expect(session.specialisedPlanCount == 2)
        let plain = try Session(graph: Self.graph(), options: SessionOptions(shapePlanCacheSize: 0))
        #expect(plain.steps(for: ["x": .tensor(Tensor(zeros: .float32, shape: [1, 1, 2]))]).contains("Shape"))
    }
}

/// Gemm and MatMul with constant weights run on the pre-packed AVX-512 kernel where the CPU has it (BLAS elsewhere):
/// alpha, transB, a row bias and every row/column tail agree with a plain triple loop.
struct PackedWeightTests {
    @Test(arguments: [1, 5, 13, 40])
    func gemmWithPackedWeightsMatchesTripleLoop(rows: Int) throws {
        let (k, n) = (37, 45)
        let w = (0..<(n * k)).map { Float(($0 * 7) % 19) / 9 - 1 }  // [n, k], used transposed
        let bias = (0..<n).map { Float($0) / 10 }
        let graph = Graph(
            nodes: [Node(opType: "Gemm", inputs: ["x", "W", "b"], outputs: ["y"], attributes: ["alpha": .float(0.5), "transB": .int(1)])],
            inputs: [ValueInfo(name: "x", type: .tensor(dtype: .float32, shape: [.symbolic("batch"), .fixed(k)]))],
            outputs: [ValueInfo(name: "y", type: .tensor(dtype: .float32, shape: nil))],
            initializers: ["W": Tensor(shape: [n, k], scalars: w), "b": Tensor(shape: [n], scalars: bias)], opsets: ["": 17])
        let x = (0..<(rows * k)).map { Float(($0 * 5) % 23) / 11 - 1 }
        for threads in [1, 2] {
            let session = try Session(graph: graph, options: SessionOptions(intraOpThreads: threads))
            let y = try #require(try session.run(["x": Tensor(shape: [rows, k], scalars: x)])["y"]?.tensor).scalars(as: Float.self)
            for row in 0..<rows {
                for column in 0..<n {
                    var sum: Float = 0
                    for i in 0..<k { sum += x[row * k + i] * w[column * k + i] }
                    let expected = 0.5 * sum + bias[column]
                    #expect(abs(y[row * n + column] - expected) <= 1e-5 * max(abs(expected), 1), "row \(row) column \(column)")
                }
            }
        }
    }
}
