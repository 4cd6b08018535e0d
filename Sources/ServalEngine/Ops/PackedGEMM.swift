import CServalKernels
import ServalTensor

/// A constant float weight [K, N] packed once at load for the AVX-512 GEMM micro-kernel (`CServalKernels/sgemm.c`),
/// which skips the per-call packing OpenBLAS does. Only built where the CPU has AVX-512; elsewhere BLAS runs.
struct PackedFloatMatrix: Sendable {
    let packed: [Float]
    let k: Int
    let n: Int

    static let available = serval_sgemm_packed_available() != 0

    /// B scaled by `alpha` and packed, or nil when the kernel cannot run here.
    init?(_ b: Tensor, alpha: Float = 1) {
        guard Self.available, b.dtype == .float32, b.rank == 2, b.count > 0 else { return nil }
        let (rows, columns) = (b.shape[0], b.shape[1])
        var packed = [Float](repeating: 0, count: serval_sgemm_packed_size(rows, columns))
        let values = alpha == 1 ? b.scalars(as: Float.self) : b.scalars(as: Float.self).map { $0 * alpha }
        packed.withUnsafeMutableBufferPointer { target in serval_sgemm_pack_b(values, rows, columns, columns, target.baseAddress!) }
        (self.packed, k, n) = (packed, rows, columns)
    }
}

/// What this CPU runs the engine's kernels on, for callers whose expectations depend on it (the conformance
/// runner's hardware-dependent cases).
public enum EngineCapabilities {
    /// Float GEMMs with constant weights run on the AVX-512 packed kernel (else on OpenBLAS).
    public static var packedFloatGEMM: Bool { PackedFloatMatrix.available }
}

extension RunContext {
    /// C[m×n] = A[m×k] · B for a packed B, cut over the intra-op threads by 32-column blocks.
    func sgemm(m: Int, a: UnsafePointer<Float>, lda: Int, packed b: PackedFloatMatrix, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let slices = m * b.n * b.k >= 1 << 17 ? columnSlices(b.n, threads: threads) : [(0, b.n)]
        b.packed.withUnsafeBufferPointer { packed in
            parallelFor(slices.count) { slice in
                let (start, end) = slices[slice]
                serval_sgemm_packed(m, end - start, b.k, a, lda, serval_sgemm_panel(packed.baseAddress!, b.k, start), c + start, ldc)
            }
        }
    }
}
