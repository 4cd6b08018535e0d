/// Shape arithmetic shared by kernels: strides, broadcasting and axis normalisation.
public enum Shape {
    /// Row-major strides in elements.
    public static func strides(_ shape: [Int]) -> [Int] {
        var strides = Array(repeating: 1, count: shape.count)
        var running = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[axis] = running
            running *= shape[axis]
        }
        return strides
    }

    /// Numpy-style multidirectional broadcast of two shapes, or nil if they are incompatible.
    public static func broadcast(_ a: [Int], _ b: [Int]) -> [Int]? {
        let rank = max(a.count, b.count)
        var result = Array(repeating: 0, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            if da == db || db == 1 { result[i] = da } else if da == 1 { result[i] = db } else { return nil }
        }
        return result
    }

    /// Strides to read `shape` as if broadcast to `target` (0 on broadcast axes); `shape` is right-aligned.
    public static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
        let own = strides(shape)
        let offset = target.count - shape.count
        var result = Array(repeating: 0, count: target.count)
        for i in 0..<shape.count where shape[i] != 1 {
            result[i + offset] = own[i]
        }
        return result
    }

    /// Batched matrix products over broadcast batch dimensions: for each batch `index` of `batch`, the matrix
    /// index of each operand (their batch shapes `a` and `b`, right-aligned and broadcast to `batch`).
    public static func broadcastBatchPairs(_ a: [Int], _ b: [Int], to batch: [Int]) -> [(a: Int, b: Int)] {
        let stridesA = broadcastStrides(a, to: batch), stridesB = broadcastStrides(b, to: batch)
        let outer = strides(batch)
        return (0..<batch.reduce(1, *)).map { index in
            var offsetA = 0, offsetB = 0, rest = index
            for axis in 0..<batch.count {
                let position = rest / outer[axis]
                rest %= outer[axis]
                offsetA += position * stridesA[axis]
                offsetB += position * stridesB[axis]
            }
            return (offsetA, offsetB)
        }
    }

    /// Maps a possibly negative axis into 0..<rank, or nil when out of range.
    public static func normalize(axis: Int, rank: Int) -> Int? {
        let value = axis < 0 ? axis + rank : axis
        return (0..<max(rank, 1)).contains(value) || (rank == 0 && value == 0) ? value : nil
    }

    /// Product of the dimensions in `range`.
    public static func product(_ shape: [Int], _ range: Range<Int>) -> Int {
        var result = 1
        for i in range { result *= shape[i] }
        return result
    }
}
