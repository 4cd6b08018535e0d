import ServalEngine
import ServalTensor
import Testing

/// Kernels split over the intra-op pool give exactly the single-threaded results, and the pool runs every index once.
struct ParallelKernelTests {
    /// Attention-shaped work, large enough that every kernel splits: broadcast Add and Div, Erf, last-axis Softmax,
    /// LayerNormalization, Transposes (kept inner axis and moved last axis), batched and weight MatMuls.
    static func graph() -> Graph {
        let (heads, sequence, width) = (4, 96, 64)
        var state: UInt32 = 1
        func values(_ count: Int) -> [Float] {
            (0..<count).map { _ in
                state = state &* 1_664_525 &+ 1_013_904_223
                return Float(Int(state >> 16) % 2001 - 1000) / 1000
            }
        }
        let hidden = heads * width
        return Graph(
            nodes: [
                Node(opType: "MatMul", inputs: ["x", "W"], outputs: ["projected"]),
                Node(opType: "Reshape", inputs: ["projected", "split_shape"], outputs: ["split"]),
                Node(opType: "Transpose", inputs: ["split"], outputs: ["q"], attributes: ["perm": .ints([0, 2, 1, 3])]),
                Node(opType: "Transpose", inputs: ["split"], outputs: ["k"], attributes: ["perm": .ints([0, 2, 3, 1])]),
                Node(opType: "MatMul", inputs: ["q", "k"], outputs: ["scores"]),
                Node(opType: "Div", inputs: ["scores", "scale"], outputs: ["scaled"]),
                Node(opType: "Add", inputs: ["scaled", "mask"], outputs: ["masked"]),
                Node(opType: "Softmax", inputs: ["masked"], outputs: ["weights"], attributes: ["axis": .int(-1)]),
                Node(opType: "MatMul", inputs: ["weights", "q"], outputs: ["context"]),
                Node(opType: "Erf", inputs: ["context"], outputs: ["activated"]),
                Node(opType: "Transpose", inputs: ["activated"], outputs: ["merged_heads"], attributes: ["perm": .ints([0, 2, 1, 3])]),
                Node(opType: "Reshape", inputs: ["merged_heads", "merge_shape"], outputs: ["merged"]),
                Node(opType: "LayerNormalization", inputs: ["merged", "gamma", "beta"], outputs: ["y"], attributes: ["axis": .int(-1)]),
            ],
            inputs: [ValueInfo(name: "x", type: .tensor(dtype: .float32, shape: [.symbolic("batch"), .fixed(sequence), .fixed(hidden)]))],
            outputs: [ValueInfo(name: "y", type: .tensor(dtype: .float32, shape: nil))],
            initializers: [
                "W": Tensor(shape: [hidden, hidden], scalars: values(hidden * hidden).map { $0 / 16 }),
                "split_shape": Tensor(shape: [4], scalars: [Int64(0), Int64(sequence), Int64(heads), Int64(width)]),
                "merge_shape": Tensor(shape: [3], scalars: [Int64(0), Int64(sequence), Int64(hidden)]),
                "scale": .scalar(Float(8)),
                "mask": Tensor(shape: [1, 1, 1, sequence], scalars: (0..<sequence).map { $0 % 7 == 0 ? Float(-10_000) : 0 }),
                "gamma": Tensor(shape: [hidden], scalars: values(hidden)),
                "beta": Tensor(shape: [hidden], scalars: values(hidden)),
            ],
            opsets: ["": 17])
    }

    @Test func multiThreadedKernelsMatchOneThread() throws {
        let graph = Self.graph()
        let inputs: [Float] = (0..<(2 * 96 * 256)).map { index in Float(index % 97) / 50 - 1 }
        let x = Tensor(shape: [2, 96, 256], scalars: inputs)
        let one = try #require(try Session(graph: graph, options: SessionOptions(intraOpThreads: 1)).run(["x": x])["y"]?.tensor)
        for threads in [2, 3] {
            let many = try #require(try Session(graph: graph, options: SessionOptions(intraOpThreads: threads)).run(["x": x])["y"]?.tensor)
            #expect(many.shape == [2, 96, 256])
            // Our kernels split work without changing any element's order of operations, so they match exactly. Where
            // the CPU lacks AVX-512, weight GEMMs run on OpenBLAS, whose kernels round differently for different
            // panel widths: those elements agree to float precision, not bit for bit.
            let (a, b) = (many.scalars(as: Float.self), one.scalars(as: Float.self))
            let worst = zip(a, b).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
            #expect(worst <= 1e-5, "\(threads) threads: largest relative difference \(worst)")
        }
    }

    /// Every index runs exactly once, also when several callers share the pool at once (one of them gets it, the
    /// others run inline).
    @Test func poolRunsEveryIndexOnceUnderConcurrentCallers() async {
        await withTaskGroup(of: Bool.self) { group in
            for caller in 0..<6 {
                group.addTask {
                    let count = 1_000 + caller * 37
                    let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: count)
                    counts.initialize(repeating: 0)
                    defer { counts.deallocate() }
                    for _ in 0..<20 { Parallel.forEach(count, threads: 4) { counts[$0] += 1 } }
                    return counts.allSatisfy { $0 == 20 }
                }
            }
            for await ok in group { #expect(ok) }
        }
    }
}
