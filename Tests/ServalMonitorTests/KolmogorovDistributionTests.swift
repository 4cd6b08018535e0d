import Foundation
import Testing
@testable import ServalMonitor

/// Each method of the finite-n Kolmogorov distribution against a closed form worked out from the definition, or
/// against another, independent method where their ranges overlap. The golden script (`scripts/golden/drift.py`)
/// checks the two-sample test beyond the exact limit against scipy's `ks_2samp` itself.
@Suite struct KolmogorovDistributionTests {
    private func close(_ a: Double, _ b: Double, relative: Double) -> Bool { abs(a - b) <= relative * max(abs(a), abs(b)) }

    @Test func smirnovTailMatchesTheOrderStatistics() {
        // n = 2: D⁺ < 0.3 ⇔ U₍₁₎ > 0.2 and U₍₂₎ > 0.7, probability 0.8² − 0.5² = 0.39, so the tail is 0.61.
        #expect(close(KolmogorovDistribution.smirnovSurvival(2, 0.3), 0.61, relative: 1e-14))
        // Below 1/n the tail is 1 − x(1 + x)^(n−1); above 1 − 1/n it is (1 − x)ⁿ.
        #expect(close(KolmogorovDistribution.smirnovSurvival(10, 0.05), 1 - 0.05 * pow(1.05, 9), relative: 1e-14))
        #expect(close(KolmogorovDistribution.smirnovSurvival(10, 0.95), pow(0.05, 10), relative: 1e-12))
        #expect(KolmogorovDistribution.smirnovSurvival(1, 0.25) == 0.75)
        #expect(KolmogorovDistribution.smirnovSurvival(1000, 0.9) == 0)
    }

    @Test func durbinMatrixMatchesRubenGambinoClosedForms() {
        // For 1/2n ≤ x ≤ 1/n, P(Dₙ ≤ x) = n!/nⁿ (2nx − 1)ⁿ; for x ≥ 1 − 1/n it is 1 − 2(1 − x)ⁿ.
        #expect(close(KolmogorovDistribution.durbinCDF(2, 0.4), 0.5 * 0.6 * 0.6, relative: 1e-12))
        #expect(close(KolmogorovDistribution.durbinCDF(5, 0.15), 120.0 / 3125.0 * pow(0.5, 5), relative: 1e-12))
        #expect(close(KolmogorovDistribution.durbinCDF(2, 0.7), 1 - 2 * 0.3 * 0.3, relative: 1e-12))
        #expect(close(KolmogorovDistribution.durbinCDF(4, 0.8), 1 - 2 * pow(0.2, 4), relative: 1e-12))
        #expect(KolmogorovDistribution.durbinCDF(7, 0.05) == 0)
    }

    @Test func upperTailIsTwiceTheOneSidedTailWhereBothSidesCannotCross() {
        // P(Dₙ ≥ x) = 2 P(Dₙ⁺ ≥ x) − P(both); at n = 200, x = 0.11 the last is ~e^(−8nx²) of the first, ~10⁻⁸.
        let exact = 1 - KolmogorovDistribution.durbinCDF(200, 0.11)
        let doubled = 2 * KolmogorovDistribution.smirnovSurvival(200, 0.11)
        #expect(close(exact, doubled, relative: 1e-5))
        #expect(exact < doubled)
        #expect(KolmogorovDistribution.survival(200, 0.11) == min(1, doubled))
    }

    @Test func pelzGoodAgreesWithTheExactMatrixForLargeSamples() {
        // n = 1000, x = 0.03: n·x² = 0.9, so survival takes Pelz–Good (n·x^1.5 > 1.4); Durbin's matrix is exact there.
        let exact = 1 - KolmogorovDistribution.durbinCDF(1000, 0.03)
        let expansion = 1 - KolmogorovDistribution.pelzGoodCDF(1000, 0.03)
        #expect(close(exact, expansion, relative: 1e-6))
        #expect(KolmogorovDistribution.survival(1000, 0.03) == expansion)
    }

    @Test func survivalFollowsTheSupportAndIsMonotone() {
        #expect(KolmogorovDistribution.survival(50, 0) == 1)
        #expect(KolmogorovDistribution.survival(50, 0.009) == 1)  // below 1/2n
        #expect(KolmogorovDistribution.survival(50, 1) == 0)
        #expect(close(KolmogorovDistribution.survival(1, 0.7), 0.6, relative: 1e-14))  // D₁ = max(U, 1 − U)
        for n in [3, 40, 141, 1333, 20_000] {
            var previous = 1.0
            for step in 1..<200 {
                let p = KolmogorovDistribution.survival(n, Double(step) / 200)
                #expect(p <= previous + 1e-6, "n \(n) x \(Double(step) / 200)")
                #expect(p >= 0 && p <= 1)
                previous = p
            }
        }
    }

    @Test func twoSampleTestBeyondTheExactLimitUsesTheEffectiveSize() {
        // 10,001 against 1,500 values: not exact; the effective size is round(10001·1500/11501) = 1304.
        let reference = (0..<10_001).map { Double($0) / 10_000 }
        let current = (0..<1_500).map { 0.05 + Double($0) / 1_500 }
        let result = KolmogorovSmirnov.test(sortedReference: reference, sortedCurrent: current)
        #expect(!result.exact)
        #expect(result.statistic == KolmogorovSmirnov.largestGap(reference, current))
        #expect(result.pValue == KolmogorovDistribution.survival(1304, result.statistic))
        #expect(result.pValue > 0 && result.pValue < 0.01)
    }
}
