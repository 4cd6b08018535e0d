import ServalTensor

/// Gemm and MatMul on OpenBLAS, plus the fused forms the optimizer creates
/// (`serval:FusedGemm`, `serval:FusedMatMul`: bias add and activation applied in one pass over the output).
struct GemmKernel: Kernel {
    let transA: Bool
    let transB: Bool
    let alpha: Float
    let beta: Float
    let activation: UnaryOp?
    /// A constant B, pre-packed at load as a row-major [K, N] float32 matrix (transposed if transB).
    let packedB: Tensor?
    /// A constant C that is a row vector of N values, pre-scaled by beta: added in the output pass.
    let rowBias: [Float]?
    /// packedB (times alpha) packed for the AVX-512 kernel, where the CPU has it.
    let panels: PackedFloatMatrix?

    init(transA: Bool, transB: Bool, alpha: Float, beta: Float, activation: UnaryOp?, constantB: Tensor?, constantC: Tensor?) throws {
        self.transA = transA
        self.alpha = alpha
        self.beta = beta
        self.activation = activation
        if let constantB, constantB.rank == 2, constantB.dtype == .float32 {
            packedB = transB ? try transpose(constantB, perm: [1, 0], RunContext()) : constantB
            self.transB = false
        } else {
            packedB = nil
            self.transB = transB
        }
        if let c = constantC, c.dtype == .float32, c.rank <= 2, c.count > 1 || c.rank == 0, c.shape.dropLast().allSatisfy({ $0 == 1 }) {
            rowBias = c.scalars(as: Float.self).map { $0 * beta }
        } else {
            rowBias = nil
        }
        panels = transA ? nil : packedB.flatMap { PackedFloatMatrix($0, alpha: alpha) }
    }

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let a = try inputs.tensor(0)
        let b = try packedB ?? inputs.tensor(1)
        let c = try inputs.optionalTensor(2)
        guard a.rank == 2, b.rank == 2 else { throw KernelError("Gemm takes 2-D A and B, got \(a.shape) and \(b.shape)") }
        let (m, k) = transA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
        let (kb, n) = transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        guard k == kb else { throw KernelError("Gemm inner dimensions differ: A is \(a.shape), B is \(b.shape)") }
        if a.dtype == .float64 || b.dtype == .float64 {
            return [.tensor(try gemmDouble(a, b, c, m: m, n: n, k: k, context))]
        }
        if let rowBias, rowBias.count != n && rowBias.count != 1 {
            throw KernelError("Gemm C has \(rowBias.count) values for \(n) columns")
        }
        let af = try a.converted(to: .float32), bf = try b.converted(to: .float32)
        var out = context.allocate(.float32, [m, n])
        // A C that is not a constant row vector is written into the output first and accumulated (beta = 1).
        let accumulate = try out.withUnsafeMutableBufferPointer(as: Float.self) { output -> Bool in
            guard rowBias == nil, let c, beta != 0 else { return false }
            try fillBias(output.baseAddress!, c, m: m, n: n, scale: beta)
            return true
        }
        if let panels, !accumulate, a.dtype == .float32 {
            af.withUnsafeBufferPointer(as: Float.self) { pa in
                out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                    context.sgemm(m: m, a: pa.baseAddress!, lda: k, packed: panels, c: po.baseAddress!, ldc: n)
                    applyEpilogue(po.baseAddress!, rows: m, columns: n, bias: rowBias, activation: activation)
                }
            }
            return [.tensor(out)]
        }
        af.withUnsafeBufferPointer(as: Float.self) { pa in
            bf.withUnsafeBufferPointer(as: Float.self) { pb in
                out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                    context.sgemm(
                        transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                        a: pa.baseAddress!, lda: a.shape[1], b: pb.baseAddress!, ldb: b.shape[1],
                        beta: accumulate ? 1 : 0, c: po.baseAddress!, ldc: n)
                    applyEpilogue(po.baseAddress!, rows: m, columns: n, bias: rowBias, activation: activation)
                }
            }
        }
        return [.tensor(try out.converted(to: a.dtype == .float16 ? .float16 : .float32))]
    }

    private func gemmDouble(_ a: Tensor, _ b: Tensor, _ c: Tensor?, m: Int, n: Int, k: Int, _ context: RunContext) throws -> Tensor {
        let ad = try a.converted(to: .float64), bd = try b.converted(to: .float64)
        var out = Tensor(zeros: .float64, shape: [m, n])
        if let c, beta != 0 {
            let bias = try c.converted(to: .float64)
            guard let plan = BroadcastPlan(bias.shape, [m, n]), plan.outputShape == [m, n] else {
                throw KernelError("Gemm C of shape \(c.shape) does not broadcast to [\(m), \(n)]")
            }
            let zero = Tensor(zeros: .float64, shape: [m, n])
            out = try applyBinary(.add, zero, try applyBinary(.multiply, bias, Tensor.scalar(Double(beta)), context), context)
        }
        ad.withUnsafeBufferPointer(as: Double.self) { pa in
            bd.withUnsafeBufferPointer(as: Double.self) { pb in
                out.withUnsafeMutableBufferPointer(as: Double.self) { po in
                    BLAS.dgemm(
                        transA: transA, transB: transB, m: m, n: n, k: k, alpha: Double(alpha),
                        a: pa.baseAddress!, lda: a.shape[1], b: pb.baseAddress!, ldb: b.shape[1],
                        beta: 1, c: po.baseAddress!, ldc: n)
                    if let activation { for i in 0..<(m * n) { po[i] = activation.apply(po[i]) } }
                }
            }
        }
        return out
    }
}

/// Adds a row bias (N values, or one) and applies the fused activation, one row at a time while it is in cache.
func applyEpilogue(_ output: UnsafeMutablePointer<Float>, rows: Int, columns: Int, bias: [Float]?, activation: UnaryOp?) {
    guard bias != nil || activation != nil else { return }
    let values = bias ?? []
    values.withUnsafeBufferPointer { biasValues in
        for row in 0..<rows {
            let line = output + row * columns
            if biasValues.count == 1 {
                let value = biasValues[0]
                for col in 0..<columns { line[col] += value }
            } else if biasValues.count == columns {
                for col in 0..<columns { line[col] += biasValues[col] }
            }
            if let activation { activation.apply(line, line, columns) }
        }
    }
}

/// Writes `scale · C` broadcast to [m, n] into `output` (Gemm's unidirectional broadcast of C).
func fillBias(_ output: UnsafeMutablePointer<Float>, _ c: Tensor, m: Int, n: Int, scale: Float) throws {
    let bias = try c.converted(to: .float32)
    let shape = bias.shape
    let rows: Int, cols: Int
    switch shape.count {
    case 0: (rows, cols) = (1, 1)
    case 1: (rows, cols) = (1, shape[0])
    default:
        guard shape.count == 2 else { throw KernelError("bias of shape \(shape) does not broadcast to [\(m), \(n)]") }
        (rows, cols) = (shape[0], shape[1])
    }
    guard rows == 1 || rows == m, cols == 1 || cols == n else {
        throw KernelError("bias of shape \(shape) does not broadcast to [\(m), \(n)]")
    }
    bias.withUnsafeBufferPointer(as: Float.self) { source in
        for row in 0..<m {
            let sourceRow = rows == 1 ? 0 : row
            let target = output + row * n
            if cols == 1 {
                let v = source[sourceRow] * scale
                for col in 0..<n { target[col] = v }
            } else {
                for col in 0..<n { target[col] = source[sourceRow * n + col] * scale }
            }
        }
    }
}

/// ONNX MatMul (numpy matmul semantics: 1-D promotion, batch broadcasting), optionally with a fused
/// bias (broadcast over rows, shape [N]) and activation.
struct MatMulKernel: Kernel {
    let activation: UnaryOp?
    let packedB: Tensor?
    /// A constant 2-D packedB packed for the AVX-512 kernel, where the CPU has it.
    var panels: PackedFloatMatrix? = nil

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let a = try inputs.tensor(0)
        let b = try packedB ?? inputs.tensor(1)
        let bias = try inputs.optionalTensor(2)
        guard a.rank >= 1, b.rank >= 1 else { throw KernelError("MatMul inputs must have rank ≥ 1") }
        if a.dtype != .float32 || b.dtype != .float32 {
            guard a.dtype.isFloatingPoint || a.dtype.isInteger, a.dtype == b.dtype else {
                throw KernelError("MatMul inputs have types \(a.dtype) and \(b.dtype)")
            }
            if a.dtype == .float64 || a.dtype == .float16 {
                let result = try run([.tensor(try a.converted(to: .float32)), .tensor(try b.converted(to: .float32)), bias.map { .tensor($0) }], context)
                return [.tensor(try result[0].tensor!.converted(to: a.dtype))]
            }
            return [.tensor(try integerMatMul(a, b))]
        }
        let a2 = a.rank == 1 ? a.reshaped([1, a.shape[0]]) : a
        let b2 = b.rank == 1 ? b.reshaped([b.shape[0], 1]) : b
        let m = a2.shape[a2.rank - 2], k = a2.shape[a2.rank - 1]
        let kb = b2.shape[b2.rank - 2], n = b2.shape[b2.rank - 1]
        guard k == kb else { throw KernelError("MatMul inner dimensions differ: \(a.shape) × \(b.shape)") }
        let batchA = Array(a2.shape.dropLast(2)), batchB = Array(b2.shape.dropLast(2))
        guard let batch = Shape.broadcast(batchA, batchB) else {
            throw KernelError("MatMul batch dimensions \(batchA) and \(batchB) cannot be broadcast")
        }
        var outShape = batch + [m, n]
        var out = context.allocate(.float32, outShape)
        let batchCount = batch.reduce(1, *)
        try out.withUnsafeMutableBufferPointer(as: Float.self) { po in
            a2.withUnsafeBufferPointer(as: Float.self) { pa in
                b2.withUnsafeBufferPointer(as: Float.self) { pb in
                    if let panels, b.rank == 2, batchA == batch {
                        // Constant weights: one GEMM over all rows on the pre-packed kernel.
                        context.sgemm(m: batchCount * m, a: pa.baseAddress!, lda: k, packed: panels, c: po.baseAddress!, ldc: n)
                    } else if batchB.reduce(1, *) == 1 && batchA == batch {
                        // Weights shared by every batch: one GEMM over all rows.
                        context.sgemm(transA: false, transB: false, m: batchCount * m, n: n, k: k,
                                      a: pa.baseAddress!, lda: k, b: pb.baseAddress!, ldb: n, c: po.baseAddress!, ldc: n)
                    } else {
                        // Batched products (attention heads): one single-threaded GEMM per pair, pairs spread over the threads.
                        let pairs = Shape.broadcastBatchPairs(batchA, batchB, to: batch)
                        let (x, y, z) = (pa.baseAddress!, pb.baseAddress!, po.baseAddress!)
                        if pairs.count < context.threads {
                            for (index, (offsetA, offsetB)) in pairs.enumerated() {
                                context.sgemm(transA: false, transB: false, m: m, n: n, k: k, a: x + offsetA * m * k, lda: k,
                                              b: y + offsetB * k * n, ldb: n, c: z + index * m * n, ldc: n)
                            }
                            return
                        }
                        context.parallelRanges(pairs.count, grain: max(1, (1 << 17) / max(1, m * n * k))) { range in
                            for index in range {
                                let (offsetA, offsetB) = pairs[index]
                                BLAS.sgemm(transA: false, transB: false, m: m, n: n, k: k,
                                           a: x + offsetA * m * k, lda: k, b: y + offsetB * k * n, ldb: n,
                                           c: z + index * m * n, ldc: n)
                            }
                        }
                    }
                }
            }
            var rowBias: [Float]?
            if let bias {
                rowBias = try bias.converted(to: .float32).scalars(as: Float.self)
                guard rowBias?.count == n else { throw KernelError("bias of shape \(bias.shape) does not match \(n) columns") }
            }
            applyEpilogue(po.baseAddress!, rows: po.count / max(n, 1), columns: n, bias: rowBias, activation: activation)
        }
        if a.rank == 1 { outShape.remove(at: outShape.count - 2) }
        if b.rank == 1 { outShape.removeLast() }
        return [.tensor(out.reshaped(outShape))]
    }

    private func integerMatMul(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        let result = try run([.tensor(try a.converted(to: .float32)), .tensor(try b.converted(to: .float32))], RunContext())
        return try result[0].tensor!.converted(to: a.dtype)
    }
}

extension KernelRegistry {
    static func registerMatMul(into registry: inout KernelRegistry) {
        let gemm: KernelFactory = { build in
            try GemmKernel(
                transA: try build.int("transA", default: 0) != 0,
                transB: try build.int("transB", default: 0) != 0,
                alpha: try build.float("alpha", default: 1),
                beta: try build.float("beta", default: 1),
                activation: try fusedActivation(build),
                constantB: build.constant(1), constantC: build.hasInput(2) ? build.constant(2) : nil)
        }
        registry.register("Gemm", gemm)
        registry.register("FusedGemm", domain: servalDomain, gemm)
        let matmul: KernelFactory = { build in
            let weights = build.constant(1).flatMap { $0.dtype == .float32 ? $0 : nil }
            return MatMulKernel(activation: try fusedActivation(build), packedB: weights,
                                panels: weights.flatMap { $0.rank == 2 ? PackedFloatMatrix($0) : nil })
        }
        registry.register("MatMul", matmul)
        registry.register("FusedMatMul", domain: servalDomain, matmul)
    }
}

/// Domain of the internal ops that optimizer passes create.
public let servalDomain = "ai.serval"

/// Reads the activation a fusion pass attached (`activation`, with `activation_alpha` / `activation_min` / `activation_max`).
func fusedActivation(_ build: KernelBuildContext) throws -> UnaryOp? {
    guard let name = try build.string("activation") else { return nil }
    switch name {
    case "Relu": return .relu
    case "Sigmoid": return .sigmoid
    case "Tanh": return .tanh
    case "LeakyRelu": return .leakyRelu(try build.float("activation_alpha", default: 0.01))
    case "Clip": return .clip(try build.float("activation_min", default: -.infinity), try build.float("activation_max", default: .infinity))
    case "HardSwish": return .hardSwish
    case "Gelu": return .gelu(tanhApproximation: false)
    default: throw build.invalid("unknown fused activation \(name)")
    }
}
