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

    /// Calls `body(aOffset, bOffset, outOffset, length, aStride, bStride)` for each innermost run of the output
    /// elements in `elements` (runs are cut at its ends), so disjoint ranges can run on different threads.
    @inline(__always)
    func forEachRun(in elements: Range<Int>, _ body: (Int, Int, Int, Int, Int, Int) -> Void) {
        let rank = dims.count
        let inner = dims[rank - 1]
        let innerA = aStrides[rank - 1]
        let innerB = bStrides[rank - 1]
        if elements.isEmpty || inner == 0 { return }
        // Coordinates of the first element: its run's index over the outer axes, and the position inside the run.
        var index = Array(repeating: 0, count: max(rank - 1, 1))
        var run = elements.lowerBound / inner
        var aOffset = 0, bOffset = 0
        for axis in stride(from: rank - 2, through: 0, by: -1) {
            index[axis] = run % dims[axis]
            run /= dims[axis]
            aOffset += index[axis] * aStrides[axis]
            bOffset += index[axis] * bStrides[axis]
        }
        var position = elements.lowerBound % inner
        var outOffset = elements.lowerBound
        while outOffset < elements.upperBound {
            let length = min(inner - position, elements.upperBound - outOffset)
            body(aOffset + position * innerA, bOffset + position * innerB, outOffset, length, innerA, innerB)
            outOffset += length
            position = 0
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

/// Output elements per thread below which elementwise work stays on one thread.
let elementwiseGrain = 32_768

/// Applies `f` elementwise over the broadcast of `a` and `b`, writing `out` (sized to the broadcast shape), for the
/// output elements in `elements` (all by default). Callers that split work over threads call it once per range from
/// inside the parallel closure, so `f` stays a literal there and the loop is specialised and vectorised.
@inline(__always)
func broadcastApply<A, B, O>(
    _ plan: BroadcastPlan, _ a: UnsafePointer<A>, _ b: UnsafePointer<B>, _ out: UnsafeMutablePointer<O>,
    in elements: Range<Int>? = nil, _ f: (A, B) -> O
) {
    plan.forEachRun(in: elements ?? 0..<plan.count) { ao, bo, oo, n, sa, sb in
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
