import CServalKernels
import ServalTensor

/// Linear quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, and the integer
/// matrix products MatMulInteger and QLinearMatMul, which run on the packed int8 kernel (IntegerMatMul.swift),
/// never through floats.

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
func quantizeLinear(_ x: Tensor, scale: Tensor, zeroPoint: Tensor?, outputType: DType, axis: Int, blockSize: Int, _ context: RunContext) throws -> Tensor {
    // The common case (float activations, one scale, 8-bit output) on the vector quantizer; int8 is uint8 shifted by 128.
    if x.dtype == .float32, scale.count == 1, scale.dtype == .float32, outputType == .uint8 || outputType == .int8 {
        let zero = Float(try zeroPoint?.int64s().first ?? 0) + (outputType == .int8 ? 128 : 0)
        var out = context.allocate(outputType, x.shape)
        out.withUnsafeMutableRawBytes { target in
            x.withUnsafeBufferPointer(as: Float.self) { source in
                let bytes = target.baseAddress!.assumingMemoryBound(to: UInt8.self)
                serval_quantize_u8(source.baseAddress!, source.count, scale.scalars(as: Float.self)[0], zero, bytes)
                if outputType == .int8 { for i in 0..<source.count { bytes[i] ^= 0x80 } }
            }
        }
        return out
    }
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
func dequantizeLinear(_ x: Tensor, scale: Tensor, zeroPoint: Tensor?, axis: Int, blockSize: Int, _ context: RunContext) throws -> Tensor {
    // The common case: 8-bit x, one float scale.
    if x.dtype == .uint8 || x.dtype == .int8, scale.count == 1, scale.dtype == .float32 {
        let zero = Float(try zeroPoint?.int64s().first ?? 0), factor = scale.scalars(as: Float.self)[0]
        var out = context.allocate(.float32, x.shape)
        out.withUnsafeMutableBufferPointer(as: Float.self) { target in
            let y = target.baseAddress!
            if x.dtype == .uint8 {
                x.withUnsafeBufferPointer(as: UInt8.self) { source in for i in 0..<source.count { y[i] = (Float(source[i]) - zero) * factor } }
            } else {
                x.withUnsafeBufferPointer(as: Int8.self) { source in for i in 0..<source.count { y[i] = (Float(source[i]) - zero) * factor } }
            }
        }
        return out
    }
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
func dynamicQuantizeLinear(_ x: Tensor, _ context: RunContext) throws -> [Value] {
    guard x.dtype == .float32 else { throw KernelError("DynamicQuantizeLinear takes float input, got \(x.dtype)") }
    var quantized = context.allocate(.uint8, x.shape)
    let (scale, zeroPoint) = quantized.withUnsafeMutableBufferPointer(as: UInt8.self) { target in
        x.withUnsafeBufferPointer(as: Float.self) { source in quantizeDynamically(source, into: target) }
    }
    return [.tensor(quantized), .tensor(.scalar(scale)), .tensor(.scalar(zeroPoint))]
}

extension KernelRegistry {
    static func registerQuantization(into registry: inout KernelRegistry) {
        registry.register("QuantizeLinear", since: 10) { build in
            let axis = try build.int("axis", default: 1), blockSize = try build.int("block_size", default: 0)
            let outputType = try build.int("output_dtype").flatMap { DType(onnxCode: $0) }
            return ClosureKernel { inputs, context in
                let zero = try inputs.optionalTensor(2)
                let type = outputType ?? zero?.dtype ?? .uint8
                return [.tensor(try quantizeLinear(try inputs.tensor(0), scale: try inputs.tensor(1), zeroPoint: zero, outputType: type, axis: axis, blockSize: blockSize, context))]
            }
        }
        registry.register("DequantizeLinear", since: 10) { build in
            let axis = try build.int("axis", default: 1), blockSize = try build.int("block_size", default: 0)
            return ClosureKernel { inputs, context in
                [.tensor(try dequantizeLinear(try inputs.tensor(0), scale: try inputs.tensor(1), zeroPoint: try inputs.optionalTensor(2), axis: axis, blockSize: blockSize, context))]
            }
        }
        registry.register("DynamicQuantizeLinear", since: 11) { _ in
            ClosureKernel { inputs, context in try dynamicQuantizeLinear(try inputs.tensor(0), context) }
        }
        registry.register("MatMulInteger", since: 10) { build in
            let packed = try PackedInt8Matrix.packedAtLoad(build, b: 1, zeroPoint: 3)
            return ClosureKernel { inputs, context in
                let b = try packed ?? PackedInt8Matrix(try inputs.tensor(1), zeroPoint: try inputs.optionalTensor(3))
                return [.tensor(try integerMatMul(try inputs.tensor(0), try inputs.optionalTensor(2), b, context).values)]
            }
        }
        registry.register("QLinearConv", since: 10) { build in try QLinearConvKernel(build, layout: .qlinear) }
        registry.register("ConvInteger", since: 10) { build in try QLinearConvKernel(build, layout: .integer) }
        registry.register("DynamicQuantizeMatMul", domain: servalDomain) { build in try DynamicQuantizeMatMulKernel(build) }
        registry.register("QLinearMatMul", since: 10) { build in
            let packed = try PackedInt8Matrix.packedAtLoad(build, b: 3, zeroPoint: 5)
            return ClosureKernel { inputs, context in
                let a = try inputs.tensor(0), aScale = try inputs.tensor(1).doubles(), aZero = try inputs.tensor(2)
                let b = try packed ?? PackedInt8Matrix(try inputs.tensor(3), zeroPoint: try inputs.tensor(5))
                let bScale = try inputs.tensor(4).doubles()
                let yScale = try inputs.tensor(6).doubles(), yZero = try inputs.tensor(7)
                guard yScale.count == 1 else { throw KernelError("QLinearMatMul y_scale must be a scalar") }
                let (product, m, n) = try integerMatMul(a, aZero, b, context)
                let values = product.scalars(as: Int32.self)
                let (low, high) = try quantizedRange(yZero.dtype)
                let zero = try yZero.doubles()[0]
                let requantized = values.indices.map { i -> Double in
                    let row = (i / n) % m, column = i % n
                    let scale = aScale[aScale.count == 1 ? 0 : row] * bScale[bScale.count == 1 ? 0 : column] / yScale[0]
                    return min(max((Double(values[i]) * scale).rounded(.toNearestOrEven) + zero, low), high)
                }
                return [.tensor(try Tensor(shape: product.shape, scalars: requantized).converted(to: yZero.dtype))]
            }
        }
    }
}
