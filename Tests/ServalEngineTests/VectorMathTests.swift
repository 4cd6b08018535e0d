import Foundation
@testable import ServalEngine
import Testing

/// The eight-lane exp and erf against libm over their whole useful range, edge values included.
struct VectorMathTests {
    /// Largest |f(x) - reference(x)| / max(|reference(x)|, 1e-30) over `samples`, eight lanes at a time.
    static func worstRelativeError(_ samples: [Float], _ f: (SIMD8<Float>) -> SIMD8<Float>, _ reference: (Double) -> Double) -> Double {
        var worst = 0.0
        for start in stride(from: 0, to: samples.count, by: 8) {
            let chunk = samples[start..<min(start + 8, samples.count)]
            var lanes = SIMD8<Float>()
            for (i, value) in chunk.enumerated() { lanes[i] = value }
            let result = f(lanes)
            for (i, x) in chunk.enumerated() {
                let expected = reference(Double(x))
                worst = max(worst, abs(Double(result[i]) - expected) / max(abs(expected), 1e-30))
            }
        }
        return worst
    }

    @Test func erfMatchesLibmEverywhere() {
        let samples = stride(from: Float(-6), through: 6, by: 0.000_37).map { $0 } + [0, -0, 1e-30, -1e-30, 3.92, 3.93, 100, -100, .infinity, -.infinity]
        #expect(Self.worstRelativeError(samples, VectorMath.erf, Foundation.erf) < 1e-6)
        #expect(VectorMath.erf(SIMD8(repeating: .nan))[0].isNaN)
    }

    @Test func expMatchesLibmForNonPositiveInputs() {
        let samples = stride(from: Float(-87), through: 0, by: 0.0011).map { $0 } + [0, -0, -1e-30]
        #expect(Self.worstRelativeError(samples, VectorMath.expNonPositive, Foundation.exp) < 1e-6)
        let edges = VectorMath.expNonPositive(SIMD8(-100, -.infinity, -.greatestFiniteMagnitude, .nan, 0, -87.2, -1, -0.5))
        #expect(edges[0] == 0 && edges[1] == 0 && edges[2] == 0)
        #expect(edges[3].isNaN)
        #expect(edges[4] == 1)
        #expect(abs(edges[5] - Float(Foundation.exp(-87.2))) / Float(Foundation.exp(-87.2)) < 1e-5)
    }
}
