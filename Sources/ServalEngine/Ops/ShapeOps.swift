import ServalTensor

/// Ops that change only shape or type metadata, or make constants: Reshape, Flatten, Squeeze, Unsqueeze,
/// Shape, Size, Identity, Dropout, Constant, ConstantOfShape, Cast, CastLike, Range.
func reshape(_ x: Tensor, to requested: [Int], allowZero: Bool) throws -> Tensor {
    var shape = requested
    var inferred: Int?
    for (i, dim) in requested.enumerated() {
        if dim == 0 && !allowZero {
            guard i < x.rank else { throw KernelError("Reshape: 0 at axis \(i) has no input dimension to copy") }
            shape[i] = x.shape[i]
        } else if dim == -1 {
            guard inferred == nil else { throw KernelError("Reshape: more than one -1 in \(requested)") }
            inferred = i
        } else if dim < -1 {
            throw KernelError("Reshape: invalid dimension \(dim)")
        }
    }
    if let inferred {
        let known = shape.enumerated().filter { $0.offset != inferred }.reduce(1) { $0 * $1.element }
        guard known > 0, x.count % known == 0 else { throw KernelError("cannot reshape \(x.shape) to \(requested)") }
        shape[inferred] = x.count / known
    }
    guard shape.reduce(1, *) == x.count else { throw KernelError("cannot reshape \(x.shape) (\(x.count) elements) to \(requested)") }
    return x.reshaped(shape)
}

func squeeze(_ x: Tensor, axes rawAxes: [Int]?) throws -> Tensor {
    guard let rawAxes else { return x.reshaped(x.shape.filter { $0 != 1 }) }
    var axes = Set<Int>()
    for axis in rawAxes {
        guard let normalized = Shape.normalize(axis: axis, rank: x.rank), x.shape[normalized] == 1 else {
            throw KernelError("cannot squeeze axis \(axis) of shape \(x.shape)")
        }
        axes.insert(normalized)
    }
    return x.reshaped(x.shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element))
}

func unsqueeze(_ x: Tensor, axes rawAxes: [Int]) throws -> Tensor {
    let rank = x.rank + rawAxes.count
    var axes = Set<Int>()
    for axis in rawAxes {
        guard let normalized = Shape.normalize(axis: axis, rank: rank), !axes.contains(normalized) else {
            throw KernelError("invalid Unsqueeze axes \(rawAxes) for shape \(x.shape)")
        }
        axes.insert(normalized)
    }
    var shape: [Int] = []
    var source = x.shape.makeIterator()
    for axis in 0..<rank { shape.append(axes.contains(axis) ? 1 : source.next()!) }
    return x.reshaped(shape)
}

/// The value of a Constant node from whichever `value*` attribute it carries.
func constantValue(_ build: KernelBuildContext) throws -> Tensor {
    if let tensor = try build.tensor("value") { return tensor }
    if let value = try build.float("value_float") { return Tensor.scalar(value) }
    if let value = try build.floats("value_floats"), build.has("value_floats") { return Tensor(shape: [value.count], scalars: value) }
    if let value = try build.int("value_int") { return Tensor.scalar(Int64(value)) }
    if let value = try build.ints("value_ints") { return Tensor(shape: [value.count], scalars: value.map { Int64($0) }) }
    if let value = try build.string("value_string") { return Tensor(shape: [], strings: [value]) }
    if let value = try build.strings("value_strings") { return Tensor(shape: [value.count], strings: value) }
    throw build.invalid("Constant has no supported value attribute")
}

extension KernelRegistry {
    static func registerShapeOps(into registry: inout KernelRegistry) {
        registry.register("Reshape", since: 1) { build in
            guard let shape = try build.ints("shape") else { throw build.invalid("shape is required") }
            return ClosureKernel { inputs, _ in [.tensor(try reshape(try inputs.tensor(0), to: shape, allowZero: false))] }
        }
        registry.register("Reshape", since: 5) { build in
            let allowZero = try build.int("allowzero", default: 0) != 0
            return ClosureKernel { inputs, _ in
                [.tensor(try reshape(try inputs.tensor(0), to: try inputs.tensor(1).int64s().map { Int($0) }, allowZero: allowZero))]
            }
        }
        registry.register("Flatten") { build in
            let axis = try build.int("axis", default: 1)
            return ClosureKernel { inputs, _ in
                let x = try inputs.tensor(0)
                let a = axis < 0 ? axis + x.rank : axis
                guard a >= 0 && a <= x.rank else { throw KernelError("Flatten axis \(axis) out of range for \(x.shape)") }
                return [.tensor(x.reshaped([Shape.product(x.shape, 0..<a), Shape.product(x.shape, a..<x.rank)]))]
            }
        }
        registry.register("Squeeze", since: 1) { build in
            let axes = try build.ints("axes")
            return ClosureKernel { inputs, _ in [.tensor(try squeeze(try inputs.tensor(0), axes: axes))] }
        }
        registry.register("Squeeze", since: 13) { _ in
            ClosureKernel { inputs, _ in
                [.tensor(try squeeze(try inputs.tensor(0), axes: try inputs.optionalTensor(1).map { try $0.int64s().map { Int($0) } }))]
            }
        }
        registry.register("Unsqueeze", since: 1) { build in
            guard let axes = try build.ints("axes") else { throw build.invalid("axes is required") }
            return ClosureKernel { inputs, _ in [.tensor(try unsqueeze(try inputs.tensor(0), axes: axes))] }
        }
        registry.register("Unsqueeze", since: 13) { _ in
            ClosureKernel { inputs, _ in
                [.tensor(try unsqueeze(try inputs.tensor(0), axes: try inputs.tensor(1).int64s().map { Int($0) }))]
            }
        }
        registry.register("Shape") { build in
            let start = try build.int("start", default: 0), end = try build.int("end")
            return ClosureKernel { inputs, _ in
                let shape = try inputs.tensor(0).shape
                let rank = shape.count
                let lower = min(max(start < 0 ? start + rank : start, 0), rank)
                let upper = min(max(end.map { $0 < 0 ? $0 + rank : $0 } ?? rank, 0), rank)
                let dims = lower < upper ? shape[lower..<upper].map { Int64($0) } : []
                return [.tensor(Tensor(shape: [dims.count], scalars: dims))]
            }
        }
        registry.register("Size") { _ in
            ClosureKernel { inputs, _ in [.tensor(Tensor.scalar(Int64(try inputs.tensor(0).count)))] }
        }
        registry.register("Identity") { _ in ClosureKernel { inputs, _ in [inputs[0]!] } }
        registry.register("Dropout") { build in
            let wantsMask = build.node.outputs.count > 1 && !build.node.outputs[1].isEmpty
            return ClosureKernel { inputs, _ in
                let x = try inputs.tensor(0)
                // Inference: the output is the input, and the mask (if asked for) is all true.
                return wantsMask ? [.tensor(x), .tensor(Tensor(shape: x.shape, scalars: Array(repeating: true, count: x.count)))] : [.tensor(x)]
            }
        }
        registry.register("Constant") { build in
            let value = try constantValue(build)
            return ClosureKernel { _, _ in [.tensor(value)] }
        }
        registry.register("ConstantOfShape") { build in
            let value = try build.tensor("value") ?? Tensor(shape: [1], scalars: [Float(0)])
            return ClosureKernel { inputs, context in
                let shape = try inputs.tensor(0).int64s().map { Int($0) }
                guard shape.allSatisfy({ $0 >= 0 }) else { throw KernelError("ConstantOfShape: negative dimension in \(shape)") }
                let count = shape.reduce(1, *)
                return [.tensor(try ElementCopy.gather(value.reshaped([value.count]), indices: Array(repeating: 0, count: count), shape: shape, context))]
            }
        }
        registry.register("Cast") { build in
            guard let code = try build.int("to"), let target = DType(onnxCode: code) else {
                throw build.invalid("Cast target type \(String(describing: try? build.int("to"))) is not supported")
            }
            return ClosureKernel { inputs, _ in [.tensor(try inputs.tensor(0).converted(to: target))] }
        }
        registry.register("CastLike") { _ in
            ClosureKernel { inputs, _ in [.tensor(try inputs.tensor(0).converted(to: try inputs.tensor(1).dtype))] }
        }
        registry.register("Range") { _ in
            ClosureKernel { inputs, _ in
                let start = try inputs.tensor(0), limit = try inputs.tensor(1), delta = try inputs.tensor(2)
                let (s, l, d) = (try start.doubles()[0], try limit.doubles()[0], try delta.doubles()[0])
                guard d != 0 else { throw KernelError("Range delta cannot be 0") }
                let count = max(Int((l - s) / d).advanced(by: (l - s).truncatingRemainder(dividingBy: d) != 0 ? 1 : 0), 0)
                if start.dtype.isInteger {
                    let (si, di) = (try start.int64s()[0], try delta.int64s()[0])
                    let values = (0..<count).map { si + Int64($0) * di }
                    return [.tensor(try Tensor(shape: [count], scalars: values).converted(to: start.dtype))]
                }
                let values = (0..<count).map { s + Double($0) * d }
                return [.tensor(try Tensor(shape: [count], scalars: values).converted(to: start.dtype))]
            }
        }
    }
}
