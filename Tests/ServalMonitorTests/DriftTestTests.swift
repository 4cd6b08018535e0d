import Foundation
import Testing
@testable import ServalMonitor

/// Each statistic on small cases worked out by hand from its definition (Evidently's, and scipy's functions that
/// Evidently calls). The golden script (`scripts/golden/drift.py`) checks the same code against Evidently itself.
@Suite struct DriftTestTests {
    let twoValuesReference = FeatureSample([0, 0, 1, 1])
    let twoValuesCurrent = FeatureSample([0, 1, 1, 1])

    @Test func ksOnEqualSizesIsExact() {
        // 1…5 against 6…10: the CDFs are 1 apart at 5, so D = 1, and P(D ≥ 1) = 2 / C(10, 5) = 2/252.
        let result = KolmogorovSmirnov.test(sortedReference: [1, 2, 3, 4, 5], sortedCurrent: [6, 7, 8, 9, 10])
        #expect(result.statistic == 1)
        #expect(abs(result.pValue - 2.0 / 252.0) < 1e-15)
        #expect(result.exact)
    }

    @Test func ksOnUnequalSizesCountsLatticePaths() {
        // 1,2,3 against 4,5: of the C(5, 2) = 10 orderings only the two fully separated ones reach D = 1.
        let result = KolmogorovSmirnov.test(sortedReference: [1, 2, 3], sortedCurrent: [4, 5])
        #expect(result.statistic == 1)
        #expect(abs(result.pValue - 0.2) < 1e-12)
        // Identical samples: D = 0 and p = 1.
        let same = KolmogorovSmirnov.test(sortedReference: [1, 2, 3, 4], sortedCurrent: [1, 2, 3, 4])
        #expect(same.pValue == 1)
    }

    @Test func ksGapCountsTiesOnBothSides() {
        // F₁ − F₂ at 1: 2/3 − 1/2; at 2: 1 − 1 = 0. So D = 1/6.
        #expect(abs(KolmogorovSmirnov.largestGap([1, 1, 2], [1, 2]) - 1.0 / 6.0) < 1e-15)
    }

    @Test func wassersteinIsNormedByTheReferenceStandardDeviation() {
        // [0, 1] against [1, 2]: the CDFs differ by 1/2 over [0, 2] → distance 1; the reference std is 0.5.
        let score = DriftTest.evaluate(method: .wasserstein, kind: .numerical, reference: FeatureSample([0, 1]), current: FeatureSample([1, 2]))
        #expect(abs(score.score - 2) < 1e-15)
        #expect(score.drifted)
        // A constant reference has std 0: the floor of 0.001 applies.
        let constant = DriftTest.evaluate(method: .wasserstein, kind: .numerical, reference: FeatureSample([3, 3]), current: FeatureSample([3, 3.001]))
        #expect(abs(constant.score - 0.5) < 1e-9)
    }

    @Test func psiOnValueShares() {
        // Shares .5/.5 against .25/.75: (.25)ln 2 + (−.25)ln(2/3) = .25 ln 3.
        let score = DriftTest.evaluate(method: .psi, kind: .categorical, reference: twoValuesReference, current: twoValuesCurrent)
        #expect(abs(score.score - 0.25 * log(3.0)) < 1e-15)
        #expect(score.drifted)  // ≥ 0.1
    }

    @Test func jensenShannonOnValueShares() {
        let p = [0.5, 0.5], q = [0.25, 0.75], m = [0.375, 0.625]
        var total = 0.0
        for i in 0..<2 { total += p[i] * log(p[i] / m[i]) + q[i] * log(q[i] / m[i]) }
        let score = DriftTest.evaluate(method: .jensenshannon, kind: .categorical, reference: twoValuesReference, current: twoValuesCurrent)
        #expect(abs(score.score - (total / 2).squareRoot()) < 1e-15)
    }

    @Test func chiSquareScalesReferenceCountsToTheCurrentSize() {
        // Expected 2, 2 against observed 1, 3: χ² = 1/2 + 1/2 = 1 on one degree of freedom; p = erfc(1/√2).
        let score = DriftTest.evaluate(method: .chisquare, kind: .categorical, reference: twoValuesReference, current: twoValuesCurrent)
        #expect(score.statistic == 1)
        #expect(abs(score.score - erfc(1 / 2.0.squareRoot())) < 1e-14)
        #expect(!score.drifted)
        // A value the reference never had gives an infinite statistic and p = 0.
        let unseen = DriftTest.evaluate(method: .chisquare, kind: .categorical, reference: twoValuesReference, current: FeatureSample([0, 1, 2]))
        #expect(unseen.score == 0)
        #expect(unseen.drifted)
    }

    @Test func zTestComparesTheShareOfTheSmallestValue() {
        // Shares of "not 0": .5 (n 4) and .75 (n 4); pooled .625.
        let z = (0.5 - 0.75) / (0.625 * 0.375 * 0.5).squareRoot()
        let score = DriftTest.evaluate(method: .z, kind: .categorical, reference: twoValuesReference, current: twoValuesCurrent)
        #expect(abs(score.statistic! - z) < 1e-15)
        #expect(abs(score.score - erfc(abs(z) / 2.0.squareRoot())) < 1e-14)
        // The same single value on both sides: p = 1.
        #expect(DriftTest.evaluate(method: .z, kind: .categorical, reference: FeatureSample([1, 1]), current: FeatureSample([1])).score == 1)
    }

    @Test func comparisonOperatorsAreEvidentlys() {
        #expect(DriftMethod.ks.drifted(score: 0.05, threshold: 0.05))  // ks: p ≤ t
        #expect(!DriftMethod.chisquare.drifted(score: 0.05, threshold: 0.05))  // chisquare and z: p < t
        #expect(!DriftMethod.z.drifted(score: 0.05, threshold: 0.05))
        #expect(DriftMethod.psi.drifted(score: 0.1, threshold: 0.1))  // distances: ≥ t
        #expect(DriftMethod.wasserstein.drifted(score: 0.1, threshold: 0.1))
        #expect(DriftMethod.jensenshannon.drifted(score: 0.1, threshold: 0.1))
    }

    @Test func automaticChoiceFollowsEvidently() {
        let many = FeatureSample((0..<100).map(Double.init))
        let fiveValues = FeatureSample((0..<100).map { Double($0 % 5) })
        let twoValues = FeatureSample((0..<100).map { Double($0 % 2) })
        let bigMany = FeatureSample((0..<1001).map(Double.init))
        let bigFew = FeatureSample((0..<1001).map { Double($0 % 3) })
        #expect(DriftTest.automaticMethod(kind: .numerical, reference: many, current: many) == .ks)
        #expect(DriftTest.automaticMethod(kind: .numerical, reference: fiveValues, current: fiveValues) == .chisquare)
        #expect(DriftTest.automaticMethod(kind: .numerical, reference: twoValues, current: twoValues) == .z)
        #expect(DriftTest.automaticMethod(kind: .categorical, reference: many, current: many) == .chisquare)
        #expect(DriftTest.automaticMethod(kind: .categorical, reference: twoValues, current: twoValues) == .z)
        #expect(DriftTest.automaticMethod(kind: .numerical, reference: bigMany, current: many) == .wasserstein)
        #expect(DriftTest.automaticMethod(kind: .numerical, reference: bigFew, current: fiveValues) == .jensenshannon)
        #expect(DriftTest.automaticMethod(kind: .categorical, reference: bigMany, current: many) == .jensenshannon)
        // Distinct values are counted over both samples: 2 in the reference and 4 more in the window make 6.
        #expect(DriftTest.automaticMethod(kind: .numerical, reference: twoValues, current: FeatureSample([2, 3, 4, 5])) == .ks)
    }

    @Test func sturgesBinsAsNumpyPlacesThem() {
        // Ten values 0…9: width 9 / (log₂ 10 + 1) ≈ 2.08, so ⌈4.32⌉ = 5 bins of 1.8.
        let alone = DriftTest.sturgesEdges(FeatureSample((0..<5).map(Double.init)), FeatureSample((5..<10).map(Double.init)))
        #expect(alone.count == 6)
        #expect(zip(alone, [0, 1.8, 3.6, 5.4, 7.2, 9]).allSatisfy { abs($0 - $1) < 1e-12 })
        // The last bin is closed on the right: 9 lands in it.
        #expect(DriftTest.histogram(FeatureSample((0..<10).map(Double.init)), alone) == [2, 2, 2, 2, 2])
    }

    @Test func finiteValuesOnly() {
        let sample = FeatureSample([1, .nan, 2, .infinity, -.infinity, 2])
        #expect(sample.sorted == [1, 2, 2])
        #expect(sample.distinct == [1, 2])
        #expect(sample.counts == [1, 2])
    }

    @Test func chiSquareTail() {
        // The 95th percentiles of χ²(1) and χ²(3).
        #expect(abs(SpecialFunctions.chiSquareSurvival(3.841458820694124, degreesOfFreedom: 1) - 0.05) < 1e-12)
        #expect(abs(SpecialFunctions.chiSquareSurvival(7.814727903251178, degreesOfFreedom: 3) - 0.05) < 1e-12)
        // χ²(2) has survival exp(−x/2) exactly.
        #expect(abs(SpecialFunctions.chiSquareSurvival(30, degreesOfFreedom: 2) - exp(-15)) < 1e-18)
    }
}
