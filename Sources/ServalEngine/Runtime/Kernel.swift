import ServalTensor

/// A compiled operator: built once per node at load (attributes read, weights pre-packed),
/// then run any number of times, possibly from many tasks at once.
public protocol Kernel: Sendable {
    /// Computes the node's outputs. `inputs[i]` is nil for an omitted optional input.
    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value]
}

/// Per-run services for kernels: the buffer pool and the intra-op thread budget.
public final class RunContext {
    public let pool: BufferPool
    public let threads: Int

    public init(pool: BufferPool = BufferPool(), threads: Int = 1) {
        self.pool = pool
        self.threads = max(1, threads)
    }

    /// An output tensor whose storage may come from the pool; every element must be written.
    public func allocate(_ dtype: DType, _ shape: [Int]) -> Tensor { pool.tensor(dtype, shape: shape) }

    /// Runs `body(chunk)` for chunks 0..<count, spread over at most `threads` workers.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        Parallel.forEach(count, threads: threads, body)
    }

    /// Runs `body(range)` over 0..<count cut into about `threads` contiguous ranges, or once inline when `count`
    /// is below `grain` elements per extra thread (waking a thread costs more than small work).
    public func parallelRanges(_ count: Int, grain: Int, _ body: (Range<Int>) -> Void) {
        let parts = min(threads, count / max(grain, 1))
        if parts <= 1 {
            body(0..<count)
            return
        }
        Parallel.forEach(parts, threads: parts) { part in body(count * part / parts..<count * (part + 1) / parts) }
    }

    /// Row-major C[m×n] = alpha · op(A) · op(B) + beta · C, cut over the intra-op threads by output columns (rows when
    /// there are few columns), each part one single-threaded OpenBLAS call. All intra-op parallelism goes through
    /// the one pool (`Parallel`): OpenBLAS runs single-threaded, so its spinning workers never compete with ours.
    public func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let minimumWork = 1 << 17  // multiply-adds per part worth a thread
        let parts = min(threads, max(1, m * n * k / minimumWork))
        if parts > 1 && n >= 32 * parts {
            Parallel.forEach(parts, threads: parts) { part in
                // Column boundaries on multiples of 16 keep OpenBLAS's panels whole.
                let start = (n / 16) * part / parts * 16, end = part == parts - 1 ? n : (n / 16) * (part + 1) / parts * 16
                BLAS.sgemm(transA: transA, transB: transB, m: m, n: end - start, k: k, alpha: alpha, a: a, lda: lda,
                           b: transB ? b + start * ldb : b + start, ldb: ldb, beta: beta, c: c + start, ldc: ldc)
            }
        } else if parts > 1 && m >= 8 * parts {
            Parallel.forEach(parts, threads: parts) { part in
                let start = m * part / parts, end = m * (part + 1) / parts
                BLAS.sgemm(transA: transA, transB: transB, m: end - start, n: n, k: k, alpha: alpha,
                           a: transA ? a + start : a + start * lda, lda: lda, b: b, ldb: ldb, beta: beta,
                           c: c + start * ldc, ldc: ldc)
            }
        } else {
            BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                       beta: beta, c: c, ldc: ldc)
        }
    }
}

/// A kernel written as a closure, for ops whose work fits in a few lines.
public struct ClosureKernel: Kernel {
    let body: @Sendable ([Value?], RunContext) throws -> [Value]
    public init(_ body: @escaping @Sendable ([Value?], RunContext) throws -> [Value]) { self.body = body }
    public func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] { try body(inputs, context) }
}

extension Array where Element == Value? {
    /// The tensor at `index`, throwing if it is missing or not a tensor.
    public func tensor(_ index: Int) throws -> Tensor {
        guard index < count, let value = self[index] else { throw KernelError("missing required input \(index)") }
        guard case .tensor(let tensor) = value else { throw KernelError("input \(index) must be a tensor") }
        return tensor
    }

    /// The tensor at `index`, or nil when the optional input is omitted.
    public func optionalTensor(_ index: Int) throws -> Tensor? {
        guard index < count, let value = self[index] else { return nil }
        guard case .tensor(let tensor) = value else { throw KernelError("input \(index) must be a tensor") }
        return tensor
    }
}
