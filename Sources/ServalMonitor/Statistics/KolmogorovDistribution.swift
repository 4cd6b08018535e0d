import Foundation

/// The distribution of the one-sample, two-sided Kolmogorov–Smirnov statistic Dₙ for a finite n: the survival
/// P(Dₙ ≥ x) that `scipy.stats.kstwo.sf(x, n)` returns, choosing among the same methods by n and n·x² (Simard and
/// L'Ecuyer, 2011): Ruben–Gambino's closed forms at both ends, Durbin's matrix (in Marsaglia, Tsang and Wang's
/// form) where it is cheap, twice the one-sided Smirnov tail in the upper tail, and Pelz–Good's expansion
/// elsewhere. The two-sample test uses it with the effective size m·n/(m+n) once the exact lattice count is out of
/// reach, as `ks_2samp` does.
enum KolmogorovDistribution {
    /// P(Dₙ ≥ x).
    static func survival(_ n: Int, _ x: Double) -> Double {
        precondition(n > 0)
        if x >= 1 { return 0 }
        if x <= 0 { return 1 }
        let size = Double(n)
        let t = size * x
        if t <= 1 {
            if t <= 0.5 { return 1 }
            // P(Dₙ ≤ x) = n!/nⁿ (2t − 1)ⁿ; below e^−140 the survival is 1 in double precision.
            if n > 140 { return 1 }
            var cdf = 1.0
            for i in 1...n { cdf *= Double(i) / size * (2 * t - 1) }
            return clipped(1 - cdf)
        }
        if t >= size - 1 { return clipped(2 * pow(1 - x, size)) }
        if x >= 0.5 { return clipped(2 * smirnovSurvival(n, x)) }
        let nx2 = t * x
        if n <= 140 {
            // Durbin's matrix is exact; scipy uses Pomeranz's recursion (also exact) for 0.754693 < n·x² ≤ 4.
            if nx2 <= 4 { return clipped(1 - durbinCDF(n, x)) }
            return clipped(2 * smirnovSurvival(n, x))
        }
        if nx2 >= 370 { return 0 }
        if nx2 >= 2.2 { return clipped(2 * smirnovSurvival(n, x)) }
        let cdf = n <= 100_000 && size * pow(x, 1.5) <= 1.4 ? durbinCDF(n, x) : pelzGoodCDF(n, x)
        return clipped(1 - cdf)
    }

    /// The one-sided tail P(Dₙ⁺ ≥ x) (scipy's `smirnov`): the Birnbaum–Tingey sum
    /// x Σ_{v=0}^{⌊n(1−x)⌋} C(n, v) (1 − x − v/n)^(n−v) (x + v/n)^(v−1), whose terms are all positive, each formed
    /// in logarithms so none overflows; closed forms below 1/n and above 1 − 1/n.
    static func smirnovSurvival(_ n: Int, _ x: Double) -> Double {
        if x >= 1 { return 0 }
        if x <= 0 { return 1 }
        if n == 1 { return 1 - x }
        let size = Double(n)
        let nx = size * x
        let whole = Int(nx.rounded(.down))
        let fraction = nx - Double(whole)
        // x ≤ 1/n: P(Dₙ⁺ < x) = x (1 + x)^(n−1).
        if whole == 0 || (whole == 1 && fraction == 0) { return clipped(1 - x * pow(1 + x, size - 1)) }
        // The tail is below the smallest normal double: e^(−2nx²) bounds it.
        if -2 * nx * x < minimumLog { return 0 }
        if whole >= n - 1 { return clipped(pow(1 - x, size)) }
        if n > 1_000_000 {
            // Too many terms: the asymptotic tail with its first correction, e^(−(6nx + 1)² / 18n).
            return clipped(exp(-pow(6 * nx + 1, 2) / (18 * size)))
        }
        // v runs to ⌊n(1−x)⌋; when n·x is a whole number the last term is 0 (its first factor is 0).
        let terms = n - whole
        var logBinomial = 0.0
        var largestLog = -Double.infinity
        var sum = 0.0
        for v in 0..<terms {
            let after = (Double(n - v) - nx) / size  // 1 − x − v/n
            let before = (Double(v) + nx) / size  // x + v/n
            let logTerm = logBinomial + Double(n - v) * log(after) + Double(v - 1) * log(before)
            if logTerm > largestLog {
                // Rescale what is summed so far to the new largest term.
                sum = sum * exp(largestLog - logTerm) + 1
                largestLog = logTerm
            } else {
                let term = exp(logTerm - largestLog)
                sum += term
                // Past the peak the terms fall geometrically: stop once the rest cannot reach the last bit.
                if 4 * Double(terms - v) * term < Double.ulpOfOne * sum { break }
            }
            logBinomial += log(Double(n - v) / Double(v + 1))
        }
        return clipped(x * sum * exp(largestLog))
    }

    /// P(Dₙ ≤ d) by Durbin's matrix: with d = (k − h)/n, 0 ≤ h < 1 and m = 2k − 1, it is n!/nⁿ times the (k, k)
    /// entry of Hⁿ for an m×m matrix H built from h; the power is taken by squaring, both it and the factorial
    /// ratio kept in range by powers of two.
    static func durbinCDF(_ n: Int, _ d: Double) -> Double {
        if d >= 1 { return 1 }
        let size = Double(n)
        let nd = size * d
        if nd <= 0.5 { return 0 }
        let k = Int(nd.rounded(.up))
        let h = Double(k) - nd
        let m = 2 * k - 1
        var inverseFactorial = [Double](repeating: 1, count: m + 1)  // 1/j!
        for j in 1...m { inverseFactorial[j] = inverseFactorial[j - 1] / Double(j) }
        var matrix = SquareMatrix(size: m)
        for row in 0..<m {
            for column in 0..<m where row - column + 1 >= 0 { matrix[row, column] = inverseFactorial[row - column + 1] }
        }
        for j in 0..<m {
            // First column (1 − h^(j+1))/(j+1)!, last row its mirror image; the corner also loses the overlap.
            let edge = (1 - pow(h, Double(j + 1))) * inverseFactorial[j + 1]
            matrix[j, 0] = edge
            matrix[m - 1, m - 1 - j] = edge
        }
        matrix[m - 1, 0] = (1 - 2 * pow(h, Double(m)) + pow(max(2 * h - 1, 0), Double(m))) * inverseFactorial[m]

        let scale = 128
        let large = Double(sign: .plus, exponent: scale, significand: 1)
        let small = Double(sign: .plus, exponent: -scale, significand: 1)
        var power = SquareMatrix.identity(size: m)
        var powerExponent = 0, matrixExponent = 0
        var remaining = n
        while remaining > 0 {
            if remaining % 2 == 1 {
                power = power.multiplied(by: matrix)
                powerExponent += matrixExponent
                if abs(power[k - 1, k - 1]) > large {
                    power.scale(by: small)
                    powerExponent += scale
                }
            }
            remaining /= 2
            if remaining == 0 { break }
            matrix = matrix.multiplied(by: matrix)
            matrixExponent *= 2
            if abs(matrix[k - 1, k - 1]) > large {
                matrix.scale(by: small)
                matrixExponent += scale
            }
        }
        var p = power[k - 1, k - 1]
        for i in 1...n {
            p = Double(i) * p / size
            if abs(p) < small {
                p *= large
                powerExponent -= scale
            }
        }
        return clipped(Double(sign: .plus, exponent: powerExponent, significand: p))
    }

    /// P(Dₙ ≤ x) by Pelz and Good's expansion K₀(z) + K₁(z)/√n + K₂(z)/n + K₃(z)/n^(3/2), z = x√n, each Kᵢ in its
    /// theta-function form for small z (sums over odd multiples of π/2z, then over all multiples of π/z).
    static func pelzGoodCDF(_ n: Int, _ x: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let size = Double(n)
        let z = size.squareRoot() * x
        let z2 = z * z, z4 = z2 * z2, z6 = z4 * z2
        let pi2 = Double.pi * Double.pi, pi4 = pi2 * pi2, pi6 = pi4 * pi2
        let logQ = -pi2 / (8 * z2)
        if logQ < -708 { return 0 }
        let q = exp(logQ)
        let rootTwoPi = (2 * Double.pi).squareRoot()

        let c1 = (a: -z2, b: pi2 / 4)
        let c2 = (a: 6 * z6 + 2 * z4, b: (2 * z4 - 5 * z2) * pi2 / 4, c: pi4 * (1 - 2 * z2) / 16)
        let c3 = (a: -30 * z6 - 90 * z6 * z2, b: pi2 * (135 * z4 - 96 * z6) / 4, c: pi4 * (-60 * z2 + 212 * z4) / 16,
                  d: pi6 * (5 - 30 * z2) / 64)
        let terms = Int((16 * z / Double.pi).rounded(.up))
        // Σ over odd m = 2k − 1 of c(m) q^(m²), evaluated Horner-fashion in q⁸ᵏ from the largest k down.
        var k0 = 0.0, k1 = 0.0, k2 = 0.0, k3 = 0.0
        for k in stride(from: terms, through: 1, by: -1) {
            let m = Double(2 * k - 1)
            let m2 = m * m, m4 = m2 * m2, m6 = m4 * m2
            let factor = pow(q, Double(8 * k))
            k0 = k0 * factor + 1
            k1 = k1 * factor + c1.a + c1.b * m2
            k2 = k2 * factor + c2.a + c2.b * m2 + c2.c * m4
            k3 = k3 * factor + c3.a + c3.b * m2 + c3.c * m4 + c3.d * m6
        }
        let common = q * rootTwoPi
        k0 *= common / z
        k1 *= common / (6 * z4)
        k2 *= common / (72 * z6 * z)
        k3 *= common / (6480 * z6 * z4)
        // The sums over every k of k² q₂^(k²) and (3z² − π²k²) k² q₂^(k²), q₂ = e^(−π²/2z²).
        let q2 = exp(-pi2 / (2 * z2))
        var second = 0.0, third = 0.0
        for k in stride(from: terms, through: 1, by: -1) {
            let kk = Double(k * k)
            let weight = kk * pow(q2, kk)
            second += weight
            third += (3 * z2 - pi2 * kk) * weight
        }
        k2 += second * pi2 * rootTwoPi / (-36 * z2 * z)
        k3 += third * pi2 * rootTwoPi / (216 * z6)
        return k0 + k1 / size.squareRoot() + k2 / size + k3 / (size * size.squareRoot())
    }

    /// cephes' MINLOG, log of the smallest normal double.
    static let minimumLog = -708.3964185322641

    private static func clipped(_ p: Double) -> Double { min(1, max(0, p)) }
}

/// A dense square matrix in row-major order, for Durbin's matrix power.
private struct SquareMatrix {
    let size: Int
    var values: [Double]

    init(size: Int) {
        self.size = size
        values = [Double](repeating: 0, count: size * size)
    }

    static func identity(size: Int) -> SquareMatrix {
        var matrix = SquareMatrix(size: size)
        for i in 0..<size { matrix[i, i] = 1 }
        return matrix
    }

    subscript(row: Int, column: Int) -> Double {
        get { values[row * size + column] }
        set { values[row * size + column] = newValue }
    }

    mutating func scale(by factor: Double) {
        for index in values.indices { values[index] *= factor }
    }

    func multiplied(by other: SquareMatrix) -> SquareMatrix {
        var product = SquareMatrix(size: size)
        values.withUnsafeBufferPointer { left in
            other.values.withUnsafeBufferPointer { right in
                product.values.withUnsafeMutableBufferPointer { out in
                    for i in 0..<size {
                        for l in 0..<size {
                            let a = left[i * size + l]
                            if a == 0 { continue }
                            for j in 0..<size { out[i * size + j] += a * right[l * size + j] }
                        }
                    }
                }
            }
        }
        return product
    }
}
