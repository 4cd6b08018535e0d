/// Row (dimension 0) operations the dynamic batcher uses to merge requests into one batch and split the result.
extension Tensor {
    /// Stacks tensors along dimension 0; all must share dtype and the dimensions after the first.
    public static func concatenatingRows(_ parts: [Tensor]) -> Tensor {
        precondition(!parts.isEmpty)
        if parts.count == 1 { return parts[0] }
        let first = parts[0]
        let rows = parts.reduce(0) { $0 + ($1.shape.first ?? 1) }
        let shape = [rows] + first.shape.dropFirst()
        if first.dtype == .string { return Tensor(shape: shape, strings: parts.flatMap(\.strings)) }
        var out = Tensor(uninitialized: first.dtype, shape: shape)
        out.withUnsafeMutableRawBytes { target in
            var offset = 0
            for part in parts {
                part.withUnsafeRawBytes { source in
                    if source.count > 0 { (target.baseAddress! + offset).copyMemory(from: source.baseAddress!, byteCount: source.count) }
                    offset += source.count
                }
            }
        }
        return out
    }

    /// Rows `range` along dimension 0, copied into a tensor of their own.
    public func rows(_ range: Range<Int>) -> Tensor {
        let perRow = shape.dropFirst().reduce(1, *)
        let newShape = [range.count] + shape.dropFirst()
        if dtype == .string { return Tensor(shape: newShape, strings: Array(strings[(range.lowerBound * perRow)..<(range.upperBound * perRow)])) }
        var out = Tensor(uninitialized: dtype, shape: newShape)
        let size = dtype.byteSize
        out.withUnsafeMutableRawBytes { target in
            withUnsafeRawBytes { source in
                let bytes = range.count * perRow * size
                if bytes > 0 { target.baseAddress!.copyMemory(from: source.baseAddress! + range.lowerBound * perRow * size, byteCount: bytes) }
            }
        }
        return out
    }
}

extension MapSequence {
    /// Maps `range` of the sequence.
    public func rows(_ range: Range<Int>) -> MapSequence { MapSequence(keys: keys, values: values.rows(range)) }
}
