import Foundation
import ServalTensor

/// The Reduce* family and ArgMax/ArgMin. Axes come from the attribute before opset 13 (ReduceSum)
/// or 18 (the others), and from the optional second input after.
enum ReduceOp: Sendable {
    case sum, mean, max, min, prod, l1, l2, sumSquare, logSum, logSumExp

    var initial: Double {
        switch self {
        case .max: return -.infinity
        case .min: return .infinity
        case .prod: return 1
        default: return 0
        }
    }

    @inline(__always)
    func accumulate(_ acc: Double, _ v: Double) -> Double {
        switch self {
        case .sum, .mean, .logSum: return acc + v
        case .max: return v > acc || v.isNaN ? v : acc
        case .min: return v < acc || v.isNaN ? v : acc
        case .prod: return acc * v
        case .l1: return acc + Swift.abs(v)
        case .l2, .sumSquare: return acc + v * v
        case .logSumExp: return acc + Foundation.exp(v)
        }
    }

    func finish(_ acc: Double, count: Int) -> Double {
        switch self {
        case .mean: return count > 0 ? acc / Double(count) : .nan
        case .l2: return acc.squareRoot()
        case .logSum, .logSumExp: return Foundation.log(acc)
        default: return acc
        }
    }
}

/// Output shape and the mapping from input elements to output elements of a reduction.
struct ReductionLayout {
    let outputShape: [Int]
    let keptShape: [Int]
    let reducedCount: Int

    init(shape: [Int], axes: [Int], keepDims: Bool) {
        var kept = shape
        for axis in axes { kept[axis] = 1 }
        keptShape = kept
        outputShape = keepDims ? kept : shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
        reducedCount = axes.reduce(1) { $0 * shape[$1] }
    }
}

func reduce(_ op: ReduceOp, _ x: Tensor, axes rawAxes: [Int]?, keepDims: Bool, noopWithEmptyAxes: Bool, _ context: RunContext) throws -> Tensor {
    if (rawAxes?.isEmpty ?? true) && noopWithEmptyAxes { return x }
    var axes: [Int] = []
    for axis in rawAxes ?? [] {
        guard let normalized = Shape.normalize(axis: axis, rank: x.rank) else { throw KernelError("axis \(axis) out of range for \(x.shape)") }
        if !axes.contains(normalized) { axes.append(normalized) }
    }
    if rawAxes?.isEmpty ?? true { axes = Array(0..<x.rank) }
    let layout = ReductionLayout(shape: x.shape, axes: axes, keepDims: keepDims)
    if x.dtype == .float32 && axes == Array((x.rank - axes.count)..<x.rank) && (op == .sum || op == .mean) {
        // Trailing-axes sum or mean: contiguous rows with SIMD accumulation.
        let size = layout.reducedCount, rows = x.count / max(size, 1)
        var out = context.allocate(.float32, layout.outputShape)
        x.withUnsafeBufferPointer(as: Float.self) { px in
            out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                for row in 0..<po.count {
                    let sum = size == 0 || rows == 0 ? 0 : sumFloats(px.baseAddress! + row * size, size)
                    po[row] = op == .mean ? sum / Float(size) : sum
                }
            }
        }
        return out
    }
    let values = try x.doubles()
    var accumulators = [Double](repeating: op.initial, count: layout.keptShape.reduce(1, *))
    let strides = Shape.broadcastStrides(layout.keptShape, to: x.shape)
    var index = [Int](repeating: 0, count: x.rank)
    var target = 0
    for i in 0..<values.count {
        accumulators[target] = op.accumulate(accumulators[target], values[i])
        var axis = x.rank - 1
        while axis >= 0 {
            index[axis] += 1
            target += strides[axis]
            if index[axis] < x.shape[axis] { break }
            target -= strides[axis] * x.shape[axis]
            index[axis] = 0
            axis -= 1
        }
    }
    var results = accumulators.map { op.finish($0, count: layout.reducedCount) }
    if x.dtype == .bool && layout.reducedCount == 0 {
        // Empty bool reductions: max (any) is false, min (all) is true.
        results = results.map { _ in op == .min ? 1 : 0 }
    }
    return try Tensor(shape: layout.outputShape, scalars: results).converted(to: x.dtype)
}

func argExtreme(_ x: Tensor, axis rawAxis: Int, keepDims: Bool, selectLast: Bool, maximum: Bool) throws -> Tensor {
    guard let axis = Shape.normalize(axis: rawAxis, rank: x.rank) else { throw KernelError("axis \(rawAxis) out of range for \(x.shape)") }
    let values = try x.doubles()
    let outer = Shape.product(x.shape, 0..<axis), n = x.shape[axis], inner = Shape.product(x.shape, (axis + 1)..<x.rank)
    var result = [Int64](repeating: 0, count: outer * inner)
    for o in 0..<outer {
        for i in 0..<inner {
            var best = 0
            for j in 1..<max(n, 1) {
                let v = values[(o * n + j) * inner + i], current = values[(o * n + best) * inner + i]
                let better = maximum ? (selectLast ? v >= current : v > current) : (selectLast ? v <= current : v < current)
                if better { best = j }
            }
            result[o * inner + i] = Int64(best)
        }
    }
    var shape = x.shape
    if keepDims { shape[axis] = 1 } else { shape.remove(at: axis) }
    return Tensor(shape: shape, scalars: result)
}

extension KernelRegistry {
    static func registerReduce(into registry: inout KernelRegistry) {
        let ops: [(String, ReduceOp, Int)] = [
            ("ReduceSum", .sum, 13), ("ReduceMean", .mean, 18), ("ReduceMax", .max, 18), ("ReduceMin", .min, 18),
            ("ReduceProd", .prod, 18), ("ReduceL1", .l1, 18), ("ReduceL2", .l2, 18), ("ReduceSumSquare", .sumSquare, 18),
            ("ReduceLogSum", .logSum, 18), ("ReduceLogSumExp", .logSumExp, 18),
        ]
        for (name, op, axesAsInput) in ops {
            registry.register(name, since: 1) { build in
                let axes = try build.ints("axes"), keep = try build.int("keepdims", default: 1) != 0
                return ClosureKernel { inputs, context in
                    [.tensor(try reduce(op, try inputs.tensor(0), axes: axes, keepDims: keep, noopWithEmptyAxes: false, context))]
                }
            }
            registry.register(name, since: axesAsInput) { build in
                let keep = try build.int("keepdims", default: 1) != 0
                let noop = try build.int("noop_with_empty_axes", default: 0) != 0
                return ClosureKernel { inputs, context in
                    let axes = try inputs.optionalTensor(1).map { try $0.int64s().map { Int($0) } }
                    return [.tensor(try reduce(op, try inputs.tensor(0), axes: axes, keepDims: keep, noopWithEmptyAxes: noop, context))]
                }
            }
        }
        for (name, maximum) in [("ArgMax", true), ("ArgMin", false)] {
            registry.register(name) { build in
                let axis = try build.int("axis", default: 0), keep = try build.int("keepdims", default: 1) != 0
                let last = try build.int("select_last_index", default: 0) != 0
                return ClosureKernel { inputs, _ in
                    [.tensor(try argExtreme(try inputs.tensor(0), axis: axis, keepDims: keep, selectLast: last, maximum: maximum))]
                }
            }
        }
    }
}
