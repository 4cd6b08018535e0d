import Foundation

/// The distribution tails the drift tests need, to double precision.
enum SpecialFunctions {
    /// P(X ≥ x) for X ~ χ²(dof): the regularized upper incomplete gamma Q(dof/2, x/2).
    static func chiSquareSurvival(_ x: Double, degreesOfFreedom dof: Int) -> Double {
        guard dof > 0, !x.isNaN else { return .nan }
        if x <= 0 { return 1 }
        if x.isInfinite { return 0 }
        return upperRegularizedGamma(Double(dof) / 2, x / 2)
    }

    /// Q(a, x) = Γ(a, x) / Γ(a): a power series for P when x < a + 1, Lentz's continued fraction for Q otherwise.
    static func upperRegularizedGamma(_ a: Double, _ x: Double) -> Double {
        let logPrefix = a * log(x) - x - lgamma(a)
        if x < a + 1 {
            var term = 1 / a
            var sum = term
            var denominator = a
            for _ in 0..<10_000 {
                denominator += 1
                term *= x / denominator
                sum += term
                if abs(term) < abs(sum) * 1e-17 { break }
            }
            return max(0, 1 - sum * exp(logPrefix))
        }
        let tiny = 1e-300
        var b = x + 1 - a
        var c = 1 / tiny
        var d = 1 / b
        var fraction = d
        for step in 1..<10_000 {
            let an = -Double(step) * (Double(step) - a)
            b += 2
            d = an * d + b
            if abs(d) < tiny { d = tiny }
            c = b + an / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            fraction *= delta
            if abs(delta - 1) < 1e-16 { break }
        }
        return exp(logPrefix) * fraction
    }

    /// The standard normal CDF, as scipy's `norm.cdf` computes it: erfc(−x/√2) / 2.
    static func normalCDF(_ x: Double) -> Double { 0.5 * erfc(-x / 2.0.squareRoot()) }
}
