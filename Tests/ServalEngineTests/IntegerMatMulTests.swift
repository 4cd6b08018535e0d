import CServalKernels
import ServalEngine
import ServalTensor
import Testing

/// The packed int8 kernel against a plain triple loop, on every instruction-set path this CPU has, and the
/// dynamically quantized MatMul fusion against the unfused graph it replaces.
struct IntegerMatMulTests {
    /// Deterministic pseudo-random bytes (a linear congruential generator), so failures reproduce.
    static func bytes(_ count: Int, seed: UInt32) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
    }

    /// Shapes with every kind of tail: rows not a multiple of the 8-row tile, columns not a multiple of a 16-column
    /// panel, k not a multiple of 4, and a large k whose sums would saturate 16-bit intermediates.
    static let shapes: [(m: Int, n: Int, k: Int)] = [(1, 1, 1), (3, 5, 7), (8, 16, 4), (9, 33, 13), (17, 40, 130), (5, 64, 1539)]

    @Test(arguments: [0, 1, 2])
    func packedKernelMatchesReferenceOnEveryPath(level: Int32) throws {
        let used = serval_qgemm_select(level)
        defer { serval_qgemm_select(2) }
        // A CPU without the requested instruction set runs the best path it has: the case still checks a kernel.
        for (index, (m, n, k)) in Self.shapes.enumerated() {
            // Extremes first so every shape sees 255 · −128 products.
            let a = [UInt8(255), 255, 0] + Self.bytes(m * k, seed: UInt32(index) + 1).dropFirst(3)
            let b = ([Int8(-128), -128, 127] + Self.bytes(k * n, seed: UInt32(index) + 100).dropFirst(3).map { Int8(bitPattern: $0) }).prefix(k * n)
            let bArray = Array(b)
            var packed = [Int8](repeating: 0, count: serval_qgemm_packed_size(k, n))
            var sums = [Int32](repeating: 0, count: n)
            serval_qgemm_pack_b(bArray, k, n, n, &packed, &sums)
            var c = [Int32](repeating: -1, count: m * n)
            serval_qgemm_u8s8(m, n, k, Array(a.prefix(m * k)), k, packed, &c, n)
            var expected = [Int32](repeating: 0, count: m * n)
            for i in 0..<m { for j in 0..<n { for p in 0..<k { expected[i * n + j] += Int32(a[i * k + p]) * Int32(bArray[p * n + j]) } } }
            #expect(c == expected, "m \(m) n \(n) k \(k) on level \(used)")
            #expect(sums == (0..<n).map { j in (0..<k).reduce(Int32(0)) { $0 + Int32(bArray[$1 * n + j]) } })

            // The dequantizing epilogue: (sum + offset) · rowScale · columnScale + bias.
            let offsets = (0..<n).map { Int32($0 * 3 - 7) }, scales = (0..<n).map { Float($0 + 1) / 64 }, bias = (0..<n).map { Float($0) - 2.5 }
            var values = [Float](repeating: .nan, count: m * n)
            serval_qgemm_u8s8_f32(m, n, k, Array(a.prefix(m * k)), k, packed, &values, n, offsets, 0.5, scales, bias)
            let expectedValues = (0..<m * n).map { Float(expected[$0] + offsets[$0 % n]) * (0.5 * scales[$0 % n]) + bias[$0 % n] }
            #expect(values == expectedValues, "epilogue, m \(m) n \(n) k \(k) on level \(used)")
        }
    }

    /// Activation quantization, on every path: halves round to even, out-of-range values saturate, NaN becomes the zero point.
    @Test(arguments: [0, 1, 2])
    func quantizesActivationsLikeDynamicQuantizeLinear(level: Int32) {
        serval_qgemm_select(level)
        defer { serval_qgemm_select(2) }
        // Without the requested instruction set the best available path runs, so the case still checks something.
        let (scale, zero): (Float, Float) = (0.5, 10)
        let x: [Float] = [0.25, 0.75, -0.25, 1.25, -5, -5.25, 200, -200, .nan, .infinity, -.infinity, 3, 0, 0.2499, 7.75, 8.25, 1, 2, 3]
        var y = [UInt8](repeating: 0, count: x.count)
        serval_quantize_u8(x, x.count, scale, zero, &y)
        // x / 0.5 = 0.5 → 0, 1.5 → 2, -0.5 → -0, 2.5 → 2, -10, -10.5 → -10, 400 → 255, -400 → 0, NaN → 10, ±inf saturate.
        #expect(y == [10, 12, 10, 12, 0, 0, 255, 0, 10, 255, 0, 16, 10, 10, 26, 26, 12, 14, 16])
    }

    /// A column slice computed from `serval_qgemm_panel` equals the same columns of the whole product.
    @Test func columnSliceFromPanelMatchesWholeProduct() {
        let (m, n, k) = (3, 70, 21)
        let a = Self.bytes(m * k, seed: 7), b = Self.bytes(k * n, seed: 8).map { Int8(bitPattern: $0) }
        var packed = [Int8](repeating: 0, count: serval_qgemm_packed_size(k, n))
        var sums = [Int32](repeating: 0, count: n)
        serval_qgemm_pack_b(b, k, n, n, &packed, &sums)
        var whole = [Int32](repeating: 0, count: m * n), slice = [Int32](repeating: 0, count: m * n)
        serval_qgemm_u8s8(m, n, k, a, k, packed, &whole, n)
        packed.withUnsafeBufferPointer { packed in
            slice.withUnsafeMutableBufferPointer { slice in
                serval_qgemm_u8s8(m, n - 32, k, a, k, serval_qgemm_panel(packed.baseAddress!, k, 32), slice.baseAddress! + 32, n)
            }
        }
        for row in 0..<m { #expect(Array(slice[(row * n + 32)..<(row * n + n)]) == Array(whole[(row * n + 32)..<(row * n + n)])) }
    }

    /// y = Cast(MatMulInteger(DynamicQuantizeLinear(x), W)) · (x_scale · w_scale) + bias, the form `serval quantize` writes.
    static func quantizedGraph(perColumn: Bool) -> Graph {
        let (k, n) = (20, 37)
        let weights = Tensor(shape: [k, n], scalars: bytes(k * n, seed: 3).map { Int8(bitPattern: $0) })
        let scale = perColumn ? Tensor(shape: [n], scalars: (0..<n).map { Float($0 + 1) / 500 }) : .scalar(Float(0.01))
        return Graph(
            nodes: [
                Node(opType: "DynamicQuantizeLinear", inputs: ["x"], outputs: ["x_q", "x_scale", "x_zero"]),
                Node(opType: "MatMulInteger", inputs: ["x_q", "W", "x_zero", "W_zero"], outputs: ["y_int"]),
                Node(opType: "Cast", inputs: ["y_int"], outputs: ["y_cast"], attributes: ["to": .int(1)]),
                Node(opType: "Mul", inputs: ["x_scale", "W_scale"], outputs: ["scale"]),
                Node(opType: "Mul", inputs: ["y_cast", "scale"], outputs: ["y_scaled"]),
                Node(opType: "Add", inputs: ["y_scaled", "bias"], outputs: ["y"]),
            ],
            inputs: [ValueInfo(name: "x", type: .tensor(dtype: .float32, shape: [.symbolic("batch"), .fixed(3), .fixed(k)]))],
            outputs: [ValueInfo(name: "y", type: .tensor(dtype: .float32, shape: nil))],
            initializers: [
                "W": weights, "W_scale": scale, "W_zero": perColumn ? Tensor(zeros: .int8, shape: [n]) : .scalar(Int8(0)),
                "bias": Tensor(shape: [n], scalars: (0..<n).map { Float($0) / 10 - 1 }),
            ],
            opsets: ["": 17])
    }

    @Test(arguments: [false, true])
    func fusedDynamicQuantizedMatMulEqualsUnfusedGraph(perColumn: Bool) throws {
        let graph = Self.quantizedGraph(perColumn: perColumn)
        let fused = try Session(graph: graph)
        let unfused = try Session(graph: graph, options: SessionOptions(optimize: false))
        let twoThreads = try Session(graph: graph, options: SessionOptions(intraOpThreads: 2))
        #expect(fused.optimizedGraph.nodes.map(\.opType) == ["DynamicQuantizeMatMul"])
        var values = Self.bytes(2 * 3 * 20, seed: 9).map { Float(Int($0) - 100) / 37 }
        values[5] = .nan  // quantized to the zero point, not a crash
        let x = Tensor(shape: [2, 3, 20], scalars: values)
        let y = try #require(try fused.run(["x": x])["y"]?.tensor)
        let reference = try #require(try unfused.run(["x": x])["y"]?.tensor)
        #expect(y.shape == [2, 3, 37])
        #expect(y.scalars(as: Float.self) == reference.scalars(as: Float.self))
        #expect(try twoThreads.run(["x": x])["y"]?.tensor?.scalars(as: Float.self) == reference.scalars(as: Float.self))
    }

    /// A non-zero weight zero point is not the symmetric form: the graph stays unfused and still runs.
    @Test func asymmetricWeightsAreNotFused() throws {
        var graph = Self.quantizedGraph(perColumn: false)
        graph.initializers["W_zero"] = .scalar(Int8(3))
        let session = try Session(graph: graph)
        #expect(session.optimizedGraph.nodes.contains { $0.opType == "MatMulInteger" })
        #expect(try session.run(["x": Tensor(zeros: .float32, shape: [1, 3, 20])])["y"]?.tensor?.shape == [1, 3, 37])
    }
}
