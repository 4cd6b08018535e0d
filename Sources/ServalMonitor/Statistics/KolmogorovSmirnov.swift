import Foundation

/// The two-sample Kolmogorov–Smirnov test, two-sided, as `scipy.stats.ks_2samp` computes it with its default
/// method: exact when both samples have at most 10,000 values (Hodges' lattice-path count; for unequal sizes the
/// complementary "inside" recursion, which stays within [0, 1]); beyond that, or when the count fails in double
/// precision, the one-sample distribution of Dₙ at the effective size n = round(m·n/(m+n)) (`kstwo.sf`).
enum KolmogorovSmirnov {
    struct Result: Equatable {
        /// The largest gap between the two empirical CDFs (on the lcm grid when the p-value is exact).
        var statistic: Double
        var pValue: Double
        var exact: Bool
    }

    static let exactLimit = 10_000

    /// `reference` and `current` must be sorted ascending and not empty.
    static func test(sortedReference reference: [Double], sortedCurrent current: [Double]) -> Result {
        let n1 = reference.count, n2 = current.count
        var d = largestGap(reference, current)
        if max(n1, n2) <= exactLimit {
            let exact = exactTail(n1, n2, d)
            if exact.exact { return exact }
            d = exact.statistic  // scipy keeps the statistic rounded to the lattice when it falls back
        }
        let effective = (Double(n1) * Double(n2) / Double(n1 + n2)).rounded(.toNearestOrEven)
        return Result(statistic: d, pValue: KolmogorovDistribution.survival(Int(effective), d), exact: false)
    }

    /// max |F₁(x) − F₂(x)| over every value of either sample, each CDF counting values ≤ x.
    static func largestGap(_ a: [Double], _ b: [Double]) -> Double {
        var i = 0, j = 0
        var largest = 0.0, smallest = 0.0
        let n1 = Double(a.count), n2 = Double(b.count)
        while i < a.count || j < b.count {
            let value = j == b.count || (i < a.count && a[i] <= b[j]) ? a[i] : b[j]
            while i < a.count && a[i] <= value { i += 1 }
            while j < b.count && b[j] <= value { j += 1 }
            let difference = Double(i) / n1 - Double(j) / n2
            largest = max(largest, difference)
            smallest = min(smallest, difference)
        }
        return max(largest, min(1, -smallest))
    }

    /// The exact two-sided tail P(D ≥ d) with `exact` set, or only the lattice-rounded statistic when the tail
    /// cannot be computed in double precision.
    static func exactTail(_ n1: Int, _ n2: Int, _ gap: Double) -> Result {
        let g = gcd(n1, n2)
        let lcm = (n1 / g) * n2
        let h = Int((gap * Double(lcm)).rounded(.toNearestOrEven))
        let d = Double(h) / Double(lcm)
        if h == 0 { return Result(statistic: d, pValue: 1, exact: true) }
        let p = n1 == n2 ? outsideSquare(n1, h) : outsideBand(n1, n2, g, h)
        guard p.isFinite, p >= 0, p <= 1 else { return Result(statistic: d, pValue: .nan, exact: false) }
        return Result(statistic: d, pValue: p, exact: true)
    }

    /// P(D_{n,n} ≥ h/n): 2 Σ (−1)^(k−1) C(2n, n−kh) / C(2n, n), each ratio formed term by term and summed
    /// Horner-fashion, so nothing cancels.
    static func outsideSquare(_ n: Int, _ h: Int) -> Double {
        var total = 0.0
        var k = n / h
        while k >= 0 {
            var ratio = 1.0
            for j in 0..<h { ratio = Double(n - k * h - j) * ratio / Double(n + k * h + j + 1) }
            total = ratio * (1 - total)
            k -= 1
        }
        return 2 * total
    }

    /// The share of monotone lattice paths from (0,0) to (m,n) that touch |x/m − y/n| ≥ h/lcm(m,n), built column
    /// by column as probabilities (Viehmann's recursion for 1 − p), keeping only the band of rows that can be inside.
    static func outsideBand(_ first: Int, _ second: Int, _ g: Int, _ h: Int) -> Double {
        let m = max(first, second), n = min(first, second)
        let mg = Double(m / g), ng = Double(n / g)
        var low = 0
        var high = min(Int((Double(h) / mg).rounded(.up)), n + 1)
        var width = high - low
        let capacity = min(2 * high + 2, n + 1)
        var column = [Double](repeating: 1, count: capacity)
        for row in low..<high where row < capacity { column[row] = 0 }
        for i in 1...m {
            let previousLow = low, previousWidth = width
            low = min(max(Int(((ng * Double(i) - Double(h)) / mg).rounded(.down)) + 1, 0), n)
            high = min(Int(((ng * Double(i) + Double(h)) / mg).rounded(.up)), n + 1)
            if high <= low { return 1 }
            var value = low == 0 ? 0.0 : 1.0
            for offset in 0..<(high - low) {
                let row = offset + low
                value = (column[offset + low - previousLow] * Double(i) + value * Double(row)) / Double(i + row)
                column[offset] = value
            }
            width = high - low
            if previousWidth > width {
                for index in width..<min(width + previousWidth - width, capacity) { column[index] = 1 }
            }
        }
        return column[high - low - 1]
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int {
        var (x, y) = (a, b)
        while y != 0 { (x, y) = (y, x % y) }
        return x
    }
}
