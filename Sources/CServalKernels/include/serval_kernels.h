#ifndef SERVAL_KERNELS_H
#define SERVAL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Integer matrix product for quantized models: C[m×n] = Σ_k A[m×k] · B[k×n] with A uint8 (activations),
/// B int8 (weights) and exact int32 accumulation. B is packed once (serval_qgemm_pack_b) into panels of
/// 16 columns; each panel holds, for every group of 4 consecutive k, 16 columns × 4 bytes (zero padded).
/// The product runs on AVX-512 VNNI (vpdpbusd) when the CPU has it, else on AVX2 (vpmaddwd on widened
/// operands), else on portable C; all three give the same integers.

/// Bytes of the packed form of a k×n B.
size_t serval_qgemm_packed_size(ptrdiff_t k, ptrdiff_t n);

/// Packs row-major B (k rows of n int8 values, rows `ldb` apart) and writes each column's sum to `column_sums[n]`.
void serval_qgemm_pack_b(const int8_t *b, ptrdiff_t k, ptrdiff_t n, ptrdiff_t ldb, int8_t *packed, int32_t *column_sums);

/// The packed panels starting at column `n0` (a multiple of 16), for computing a column slice.
const int8_t *serval_qgemm_panel(const int8_t *packed, ptrdiff_t k, ptrdiff_t n0);

/// C (int32, rows `ldc` apart) = A (rows `lda` apart) × packed B, for an m×n slice.
void serval_qgemm_u8s8(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const uint8_t *a, ptrdiff_t lda,
                       const int8_t *packed, int32_t *c, ptrdiff_t ldc);

/// C (float) = (A × packed B + column_offset[j]) · row_scale · column_scale[j] + bias[j]; bias may be NULL.
/// This is the dequantizing epilogue of a dynamically quantized MatMul, applied while the sums are in registers.
void serval_qgemm_u8s8_f32(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const uint8_t *a, ptrdiff_t lda,
                           const int8_t *packed, float *c, ptrdiff_t ldc, const int32_t *column_offset,
                           float row_scale, const float *column_scale, const float *bias);

/// y[i] = saturate(round_half_even(x[i] / scale) + zero_point) into [0, 255], NaN to the zero point: the
/// quantizing step of DynamicQuantizeLinear (ONNX), for activations on their way into the int8 product.
void serval_quantize_u8(const float *x, ptrdiff_t count, float scale, float zero_point, uint8_t *y);

/// The instruction set the product runs on: "avx512vnni", "avx2" or "portable".
const char *serval_qgemm_isa(void);

/// Forces the portable (0), AVX2 (1) or best available (2) path, for tests comparing them. Returns the path now in use.
int serval_qgemm_select(int level);

/// Float GEMM with B packed once, for weights: C[m×n] = A[m×k] · B[k×n], all row-major, on an AVX-512 micro-kernel
/// (12 rows × 32 columns of accumulators in registers). B is packed in panels of 16 columns, k rows each.
/// Callers check serval_sgemm_packed_available() and use BLAS otherwise.
int serval_sgemm_packed_available(void);
size_t serval_sgemm_packed_size(ptrdiff_t k, ptrdiff_t n);  // floats
void serval_sgemm_pack_b(const float *b, ptrdiff_t k, ptrdiff_t n, ptrdiff_t ldb, float *packed);
/// The packed panels starting at column `n0` (a multiple of 16), for computing a column slice.
const float *serval_sgemm_panel(const float *packed, ptrdiff_t k, ptrdiff_t n0);
void serval_sgemm_packed(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda, const float *packed, float *c, ptrdiff_t ldc);

/// Tells the CPU this thread is spin-waiting (x86 `pause`), easing the load on a sibling hyper-thread.
static inline void serval_spin_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

#endif
