import Foundation

/// Whether a feature is compared as numbers or as categories (Evidently's column types).
public enum FeatureKind: String, Sendable, Codable {
    case numerical, categorical
}

/// The drift statistics Serval computes, named and defaulted as Evidently names and defaults them.
public enum DriftMethod: String, Sendable, Codable, CaseIterable {
    case ks, wasserstein, psi, jensenshannon, chisquare, z

    /// The threshold Evidently uses when none is configured.
    public var defaultThreshold: Double {
        switch self {
        case .ks, .chisquare, .z: return 0.05
        case .wasserstein, .psi, .jensenshannon: return 0.1
        }
    }

    /// True for the methods whose score is a p-value (drift when it is small) rather than a distance.
    public var isTest: Bool { self == .ks || self == .chisquare || self == .z }

    /// Evidently's comparison, per method: `ks` drifts at p ≤ t, `chisquare` and `z` at p < t, distances at ≥ t.
    func drifted(score: Double, threshold: Double) -> Bool {
        switch self {
        case .ks: return score <= threshold
        case .chisquare, .z: return score < threshold
        case .wasserstein, .psi, .jensenshannon: return score >= threshold
        }
    }
}

/// The finite values of one feature, sorted, with their distinct values counted: what every test reads.
public struct FeatureSample: Sendable {
    public let sorted: [Double]
    /// Distinct values in ascending order and how often each occurs.
    public let distinct: [Double]
    public let counts: [Int]

    /// Drops NaN and ±∞ first, as Evidently does before it tests a column.
    public init<S: Sequence>(_ values: S) where S.Element == Double {
        var finite = values.filter(\.isFinite)
        finite.sort()
        sorted = finite
        var distinct: [Double] = []
        var counts: [Int] = []
        for value in finite {
            if let last = distinct.last, last == value { counts[counts.count - 1] += 1 } else {
                distinct.append(value)
                counts.append(1)
            }
        }
        self.distinct = distinct
        self.counts = counts
    }

    public var count: Int { sorted.count }
    public var isEmpty: Bool { sorted.isEmpty }

    func occurrences(of value: Double) -> Int {
        var low = 0, high = distinct.count
        while low < high {
            let middle = (low + high) / 2
            if distinct[middle] < value { low = middle + 1 } else { high = middle }
        }
        return low < distinct.count && distinct[low] == value ? counts[low] : 0
    }

    /// Index of the first value ≥ `edge` (`inclusive: false`) or > `edge` (`inclusive: true`).
    func position(of edge: Double, inclusive: Bool) -> Int {
        var low = 0, high = sorted.count
        while low < high {
            let middle = (low + high) / 2
            if sorted[middle] < edge || (inclusive && sorted[middle] == edge) { low = middle + 1 } else { high = middle }
        }
        return low
    }
}

/// One feature's drift verdict: the method, Evidently's drift score (the p-value of a test, else the distance),
/// the test statistic and p-value where the method is a test, the threshold and whether it drifted.
public struct DriftScore: Sendable, Equatable {
    public var method: DriftMethod
    public var score: Double
    public var statistic: Double?
    public var pValue: Double?
    public var threshold: Double
    public var drifted: Bool
}

/// The statistics themselves. Each follows the definition in Evidently's source (and scipy's functions that it
/// calls), so a verdict can be checked against Evidently on the same rows.
public enum DriftTest {
    /// Evidently's choice when the method is `auto`; distinct values are counted over both samples together.
    public static func automaticMethod(kind: FeatureKind, reference: FeatureSample, current: FeatureSample) -> DriftMethod {
        let values = distinctUnion(reference, current).count
        if reference.count <= 1000 {
            if kind == .numerical && values > 5 { return .ks }
            return values > 2 ? .chisquare : .z
        }
        return kind == .numerical && values > 5 ? .wasserstein : .jensenshannon
    }

    /// Runs `method` (nil: `auto`) at `threshold` (nil: the method's default). Both samples must be non-empty.
    public static func evaluate(
        method chosen: DriftMethod?, kind: FeatureKind, reference: FeatureSample, current: FeatureSample, threshold: Double? = nil
    ) -> DriftScore {
        let method = chosen ?? automaticMethod(kind: kind, reference: reference, current: current)
        let threshold = threshold ?? method.defaultThreshold
        var statistic: Double?
        var pValue: Double?
        let score: Double
        switch method {
        case .ks:
            let result = KolmogorovSmirnov.test(sortedReference: reference.sorted, sortedCurrent: current.sorted)
            (statistic, pValue, score) = (result.statistic, result.pValue, result.pValue)
        case .wasserstein:
            score = wasserstein(reference, current) / max(standardDeviation(reference.sorted), 0.001)
        case .psi:
            let (r, c) = shares(kind: kind, reference: reference, current: current, fillZeros: true)
            var total = 0.0
            for index in r.indices { total += (r[index] - c[index]) * log(r[index] / c[index]) }
            score = total
        case .jensenshannon:
            let (r, c) = shares(kind: kind, reference: reference, current: current, fillZeros: false)
            score = jensenShannon(r, c)
        case .chisquare:
            let (value, p) = chiSquare(reference, current)
            (statistic, pValue, score) = (value, p, p)
        case .z:
            let (value, p) = proportionsZ(reference, current)
            (statistic, pValue, score) = (value, p, p)
        }
        return DriftScore(method: method, score: score, statistic: statistic, pValue: pValue, threshold: threshold,
                          drifted: method.drifted(score: score, threshold: threshold))
    }

    // MARK: - Distances

    /// The first Wasserstein distance, ∫|F₁ − F₂| (scipy's `wasserstein_distance`).
    static func wasserstein(_ a: FeatureSample, _ b: FeatureSample) -> Double {
        let x = a.sorted, y = b.sorted
        var i = 0, j = 0
        var previous = min(x[0], y[0])
        var total = 0.0
        let n1 = Double(x.count), n2 = Double(y.count)
        while i < x.count || j < y.count {
            let value = j == y.count || (i < x.count && x[i] <= y[j]) ? x[i] : y[j]
            total += abs(Double(i) / n1 - Double(j) / n2) * (value - previous)
            previous = value
            while i < x.count && x[i] <= value { i += 1 }
            while j < y.count && y[j] <= value { j += 1 }
        }
        return total
    }

    /// Population standard deviation (numpy's `std`, ddof 0).
    static func standardDeviation(_ values: [Double]) -> Double {
        let mean = values.reduce(0, +) / Double(values.count)
        var squares = 0.0
        for value in values { squares += (value - mean) * (value - mean) }
        return (squares / Double(values.count)).squareRoot()
    }

    /// scipy's `jensenshannon` (natural log): √(½ Σ p ln(p/m) + ½ Σ q ln(q/m)) with m the mean of the normalised p, q.
    static func jensenShannon(_ p: [Double], _ q: [Double]) -> Double {
        let sp = p.reduce(0, +), sq = q.reduce(0, +)
        var left = 0.0, right = 0.0
        for index in p.indices {
            let a = p[index] / sp, b = q[index] / sq
            let m = (a + b) / 2
            left += relativeEntropy(a, m)
            right += relativeEntropy(b, m)
        }
        return ((left + right) / 2).squareRoot()
    }

    private static func relativeEntropy(_ x: Double, _ y: Double) -> Double {
        if x > 0 && y > 0 { return x * log(x / y) }
        if x == 0 && y >= 0 { return 0 }
        return .infinity
    }

    /// Evidently's binning (`get_binned_data`): for a numerical feature with more than 20 distinct reference
    /// values, Sturges bins over both samples together; otherwise the share of each value seen in either. With
    /// `fillZeros` (PSI), empty shares become a small positive number so the logarithm is defined.
    static func shares(kind: FeatureKind, reference: FeatureSample, current: FeatureSample, fillZeros: Bool) -> ([Double], [Double]) {
        var r: [Double], c: [Double]
        if kind == .numerical && reference.distinct.count > 20 {
            let edges = sturgesEdges(reference, current)
            r = histogram(reference, edges).map { Double($0) / Double(reference.count) }
            c = histogram(current, edges).map { Double($0) / Double(current.count) }
        } else {
            let keys = distinctUnion(reference, current)
            r = keys.map { Double(reference.occurrences(of: $0)) / Double(reference.count) }
            c = keys.map { Double(current.occurrences(of: $0)) / Double(current.count) }
        }
        if fillZeros {
            fill(&r)
            fill(&c)
        }
        return (r, c)
    }

    private static func fill(_ shares: inout [Double]) {
        guard let smallest = shares.filter({ $0 != 0 }).min() else { return }
        let replacement = smallest <= 0.0001 ? smallest / 1e6 : 0.0001
        for index in shares.indices where shares[index] == 0 { shares[index] = replacement }
    }

    /// numpy's `histogram_bin_edges(bins="sturges")` over the two samples together: ⌈range / width⌉ equal bins of
    /// width range / (log₂ n + 1), edges as `linspace` places them.
    static func sturgesEdges(_ a: FeatureSample, _ b: FeatureSample) -> [Double] {
        var first = min(a.sorted.first!, b.sorted.first!)
        var last = max(a.sorted.last!, b.sorted.last!)
        if first == last {
            first -= 0.5
            last += 0.5
        }
        let range = last - first
        let width = range / (log2(Double(a.count + b.count)) + 1)
        let bins = width != 0 ? Int((range / width).rounded(.up)) : 1
        let step = (last - first) / Double(bins)
        var edges = (0...bins).map { Double($0) * step + first }
        edges[bins] = last
        return edges
    }

    /// numpy's `histogram` with explicit edges: [eᵢ, eᵢ₊₁) per bin, the last bin closed on the right.
    static func histogram(_ sample: FeatureSample, _ edges: [Double]) -> [Int] {
        var cumulative = edges.indices.map { index in sample.position(of: edges[index], inclusive: index == edges.count - 1) }
        for index in stride(from: cumulative.count - 1, to: 0, by: -1) { cumulative[index] -= cumulative[index - 1] }
        return Array(cumulative.dropFirst())
    }

    // MARK: - Tests

    /// Every value seen in either sample, ascending (both `distinct` lists are sorted: a merge).
    static func distinctUnion(_ a: FeatureSample, _ b: FeatureSample) -> [Double] {
        var merged: [Double] = []
        merged.reserveCapacity(a.distinct.count + b.distinct.count)
        var i = 0, j = 0
        while i < a.distinct.count || j < b.distinct.count {
            if j == b.distinct.count || (i < a.distinct.count && a.distinct[i] < b.distinct[j]) {
                merged.append(a.distinct[i]); i += 1
            } else if i == a.distinct.count || b.distinct[j] < a.distinct[i] {
                merged.append(b.distinct[j]); j += 1
            } else {
                merged.append(a.distinct[i]); i += 1; j += 1
            }
        }
        return merged
    }

    /// Evidently's chi-square: observed current counts against reference counts scaled to the current size, over
    /// every value seen in either sample; p from χ² with (values − 1) degrees of freedom.
    static func chiSquare(_ reference: FeatureSample, _ current: FeatureSample) -> (Double, Double) {
        let keys = distinctUnion(reference, current)
        let scale = Double(current.count) / Double(reference.count)
        var statistic = 0.0
        for key in keys {
            let expected = Double(reference.occurrences(of: key)) * scale
            let observed = Double(current.occurrences(of: key))
            statistic += (observed - expected) * (observed - expected) / expected
        }
        guard keys.count > 1 else { return (statistic, .nan) }
        return (statistic, SpecialFunctions.chiSquareSurvival(statistic, degreesOfFreedom: keys.count - 1))
    }

    /// Evidently's two-proportion z-test: the smallest value seen in either sample against all others; two-sided
    /// p = 2(1 − Φ(|z|)). Both samples holding the same single value give p = 1.
    static func proportionsZ(_ reference: FeatureSample, _ current: FeatureSample) -> (Double, Double) {
        if reference.distinct.count == 1 && current.distinct.count == 1 && reference.distinct[0] == current.distinct[0] { return (0, 1) }
        let key = min(reference.distinct.first ?? .infinity, current.distinct.first ?? .infinity)
        let n1 = Double(reference.count), n2 = Double(current.count)
        let p1 = Double(reference.count - reference.occurrences(of: key)) / n1
        let p2 = Double(current.count - current.occurrences(of: key)) / n2
        let pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
        let z = (p1 - p2) / (pooled * (1 - pooled) * (1 / n1 + 1 / n2)).squareRoot()
        return (z, 2 * (1 - SpecialFunctions.normalCDF(abs(z))))
    }
}
