import Foundation
import ServalTensor

/// Binary arithmetic, comparison and logic ops with numpy broadcasting (ONNX Add/Sub/Mul/Div/Pow/Mod,
/// Min/Max/Sum/Mean, Equal/Less/Greater..., And/Or/Xor).
enum BinaryOp: Sendable {
    case add, subtract, multiply, divide, power, minimum, maximum, modulo, floorModulo
    case equal, less, greater, lessOrEqual, greaterOrEqual

    var isComparison: Bool {
        switch self {
        case .equal, .less, .greater, .lessOrEqual, .greaterOrEqual: return true
        default: return false
        }
    }
}

func binaryShapeError(_ a: Tensor, _ b: Tensor) -> KernelError {
    KernelError("shapes \(a.shape) and \(b.shape) cannot be broadcast together")
}

/// Computes `op(a, b)` with broadcasting; both operands must share a dtype.
func applyBinary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, _ context: RunContext) throws -> Tensor {
    guard a.dtype == b.dtype else { throw KernelError("operands have different types \(a.dtype) and \(b.dtype)") }
    guard let plan = BroadcastPlan(a.shape, b.shape) else { throw binaryShapeError(a, b) }
    if a.dtype == .bool || a.dtype == .string {
        guard op == .equal else { throw KernelError("\(op) is not defined for \(a.dtype)") }
        return try equalNonNumeric(a, b, plan)
    }
    return try a.dtype.dispatch(BinaryVisitor(op: op, a: a, b: b, plan: plan, context: context), context: "\(op)")
}

private func equalNonNumeric(_ a: Tensor, _ b: Tensor, _ plan: BroadcastPlan) throws -> Tensor {
    var out = Tensor(uninitialized: .bool, shape: plan.outputShape)
    if a.dtype == .bool {
        a.withUnsafeBufferPointer(as: Bool.self) { pa in
            b.withUnsafeBufferPointer(as: Bool.self) { pb in
                out.withUnsafeMutableBufferPointer(as: Bool.self) { po in
                    broadcastApply(plan, pa.baseAddress!, pb.baseAddress!, po.baseAddress!) { $0 == $1 }
                }
            }
        }
    } else {
        let sa = a.strings, sb = b.strings
        let ia = Array(0..<sa.count), ib = Array(0..<sb.count)
        ia.withUnsafeBufferPointer { pa in
            ib.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer(as: Bool.self) { po in
                    broadcastApply(plan, pa.baseAddress!, pb.baseAddress!, po.baseAddress!) { sa[$0] == sb[$1] }
                }
            }
        }
    }
    return out
}

private struct BinaryVisitor: NumericVisitor {
    let op: BinaryOp
    let a: Tensor
    let b: Tensor
    let plan: BroadcastPlan
    let context: RunContext

    func visit<T: NumericScalar>(_ type: T.Type) throws -> Tensor {
        if op.isComparison {
            var out = context.allocate(.bool, plan.outputShape)
            a.withUnsafeBufferPointer(as: T.self) { pa in
                b.withUnsafeBufferPointer(as: T.self) { pb in
                    out.withUnsafeMutableBufferPointer(as: Bool.self) { po in
                        let x = pa.baseAddress!, y = pb.baseAddress!, z = po.baseAddress!
                        context.parallelRanges(plan.count, grain: elementwiseGrain) { range in
                            switch op {
                            case .equal: broadcastApply(plan, x, y, z, in: range) { $0 == $1 }
                            case .less: broadcastApply(plan, x, y, z, in: range) { $0 < $1 }
                            case .greater: broadcastApply(plan, x, y, z, in: range) { $0 > $1 }
                            case .lessOrEqual: broadcastApply(plan, x, y, z, in: range) { $0 <= $1 }
                            default: broadcastApply(plan, x, y, z, in: range) { $0 >= $1 }
                            }
                        }
                    }
                }
            }
            return out
        }
        var out = context.allocate(T.dtype, plan.outputShape)
        a.withUnsafeBufferPointer(as: T.self) { pa in
            b.withUnsafeBufferPointer(as: T.self) { pb in
                out.withUnsafeMutableBufferPointer(as: T.self) { po in
                    let x = pa.baseAddress!, y = pb.baseAddress!, z = po.baseAddress!
                    context.parallelRanges(plan.count, grain: elementwiseGrain) { range in
                        switch op {
                        case .add: broadcastApply(plan, x, y, z, in: range) { T.add($0, $1) }
                        case .subtract: broadcastApply(plan, x, y, z, in: range) { T.subtract($0, $1) }
                        case .multiply: broadcastApply(plan, x, y, z, in: range) { T.multiply($0, $1) }
                        case .divide: broadcastApply(plan, x, y, z, in: range) { T.divide($0, $1) }
                        case .minimum:
                            broadcastApply(plan, x, y, z, in: range) { p, q in
                                if !T.isIntegerType && (p != p || q != q) { return p != p ? p : q }
                                return p < q ? p : q
                            }
                        case .maximum:
                            broadcastApply(plan, x, y, z, in: range) { p, q in
                                if !T.isIntegerType && (p != p || q != q) { return p != p ? p : q }
                                return p > q ? p : q
                            }
                        case .power:
                            if T.self == Float.self {
                                broadcastApply(plan, x, y, z, in: range) { p, q in
                                    let fp = unsafeBitCast(p, to: Float.self), fq = unsafeBitCast(q, to: Float.self)
                                    return unsafeBitCast(fq == 2 ? fp * fp : powf(fp, fq), to: T.self)
                                }
                            } else {
                                broadcastApply(plan, x, y, z, in: range) { p, q in
                                    T(fromDouble: Foundation.pow(p.doubleValue, q.doubleValue))
                                }
                            }
                        case .modulo:
                            broadcastApply(plan, x, y, z, in: range) { p, q in
                                if T.isIntegerType {
                                    if q == 0 { return 0 as T }
                                    let r = T.subtract(p, T.multiply(T.divide(p, q), q))
                                    return (r != 0 && ((r < 0) != (q < 0))) ? T.add(r, q) : r
                                }
                                let (dp, dq) = (p.doubleValue, q.doubleValue)
                                var r = fmod(dp, dq)
                                if r != 0 && ((r < 0) != (dq < 0)) { r += dq }
                                return T(fromDouble: r)
                            }
                        case .floorModulo:
                            broadcastApply(plan, x, y, z, in: range) { p, q in
                                if T.isIntegerType {
                                    if q == 0 { return 0 as T }
                                    return T.subtract(p, T.multiply(T.divide(p, q), q))
                                }
                                return T(fromDouble: fmod(p.doubleValue, q.doubleValue))
                            }
                        default: break
                        }
                    }
                }
            }
        }
        return out
    }
}

/// Logical And/Or/Xor on bool tensors, with broadcasting.
func applyLogical(_ a: Tensor, _ b: Tensor, _ f: (Bool, Bool) -> Bool) throws -> Tensor {
    guard a.dtype == .bool, b.dtype == .bool else { throw KernelError("logical ops take bool inputs") }
    guard let plan = BroadcastPlan(a.shape, b.shape) else { throw binaryShapeError(a, b) }
    var out = Tensor(uninitialized: .bool, shape: plan.outputShape)
    a.withUnsafeBufferPointer(as: Bool.self) { pa in
        b.withUnsafeBufferPointer(as: Bool.self) { pb in
            out.withUnsafeMutableBufferPointer(as: Bool.self) { po in
                broadcastApply(plan, pa.baseAddress!, pb.baseAddress!, po.baseAddress!, f)
            }
        }
    }
    return out
}

extension KernelRegistry {
    static func registerElementwise(into registry: inout KernelRegistry) {
        let simple: [(String, BinaryOp)] = [
            ("Add", .add), ("Sub", .subtract), ("Mul", .multiply), ("Div", .divide),
            ("Equal", .equal), ("Less", .less), ("Greater", .greater),
            ("LessOrEqual", .lessOrEqual), ("GreaterOrEqual", .greaterOrEqual),
        ]
        for (name, op) in simple {
            registry.register(name) { build in
                // Opset < 7 used an explicit `broadcast` attribute; numpy rules cover its cases.
                ClosureKernel { inputs, context in
                    [.tensor(try applyBinary(op, try inputs.tensor(0), try inputs.tensor(1), context))]
                }
            }
        }
        registry.register("Pow") { _ in
            ClosureKernel { inputs, context in
                let base = try inputs.tensor(0)
                var exponent = try inputs.tensor(1)
                if exponent.dtype != base.dtype {
                    if base.dtype.isInteger && exponent.dtype.isFloatingPoint {
                        let result = try applyBinary(.power, try base.converted(to: .float64), try exponent.converted(to: .float64), context)
                        return [.tensor(try result.converted(to: base.dtype))]
                    }
                    exponent = try exponent.converted(to: base.dtype)
                }
                return [.tensor(try applyBinary(.power, base, exponent, context))]
            }
        }
        registry.register("Mod") { build in
            let fmod = try build.int("fmod", default: 0) == 1
            return ClosureKernel { inputs, context in
                [.tensor(try applyBinary(fmod ? .floorModulo : .modulo, try inputs.tensor(0), try inputs.tensor(1), context))]
            }
        }
        let variadic: [(String, BinaryOp)] = [("Sum", .add), ("Max", .maximum), ("Min", .minimum), ("Mean", .add)]
        for (name, op) in variadic {
            registry.register(name) { _ in
                ClosureKernel { inputs, context in
                    var result = try inputs.tensor(0)
                    for index in 1..<inputs.count { result = try applyBinary(op, result, try inputs.tensor(index), context) }
                    if name == "Mean" && inputs.count > 1 {
                        let divisor = try Tensor(shape: [], scalars: [Double(inputs.count)]).converted(to: result.dtype)
                        result = try applyBinary(.divide, result, divisor, context)
                    } else if inputs.count == 1 {
                        result = try copyTensor(result, context)
                    }
                    return [.tensor(result)]
                }
            }
        }
        let logical: [(String, @Sendable (Bool, Bool) -> Bool)] = [("And", { $0 && $1 }), ("Or", { $0 || $1 }), ("Xor", { $0 != $1 })]
        for (name, f) in logical {
            registry.register(name) { _ in
                ClosureKernel { inputs, _ in [.tensor(try applyLogical(try inputs.tensor(0), try inputs.tensor(1), f))] }
            }
        }
        registry.register("Not") { _ in
            ClosureKernel { inputs, _ in
                let x = try inputs.tensor(0)
                guard x.dtype == .bool else { throw KernelError("Not takes a bool input") }
                return [.tensor(Tensor(shape: x.shape, scalars: x.scalars(as: Bool.self).map { !$0 }))]
            }
        }
        registry.register("Where") { _ in
            ClosureKernel { inputs, context in [.tensor(try whereSelect(try inputs.tensor(0), try inputs.tensor(1), try inputs.tensor(2), context))] }
        }
    }
}

/// A private copy of `tensor` (ops whose output must not alias their input).
func copyTensor(_ tensor: Tensor, _ context: RunContext) throws -> Tensor {
    if tensor.dtype == .string { return tensor }
    var out = context.allocate(tensor.dtype, tensor.shape)
    out.withUnsafeMutableRawBytes { target in
        tensor.withUnsafeRawBytes { source in
            if let base = source.baseAddress, source.count > 0 { target.baseAddress!.copyMemory(from: base, byteCount: source.count) }
        }
    }
    return out
}

/// ONNX Where: `condition ? x : y` with three-way broadcasting.
func whereSelect(_ condition: Tensor, _ x: Tensor, _ y: Tensor, _ context: RunContext) throws -> Tensor {
    guard condition.dtype == .bool else { throw KernelError("Where condition must be bool") }
    guard x.dtype == y.dtype else { throw KernelError("Where branches have different types \(x.dtype) and \(y.dtype)") }
    guard let xy = Shape.broadcast(x.shape, y.shape), let shape = Shape.broadcast(condition.shape, xy) else {
        throw KernelError("shapes \(condition.shape), \(x.shape), \(y.shape) cannot be broadcast together")
    }
    let count = shape.reduce(1, *)
    let cs = Shape.broadcastStrides(condition.shape, to: shape)
    let xs = Shape.broadcastStrides(x.shape, to: shape)
    let ys = Shape.broadcastStrides(y.shape, to: shape)
    var indexC = [Int](repeating: 0, count: count), indexX = indexC, indexY = indexC
    var position = [Int](repeating: 0, count: shape.count)
    var oc = 0, ox = 0, oy = 0
    for i in 0..<count {
        indexC[i] = oc; indexX[i] = ox; indexY[i] = oy
        var axis = shape.count - 1
        while axis >= 0 {
            position[axis] += 1
            oc += cs[axis]; ox += xs[axis]; oy += ys[axis]
            if position[axis] < shape[axis] { break }
            oc -= cs[axis] * shape[axis]; ox -= xs[axis] * shape[axis]; oy -= ys[axis] * shape[axis]
            position[axis] = 0
            axis -= 1
        }
    }
    let flags = condition.scalars(as: Bool.self)
    if x.dtype == .string {
        let (sx, sy) = (x.strings, y.strings)
        return Tensor(shape: shape, strings: (0..<count).map { flags[indexC[$0]] ? sx[indexX[$0]] : sy[indexY[$0]] })
    }
    let size = x.dtype.byteSize
    var out = context.allocate(x.dtype, shape)
    out.withUnsafeMutableRawBytes { target in
        x.withUnsafeRawBytes { px in
            y.withUnsafeRawBytes { py in
                for i in 0..<count {
                    let source = flags[indexC[i]] ? px.baseAddress! + indexX[i] * size : py.baseAddress! + indexY[i] * size
                    (target.baseAddress! + i * size).copyMemory(from: source, byteCount: size)
                }
            }
        }
    }
    return out
}
