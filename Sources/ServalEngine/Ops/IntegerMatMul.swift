import CServalKernels
import ServalTensor

/// Integer matrix products on the packed int8 kernel (`CServalKernels`: AVX-512 VNNI, AVX2 or portable C):
/// MatMulInteger's operand B, the product with zero points removed exactly, and the fused dynamically
/// quantized MatMul that the optimizer builds from the DynamicQuantizeLinear + MatMulInteger + Cast + Mul form.

/// B of an integer matrix product, packed for the kernel once (at load when B is a weight): int8 panels,
/// column sums, and one int32 zero point per column. A uint8 B is shifted to int8 (b − 128, zero point − 128),
/// which leaves every (b − zero point) unchanged.
struct PackedInt8Matrix: Sendable {
    let packed: [Int8]
    let columnSums: [Int32]  // per matrix, n values each
    let zeroPoints: [Int32]  // n values
    let batch: [Int]
    let k: Int
    let n: Int
    let shape: [Int]

    var matrixBytes: Int { serval_qgemm_packed_size(k, n) }
    var hasZeroPoints: Bool { zeroPoints.contains { $0 != 0 } }

    init(_ b: Tensor, zeroPoint: Tensor?) throws {
        guard b.rank >= 2 else { throw KernelError("integer matrix product needs rank ≥ 2 operands, got B \(b.shape)") }
        guard b.dtype == .int8 || b.dtype == .uint8 else { throw KernelError("integer matrix product takes uint8 or int8, got \(b.dtype)") }
        k = b.shape[b.rank - 2]
        n = b.shape[b.rank - 1]
        batch = Array(b.shape.dropLast(2))
        shape = b.shape
        let shift: Int32 = b.dtype == .uint8 ? 128 : 0
        var zeros = [Int32](repeating: 0, count: n)
        if let zeroPoint {
            guard zeroPoint.dtype == b.dtype else { throw KernelError("zero point type \(zeroPoint.dtype) differs from operand type \(b.dtype)") }
            let values = try zeroPoint.int64s()
            guard values.count == 1 || values.count == n else {
                throw KernelError("B zero point of shape \(zeroPoint.shape) fits neither a scalar nor one value per column (\(n))")
            }
            zeros = (0..<n).map { Int32(values[values.count == 1 ? 0 : $0]) }
        }
        zeroPoints = zeros.map { $0 - shift }
        let matrices = max(1, batch.reduce(1, *))
        let matrixBytes = serval_qgemm_packed_size(k, n)
        var packed = [Int8](repeating: 0, count: matrices * matrixBytes)
        var sums = [Int32](repeating: 0, count: matrices * n)
        let (k, n) = (self.k, self.n)
        let signed: [Int8] = b.dtype == .int8 ? b.scalars(as: Int8.self) : b.scalars(as: UInt8.self).map { Int8(bitPattern: $0 ^ 0x80) }
        signed.withUnsafeBufferPointer { source in
            packed.withUnsafeMutableBufferPointer { target in
                sums.withUnsafeMutableBufferPointer { sums in
                    for matrix in 0..<matrices {
                        serval_qgemm_pack_b(source.baseAddress! + matrix * k * n, k, n, n,
                                            target.baseAddress! + matrix * matrixBytes, sums.baseAddress! + matrix * n)
                    }
                }
            }
        }
        self.packed = packed
        self.columnSums = sums
    }

    /// B packed once at load when it and its zero point are weights; nil when they arrive at run time.
    static func packedAtLoad(_ build: KernelBuildContext, b: Int, zeroPoint: Int) throws -> PackedInt8Matrix? {
        guard let weights = build.constant(b) else { return nil }
        if build.hasInput(zeroPoint) && build.constant(zeroPoint) == nil { return nil }
        return try PackedInt8Matrix(weights, zeroPoint: build.hasInput(zeroPoint) ? build.constant(zeroPoint) : nil)
    }
}

/// The instruction set the int8 kernel runs on here ("avx512vnni", "avx2" or "portable").
public var integerKernelISA: String { String(cString: serval_qgemm_isa()) }

/// The left operand of an integer product (MatMulInteger's A, QLinearConv's x) as uint8 with int32 zero points:
/// a uint8 tensor is used as it is, an int8 one is shifted into a pooled copy (a + 128, zero point + 128).
struct UnsignedOperand {
    let values: Tensor  // uint8
    let zeroPoints: [Int32]  // one, or one per row of the last two dims

    init(_ a: Tensor, zeroPoint: Tensor?, rows: Int, _ context: RunContext) throws {
        let shift: Int32
        switch a.dtype {
        case .uint8:
            values = a
            shift = 0
        case .int8:
            var shifted = context.allocate(.uint8, a.shape)
            shifted.withUnsafeMutableBufferPointer(as: UInt8.self) { target in
                a.withUnsafeBufferPointer(as: Int8.self) { source in
                    for i in source.indices { target[i] = UInt8(bitPattern: source[i]) ^ 0x80 }
                }
            }
            values = shifted
            shift = 128
        default: throw KernelError("integer matrix product takes uint8 or int8, got \(a.dtype)")
        }
        guard let zeroPoint else {
            zeroPoints = [shift]
            return
        }
        guard zeroPoint.dtype == a.dtype else { throw KernelError("zero point type \(zeroPoint.dtype) differs from operand type \(a.dtype)") }
        let zeros = try zeroPoint.int64s()
        guard zeros.count == 1 || zeros.count == rows else {
            throw KernelError("A zero point of shape \(zeroPoint.shape) fits neither a scalar nor one value per row (\(rows))")
        }
        zeroPoints = zeros.map { Int32($0) + shift }
    }
}

/// C[m, n] = Σ_k (A[m, k] − a₀) · (B[k, n] − b₀) in int32 over broadcast batches, exactly.
func integerMatMul(_ a: Tensor, _ aZero: Tensor?, _ b: PackedInt8Matrix, _ context: RunContext) throws -> (values: Tensor, m: Int, n: Int) {
    guard a.rank >= 2 else { throw KernelError("integer matrix product needs rank ≥ 2 operands, got \(a.shape) and \(b.shape)") }
    let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.n
    guard k == b.k else { throw KernelError("inner dimensions differ: \(a.shape) × \(b.shape)") }
    let batchA = Array(a.shape.dropLast(2))
    guard let batch = Shape.broadcast(batchA, b.batch) else { throw KernelError("batch dimensions \(batchA) and \(b.batch) cannot be broadcast") }
    let left = try UnsignedOperand(a, zeroPoint: aZero, rows: m, context)
    var output = context.allocate(.int32, batch + [m, n])
    let pairs = Shape.broadcastBatchPairs(batchA, b.batch, to: batch)
    let matrixBytes = b.matrixBytes
    let bHasZeros = b.hasZeroPoints
    output.withUnsafeMutableBufferPointer(as: Int32.self) { pc in
        left.values.withUnsafeBufferPointer(as: UInt8.self) { pa in
            b.packed.withUnsafeBufferPointer { pb in
                let pa = pa.baseAddress!, pb = pb.baseAddress!, pc = pc.baseAddress!
                for (index, (offsetA, offsetB)) in pairs.enumerated() {
                    let matrixA = pa + offsetA * m * k, matrixB = pb + offsetB * matrixBytes, matrixC = pc + index * m * n
                    let slices = columnSlices(n, threads: context.threads)
                    context.parallelFor(slices.count) { slice in
                        let (start, end) = slices[slice]
                        serval_qgemm_u8s8(m, end - start, k, matrixA, k, serval_qgemm_panel(matrixB, k, start), matrixC + start, n)
                    }
                    // Remove the zero points: Σ(a − a₀)(b − b₀) = Σab − a₀Σb − b₀Σa + k·a₀·b₀.
                    let columnSums = b.columnSums[(offsetB * n)..<(offsetB * n + n)]
                    for row in 0..<m {
                        let a0 = left.zeroPoints.count == 1 ? left.zeroPoints[0] : left.zeroPoints[row]
                        var rowSum: Int32 = 0
                        if bHasZeros { for i in 0..<k { rowSum &+= Int32(matrixA[row * k + i]) } }
                        let out = matrixC + row * n
                        for column in 0..<n {
                            let b0 = b.zeroPoints[column]
                            out[column] &+= Int32(k) &* a0 &* b0 &- a0 &* columnSums[columnSums.startIndex + column] &- b0 &* rowSum
                        }
                    }
                }
            }
        }
    }
    return (output, m, n)
}

/// Column ranges for `threads` workers, each starting on a 32-column boundary (two kernel panels).
func columnSlices(_ n: Int, threads: Int) -> [(Int, Int)] {
    let blocks = (n + 31) / 32
    let workers = max(1, min(threads, blocks))
    return (0..<workers).map { worker in
        (min(n, worker * blocks / workers * 32), min(n, (worker + 1) * blocks / workers * 32))
    }
}

/// `ai.serval:DynamicQuantizeMatMul(x, W, w_scale[, bias])`: x (float) quantized to uint8 as DynamicQuantizeLinear
/// does, multiplied by the int8 weight W (zero point 0) on the integer kernel, and scaled back to float (plus bias)
/// in the kernel's store, with no int32 or quantized intermediate tensors.
struct DynamicQuantizeMatMulKernel: Kernel {
    let weights: PackedInt8Matrix
    let weightScales: [Float]  // n values
    let bias: [Float]?

    init(_ build: KernelBuildContext) throws {
        guard let w = build.constant(1), w.dtype == .int8, w.rank == 2 else {
            throw KernelError("DynamicQuantizeMatMul needs a constant 2-D int8 weight")
        }
        weights = try PackedInt8Matrix(w, zeroPoint: nil)
        guard let scale = build.constant(2), scale.dtype == .float32, scale.count == 1 || scale.count == weights.n else {
            throw KernelError("DynamicQuantizeMatMul needs a constant float scale per tensor or per column")
        }
        let scales = scale.scalars(as: Float.self)
        weightScales = scales.count == 1 ? [Float](repeating: scales[0], count: weights.n) : scales
        if build.hasInput(3) {
            guard let bias = build.constant(3), bias.dtype == .float32, bias.count == weights.n else {
                throw KernelError("DynamicQuantizeMatMul bias must be a constant float vector of \(weights.n) values")
            }
            self.bias = bias.scalars(as: Float.self)
        } else {
            bias = nil
        }
    }

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let x = try inputs.tensor(0)
        guard x.dtype == .float32, x.rank >= 1, x.shape[x.rank - 1] == weights.k else {
            throw KernelError("DynamicQuantizeMatMul input \(x.shape) \(x.dtype) does not end in \(weights.k) float columns")
        }
        let k = weights.k, n = weights.n, m = x.count / max(k, 1)
        var quantized = context.allocate(.uint8, x.shape)
        let (scale, zeroPoint) = quantized.withUnsafeMutableBufferPointer(as: UInt8.self) { target in
            x.withUnsafeBufferPointer(as: Float.self) { source in quantizeDynamically(source, into: target) }
        }
        let offsets = weights.columnSums.map { -Int32(zeroPoint) &* $0 }
        var output = context.allocate(.float32, Array(x.shape.dropLast()) + [n])
        let slices = columnSlices(n, threads: context.threads)
        output.withUnsafeMutableBufferPointer(as: Float.self) { pc in
            quantized.withUnsafeBufferPointer(as: UInt8.self) { pa in
                weights.packed.withUnsafeBufferPointer { pb in
                    offsets.withUnsafeBufferPointer { offsets in
                        weightScales.withUnsafeBufferPointer { scales in
                            let pa = pa.baseAddress!, pb = pb.baseAddress!, pc = pc.baseAddress!
                            let offsets = offsets.baseAddress!, scales = scales.baseAddress!
                            context.parallelFor(slices.count) { slice in
                                let (start, end) = slices[slice]
                                let run = { (bias: UnsafePointer<Float>?) in
                                    serval_qgemm_u8s8_f32(m, end - start, k, pa, k, serval_qgemm_panel(pb, k, start), pc + start, n,
                                                          offsets + start, scale, scales + start, bias.map { $0 + start })
                                }
                                if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
                            }
                        }
                    }
                }
            }
        }
        return [.tensor(output)]
    }
}

/// DynamicQuantizeLinear over a float buffer: scale = (max(0, x) − min(0, x)) / 255, zero point
/// round(−min / scale) saturated to [0, 255], q = saturate(round(x / scale) + zero point), rounding half to even.
func quantizeDynamically(_ source: UnsafeBufferPointer<Float>, into target: UnsafeMutableBufferPointer<UInt8>) -> (scale: Float, zeroPoint: UInt8) {
    var low: Float = 0, high: Float = 0
    var index = 0
    if source.count >= 8 {
        var lows = SIMD8<Float>(repeating: 0), highs = SIMD8<Float>(repeating: 0)
        while index + 8 <= source.count {
            let values = UnsafeRawPointer(source.baseAddress! + index).loadUnaligned(as: SIMD8<Float>.self)
            lows = pointwiseMin(lows, values)
            highs = pointwiseMax(highs, values)
            index += 8
        }
        low = lows.min()
        high = highs.max()
    }
    while index < source.count {
        low = min(low, source[index])
        high = max(high, source[index])
        index += 1
    }
    let scale = (high - low) / 255
    guard scale != 0, scale.isFinite else {
        target.update(repeating: 0)
        return (scale, 0)
    }
    let zero = min(max((0 - low / scale).rounded(.toNearestOrEven), 0), 255)
    serval_quantize_u8(source.baseAddress!, source.count, scale, zero, target.baseAddress!)
    return (scale, UInt8(zero))
}
