import Foundation
import ServalTensor

/// Elementwise math on floating-point tensors (Relu, Sigmoid, Tanh, Exp, Erf, ...), with the attributes
/// each ONNX op defines. Integer inputs are accepted by the ops that define them (Abs, Neg, Relu, Sign).
enum UnaryOp: Sendable {
    case relu, leakyRelu(Float), elu(Float), selu(alpha: Float, gamma: Float), celu(Float), thresholdedRelu(Float)
    case sigmoid, hardSigmoid(alpha: Float, beta: Float), hardSwish, tanh, softplus, softsign, mish
    case exp, log, sqrt, abs, neg, reciprocal, floor, ceil, round, sign, erf
    case sin, cos, tan, asin, acos, atan, sinh, cosh, asinh, acosh, atanh
    case gelu(tanhApproximation: Bool)
    /// Clip with constant bounds; only produced by fusion (Conv/Gemm + Clip, as in ReLU6).
    case clip(Float, Float)

    /// The float32 definition; Double and Float16 inputs use the same formula in their own precision.
    @inline(__always)
    func apply(_ x: Float) -> Float {
        switch self {
        case .relu: return x > 0 ? x : 0
        case .leakyRelu(let alpha): return x >= 0 ? x : alpha * x
        case .elu(let alpha): return x >= 0 ? x : alpha * (expf(x) - 1)
        case .selu(let alpha, let gamma): return x > 0 ? gamma * x : gamma * alpha * (expf(x) - 1)
        case .celu(let alpha): return Swift.max(0, x) + Swift.min(0, alpha * (expf(x / alpha) - 1))
        case .thresholdedRelu(let alpha): return x > alpha ? x : 0
        case .sigmoid: return x >= 0 ? 1 / (1 + expf(-x)) : expf(x) / (1 + expf(x))
        case .hardSigmoid(let alpha, let beta): return Swift.max(0, Swift.min(1, alpha * x + beta))
        case .hardSwish: return x * Swift.max(0, Swift.min(1, x / 6 + 0.5))
        case .tanh: return tanhf(x)
        case .softplus: return x > 20 ? x : log1pf(expf(x))
        case .softsign: return x / (1 + Swift.abs(x))
        case .mish: return x * tanhf(x > 20 ? x : log1pf(expf(x)))
        case .exp: return expf(x)
        case .log: return logf(x)
        case .sqrt: return sqrtf(x)
        case .abs: return Swift.abs(x)
        case .neg: return -x
        case .reciprocal: return 1 / x
        case .floor: return floorf(x)
        case .ceil: return ceilf(x)
        case .round: return x.rounded(.toNearestOrEven)
        case .sign: return x > 0 ? 1 : (x < 0 ? -1 : (x.isNaN ? x : 0))
        case .erf: return erff(x)
        case .sin: return sinf(x)
        case .cos: return cosf(x)
        case .tan: return tanf(x)
        case .asin: return asinf(x)
        case .acos: return acosf(x)
        case .atan: return atanf(x)
        case .sinh: return sinhf(x)
        case .cosh: return coshf(x)
        case .asinh: return asinhf(x)
        case .acosh: return acoshf(x)
        case .atanh: return atanhf(x)
        case .gelu(let tanhApproximation):
            if tanhApproximation {
                return 0.5 * x * (1 + tanhf(0.7978845608028654 * (x + 0.044715 * x * x * x)))
            }
            return 0.5 * x * (1 + erff(x * 0.7071067811865476))
        case .clip(let low, let high): return x < low ? low : (x > high ? high : x)
        }
    }

    @inline(__always)
    func apply(_ x: Double) -> Double {
        switch self {
        case .relu: return x > 0 ? x : 0
        case .leakyRelu(let alpha): return x >= 0 ? x : Double(alpha) * x
        case .elu(let alpha): return x >= 0 ? x : Double(alpha) * (Foundation.exp(x) - 1)
        case .selu(let alpha, let gamma): return x > 0 ? Double(gamma) * x : Double(gamma) * Double(alpha) * (Foundation.exp(x) - 1)
        case .celu(let alpha): let a = Double(alpha); return Swift.max(0, x) + Swift.min(0, a * (Foundation.exp(x / a) - 1))
        case .thresholdedRelu(let alpha): return x > Double(alpha) ? x : 0
        case .sigmoid: return x >= 0 ? 1 / (1 + Foundation.exp(-x)) : Foundation.exp(x) / (1 + Foundation.exp(x))
        case .hardSigmoid(let alpha, let beta): return Swift.max(0, Swift.min(1, Double(alpha) * x + Double(beta)))
        case .hardSwish: return x * Swift.max(0, Swift.min(1, x / 6 + 0.5))
        case .tanh: return Foundation.tanh(x)
        case .softplus: return x > 30 ? x : Foundation.log1p(Foundation.exp(x))
        case .softsign: return x / (1 + Swift.abs(x))
        case .mish: return x * Foundation.tanh(x > 30 ? x : Foundation.log1p(Foundation.exp(x)))
        case .exp: return Foundation.exp(x)
        case .log: return Foundation.log(x)
        case .sqrt: return x.squareRoot()
        case .abs: return Swift.abs(x)
        case .neg: return -x
        case .reciprocal: return 1 / x
        case .floor: return x.rounded(.down)
        case .ceil: return x.rounded(.up)
        case .round: return x.rounded(.toNearestOrEven)
        case .sign: return x > 0 ? 1 : (x < 0 ? -1 : (x.isNaN ? x : 0))
        case .erf: return Foundation.erf(x)
        case .sin: return Foundation.sin(x)
        case .cos: return Foundation.cos(x)
        case .tan: return Foundation.tan(x)
        case .asin: return Foundation.asin(x)
        case .acos: return Foundation.acos(x)
        case .atan: return Foundation.atan(x)
        case .sinh: return Foundation.sinh(x)
        case .cosh: return Foundation.cosh(x)
        case .asinh: return Foundation.asinh(x)
        case .acosh: return Foundation.acosh(x)
        case .atanh: return Foundation.atanh(x)
        case .gelu(let tanhApproximation):
            if tanhApproximation {
                return 0.5 * x * (1 + Foundation.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
            }
            return 0.5 * x * (1 + Foundation.erf(x * 0.7071067811865476))
        case .clip(let low, let high): return x < Double(low) ? Double(low) : (x > Double(high) ? Double(high) : x)
        }
    }

    var acceptsIntegers: Bool {
        switch self {
        case .relu, .abs, .neg, .sign: return true
        default: return false
        }
    }

    /// Applies the op in place over `count` floats; the common activations get vectorisable loops.
    @inline(__always)
    func apply(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, _ count: Int) {
        switch self {
        case .relu: clamp(input, output, count, low: 0, high: .infinity)
        case .leakyRelu(let alpha): for i in 0..<count { let x = input[i]; output[i] = x >= 0 ? x : alpha * x }
        case .neg: for i in 0..<count { output[i] = -input[i] }
        case .abs: for i in 0..<count { output[i] = Swift.abs(input[i]) }
        case .sqrt: for i in 0..<count { output[i] = input[i].squareRoot() }
        case .reciprocal: for i in 0..<count { output[i] = 1 / input[i] }
        case .clip(let low, let high): clamp(input, output, count, low: low, high: high)
        case .hardSigmoid(let alpha, let beta):
            for i in 0..<count { output[i] = Swift.max(0, Swift.min(1, alpha * input[i] + beta)) }
        case .erf: VectorMath.map(input, output, count, VectorMath.erf)
        case .gelu(false): VectorMath.map(input, output, count) { x in 0.5 * x * (1 + VectorMath.erf(x * 0.7071067811865476)) }
        default: for i in 0..<count { output[i] = apply(input[i]) }
        }
    }
}

/// min(max(x, low), high) eight lanes at a time (`replace(with:where:)` lowers to blends; NaN passes through).
@inline(__always)
func clamp(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, _ count: Int, low: Float, high: Float) {
    var i = 0
    while i + 8 <= count {
        var v = UnsafeRawPointer(input + i).loadUnaligned(as: SIMD8<Float>.self)
        v.replace(with: low, where: v .< low)
        v.replace(with: high, where: v .> high)
        UnsafeMutableRawPointer(output + i).storeBytes(of: v, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count {
        let x = input[i]
        output[i] = x < low ? low : (x > high ? high : x)
        i += 1
    }
}

/// Applies a unary op to a tensor, allocating the result from the run's pool.
func applyUnary(_ op: UnaryOp, _ x: Tensor, _ context: RunContext) throws -> Tensor {
    switch x.dtype {
    case .float32:
        var out = context.allocate(.float32, x.shape)
        x.withUnsafeBufferPointer(as: Float.self) { source in
            out.withUnsafeMutableBufferPointer(as: Float.self) { target in
                let (input, output) = (source.baseAddress!, target.baseAddress!)
                context.parallelRanges(source.count, grain: elementwiseGrain) { range in
                    op.apply(input + range.lowerBound, output + range.lowerBound, range.count)
                }
            }
        }
        return out
    case .float64:
        var out = context.allocate(.float64, x.shape)
        x.withUnsafeBufferPointer(as: Double.self) { source in
            out.withUnsafeMutableBufferPointer(as: Double.self) { target in
                for i in 0..<source.count { target[i] = op.apply(source[i]) }
            }
        }
        return out
    case .float16:
        return try applyUnary(op, try x.converted(to: .float32), context).converted(to: .float16)
    default:
        guard op.acceptsIntegers, x.dtype.isInteger else { throw KernelError("\(op) does not support element type \(x.dtype)") }
        return try x.dtype.dispatch(IntegerUnary(op: op, x: x, context: context))
    }
}

private struct IntegerUnary: NumericVisitor {
    let op: UnaryOp
    let x: Tensor
    let context: RunContext
    func visit<T: NumericScalar>(_ type: T.Type) throws -> Tensor {
        var out = context.allocate(T.dtype, x.shape)
        let zero = T(integerBits: 0)
        x.withUnsafeBufferPointer(as: T.self) { source in
            out.withUnsafeMutableBufferPointer(as: T.self) { target in
                for i in 0..<source.count {
                    let v = source[i]
                    switch op {
                    case .relu: target[i] = v > zero ? v : zero
                    case .abs: target[i] = v < zero ? T.subtract(zero, v) : v
                    case .neg: target[i] = T.subtract(zero, v)
                    default: target[i] = v > zero ? T(integerBits: 1) : (v < zero ? T(integerBits: -1) : zero)
                    }
                }
            }
        }
        return out
    }
}

/// Softmax, LogSoftmax and Hardmax over `[outer, n, inner]` blocks.
enum SoftmaxKind: Sendable { case softmax, logSoftmax, hardmax }

func softmax(_ kind: SoftmaxKind, _ x: Tensor, axis rawAxis: Int, coerceTo2D: Bool, _ context: RunContext) throws -> Tensor {
    guard let axis = Shape.normalize(axis: rawAxis, rank: x.rank) else { throw KernelError("axis \(rawAxis) out of range for rank \(x.rank)") }
    if x.dtype != .float32 {
        guard x.dtype.isFloatingPoint else { throw KernelError("softmax needs a floating-point input, got \(x.dtype)") }
        return try softmax(kind, try x.converted(to: .float32), axis: rawAxis, coerceTo2D: coerceTo2D, context).converted(to: x.dtype)
    }
    let outer = Shape.product(x.shape, 0..<axis)
    let n = coerceTo2D ? Shape.product(x.shape, axis..<x.rank) : (x.rank == 0 ? 1 : x.shape[axis])
    let inner = coerceTo2D ? 1 : Shape.product(x.shape, (axis + 1)..<max(axis + 1, x.rank))
    var out = context.allocate(.float32, x.shape)
    x.withUnsafeBufferPointer(as: Float.self) { source in
        out.withUnsafeMutableBufferPointer(as: Float.self) { target in
            let input = source.baseAddress!, output = target.baseAddress!
            context.parallelRanges(outer, grain: max(1, elementwiseGrain / max(n * inner, 1))) { rows in
                for o in rows {
                    for i in 0..<inner {
                        let base = o * n * inner + i
                        guard n > 0 else { continue }
                        if kind == .softmax && inner == 1 {
                            softmaxRow(input + base, output + base, n)
                            continue
                        }
                        var maxValue = input[base]
                        var argmax = 0
                        for j in 1..<max(n, 1) where input[base + j * inner] > maxValue {
                            maxValue = input[base + j * inner]
                            argmax = j
                        }
                        switch kind {
                        case .hardmax:
                            for j in 0..<n { output[base + j * inner] = j == argmax ? 1 : 0 }
                        case .softmax:
                            var sum: Float = 0
                            for j in 0..<n {
                                let e = expf(input[base + j * inner] - maxValue)
                                output[base + j * inner] = e
                                sum += e
                            }
                            let scale = 1 / sum
                            for j in 0..<n { output[base + j * inner] *= scale }
                        case .logSoftmax:
                            var sum: Float = 0
                            for j in 0..<n { sum += expf(input[base + j * inner] - maxValue) }
                            let logSum = logf(sum) + maxValue
                            for j in 0..<n { output[base + j * inner] = input[base + j * inner] - logSum }
                        }
                    }
                }
            }
        }
    }
    return out
}

/// Softmax of one contiguous row (the last-axis case: attention scores), eight lanes at a time.
@inline(__always)
func softmaxRow(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, _ n: Int) {
    var maxLanes = SIMD8<Float>(repeating: -.infinity)
    var nan = SIMDMask<SIMD8<Int32>>()
    var j = 0
    while j + 8 <= n {
        let v = UnsafeRawPointer(input + j).loadUnaligned(as: SIMD8<Float>.self)
        maxLanes.replace(with: v, where: v .> maxLanes)
        nan = nan .| (v .!= v)
        j += 8
    }
    var maxValue = maxLanes.max()
    while j < n {
        if input[j] > maxValue { maxValue = input[j] }
        if input[j].isNaN { nan[0] = true }
        j += 1
    }
    if any(nan) { maxValue = .nan }  // a NaN anywhere makes the whole row NaN, as in onnxruntime
    VectorMath.map(input, output, n) { VectorMath.expNonPositive($0 - maxValue) }
    var sumLanes = SIMD8<Float>()
    j = 0
    while j + 8 <= n {
        sumLanes += UnsafeRawPointer(output + j).loadUnaligned(as: SIMD8<Float>.self)
        j += 8
    }
    var sum = sumLanes.sum()
    while j < n { sum += output[j]; j += 1 }
    let scale = 1 / sum
    j = 0
    while j + 8 <= n {
        let v = UnsafeRawPointer(output + j).loadUnaligned(as: SIMD8<Float>.self) * scale
        UnsafeMutableRawPointer(output + j).storeBytes(of: v, as: SIMD8<Float>.self)
        j += 8
    }
    while j < n { output[j] *= scale; j += 1 }
}

/// ONNX Clip: bounds from attributes (opset < 11) or optional inputs (opset 11+).
func clip(_ x: Tensor, min lower: Tensor?, max upper: Tensor?, _ context: RunContext) throws -> Tensor {
    try x.dtype.dispatch(ClipVisitor(x: x, lower: lower, upper: upper, context: context), context: "Clip")
}

private struct ClipVisitor: NumericVisitor {
    let x: Tensor
    let lower: Tensor?
    let upper: Tensor?
    let context: RunContext
    func visit<T: NumericScalar>(_ type: T.Type) throws -> Tensor {
        let low = try lower.map { try $0.converted(to: T.dtype).scalars(as: T.self).first ?? T.lowest } ?? T.lowest
        let high = try upper.map { try $0.converted(to: T.dtype).scalars(as: T.self).first ?? T.highest } ?? T.highest
        var out = context.allocate(T.dtype, x.shape)
        x.withUnsafeBufferPointer(as: T.self) { source in
            out.withUnsafeMutableBufferPointer(as: T.self) { target in
                for i in 0..<source.count {
                    let v = source[i]
                    // ONNX Clip: min(max(x, low), high), so high wins when low > high.
                    let raised = v < low ? low : v
                    target[i] = raised > high ? high : raised
                }
            }
        }
        return out
    }
}

extension KernelRegistry {
    static func registerActivations(into registry: inout KernelRegistry) {
        let plain: [(String, UnaryOp)] = [
            ("Relu", .relu), ("Sigmoid", .sigmoid), ("HardSwish", .hardSwish), ("Tanh", .tanh), ("Softplus", .softplus),
            ("Softsign", .softsign), ("Mish", .mish), ("Exp", .exp), ("Log", .log), ("Sqrt", .sqrt), ("Abs", .abs), ("Neg", .neg),
            ("Reciprocal", .reciprocal), ("Floor", .floor), ("Ceil", .ceil), ("Round", .round), ("Sign", .sign), ("Erf", .erf),
            ("Sin", .sin), ("Cos", .cos), ("Tan", .tan), ("Asin", .asin), ("Acos", .acos), ("Atan", .atan), ("Sinh", .sinh),
            ("Cosh", .cosh), ("Asinh", .asinh), ("Acosh", .acosh), ("Atanh", .atanh),
        ]
        for (name, op) in plain {
            registry.register(name) { _ in ClosureKernel { inputs, context in [.tensor(try applyUnary(op, try inputs.tensor(0), context))] } }
        }
        let parameterised: [(String, @Sendable (KernelBuildContext) throws -> UnaryOp)] = [
            ("LeakyRelu", { .leakyRelu(try $0.float("alpha", default: 0.01)) }),
            ("Elu", { .elu(try $0.float("alpha", default: 1)) }),
            ("Celu", { .celu(try $0.float("alpha", default: 1)) }),
            ("ThresholdedRelu", { .thresholdedRelu(try $0.float("alpha", default: 1)) }),
            ("Selu", { .selu(alpha: try $0.float("alpha", default: 1.67326319217681884765625), gamma: try $0.float("gamma", default: 1.05070102214813232421875)) }),
            ("HardSigmoid", { .hardSigmoid(alpha: try $0.float("alpha", default: 0.2), beta: try $0.float("beta", default: 0.5)) }),
            ("Gelu", { .gelu(tanhApproximation: try $0.string("approximate", default: "none") == "tanh") }),
        ]
        // Exact GELU that the optimizer recognised in its Erf form (fuseGelu), at any opset.
        registry.register("Gelu", domain: servalDomain) { _ in
            ClosureKernel { inputs, context in [.tensor(try applyUnary(.gelu(tanhApproximation: false), try inputs.tensor(0), context))] }
        }
        for (name, make) in parameterised {
            registry.register(name) { build in
                let op = try make(build)
                return ClosureKernel { inputs, context in [.tensor(try applyUnary(op, try inputs.tensor(0), context))] }
            }
        }
        registry.register("PRelu") { build in
            let legacyChannelSlope = build.opset < 7
            return ClosureKernel { inputs, context in
                let x = try inputs.tensor(0)
                var slope = try inputs.tensor(1)
                if legacyChannelSlope, slope.rank == 1, x.rank > 2, slope.count == x.shape[1] {
                    // PRelu before opset 7 applies a per-channel slope along axis 1.
                    slope = slope.reshaped([slope.count] + Array(repeating: 1, count: x.rank - 2))
                }
                let negative = try applyBinary(.multiply, x, slope, context)
                let zero = try Tensor(shape: [], scalars: [0.0]).converted(to: x.dtype)
                let mask = try applyBinary(.less, x, zero, context)
                return [.tensor(try whereSelect(mask, negative, x, context))]
            }
        }
        for (name, kind) in [("Softmax", SoftmaxKind.softmax), ("LogSoftmax", .logSoftmax), ("Hardmax", .hardmax)] {
            registry.register(name, since: 1) { build in
                let axis = try build.int("axis", default: 1)
                return ClosureKernel { inputs, context in [.tensor(try softmax(kind, try inputs.tensor(0), axis: axis, coerceTo2D: true, context))] }
            }
            registry.register(name, since: 13) { build in
                let axis = try build.int("axis", default: -1)
                return ClosureKernel { inputs, context in [.tensor(try softmax(kind, try inputs.tensor(0), axis: axis, coerceTo2D: false, context))] }
            }
        }
        registry.register("Clip", since: 1) { build in
            let low = try build.float("min").map { Tensor.scalar($0) }
            let high = try build.float("max").map { Tensor.scalar($0) }
            return ClosureKernel { inputs, context in [.tensor(try clip(try inputs.tensor(0), min: low, max: high, context))] }
        }
        registry.register("Clip", since: 11) { _ in
            ClosureKernel { inputs, context in
                [.tensor(try clip(try inputs.tensor(0), min: try inputs.optionalTensor(1), max: try inputs.optionalTensor(2), context))]
            }
        }
    }
}
