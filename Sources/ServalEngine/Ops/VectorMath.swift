/// Eight-lane float versions of the transcendental functions on the transformer hot path (Softmax's exp,
/// GELU's erf), so those loops vectorise instead of calling libm per element.
enum VectorMath {
    typealias Lanes = SIMD8<Float>

    /// e^x for x ≤ 0 (Softmax feeds x - max): x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two for an exact
    /// product), e^r from its Taylor polynomial to r^7 (truncation < 2e-9 relative), 2^n written into the
    /// exponent bits. Below -87.3 (where e^x leaves the normal range) the result is 0; NaN stays NaN.
    @inline(__always)
    static func expNonPositive(_ x: Lanes) -> Lanes {
        let isNaN = x .!= x
        let clamped = x.replacing(with: -87.3, where: x .< -87.3).replacing(with: 0, where: isNaN)
        let n = (clamped * 1.442695041).rounded(.toNearestOrEven)
        let r = clamped - n * 0.693359375 + n * 2.12194440e-4
        var p: Lanes = Lanes(repeating: 1.0 / 5040)
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        // n + 2^23 + 127 holds n + 127 in its low mantissa bits; shifted into the exponent field that is 2^n.
        let scale = unsafeBitCast(unsafeBitCast(n + 8_388_735, to: SIMD8<UInt32>.self) &<< 23, to: Lanes.self)
        return (p * scale).replacing(with: 0, where: x .< -87.3).replacing(with: x, where: isNaN)
    }

    /// erf(x) as x·P(x²)/Q(x²), a rational approximation fitted (least squares on relative error) on
    /// |x| ≤ 3.92, beyond which erf rounds to ±1 in float. Maximum error 4e-7 relative.
    @inline(__always)
    static func erf(_ x: Lanes) -> Lanes {
        let limit: Float = 3.92
        let bounded = x.replacing(with: limit, where: x .> limit).replacing(with: -limit, where: x .< -limit)
        let z = bounded * bounded
        var p = Lanes(repeating: 2.051523928514598e-08)
        p = p * z - 1.967443949979497e-06
        p = p * z + 0.00013758533168584108
        p = p * z + 0.0034797987900674343
        p = p * z + 0.04984572157263756
        p = p * z + 0.19442610442638397
        p = p * z + 1.1283791065216064
        var q = Lanes(repeating: 0.0009057737770490348)
        q = q * z + 0.013890204951167107
        q = q * z + 0.11272771656513214
        q = q * z + 0.5056376457214355
        q = q * z + 1
        let y = bounded * p / q
        return y.replacing(with: 1, where: y .> 1).replacing(with: -1, where: y .< -1)
    }

    /// Applies `lanes` to `count` floats eight at a time; the tail goes through a zero-padded vector.
    @inline(__always)
    static func map(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, _ count: Int, _ lanes: (Lanes) -> Lanes) {
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(input + i).loadUnaligned(as: Lanes.self)
            UnsafeMutableRawPointer(output + i).storeBytes(of: lanes(v), as: Lanes.self)
            i += 8
        }
        if i < count {
            var tail = Lanes()
            for j in 0..<(count - i) { tail[j] = input[i + j] }
            let result = lanes(tail)
            for j in 0..<(count - i) { output[i + j] = result[j] }
        }
    }
}
