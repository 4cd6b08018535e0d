/// A monotone map from a predicted class's confidence to the chance that the prediction is right, fitted on the
/// labelled reference rows by pool-adjacent-violators (isotonic regression), read between fitted points by linear
/// interpolation and clipped at the ends, as scikit-learn's `IsotonicRegression(out_of_bounds="clip")` does.
struct IsotonicCalibration: Sendable {
    private let xs: [Double]
    private let ys: [Double]

    /// `pairs`: (confidence, 1 if the prediction was right else 0).
    init?(_ pairs: [(Double, Double)]) {
        let sorted = pairs.filter { $0.0.isFinite }.sorted { $0.0 < $1.0 }
        guard !sorted.isEmpty else { return nil }
        // Equal confidences are pooled first (their mean), then adjacent violators are merged.
        var blocks: [(x: Double, sum: Double, weight: Double)] = []
        for (x, y) in sorted {
            if let last = blocks.last, last.x == x { blocks[blocks.count - 1].sum += y; blocks[blocks.count - 1].weight += 1 } else {
                blocks.append((x, y, 1))
            }
        }
        var pooled: [(xs: [Double], sum: Double, weight: Double)] = []
        for block in blocks {
            pooled.append(([block.x], block.sum, block.weight))
            while pooled.count > 1, pooled[pooled.count - 2].sum / pooled[pooled.count - 2].weight > pooled[pooled.count - 1].sum / pooled[pooled.count - 1].weight {
                let last = pooled.removeLast()
                pooled[pooled.count - 1].xs += last.xs
                pooled[pooled.count - 1].sum += last.sum
                pooled[pooled.count - 1].weight += last.weight
            }
        }
        var xs: [Double] = [], ys: [Double] = []
        for group in pooled {
            let value = group.sum / group.weight
            // A pooled run is flat: its first and last confidence carry the run's mean.
            xs.append(group.xs.first!)
            ys.append(value)
            if group.xs.count > 1 {
                xs.append(group.xs.last!)
                ys.append(value)
            }
        }
        self.xs = xs
        self.ys = ys
    }

    func callAsFunction(_ x: Double) -> Double {
        if x <= xs[0] { return ys[0] }
        if x >= xs[xs.count - 1] { return ys[ys.count - 1] }
        var low = 0, high = xs.count - 1
        while high - low > 1 {
            let middle = (low + high) / 2
            if xs[middle] <= x { low = middle } else { high = middle }
        }
        let span = xs[high] - xs[low]
        return span == 0 ? ys[high] : ys[low] + (ys[high] - ys[low]) * (x - xs[low]) / span
    }
}
