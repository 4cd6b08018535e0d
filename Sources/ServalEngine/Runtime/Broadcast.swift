import ServalTensor

/// Walks the numpy-style broadcast of two shapes as a list of contiguous runs.
///
/// Adjacent axes that are laid out contiguously in both operands are merged first, so a bias add
/// `[N, C, H, W] + [C, 1, 1]` becomes runs of H·W elements with the bias held constant.
struct BroadcastPlan {
    let outputShape: [Int]
    private let dims: [Int]
    private let aStrides: [Int]
    private let bStrides: [Int]

    init?(_ a: [Int], _ b: [Int]) {
        guard let out = Shape.broadcast(a, b) else { return nil }
        outputShape = out
        var dims: [Int] = []
        var sa: [Int] = []
        var sb: [Int] = []
        let fullA = Shape.broadcastStrides(a, to: out)
        let fullB = Shape.broadcastStrides(b, to: out)
        for axis in 0..<out.count where out[axis] != 1 {
            if let last = dims.last,
               sa.last! == fullA[axis] * out[axis], sb.last! == fullB[axis] * out[axis] {
                dims[dims.count - 1] = last * out[axis]
                sa[sa.count - 1] = fullA[axis]
                sb[sb.count - 1] = fullB[axis]
            } else {
                dims.append(out[axis])
                sa.append(fullA[axis])
                sb.append(fullB[axis])
            }
        }
        if dims.isEmpty {
            dims = [1]
            sa = [0]
            sb = [0]
        }
        self.dims = dims
        self.aStrides = sa
        self.bStrides = sb
    }

    var count: Int { outputShape.reduce(1, *) }

    /// Calls `body(aOffset, bOffset, outOffset, length, aStride, bStride)` for each innermost run.
    @inline(__always)
    func forEachRun(_ body: (Int, Int, Int, Int, Int, Int) -> Void) {
        let rank = dims.count
        let inner = dims[rank - 1]
        let innerA = aStrides[rank - 1]
        let innerB = bStrides[rank - 1]
        if count == 0 { return }
        if rank == 1 {
            body(0, 0, 0, inner, innerA, innerB)
            return
        }
        var index = Array(repeating: 0, count: rank - 1)
        var aOffset = 0
        var bOffset = 0
        var outOffset = 0
        let outer = count / inner
        for _ in 0..<outer {
            body(aOffset, bOffset, outOffset, inner, innerA, innerB)
            outOffset += inner
            var axis = rank - 2
            while axis >= 0 {
                index[axis] += 1
                aOffset += aStrides[axis]
                bOffset += bStrides[axis]
                if index[axis] < dims[axis] { break }
                aOffset -= aStrides[axis] * dims[axis]
                bOffset -= bStrides[axis] * dims[axis]
                index[axis] = 0
                axis -= 1
            }
        }
    }
}

/// Applies `f` elementwise over the broadcast of `a` and `b`, writing `out` (sized to the broadcast shape).
@inline(__always)
func broadcastApply<A, B, O>(
    _ plan: BroadcastPlan, _ a: UnsafePointer<A>, _ b: UnsafePointer<B>, _ out: UnsafeMutablePointer<O>,
    _ f: (A, B) -> O
) {
    plan.forEachRun { ao, bo, oo, n, sa, sb in
        let pa = a + ao
        let pb = b + bo
        let po = out + oo
        if sa == 1 && sb == 1 {
            for i in 0..<n { po[i] = f(pa[i], pb[i]) }
        } else if sa == 1 && sb == 0 {
            let vb = pb[0]
            for i in 0..<n { po[i] = f(pa[i], vb) }
        } else if sa == 0 && sb == 1 {
            let va = pa[0]
            for i in 0..<n { po[i] = f(va, pb[i]) }
        } else {
            for i in 0..<n { po[i] = f(pa[i * sa], pb[i * sb]) }
        }
    }
}
