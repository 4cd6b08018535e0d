import Foundation
import ServalTensor

/// BatchNormalization (inference form), InstanceNormalization, LayerNormalization and LRN.
struct BatchNormKernel: Kernel {
    let epsilon: Float
    /// Per-channel (multiplier, offset) folded at load when scale, bias, mean and variance are constant.
    let folded: (scale: [Float], shift: [Float])?

    static func fold(scale: Tensor, bias: Tensor, mean: Tensor, variance: Tensor, epsilon: Float) throws -> (scale: [Float], shift: [Float]) {
        let s = try scale.converted(to: .float32).scalars(as: Float.self)
        let b = try bias.converted(to: .float32).scalars(as: Float.self)
        let m = try mean.converted(to: .float32).scalars(as: Float.self)
        let v = try variance.converted(to: .float32).scalars(as: Float.self)
        guard s.count == b.count, b.count == m.count, m.count == v.count else {
            throw KernelError("BatchNormalization parameters have different lengths")
        }
        var multiplier = [Float](repeating: 0, count: s.count), shift = multiplier
        for c in 0..<s.count {
            multiplier[c] = s[c] / (v[c] + epsilon).squareRoot()
            shift[c] = b[c] - m[c] * multiplier[c]
        }
        return (multiplier, shift)
    }

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let xIn = try inputs.tensor(0)
        let x = try xIn.converted(to: .float32)
        let parameters = try folded ?? BatchNormKernel.fold(
            scale: inputs.tensor(1), bias: inputs.tensor(2), mean: inputs.tensor(3), variance: inputs.tensor(4), epsilon: epsilon)
        let channels = x.rank > 1 ? x.shape[1] : 1
        guard parameters.scale.count == channels else {
            throw KernelError("BatchNormalization has \(parameters.scale.count) channel parameters for \(channels) channels")
        }
        let batch = x.rank > 0 ? x.shape[0] : 1
        let plane = Shape.product(x.shape, min(2, x.rank)..<x.rank)
        var out = context.allocate(.float32, x.shape)
        x.withUnsafeBufferPointer(as: Float.self) { px in
            out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                for n in 0..<batch {
                    for c in 0..<channels {
                        let base = (n * channels + c) * plane
                        let (a, b) = (parameters.scale[c], parameters.shift[c])
                        for i in 0..<plane { po[base + i] = px[base + i] * a + b }
                    }
                }
            }
        }
        return [.tensor(xIn.dtype == .float32 ? out : try out.converted(to: xIn.dtype))]
    }
}

struct InstanceNormKernel: Kernel {
    let epsilon: Float
    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let xIn = try inputs.tensor(0)
        let x = try xIn.converted(to: .float32)
        let scale = try inputs.tensor(1).converted(to: .float32).scalars(as: Float.self)
        let bias = try inputs.tensor(2).converted(to: .float32).scalars(as: Float.self)
        guard x.rank >= 2, scale.count == x.shape[1], bias.count == x.shape[1] else {
            throw KernelError("InstanceNormalization scale/bias must have one value per channel of \(x.shape)")
        }
        let channels = x.shape[1], plane = Shape.product(x.shape, 2..<x.rank)
        var out = context.allocate(.float32, x.shape)
        x.withUnsafeBufferPointer(as: Float.self) { px in
            out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                for index in 0..<(x.shape[0] * channels) {
                    let base = index * plane
                    var mean: Double = 0, squares: Double = 0
                    for i in 0..<plane { mean += Double(px[base + i]) }
                    mean /= Double(max(plane, 1))
                    for i in 0..<plane { let d = Double(px[base + i]) - mean; squares += d * d }
                    let inverse = 1 / (squares / Double(max(plane, 1)) + Double(epsilon)).squareRoot()
                    let c = index % channels
                    for i in 0..<plane {
                        po[base + i] = Float((Double(px[base + i]) - mean) * inverse) * scale[c] + bias[c]
                    }
                }
            }
        }
        return [.tensor(xIn.dtype == .float32 ? out : try out.converted(to: xIn.dtype))]
    }
}

/// LayerNormalization-17: normalise over axes `axis..<rank`, then scale and shift.
struct LayerNormKernel: Kernel {
    let axis: Int
    let epsilon: Float

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let xIn = try inputs.tensor(0)
        let x = try xIn.converted(to: .float32)
        guard let axis = Shape.normalize(axis: axis, rank: x.rank) else { throw KernelError("axis \(self.axis) out of range for \(x.shape)") }
        let rows = Shape.product(x.shape, 0..<axis), size = Shape.product(x.shape, axis..<x.rank)
        let scale = try inputs.tensor(1).converted(to: .float32)
        let bias = try inputs.optionalTensor(2)?.converted(to: .float32)
        guard scale.count == size || scale.count == 1 else { throw KernelError("LayerNormalization scale \(scale.shape) does not match \(size) features") }
        var out = context.allocate(.float32, x.shape)
        var meanShape = x.shape
        for i in axis..<x.rank { meanShape[i] = 1 }
        var means = Tensor(zeros: .float32, shape: meanShape), inverses = Tensor(zeros: .float32, shape: meanShape)
        // Scale and shift spelled out to one value per feature, so the row loop reads them directly.
        let given = scale.scalars(as: Float.self), givenShifts = bias?.scalars(as: Float.self) ?? [0]
        guard givenShifts.count == size || givenShifts.count == 1 else {
            throw KernelError("LayerNormalization bias \(bias?.shape ?? []) does not match \(size) features")
        }
        let scales = given.count == size ? given : [Float](repeating: given[0], count: size)
        let shifts = givenShifts.count == size ? givenShifts : [Float](repeating: givenShifts[0], count: size)
        x.withUnsafeBufferPointer(as: Float.self) { px in
            out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                means.withUnsafeMutableBufferPointer(as: Float.self) { pm in
                    inverses.withUnsafeMutableBufferPointer(as: Float.self) { pv in
                        scales.withUnsafeBufferPointer { ps in
                            shifts.withUnsafeBufferPointer { pb in
                                let (input, output, meanRows, inverseRows) = (px.baseAddress!, po.baseAddress!, pm.baseAddress!, pv.baseAddress!)
                                let (scale, shift) = (ps.baseAddress!, pb.baseAddress!)
                                context.parallelRanges(rows, grain: max(1, 16_384 / max(size, 1))) { range in
                                    for row in range {
                                        let source = input + row * size, target = output + row * size
                                        let mean = sumFloats(source, size) / Float(size)
                                        var squares: Float = 0
                                        for i in 0..<size { let d = source[i] - mean; squares += d * d }
                                        let inverse = 1 / (squares / Float(size) + epsilon).squareRoot()
                                        meanRows[row] = mean
                                        inverseRows[row] = inverse
                                        for i in 0..<size { target[i] = (source[i] - mean) * inverse * scale[i] + shift[i] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return [.tensor(xIn.dtype == .float32 ? out : try out.converted(to: xIn.dtype)), .tensor(means), .tensor(inverses)]
    }
}

/// Local response normalisation across channels (ONNX LRN).
struct LRNKernel: Kernel {
    let alpha: Float
    let beta: Float
    let bias: Float
    let size: Int

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let xIn = try inputs.tensor(0)
        let x = try xIn.converted(to: .float32)
        guard x.rank >= 2 else { throw KernelError("LRN input must have rank ≥ 2") }
        let channels = x.shape[1], plane = Shape.product(x.shape, 2..<x.rank)
        let before = (size - 1) / 2, after = size - 1 - before
        var out = context.allocate(.float32, x.shape)
        x.withUnsafeBufferPointer(as: Float.self) { px in
            out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                for n in 0..<x.shape[0] {
                    for c in 0..<channels {
                        let low = max(0, c - before), high = min(channels - 1, c + after)
                        for i in 0..<plane {
                            var sum: Float = 0
                            for j in low...high { let v = px[(n * channels + j) * plane + i]; sum += v * v }
                            let index = (n * channels + c) * plane + i
                            po[index] = px[index] / powf(bias + alpha / Float(size) * sum, beta)
                        }
                    }
                }
            }
        }
        return [.tensor(xIn.dtype == .float32 ? out : try out.converted(to: xIn.dtype))]
    }
}

extension KernelRegistry {
    static func registerNormalization(into registry: inout KernelRegistry) {
        registry.register("BatchNormalization") { build in
            let epsilon = try build.float("epsilon", default: 1e-5)
            if try build.int("training_mode", default: 0) != 0 { throw build.invalid("training_mode=1 is not supported (inference only)") }
            var folded: (scale: [Float], shift: [Float])?
            if let s = build.constant(1), let b = build.constant(2), let m = build.constant(3), let v = build.constant(4) {
                folded = try BatchNormKernel.fold(scale: s, bias: b, mean: m, variance: v, epsilon: epsilon)
            }
            return BatchNormKernel(epsilon: epsilon, folded: folded)
        }
        registry.register("InstanceNormalization") { build in InstanceNormKernel(epsilon: try build.float("epsilon", default: 1e-5)) }
        registry.register("LayerNormalization") { build in
            LayerNormKernel(axis: try build.int("axis", default: -1), epsilon: try build.float("epsilon", default: 1e-5))
        }
        registry.register("LRN") { build in
            guard let size = try build.int("size") else { throw build.invalid("size is required") }
            return LRNKernel(alpha: try build.float("alpha", default: 1e-4), beta: try build.float("beta", default: 0.75),
                             bias: try build.float("bias", default: 1), size: size)
        }
    }
}
