import ServalTensor

/// Ops that select or accumulate along an axis: TopK, CumSum, Trilu, GatherND, IsNaN, IsInf.

/// `raw` as an axis of a rank-`rank` tensor (negative counts from the end).
private func axis(_ raw: Int, _ rank: Int) throws -> Int {
    guard let axis = Shape.normalize(axis: raw, rank: rank) else { throw KernelError("axis \(raw) out of range for rank \(rank)") }
    return axis
}

/// Splits `shape` around `axis` into (outer, length, inner) element counts.
private func lineGeometry(_ shape: [Int], axis: Int) -> (outer: Int, length: Int, inner: Int) {
    (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
}

/// ONNX TopK: the k largest (or smallest) elements along `axis` and their indices; ties keep the lower index.
struct TopKVisitor: NumericVisitor {
    let x: Tensor
    let k: Int
    let axis: Int
    let largest: Bool
    let context: RunContext

    func visit<T: NumericScalar>(_ type: T.Type) throws -> [Value] {
        let (outer, length, inner) = lineGeometry(x.shape, axis: axis)
        var shape = x.shape
        shape[axis] = k
        var values = context.allocate(x.dtype, shape)
        var indices = context.allocate(.int64, shape)
        x.withUnsafeBufferPointer(as: T.self) { source in
            values.withUnsafeMutableBufferPointer(as: T.self) { topValues in
                indices.withUnsafeMutableBufferPointer(as: Int64.self) { topIndices in
                    var order = [Int](repeating: 0, count: length)
                    for o in 0..<outer {
                        for i in 0..<inner {
                            let base = o * length * inner + i
                            for j in 0..<length { order[j] = j }
                            let largest = self.largest
                            // NaN sorts as the largest value, as in onnxruntime.
                            func before(_ a: Int, _ b: Int) -> Bool {
                                let va = source[base + a * inner], vb = source[base + b * inner]
                                let aNaN = va != va, bNaN = vb != vb
                                if aNaN || bNaN { return aNaN != bNaN ? (largest ? aNaN : bNaN) : a < b }
                                if va == vb { return a < b }
                                return largest ? va > vb : va < vb
                            }
                            order.sort(by: before)
                            let outBase = o * k * inner + i
                            for j in 0..<k {
                                topValues[outBase + j * inner] = source[base + order[j] * inner]
                                topIndices[outBase + j * inner] = Int64(order[j])
                            }
                        }
                    }
                }
            }
        }
        return [.tensor(values), .tensor(indices)]
    }
}

/// ONNX CumSum along `axis`, optionally exclusive and/or reversed.
struct CumSumVisitor: NumericVisitor {
    let x: Tensor
    let axis: Int
    let exclusive: Bool
    let reverse: Bool
    let context: RunContext

    func visit<T: NumericScalar>(_ type: T.Type) throws -> Tensor {
        let (outer, length, inner) = lineGeometry(x.shape, axis: axis)
        var out = context.allocate(x.dtype, x.shape)
        x.withUnsafeBufferPointer(as: T.self) { source in
            out.withUnsafeMutableBufferPointer(as: T.self) { target in
                for o in 0..<outer {
                    for i in 0..<inner {
                        let base = o * length * inner + i
                        var sum = T.zero
                        for step in 0..<length {
                            let j = reverse ? length - 1 - step : step
                            let index = base + j * inner
                            if exclusive {
                                target[index] = sum
                                sum = T.add(sum, source[index])
                            } else {
                                sum = T.add(sum, source[index])
                                target[index] = sum
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// ONNX Trilu: keeps the upper (j - i ≥ k) or lower (j - i ≤ k) triangle of the last two dimensions.
func trilu(_ x: Tensor, k: Int, upper: Bool, _ context: RunContext) throws -> Tensor {
    guard x.rank >= 2 else { throw KernelError("Trilu needs rank ≥ 2, got \(x.shape)") }
    guard x.dtype != .string else { throw KernelError("Trilu does not support string tensors") }
    let rows = x.shape[x.rank - 2], columns = x.shape[x.rank - 1]
    let matrices = x.count / max(1, rows * columns)
    var out = context.allocate(x.dtype, x.shape)
    let size = x.dtype.byteSize
    x.withUnsafeRawBytes { source in
        out.withUnsafeMutableRawBytes { target in
            for m in 0..<matrices {
                for i in 0..<rows {
                    for j in 0..<columns {
                        let offset = ((m * rows + i) * columns + j) * size
                        let keep = upper ? j - i >= k : j - i <= k
                        if keep {
                            (target.baseAddress! + offset).copyMemory(from: source.baseAddress! + offset, byteCount: size)
                        } else {
                            (target.baseAddress! + offset).initializeMemory(as: UInt8.self, repeating: 0, count: size)
                        }
                    }
                }
            }
        }
    }
    return out
}

/// ONNX GatherND: each index tuple (the last dimension of `indices`) selects an element or slice of `data`;
/// the first `batchDims` dimensions are shared by data and indices.
func gatherND(_ data: Tensor, _ indicesTensor: Tensor, batchDims: Int, _ context: RunContext) throws -> Tensor {
    guard indicesTensor.rank >= 1, batchDims >= 0, batchDims < min(data.rank, indicesTensor.rank) else {
        throw KernelError("GatherND: batch_dims \(batchDims) does not fit data \(data.shape) and indices \(indicesTensor.shape)")
    }
    let tuple = indicesTensor.shape[indicesTensor.rank - 1]
    guard tuple >= 1, batchDims + tuple <= data.rank else {
        throw KernelError("GatherND: index tuples of length \(tuple) do not fit data \(data.shape) with batch_dims \(batchDims)")
    }
    guard Array(data.shape[..<batchDims]) == Array(indicesTensor.shape[..<batchDims]) else {
        throw KernelError("GatherND: batch dimensions of data \(data.shape) and indices \(indicesTensor.shape) differ")
    }
    let indices = try indicesTensor.int64s()
    let batch = data.shape[..<batchDims].reduce(1, *)
    let sliceShape = Array(data.shape[(batchDims + tuple)...])
    let sliceSize = sliceShape.reduce(1, *)
    let perBatchData = data.shape[batchDims...].reduce(1, *)
    let tuplesPerBatch = indicesTensor.shape[batchDims..<(indicesTensor.rank - 1)].reduce(1, *)
    let strides = Shape.strides(data.shape)
    var offsets: [Int] = []
    offsets.reserveCapacity(batch * tuplesPerBatch * sliceSize)
    for b in 0..<batch {
        for t in 0..<tuplesPerBatch {
            var offset = b * perBatchData
            for d in 0..<tuple {
                let dim = data.shape[batchDims + d]
                let raw = Int(indices[(b * tuplesPerBatch + t) * tuple + d])
                let index = raw < 0 ? raw + dim : raw
                guard index >= 0 && index < dim else { throw KernelError("GatherND index \(raw) out of range for dimension of size \(dim)") }
                offset += index * strides[batchDims + d]
            }
            for e in 0..<sliceSize { offsets.append(offset + e) }
        }
    }
    let shape = Array(indicesTensor.shape.dropLast()) + sliceShape
    return try ElementCopy.gather(data, indices: offsets, shape: shape, context)
}

/// ONNX IsNaN / IsInf on floating-point tensors.
func floatTest(_ x: Tensor, _ test: (Double) -> Bool) throws -> Tensor {
    guard x.dtype.isFloatingPoint else { throw KernelError("expected a floating-point input, got \(x.dtype)") }
    return Tensor(shape: x.shape, scalars: try x.doubles().map(test))
}

extension KernelRegistry {
    static func registerSelection(into registry: inout KernelRegistry) {
        registry.register("TopK", since: 1) { build in
            guard let k = try build.int("k") else { throw build.invalid("k is required") }
            let rawAxis = try build.int("axis", default: -1)
            return ClosureKernel { inputs, context in
                let x = try inputs.tensor(0)
                return try x.dtype.dispatch(TopKVisitor(x: x, k: k, axis: try axis(rawAxis, x.rank), largest: true, context: context), context: "TopK")
            }
        }
        registry.register("TopK", since: 10) { build in
            let rawAxis = try build.int("axis", default: -1)
            let largest = try build.int("largest", default: 1) != 0
            return ClosureKernel { inputs, context in
                let x = try inputs.tensor(0)
                let a = try axis(rawAxis, x.rank)
                guard let k = try inputs.tensor(1).int64s().first, k >= 0, Int(k) <= x.shape[a] else {
                    throw KernelError("TopK k must be between 0 and \(x.shape[a])")
                }
                return try x.dtype.dispatch(TopKVisitor(x: x, k: Int(k), axis: a, largest: largest, context: context), context: "TopK")
            }
        }
        registry.register("CumSum") { build in
            let exclusive = try build.int("exclusive", default: 0) != 0, reverse = try build.int("reverse", default: 0) != 0
            return ClosureKernel { inputs, context in
                let x = try inputs.tensor(0)
                guard let raw = try inputs.tensor(1).int64s().first else { throw KernelError("CumSum needs an axis") }
                let visitor = CumSumVisitor(x: x, axis: try axis(Int(raw), x.rank), exclusive: exclusive, reverse: reverse, context: context)
                return [.tensor(try x.dtype.dispatch(visitor, context: "CumSum"))]
            }
        }
        registry.register("Trilu") { build in
            let upper = try build.int("upper", default: 1) != 0
            return ClosureKernel { inputs, context in
                let k = try inputs.optionalTensor(1)?.int64s().first.map { Int(clamping: $0) } ?? 0
                return [.tensor(try trilu(try inputs.tensor(0), k: k, upper: upper, context))]
            }
        }
        registry.register("GatherND") { build in
            let batchDims = try build.int("batch_dims", default: 0)
            return ClosureKernel { inputs, context in [.tensor(try gatherND(try inputs.tensor(0), try inputs.tensor(1), batchDims: batchDims, context))] }
        }
        registry.register("IsNaN") { _ in
            ClosureKernel { inputs, _ in [.tensor(try floatTest(try inputs.tensor(0)) { $0.isNaN })] }
        }
        registry.register("IsInf") { build in
            let negative = try build.int("detect_negative", default: 1) != 0, positive = try build.int("detect_positive", default: 1) != 0
            return ClosureKernel { inputs, _ in
                [.tensor(try floatTest(try inputs.tensor(0)) { $0.isInfinite && ($0 > 0 ? positive : negative) })]
            }
        }
    }
}
