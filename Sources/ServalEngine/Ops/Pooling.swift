import Foundation
import ServalTensor

/// MaxPool, AveragePool, LpPool and their Global forms over any number of spatial axes.
enum PoolKind: Sendable {
    case max
    case average(countIncludePad: Bool)
    case lp(p: Int)
}

extension PoolKind {
    var isLp: Bool {
        if case .lp = self { return true }
        return false
    }
}

struct PoolKernel: Kernel {
    let kind: PoolKind
    let kernelShape: [Int]
    let strides: [Int]?
    let dilations: [Int]?
    let pads: [Int]?
    let autoPad: String
    let ceilMode: Bool
    let storageOrder: Int
    /// MaxPool's optional second output (argmax indices) is computed only when the graph uses it.
    let producesIndices: Bool

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let xIn = try inputs.tensor(0)
        guard xIn.rank >= 3 else { throw KernelError("pooling input must have rank ≥ 3, got \(xIn.shape)") }
        let x = try xIn.converted(to: .float32)
        let spatial = Array(x.shape.dropFirst(2))
        guard kernelShape.count == spatial.count else {
            throw KernelError("kernel_shape \(kernelShape) does not match \(spatial.count) spatial axes")
        }
        let geometry = try SpatialGeometry(input: spatial, kernel: kernelShape, strides: strides, dilations: dilations,
                                           pads: pads, autoPad: autoPad, ceilMode: ceilMode)
        let planes = x.shape[0] * x.shape[1]
        let rank = spatial.count
        if rank == 2 && !producesIndices && !kind.isLp {
            var out = context.allocate(.float32, [x.shape[0], x.shape[1]] + geometry.outputSize)
            x.withUnsafeBufferPointer(as: Float.self) { px in
                out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                    pool2D(px.baseAddress!, po.baseAddress!, planes: planes, geometry: geometry)
                }
            }
            return [.tensor(xIn.dtype == .float32 ? out : try out.converted(to: xIn.dtype))]
        }
        let inPlane = geometry.inputCount, outPlane = geometry.outputCount
        let taps = geometry.kernelCount
        // Per axis: coordinate of (tap k, output o) before bounds checks.
        var coordinates: [[Int]] = []
        for axis in 0..<rank {
            var table = [Int](repeating: 0, count: kernelShape[axis] * geometry.outputSize[axis])
            for k in 0..<kernelShape[axis] {
                for o in 0..<geometry.outputSize[axis] {
                    table[k * geometry.outputSize[axis] + o] = o * geometry.strides[axis] - geometry.padBegin[axis] + k * geometry.dilations[axis]
                }
            }
            coordinates.append(table)
        }
        let inStrides = Shape.strides(spatial), outStrides = Shape.strides(geometry.outputSize), kernelStrides = Shape.strides(kernelShape)
        var out = context.allocate(.float32, [x.shape[0], x.shape[1]] + geometry.outputSize)
        var indices = Tensor(zeros: .int64, shape: producesIndices ? out.shape : [0])
        let wantIndices = producesIndices
        x.withUnsafeBufferPointer(as: Float.self) { px in
            out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                indices.withUnsafeMutableBufferPointer(as: Int64.self) { pi in
                    for position in 0..<outPlane {
                        var outIndex = [Int](repeating: 0, count: rank)
                        for axis in 0..<rank { outIndex[axis] = (position / outStrides[axis]) % geometry.outputSize[axis] }
                        // Collect the window's valid input offsets once for every plane.
                        var offsets: [Int] = []
                        offsets.reserveCapacity(taps)
                        var paddedCount = 0
                        var windowCoordinates: [[Int]] = []
                        for tap in 0..<taps {
                            var offset = 0, inside = true, insidePadded = true
                            var coordinate = [Int](repeating: 0, count: rank)
                            for axis in 0..<rank {
                                let k = (tap / kernelStrides[axis]) % kernelShape[axis]
                                let c = coordinates[axis][k * geometry.outputSize[axis] + outIndex[axis]]
                                coordinate[axis] = c
                                if c < 0 || c >= spatial[axis] { inside = false }
                                if c < -geometry.padBegin[axis] || c >= spatial[axis] + geometry.padEnd[axis] { insidePadded = false }
                                offset += c * inStrides[axis]
                            }
                            if insidePadded { paddedCount += 1 }
                            if inside { offsets.append(offset); windowCoordinates.append(coordinate) }
                        }
                        for plane in 0..<planes {
                            let source = px.baseAddress! + plane * inPlane
                            let target = plane * outPlane + position
                            switch kind {
                            case .max:
                                var best = -Float.infinity
                                var bestIndex = -1
                                for (n, offset) in offsets.enumerated() where bestIndex < 0 || source[offset] > best {
                                    best = source[offset]
                                    bestIndex = n
                                }
                                po[target] = best
                                if wantIndices && bestIndex >= 0 {
                                    let flat: Int
                                    if storageOrder == 1 {
                                        // Column-major index within the plane, per the MaxPool storage_order attribute.
                                        var value = 0, scale = 1
                                        for axis in 0..<rank { value += windowCoordinates[bestIndex][axis] * scale; scale *= spatial[axis] }
                                        flat = value
                                    } else {
                                        flat = offsets[bestIndex]
                                    }
                                    pi[target] = Int64(plane * inPlane + flat)
                                }
                            case .average(let countIncludePad):
                                var sum: Float = 0
                                for offset in offsets { sum += source[offset] }
                                let divisor = countIncludePad ? paddedCount : offsets.count
                                po[target] = divisor > 0 ? sum / Float(divisor) : 0
                            case .lp(let p):
                                var sum: Float = 0
                                for offset in offsets { sum += powf(Swift.abs(source[offset]), Float(p)) }
                                po[target] = powf(sum, 1 / Float(p))
                            }
                        }
                    }
                }
            }
        }
        let result = xIn.dtype == .float32 ? out : try out.converted(to: xIn.dtype)
        return [.tensor(result), .tensor(indices)]
    }
}

extension PoolKernel {
    /// Max or average pooling over two spatial axes with direct loops: each window is clamped to the input
    /// once, so the inner loops carry no bounds checks or data-dependent branches.
    func pool2D(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, planes: Int, geometry g: SpatialGeometry) {
        let (height, width) = (g.inputSize[0], g.inputSize[1])
        let (outHeight, outWidth) = (g.outputSize[0], g.outputSize[1])
        let (kh, kw) = (g.kernel[0], g.kernel[1]), (sh, sw) = (g.strides[0], g.strides[1])
        let (dh, dw) = (g.dilations[0], g.dilations[1]), (ph, pw) = (g.padBegin[0], g.padBegin[1])
        /// Taps [begin, end) of a window starting at `start` that fall inside [0, size), and how many fall inside the padded extent.
        func window(start: Int, taps: Int, dilation: Int, size: Int, padBefore: Int, padAfter: Int) -> (Int, Int, Int) {
            var begin = taps, end = 0, padded = 0
            for k in 0..<taps {
                let coordinate = start + k * dilation
                if coordinate >= 0 && coordinate < size { begin = min(begin, k); end = k + 1 }
                if coordinate >= -padBefore && coordinate < size + padAfter { padded += 1 }
            }
            return begin < end ? (begin, end, padded) : (0, 0, padded)
        }
        let rows = (0..<outHeight).map { window(start: $0 * sh - ph, taps: kh, dilation: dh, size: height, padBefore: ph, padAfter: g.padEnd[0]) }
        let columns = (0..<outWidth).map { window(start: $0 * sw - pw, taps: kw, dilation: dw, size: width, padBefore: pw, padAfter: g.padEnd[1]) }
        var isMax = false, includePad = false
        switch kind {
        case .max: isMax = true
        case .average(let countIncludePad): includePad = countIncludePad
        case .lp: return
        }
        for plane in 0..<planes {
            let source = input + plane * height * width
            let target = output + plane * outHeight * outWidth
            for oh in 0..<outHeight {
                let (iBegin, iEnd, paddedRows) = rows[oh]
                let top = oh * sh - ph
                for ow in 0..<outWidth {
                    let (jBegin, jEnd, paddedColumns) = columns[ow]
                    let left = ow * sw - pw
                    let count = (iEnd - iBegin) * (jEnd - jBegin)
                    if isMax {
                        var best = -Float.infinity
                        for i in iBegin..<iEnd {
                            let line = source + (top + i * dh) * width + left
                            for j in jBegin..<jEnd {
                                let value = line[j * dw]
                                best = value > best ? value : best
                            }
                        }
                        target[oh * outWidth + ow] = best
                    } else {
                        var sum: Float = 0
                        for i in iBegin..<iEnd {
                            let line = source + (top + i * dh) * width + left
                            for j in jBegin..<jEnd { sum += line[j * dw] }
                        }
                        let divisor = includePad ? paddedRows * paddedColumns : count
                        target[oh * outWidth + ow] = divisor > 0 ? sum / Float(divisor) : 0
                    }
                }
            }
        }
    }
}

/// GlobalAveragePool / GlobalMaxPool / GlobalLpPool: one value per (n, c) plane.
struct GlobalPoolKernel: Kernel {
    let kind: PoolKind

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let xIn = try inputs.tensor(0)
        guard xIn.rank >= 2 else { throw KernelError("global pooling input must have rank ≥ 2, got \(xIn.shape)") }
        let x = try xIn.converted(to: .float32)
        let planes = x.shape[0] * x.shape[1]
        let size = Shape.product(x.shape, 2..<x.rank)
        var out = context.allocate(.float32, [x.shape[0], x.shape[1]] + Array(repeating: 1, count: x.rank - 2))
        x.withUnsafeBufferPointer(as: Float.self) { px in
            out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                for plane in 0..<planes {
                    let source = px.baseAddress! + plane * size
                    switch kind {
                    case .max:
                        var best = -Float.infinity
                        for i in 0..<size where source[i] > best { best = source[i] }
                        po[plane] = best
                    case .average:
                        po[plane] = sumFloats(source, size) / Float(max(size, 1))
                    case .lp(let p):
                        var sum: Float = 0
                        for i in 0..<size { sum += powf(Swift.abs(source[i]), Float(p)) }
                        po[plane] = powf(sum, 1 / Float(p))
                    }
                }
            }
        }
        return [.tensor(xIn.dtype == .float32 ? out : try out.converted(to: xIn.dtype))]
    }
}

/// Sum of `count` floats with SIMD accumulators (float adds are not reassociated by the optimizer).
@inline(__always)
func sumFloats(_ source: UnsafePointer<Float>, _ count: Int) -> Float {
    var accumulator = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= count {
        accumulator += UnsafeRawPointer(source + i).loadUnaligned(as: SIMD8<Float>.self)
        i += 8
    }
    var sum = accumulator.sum()
    while i < count { sum += source[i]; i += 1 }
    return sum
}

extension KernelRegistry {
    static func registerPooling(into registry: inout KernelRegistry) {
        func pool(_ make: @escaping @Sendable (KernelBuildContext) throws -> PoolKind) -> KernelFactory {
            { build in
                guard let kernel = try build.ints("kernel_shape") else { throw build.invalid("kernel_shape is required") }
                return PoolKernel(
                    kind: try make(build), kernelShape: kernel, strides: try build.ints("strides"),
                    dilations: try build.ints("dilations"), pads: try build.ints("pads"), autoPad: try build.autoPad(),
                    ceilMode: try build.int("ceil_mode", default: 0) != 0, storageOrder: try build.int("storage_order", default: 0),
                    producesIndices: build.node.outputs.count > 1 && !build.node.outputs[1].isEmpty)
            }
        }
        registry.register("MaxPool", pool { _ in .max })
        registry.register("AveragePool", pool { .average(countIncludePad: try $0.int("count_include_pad", default: 0) != 0) })
        registry.register("LpPool", pool { .lp(p: try $0.int("p", default: 2)) })
        registry.register("GlobalMaxPool") { _ in GlobalPoolKernel(kind: .max) }
        registry.register("GlobalAveragePool") { _ in GlobalPoolKernel(kind: .average(countIncludePad: false)) }
        registry.register("GlobalLpPool") { build in GlobalPoolKernel(kind: .lp(p: try build.int("p", default: 2))) }
    }
}
