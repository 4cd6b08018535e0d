import ServalTensor

/// Ops that move elements without arithmetic: Transpose, Concat, Split, Slice, Gather, GatherElements,
/// Pad, Expand, Tile.
func transpose(_ x: Tensor, perm: [Int]?, _ context: RunContext) throws -> Tensor {
    let perm = perm ?? Array((0..<x.rank).reversed())
    guard perm.count == x.rank, Set(perm) == Set(0..<x.rank) else { throw KernelError("perm \(perm) is not a permutation of \(x.rank) axes") }
    let strides = Shape.strides(x.shape)
    let outShape = perm.map { x.shape[$0] }
    if perm == Array(0..<x.rank) { return x }
    // Axes that keep their place at the end (e.g. the head dimension in [0, 2, 1, 3]) move as contiguous runs.
    var kept = x.rank
    while kept > 0 && perm[kept - 1] == kept - 1 { kept -= 1 }
    if kept < x.rank && x.dtype != .string {
        return transposeRuns(x, perm: perm, outShape: outShape, strides: strides, leading: kept, context)
    }
    if x.dtype != .string && x.rank >= 2 {
        return transposeLines(x, perm: perm, outShape: outShape, strides: strides, context)
    }
    let indices = ElementCopy.stridedIndices(outputShape: outShape, strides: perm.map { strides[$0] })
    return try ElementCopy.gather(x, indices: indices, shape: outShape, context)
}

/// Transpose when the last `rank - leading` axes stay in place: one memcpy per run of those axes.
private func transposeRuns(_ x: Tensor, perm: [Int], outShape: [Int], strides: [Int], leading: Int, _ context: RunContext) -> Tensor {
    let run = x.shape[leading...].reduce(1, *) * x.dtype.byteSize
    let runs = outShape[..<leading].reduce(1, *)
    let sourceStrides = perm[..<leading].map { strides[$0] * x.dtype.byteSize }
    var out = context.allocate(x.dtype, outShape)
    x.withUnsafeRawBytes { source in
        out.withUnsafeMutableRawBytes { target in
            guard run > 0, runs > 0 else { return }
            let (input, output) = (source.baseAddress!, target.baseAddress!)
            context.parallelRanges(runs, grain: max(1, elementwiseGrain * 4 / run)) { range in
                var source = StridedOdometer(shape: Array(outShape[..<leading]), strides: sourceStrides, start: range.lowerBound)
                for r in range {
                    (output + r * run).copyMemory(from: input + source.offset, byteCount: run)
                    source.advance()
                }
            }
        }
    }
    return out
}

/// Transpose that moves the last axis: each output line (last output axis) is read from the source with one stride,
/// lines spread over the intra-op threads.
private func transposeLines(_ x: Tensor, perm: [Int], outShape: [Int], strides: [Int], _ context: RunContext) -> Tensor {
    var out = context.allocate(x.dtype, outShape)
    let rank = x.rank
    let length = outShape[rank - 1], step = strides[perm[rank - 1]]
    let lines = outShape[..<(rank - 1)].reduce(1, *)
    let lineStrides = perm[..<(rank - 1)].map { strides[$0] }
    guard length > 0, lines > 0 else { return out }
    func copy<T>(_ type: T.Type) {
        x.withUnsafeRawBytes { source in
            out.withUnsafeMutableRawBytes { target in
                let input = source.baseAddress!.assumingMemoryBound(to: T.self), output = target.baseAddress!.assumingMemoryBound(to: T.self)
                context.parallelRanges(lines, grain: max(1, elementwiseGrain / length)) { range in
                    var source = StridedOdometer(shape: Array(outShape[..<(rank - 1)]), strides: lineStrides, start: range.lowerBound)
                    for line in range {
                        let target = output + line * length, start = input + source.offset
                        for j in 0..<length { target[j] = start[j * step] }
                        source.advance()
                    }
                }
            }
        }
    }
    switch x.dtype.byteSize {
    case 1: copy(UInt8.self)
    case 2: copy(UInt16.self)
    case 4: copy(UInt32.self)
    default: copy(UInt64.self)
    }
    return out
}

func concat(_ tensors: [Tensor], axis rawAxis: Int, _ context: RunContext) throws -> Tensor {
    guard let first = tensors.first else { throw KernelError("Concat needs at least one input") }
    guard let axis = Shape.normalize(axis: rawAxis, rank: first.rank) else { throw KernelError("axis \(rawAxis) out of range for rank \(first.rank)") }
    var outShape = first.shape
    outShape[axis] = 0
    for tensor in tensors {
        guard tensor.dtype == first.dtype, tensor.rank == first.rank,
              (0..<first.rank).allSatisfy({ $0 == axis || tensor.shape[$0] == first.shape[$0] }) else {
            throw KernelError("Concat inputs \(tensors.map(\.shape)) differ outside axis \(axis)")
        }
        outShape[axis] += tensor.shape[axis]
    }
    let outer = Shape.product(first.shape, 0..<axis), inner = Shape.product(first.shape, (axis + 1)..<first.rank)
    if first.dtype == .string {
        var strings: [String] = []
        for o in 0..<outer {
            for tensor in tensors {
                let block = tensor.shape[axis] * inner
                strings += tensor.strings[(o * block)..<((o + 1) * block)]
            }
        }
        return Tensor(shape: outShape, strings: strings)
    }
    var out = context.allocate(first.dtype, outShape)
    let size = first.dtype.byteSize
    let outBlock = outShape[axis] * inner
    out.withUnsafeMutableRawBytes { target in
        var column = 0
        for tensor in tensors {
            let block = tensor.shape[axis] * inner
            tensor.withUnsafeRawBytes { source in
                for o in 0..<outer {
                    ElementCopy.copyBlock(from: source.baseAddress!, o * block, to: target.baseAddress!, o * outBlock + column, elements: block, size: size)
                }
            }
            column += block
        }
    }
    return out
}

func split(_ x: Tensor, axis rawAxis: Int, sizes: [Int], _ context: RunContext) throws -> [Tensor] {
    guard let axis = Shape.normalize(axis: rawAxis, rank: x.rank) else { throw KernelError("axis \(rawAxis) out of range for \(x.shape)") }
    guard sizes.reduce(0, +) == x.shape[axis], sizes.allSatisfy({ $0 >= 0 }) else {
        throw KernelError("split sizes \(sizes) do not add up to dimension \(x.shape[axis])")
    }
    var start = 0
    var outputs: [Tensor] = []
    for size in sizes {
        outputs.append(try slice(x, starts: [start], ends: [start + size], axes: [axis], steps: [1], context))
        start += size
    }
    return outputs
}

/// Even split sizes for `parts` outputs; the last one smaller when the dimension does not divide (Split-18).
func evenSplit(_ dimension: Int, parts: Int) -> [Int] {
    guard parts > 0 else { return [] }
    let size = (dimension + parts - 1) / parts
    var sizes = Array(repeating: size, count: parts)
    sizes[parts - 1] = dimension - size * (parts - 1)
    return sizes
}

func slice(_ x: Tensor, starts: [Int], ends: [Int], axes rawAxes: [Int]?, steps rawSteps: [Int]?, _ context: RunContext) throws -> Tensor {
    let axes = rawAxes ?? Array(0..<starts.count)
    let steps = rawSteps ?? Array(repeating: 1, count: starts.count)
    guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else {
        throw KernelError("Slice starts, ends, axes and steps must have the same length")
    }
    var begin = Array(repeating: 0, count: x.rank)
    var step = Array(repeating: 1, count: x.rank)
    var outShape = x.shape
    for (i, rawAxis) in axes.enumerated() {
        guard let axis = Shape.normalize(axis: rawAxis, rank: x.rank) else { throw KernelError("axis \(rawAxis) out of range for \(x.shape)") }
        let dim = x.shape[axis]
        guard steps[i] != 0 else { throw KernelError("Slice step cannot be 0") }
        var start = starts[i] < 0 ? starts[i] + dim : starts[i]
        var end = ends[i] < 0 ? ends[i] + dim : ends[i]
        if steps[i] > 0 {
            start = min(max(start, 0), dim)
            end = min(max(end, 0), dim)
            outShape[axis] = end > start ? (end - start + steps[i] - 1) / steps[i] : 0
        } else {
            start = min(max(start, -1), dim - 1)
            end = min(max(end, -1), dim - 1)
            outShape[axis] = start > end ? (start - end - steps[i] - 1) / (-steps[i]) : 0
        }
        begin[axis] = start
        step[axis] = steps[i]
    }
    let strides = Shape.strides(x.shape)
    var base = 0
    for axis in 0..<x.rank where outShape[axis] > 0 { base += begin[axis] * strides[axis] }
    let indices = ElementCopy.stridedIndices(outputShape: outShape, strides: (0..<x.rank).map { strides[$0] * step[$0] }, base: base)
    return try ElementCopy.gather(x, indices: indices, shape: outShape, context)
}

func gather(_ data: Tensor, _ indicesTensor: Tensor, axis rawAxis: Int, _ context: RunContext) throws -> Tensor {
    guard let axis = Shape.normalize(axis: rawAxis, rank: data.rank), data.rank > 0 else { throw KernelError("axis \(rawAxis) out of range for \(data.shape)") }
    let indices = try indicesTensor.int64s()
    let dim = data.shape[axis]
    let outer = Shape.product(data.shape, 0..<axis), inner = Shape.product(data.shape, (axis + 1)..<data.rank)
    let outShape = Array(data.shape[..<axis]) + indicesTensor.shape + Array(data.shape[(axis + 1)...])
    var resolved = [Int](repeating: 0, count: indices.count)
    for (i, raw) in indices.enumerated() {
        let index = raw < 0 ? Int(raw) + dim : Int(raw)
        guard index >= 0 && index < dim else { throw KernelError("Gather index \(raw) out of range for axis of size \(dim)") }
        resolved[i] = index
    }
    if data.dtype == .string {
        var flat: [Int] = []
        flat.reserveCapacity(outer * indices.count * inner)
        for o in 0..<outer { for index in resolved { for i in 0..<inner { flat.append((o * dim + index) * inner + i) } } }
        return try ElementCopy.gather(data, indices: flat, shape: outShape, context)
    }
    var out = context.allocate(data.dtype, outShape)
    let size = data.dtype.byteSize
    data.withUnsafeRawBytes { source in
        out.withUnsafeMutableRawBytes { target in
            for o in 0..<outer {
                for (j, index) in resolved.enumerated() {
                    ElementCopy.copyBlock(from: source.baseAddress!, (o * dim + index) * inner, to: target.baseAddress!, (o * resolved.count + j) * inner, elements: inner, size: size)
                }
            }
        }
    }
    return out
}

func gatherElements(_ data: Tensor, _ indicesTensor: Tensor, axis rawAxis: Int, _ context: RunContext) throws -> Tensor {
    guard let axis = Shape.normalize(axis: rawAxis, rank: data.rank) else { throw KernelError("axis \(rawAxis) out of range for \(data.shape)") }
    guard indicesTensor.rank == data.rank else { throw KernelError("GatherElements indices must have the data's rank") }
    let indices = try indicesTensor.int64s()
    let dataStrides = Shape.strides(data.shape), indexStrides = Shape.strides(indicesTensor.shape)
    var flat = [Int](repeating: 0, count: indices.count)
    for i in 0..<indices.count {
        var offset = 0
        for d in 0..<data.rank {
            var coordinate = (i / indexStrides[d]) % indicesTensor.shape[d]
            if d == axis {
                let raw = Int(indices[i])
                coordinate = raw < 0 ? raw + data.shape[axis] : raw
                guard coordinate >= 0 && coordinate < data.shape[axis] else { throw KernelError("GatherElements index \(raw) out of range") }
            }
            offset += coordinate * dataStrides[d]
        }
        flat[i] = offset
    }
    return try ElementCopy.gather(data, indices: flat, shape: indicesTensor.shape, context)
}

/// ONNX Pad: `pads` is [begin_0, ..., begin_n, end_0, ..., end_n]; negative values crop.
func pad(_ x: Tensor, pads: [Int], mode: String, value: Tensor?, axes rawAxes: [Int]?, _ context: RunContext) throws -> Tensor {
    let axes = try (rawAxes ?? Array(0..<x.rank)).map { axis -> Int in
        guard let normalized = Shape.normalize(axis: axis, rank: x.rank) else { throw KernelError("axis \(axis) out of range") }
        return normalized
    }
    guard pads.count == 2 * axes.count else { throw KernelError("pads has \(pads.count) values, expected \(2 * axes.count)") }
    var begin = Array(repeating: 0, count: x.rank), end = begin
    for (i, axis) in axes.enumerated() { begin[axis] = pads[i]; end[axis] = pads[i + axes.count] }
    let outShape = (0..<x.rank).map { x.shape[$0] + begin[$0] + end[$0] }
    guard outShape.allSatisfy({ $0 >= 0 }) else { throw KernelError("pads \(pads) crop more than the input \(x.shape)") }
    let strides = Shape.strides(x.shape)
    let count = outShape.reduce(1, *)
    var indices = [Int](repeating: -1, count: count)
    let outStrides = Shape.strides(outShape)
    for i in 0..<count {
        var offset = 0
        var inside = true
        for axis in 0..<x.rank {
            var c = (i / outStrides[axis]) % outShape[axis] - begin[axis]
            let dim = x.shape[axis]
            if c < 0 || c >= dim {
                switch mode {
                case "edge": c = min(max(c, 0), dim - 1)
                case "reflect":
                    if dim == 1 { c = 0 } else {
                        let period = 2 * (dim - 1)
                        c = ((c % period) + period) % period
                        if c >= dim { c = period - c }
                    }
                case "wrap": c = ((c % dim) + dim) % dim
                default: inside = false
                }
            }
            if !inside { break }
            offset += c * strides[axis]
        }
        if inside { indices[i] = offset }
    }
    let fill = try value ?? Tensor(shape: [], scalars: [0.0]).converted(to: x.dtype == .string ? .float64 : x.dtype)
    return try ElementCopy.gather(x, indices: indices, shape: outShape, fill: fill.count > 0 ? fill : nil, context)
}

func expand(_ x: Tensor, to shape: [Int], _ context: RunContext) throws -> Tensor {
    guard let outShape = Shape.broadcast(x.shape, shape) else { throw KernelError("cannot expand \(x.shape) to \(shape)") }
    let indices = ElementCopy.stridedIndices(outputShape: outShape, strides: Shape.broadcastStrides(x.shape, to: outShape))
    return try ElementCopy.gather(x, indices: indices, shape: outShape, context)
}

func tile(_ x: Tensor, repeats: [Int], _ context: RunContext) throws -> Tensor {
    guard repeats.count == x.rank, repeats.allSatisfy({ $0 >= 0 }) else { throw KernelError("repeats \(repeats) must have one value ≥ 0 per axis of \(x.shape)") }
    let outShape = zip(x.shape, repeats).map { $0 * $1 }
    let strides = Shape.strides(x.shape), outStrides = Shape.strides(outShape)
    let count = outShape.reduce(1, *)
    var indices = [Int](repeating: 0, count: count)
    for i in 0..<count {
        var offset = 0
        for axis in 0..<x.rank { offset += ((i / outStrides[axis]) % outShape[axis] % x.shape[axis]) * strides[axis] }
        indices[i] = offset
    }
    return try ElementCopy.gather(x, indices: indices, shape: outShape, context)
}

extension KernelRegistry {
    static func registerTensorOps(into registry: inout KernelRegistry) {
        registry.register("Transpose") { build in
            let perm = try build.ints("perm")
            return ClosureKernel { inputs, context in [.tensor(try transpose(try inputs.tensor(0), perm: perm, context))] }
        }
        registry.register("Concat") { build in
            let axis = try build.int("axis", default: 1)
            return ClosureKernel { inputs, context in
                [.tensor(try concat(try (0..<inputs.count).compactMap { try inputs.optionalTensor($0) }, axis: axis, context))]
            }
        }
        registry.register("Split") { build in
            let axis = try build.int("axis", default: 0)
            let attributeSizes = try build.ints("split")
            let parts = build.node.outputs.count
            let numOutputs = try build.int("num_outputs")
            return ClosureKernel { inputs, context in
                let x = try inputs.tensor(0)
                guard let normalized = Shape.normalize(axis: axis, rank: x.rank) else { throw KernelError("axis \(axis) out of range") }
                let sizes = try inputs.optionalTensor(1).map { try $0.int64s().map { Int($0) } } ?? attributeSizes
                    ?? (numOutputs != nil ? evenSplit(x.shape[normalized], parts: numOutputs!) : nil)
                    ?? (x.shape[normalized] % parts == 0 ? Array(repeating: x.shape[normalized] / parts, count: parts) : evenSplit(x.shape[normalized], parts: parts))
                return try split(x, axis: axis, sizes: sizes, context).map { .tensor($0) }
            }
        }
        registry.register("Slice", since: 1) { build in
            guard let starts = try build.ints("starts"), let ends = try build.ints("ends") else { throw build.invalid("starts and ends are required") }
            let axes = try build.ints("axes")
            return ClosureKernel { inputs, context in [.tensor(try slice(try inputs.tensor(0), starts: starts, ends: ends, axes: axes, steps: nil, context))] }
        }
        registry.register("Slice", since: 10) { _ in
            ClosureKernel { inputs, context in
                func ints(_ i: Int) throws -> [Int]? { try inputs.optionalTensor(i).map { try $0.int64s().map { Int(clamping: $0) } } }
                return [.tensor(try slice(try inputs.tensor(0), starts: try ints(1) ?? [], ends: try ints(2) ?? [], axes: try ints(3), steps: try ints(4), context))]
            }
        }
        registry.register("Gather") { build in
            let axis = try build.int("axis", default: 0)
            return ClosureKernel { inputs, context in [.tensor(try gather(try inputs.tensor(0), try inputs.tensor(1), axis: axis, context))] }
        }
        registry.register("GatherElements") { build in
            let axis = try build.int("axis", default: 0)
            return ClosureKernel { inputs, context in [.tensor(try gatherElements(try inputs.tensor(0), try inputs.tensor(1), axis: axis, context))] }
        }
        registry.register("Pad", since: 1) { build in
            guard let pads = try build.ints("pads") ?? build.ints("paddings") else { throw build.invalid("pads is required") }
            let mode = try build.string("mode", default: "constant"), value = try build.float("value", default: 0)
            return ClosureKernel { inputs, context in
                let x = try inputs.tensor(0)
                return [.tensor(try pad(x, pads: pads, mode: mode, value: try Tensor.scalar(value).converted(to: x.dtype), axes: nil, context))]
            }
        }
        registry.register("Pad", since: 11) { build in
            let mode = try build.string("mode", default: "constant")
            return ClosureKernel { inputs, context in
                let pads = try inputs.tensor(1).int64s().map { Int($0) }
                let axes = try inputs.optionalTensor(3).map { try $0.int64s().map { Int($0) } }
                return [.tensor(try pad(try inputs.tensor(0), pads: pads, mode: mode, value: try inputs.optionalTensor(2), axes: axes, context))]
            }
        }
        registry.register("Expand") { _ in
            ClosureKernel { inputs, context in
                [.tensor(try expand(try inputs.tensor(0), to: try inputs.tensor(1).int64s().map { Int($0) }, context))]
            }
        }
        registry.register("Tile") { _ in
            ClosureKernel { inputs, context in
                [.tensor(try tile(try inputs.tensor(0), repeats: try inputs.tensor(1).int64s().map { Int($0) }, context))]
            }
        }
    }
}
