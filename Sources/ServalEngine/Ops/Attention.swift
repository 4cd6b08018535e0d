import ServalTensor

/// `ai.serval:Attention(q, k, v[, mask])` with `scale` (built by `fuseAttention`): for every (batch, head),
/// scores = scale · q·k (S×T) in a scratch block, each row masked and softmaxed in place, then y = scores·v.
/// q [..., S, D], k [..., D, T], v [..., T, E] with equal leading dimensions; the mask broadcasts to [..., S, T].
/// Heads run in parallel. Other shapes and types run the unfused MatMul, Mul, Add, Softmax, MatMul sequence.
struct AttentionKernel: Kernel {
    let scale: Float

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let q = try inputs.tensor(0), k = try inputs.tensor(1), v = try inputs.tensor(2)
        let mask = try inputs.optionalTensor(3)
        let leading = Array(q.shape.dropLast(2))
        let fits = q.dtype == .float32 && k.dtype == .float32 && v.dtype == .float32 && q.rank >= 3 && k.rank == q.rank && v.rank == q.rank
            && Array(k.shape.dropLast(2)) == leading && Array(v.shape.dropLast(2)) == leading
            && k.shape[q.rank - 2] == q.shape[q.rank - 1] && v.shape[q.rank - 2] == k.shape[q.rank - 1]
        let scoresShape = fits ? leading + [q.shape[q.rank - 2], k.shape[q.rank - 1]] : []
        guard fits, mask.map({ $0.dtype == .float32 && Shape.broadcast($0.shape, scoresShape) == scoresShape }) ?? true else {
            return try unfused(q, k, v, mask, context)
        }
        let s = q.shape[q.rank - 2], d = q.shape[q.rank - 1], t = k.shape[q.rank - 1], e = v.shape[q.rank - 1]
        let pairs = leading.reduce(1, *)
        // Mask offset of each (leading index, row): leading strides folded into one offset per pair.
        let maskStrides = mask.map { Shape.broadcastStrides($0.shape, to: scoresShape) } ?? Array(repeating: 0, count: scoresShape.count)
        let leadingStrides = Shape.strides(leading)
        let pairOffsets = (0..<pairs).map { pair in
            leading.indices.reduce(0) { offset, axis in offset + (pair / leadingStrides[axis]) % leading[axis] * maskStrides[axis] }
        }
        let (rowStride, columnStride) = (maskStrides[scoresShape.count - 2], maskStrides[scoresShape.count - 1])
        var out = context.allocate(.float32, leading + [s, e])
        let scale = self.scale
        let emptyMask = Tensor(zeros: .float32, shape: [1])
        out.withUnsafeMutableBufferPointer(as: Float.self) { po in
            q.withUnsafeBufferPointer(as: Float.self) { pq in
                k.withUnsafeBufferPointer(as: Float.self) { pk in
                    v.withUnsafeBufferPointer(as: Float.self) { pv in
                        (mask ?? emptyMask).withUnsafeBufferPointer(as: Float.self) { pm in
                            let (queries, keys, values, output, masks) = (pq.baseAddress!, pk.baseAddress!, pv.baseAddress!, po.baseAddress!, pm.baseAddress!)
                            let hasMask = mask != nil
                            context.parallelRanges(pairs, grain: max(1, (1 << 17) / max(1, s * t * (d + e)))) { range in
                                let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(1, s * t))
                                defer { scores.deallocate() }
                                for pair in range {
                                    BLAS.sgemm(transA: false, transB: false, m: s, n: t, k: d, alpha: scale,
                                               a: queries + pair * s * d, lda: d, b: keys + pair * d * t, ldb: t, c: scores, ldc: t)
                                    for row in 0..<s {
                                        let line = scores + row * t
                                        if hasMask {
                                            let base = pairOffsets[pair] + row * rowStride, step = columnStride
                                            if step == 1 {
                                                for j in 0..<t { line[j] += masks[base + j] }
                                            } else {
                                                for j in 0..<t { line[j] += masks[base + j * step] }
                                            }
                                        }
                                        softmaxRow(line, line, t)
                                    }
                                    BLAS.sgemm(transA: false, transB: false, m: s, n: e, k: t,
                                               a: scores, lda: t, b: values + pair * t * e, ldb: e, c: output + pair * s * e, ldc: e)
                                }
                            }
                        }
                    }
                }
            }
        }
        return [.tensor(out)]
    }

    /// The sequence the pattern replaced, for shapes or types outside the fast path (broadcast batches, float64).
    private func unfused(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ mask: Tensor?, _ context: RunContext) throws -> [Value] {
        let product = MatMulKernel(activation: nil, packedB: nil)
        var scores = try product.run([.tensor(q), .tensor(k)], context)[0].tensor!
        if scale != 1 { scores = try applyBinary(.multiply, scores, try Tensor.scalar(scale).converted(to: scores.dtype), context) }
        if let mask { scores = try applyBinary(.add, scores, mask, context) }
        let probabilities = try softmax(.softmax, scores, axis: -1, coerceTo2D: false, context)
        return try product.run([.tensor(probabilities), .tensor(v)], context)
    }
}

extension KernelRegistry {
    static func registerAttention(into registry: inout KernelRegistry) {
        registry.register("Attention", domain: servalDomain) { build in AttentionKernel(scale: try build.float("scale", default: 1)) }
    }
}
