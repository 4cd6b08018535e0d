import ServalTensor

/// Data movement that depends only on element size, shared by the shape and indexing ops.
enum ElementCopy {
    /// A tensor of `shape` whose element i is `source[indices[i]]`, or `fill` where the index is -1.
    static func gather(_ source: Tensor, indices: [Int], shape: [Int], fill: Tensor? = nil, _ context: RunContext) throws -> Tensor {
        if source.dtype == .string {
            let strings = source.strings
            let padding = fill?.strings.first ?? ""
            return Tensor(shape: shape, strings: indices.map { $0 >= 0 ? strings[$0] : padding })
        }
        var out = context.allocate(source.dtype, shape)
        let fillValue = try fill.map { try $0.converted(to: source.dtype) }
        switch source.dtype.byteSize {
        case 1: gatherTyped(UInt8.self, source, &out, indices, fillValue)
        case 2: gatherTyped(UInt16.self, source, &out, indices, fillValue)
        case 4: gatherTyped(UInt32.self, source, &out, indices, fillValue)
        default: gatherTyped(UInt64.self, source, &out, indices, fillValue)
        }
        return out
    }

    private static func gatherTyped<T>(_ type: T.Type, _ source: Tensor, _ out: inout Tensor, _ indices: [Int], _ fill: Tensor?) {
        source.withUnsafeRawBytes { raw in
            let input = raw.baseAddress!.assumingMemoryBound(to: T.self)
            let padding: T? = fill.flatMap { tensor in tensor.count > 0 ? tensor.withUnsafeRawBytes { $0.load(as: T.self) } : nil }
            out.withUnsafeMutableRawBytes { target in
                let output = target.baseAddress!.assumingMemoryBound(to: T.self)
                indices.withUnsafeBufferPointer { index in
                    for i in 0..<index.count {
                        let j = index[i]
                        if j >= 0 { output[i] = input[j] } else if let padding { output[i] = padding } else { output[i] = input[0] }
                    }
                }
            }
        }
    }

    /// Copies `blockElements` contiguous elements from `source` at `sourceOffset` to `target` at `targetOffset` (in elements).
    @inline(__always)
    static func copyBlock(from source: UnsafeRawPointer, _ sourceOffset: Int, to target: UnsafeMutableRawPointer, _ targetOffset: Int, elements: Int, size: Int) {
        guard elements > 0 else { return }
        (target + targetOffset * size).copyMemory(from: source + sourceOffset * size, byteCount: elements * size)
    }

    /// Flat source index for every element of `outputShape` when reading `source` through per-axis `strides`
    /// from `base` (used by Transpose, Slice, Expand and Tile).
    static func stridedIndices(outputShape: [Int], strides: [Int], base: Int = 0) -> [Int] {
        let count = outputShape.reduce(1, *)
        var result = [Int](repeating: 0, count: count)
        if count == 0 { return result }
        var source = StridedOdometer(shape: outputShape, strides: strides, base: base)
        for i in 0..<count {
            result[i] = source.offset
            source.advance()
        }
        return result
    }
}
