import ServalTensor

/// Linear quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, and the integer
/// matrix products MatMulInteger and QLinearMatMul, which run on an integer kernel (int16 operands,
/// int32 accumulation: the pattern LLVM turns into AVX2 `vpmaddwd`), never through floats.

/// Where each element of `x` finds its scale and zero point: per tensor, per `axis`, or per block along it.
struct QuantizationLayout {
    let groups: [Int]  // parameter index for every element of x

    init(xShape: [Int], parameterShape: [Int], axis rawAxis: Int, blockSize: Int) throws {
        let count = xShape.reduce(1, *)
        let parameters = parameterShape.reduce(1, *)
        if parameters == 1 {
            groups = [Int](repeating: 0, count: count)
            return
        }
        guard let axis = Shape.normalize(axis: rawAxis, rank: xShape.count) else {
            throw KernelError("quantization axis \(rawAxis) out of range for \(xShape)")
        }
        let strides = Shape.strides(xShape)
        if blockSize > 0 {
            // Blocked: parameters have x's rank with ceil(dim / block) along the axis.
            guard parameterShape.count == xShape.count else { throw KernelError("blocked scale of shape \(parameterShape) must have the rank of \(xShape)") }
            let parameterStrides = Shape.strides(parameterShape)
            groups = (0..<count).map { index in
                var offset = 0
                for d in 0..<xShape.count {
                    var coordinate = (index / strides[d]) % xShape[d]
                    if d == axis { coordinate /= blockSize }
                    offset += coordinate * parameterStrides[d]
                }
                return offset
            }
            return
        }
        guard parameterShape.count == 1, parameters == xShape[axis] else {
            throw KernelError("per-axis scale of shape \(parameterShape) must have \(xShape[axis]) values (axis \(axis) of \(xShape))")
        }
        groups = (0..<count).map { ($0 / strides[axis]) % xShape[axis] }
    }
}

/// The integer range of a quantized type.
func quantizedRange(_ dtype: DType) throws -> (low: Double, high: Double) {
    switch dtype {
    case .uint8: return (0, 255)
    case .int8: return (-128, 127)
    case .uint16: return (0, 65535)
    case .int16: return (-32768, 32767)
    case .int32: return (Double(Int32.min), Double(Int32.max))
    default: throw KernelError("unsupported quantized type \(dtype)")
    }
}

/// ONNX QuantizeLinear: y = saturate(round_half_even(x / scale) + zero_point).
func quantizeLinear(_ x: Tensor, scale: Tensor, zeroPoint: Tensor?, outputType: DType, axis: Int, blockSize: Int) throws -> Tensor {
    let layout = try QuantizationLayout(xShape: x.shape, parameterShape: scale.shape, axis: axis, blockSize: blockSize)
    let scales = try scale.doubles()
    let zeros = try zeroPoint?.doubles() ?? [Double](repeating: 0, count: scales.count)
    let (low, high) = try quantizedRange(outputType)
    let values = try x.doubles()
    let quantized = values.indices.map { i -> Double in
        let group = layout.groups[i]
        let q = (values[i] / scales[group]).rounded(.toNearestOrEven) + zeros[group]
        return q.isNaN ? zeros[group] : min(max(q, low), high)
    }
    return try Tensor(shape: x.shape, scalars: quantized).converted(to: outputType)
}

/// ONNX DequantizeLinear: y = (x - zero_point) * scale, in the scale's floating-point type.
func dequantizeLinear(_ x: Tensor, scale: Tensor, zeroPoint: Tensor?, axis: Int, blockSize: Int) throws -> Tensor {
    let layout = try QuantizationLayout(xShape: x.shape, parameterShape: scale.shape, axis: axis, blockSize: blockSize)
    let scales = try scale.doubles()
    let zeros = try zeroPoint?.doubles() ?? [Double](repeating: 0, count: scales.count)
    let values = try x.doubles()
    if scale.dtype == .float32 {
        let result = values.indices.map { i -> Float in
            let group = layout.groups[i]
            return Float(values[i] - zeros[group]) * Float(scales[group])
        }
        return Tensor(shape: x.shape, scalars: result)
    }
    let result = values.indices.map { i in (values[i] - zeros[layout.groups[i]]) * scales[layout.groups[i]] }
    return try Tensor(shape: x.shape, scalars: result).converted(to: scale.dtype)
}

/// ONNX DynamicQuantizeLinear: uint8 quantization with scale and zero point from the data's range (which includes 0).
func dynamicQuantizeLinear(_ x: Tensor) throws -> [Value] {
    guard x.dtype == .float32 else { throw KernelError("DynamicQuantizeLinear takes float input, got \(x.dtype)") }
    let values = x.scalars(as: Float.self)
    let low = min(0, values.min() ?? 0), high = max(0, values.max() ?? 0)
    let scale = (high - low) / 255
    let zeroPoint = scale == 0 ? 0 : min(max((0 - low / scale).rounded(.toNearestOrEven), 0), 255)
    let quantized = values.map { value -> UInt8 in
        guard scale != 0 else { return UInt8(zeroPoint) }
        return UInt8(min(max((value / scale).rounded(.toNearestOrEven) + zeroPoint, 0), 255))
    }
    return [.tensor(Tensor(shape: x.shape, scalars: quantized)), .tensor(.scalar(scale)), .tensor(.scalar(UInt8(zeroPoint)))]
}

/// Integer operands of a matrix product with their zero points subtracted, widened to Int16.
/// `zeroPoint` is a scalar or one value per row (A) / column (B).
private func centered(_ tensor: Tensor, zeroPoint: Tensor?, perRowOf rows: Int?, perColumnOf columns: Int?) throws -> [Int16] {
    guard tensor.dtype == .uint8 || tensor.dtype == .int8 else { throw KernelError("integer matrix product takes uint8 or int8, got \(tensor.dtype)") }
    let values = try tensor.int64s()
    guard let zeroPoint else { return values.map { Int16($0) } }
    guard zeroPoint.dtype == tensor.dtype else { throw KernelError("zero point type \(zeroPoint.dtype) differs from operand type \(tensor.dtype)") }
    let zeros = try zeroPoint.int64s()
    if zeros.count == 1 { return values.map { Int16($0 - zeros[0]) } }
    let inner = tensor.shape.last ?? 1
    if let rows, zeros.count == rows {
        // A: one zero point per row (rows of the last two dims).
        return values.indices.map { Int16(values[$0] - zeros[($0 / inner) % rows]) }
    }
    if let columns, zeros.count == columns {
        return values.indices.map { Int16(values[$0] - zeros[$0 % columns]) }
    }
    throw KernelError("zero point of shape \(zeroPoint.shape) fits neither a scalar nor one value per \(rows != nil ? "row" : "column")")
}

/// B of an integer matrix product, ready for the kernel: zero point removed, widened to Int16 and transposed per
/// matrix so both operands are read contiguously along k. Built once at load when B is a weight.
struct PackedIntegerB: Sendable {
    let values: [Int16]
    let batch: [Int]
    let k: Int
    let n: Int
    let shape: [Int]

    init(_ b: Tensor, zeroPoint: Tensor?) throws {
        guard b.rank >= 2 else { throw KernelError("integer matrix product needs rank ≥ 2 operands, got B \(b.shape)") }
        k = b.shape[b.rank - 2]
        n = b.shape[b.rank - 1]
        batch = Array(b.shape.dropLast(2))
        shape = b.shape
        let right = try centered(b, zeroPoint: zeroPoint, perRowOf: nil, perColumnOf: n)
        var transposed = [Int16](repeating: 0, count: right.count)
        for matrix in 0..<max(1, batch.reduce(1, *)) {
            let base = matrix * k * n
            for row in 0..<k { for column in 0..<n { transposed[base + column * k + row] = right[base + row * n + column] } }
        }
        values = transposed
    }

    /// B packed once at load when it and its zero point are weights; nil when they arrive at run time.
    static func packedAtLoad(_ build: KernelBuildContext, b: Int, zeroPoint: Int) throws -> PackedIntegerB? {
        guard b < build.constants.count, let weights = build.constants[b] else { return nil }
        let hasZero = zeroPoint < build.node.inputs.count && !build.node.inputs[zeroPoint].isEmpty
        if hasZero && (zeroPoint >= build.constants.count || build.constants[zeroPoint] == nil) { return nil }
        return try PackedIntegerB(weights, zeroPoint: hasZero ? build.constants[zeroPoint] : nil)
    }
}

/// C[m, n] = Σ_k A[m, k] · B[k, n] in int32 over broadcast batches.
func integerMatMul(_ a: Tensor, _ aZero: Tensor?, _ b: PackedIntegerB, _ context: RunContext) throws -> (values: [Int32], shape: [Int], m: Int, n: Int) {
    guard a.rank >= 2 else { throw KernelError("integer matrix product needs rank ≥ 2 operands, got \(a.shape) and \(b.shape)") }
    let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.n
    guard k == b.k else { throw KernelError("inner dimensions differ: \(a.shape) × \(b.shape)") }
    let batchA = Array(a.shape.dropLast(2))
    guard let batch = Shape.broadcast(batchA, b.batch) else { throw KernelError("batch dimensions \(batchA) and \(b.batch) cannot be broadcast") }
    let left = try centered(a, zeroPoint: aZero, perRowOf: m, perColumnOf: nil)
    var output = [Int32](repeating: 0, count: batch.reduce(1, *) * m * n)
    let pairs = Shape.broadcastBatchPairs(batchA, b.batch, to: batch)
    left.withUnsafeBufferPointer { pa in
        b.values.withUnsafeBufferPointer { pb in
            output.withUnsafeMutableBufferPointer { pc in
                let pa = pa.baseAddress!, pb = pb.baseAddress!, pc = pc.baseAddress!
                for (index, (offsetA, offsetB)) in pairs.enumerated() {
                    let matrixA = pa + offsetA * m * k, matrixB = pb + offsetB * k * n, matrixC = pc + index * m * n
                    context.parallelFor(m) { row in
                        let rowA = matrixA + row * k
                        for column in 0..<n {
                            matrixC[row * n + column] = dotInt16(rowA, matrixB + column * k, k)
                        }
                    }
                }
            }
        }
    }
    return (output, batch + [m, n], m, n)
}

/// Σ a[i]·b[i] with int32 accumulation (vectorises to pmaddwd).
@inline(__always)
private func dotInt16(_ a: UnsafePointer<Int16>, _ b: UnsafePointer<Int16>, _ count: Int) -> Int32 {
    var sum: Int32 = 0
    for i in 0..<count { sum &+= Int32(a[i]) &* Int32(b[i]) }
    return sum
}

extension KernelRegistry {
    static func registerQuantization(into registry: inout KernelRegistry) {
        registry.register("QuantizeLinear", since: 10) { build in
            let axis = try build.int("axis", default: 1), blockSize = try build.int("block_size", default: 0)
            let outputType = try build.int("output_dtype").flatMap { DType(onnxCode: $0) }
            return ClosureKernel { inputs, _ in
                let zero = try inputs.optionalTensor(2)
                let type = outputType ?? zero?.dtype ?? .uint8
                return [.tensor(try quantizeLinear(try inputs.tensor(0), scale: try inputs.tensor(1), zeroPoint: zero, outputType: type, axis: axis, blockSize: blockSize))]
            }
        }
        registry.register("DequantizeLinear", since: 10) { build in
            let axis = try build.int("axis", default: 1), blockSize = try build.int("block_size", default: 0)
            return ClosureKernel { inputs, _ in
                [.tensor(try dequantizeLinear(try inputs.tensor(0), scale: try inputs.tensor(1), zeroPoint: try inputs.optionalTensor(2), axis: axis, blockSize: blockSize))]
            }
        }
        registry.register("DynamicQuantizeLinear", since: 11) { _ in
            ClosureKernel { inputs, _ in try dynamicQuantizeLinear(try inputs.tensor(0)) }
        }
        registry.register("MatMulInteger", since: 10) { build in
            let packed = try PackedIntegerB.packedAtLoad(build, b: 1, zeroPoint: 3)
            return ClosureKernel { inputs, context in
                let b = try packed ?? PackedIntegerB(try inputs.tensor(1), zeroPoint: try inputs.optionalTensor(3))
                let (values, shape, _, _) = try integerMatMul(try inputs.tensor(0), try inputs.optionalTensor(2), b, context)
                return [.tensor(Tensor(shape: shape, scalars: values))]
            }
        }
        registry.register("QLinearMatMul", since: 10) { build in
            let packed = try PackedIntegerB.packedAtLoad(build, b: 3, zeroPoint: 5)
            return ClosureKernel { inputs, context in
                let a = try inputs.tensor(0), aScale = try inputs.tensor(1).doubles(), aZero = try inputs.tensor(2)
                let b = try packed ?? PackedIntegerB(try inputs.tensor(3), zeroPoint: try inputs.tensor(5))
                let bScale = try inputs.tensor(4).doubles()
                let yScale = try inputs.tensor(6).doubles(), yZero = try inputs.tensor(7)
                guard yScale.count == 1 else { throw KernelError("QLinearMatMul y_scale must be a scalar") }
                let (values, shape, m, n) = try integerMatMul(a, aZero, b, context)
                let (low, high) = try quantizedRange(yZero.dtype)
                let zero = try yZero.doubles()[0]
                let requantized = values.indices.map { i -> Double in
                    let row = (i / n) % m, column = i % n
                    let scale = aScale[aScale.count == 1 ? 0 : row] * bScale[bScale.count == 1 ? 0 : column] / yScale[0]
                    return min(max((Double(values[i]) * scale).rounded(.toNearestOrEven) + zero, low), high)
                }
                return [.tensor(try Tensor(shape: shape, scalars: requantized).converted(to: yZero.dtype))]
            }
        }
    }
}
