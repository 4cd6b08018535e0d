// Single-precision GEMM with B packed once (weights), for AVX-512 CPUs; see serval_kernels.h.
#include "serval_kernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { FLOAT_PANEL = 16 };

size_t serval_sgemm_packed_size(ptrdiff_t k, ptrdiff_t n) {
    return (size_t)((n + FLOAT_PANEL - 1) / FLOAT_PANEL) * (size_t)k * FLOAT_PANEL;
}

void serval_sgemm_pack_b(const float *b, ptrdiff_t k, ptrdiff_t n, ptrdiff_t ldb, float *packed) {
    memset(packed, 0, serval_sgemm_packed_size(k, n) * sizeof(float));
    for (ptrdiff_t kk = 0; kk < k; kk++) {
        for (ptrdiff_t j = 0; j < n; j++) {
            packed[(j / FLOAT_PANEL) * k * FLOAT_PANEL + kk * FLOAT_PANEL + j % FLOAT_PANEL] = b[kk * ldb + j];
        }
    }
}

const float *serval_sgemm_panel(const float *packed, ptrdiff_t k, ptrdiff_t n0) {
    return packed + (n0 / FLOAT_PANEL) * k * FLOAT_PANEL;
}

#if defined(__x86_64__)
#define TARGET_AVX512 __attribute__((target("avx512f")))
// The tile loops must unroll completely so the accumulators live in registers, whatever the optimisation level.
#define UNROLL _Pragma("clang loop unroll(full)")

/// Rows [0, MR) of A times NP panels of B: MR × NP accumulators stay in registers for the whole k loop.
#define SGEMM_TILE(MR, NP)                                                                                                 \
    static TARGET_AVX512 void sgemm_tile_##MR##_##NP(ptrdiff_t k, const float *a, ptrdiff_t lda, const float *b,          \
                                                     float *c, ptrdiff_t ldc, ptrdiff_t columns) {                        \
        __m512 acc[MR][NP];                                                                                                \
        UNROLL for (int i = 0; i < MR; i++)                                                                                \
            UNROLL for (int p = 0; p < NP; p++) acc[i][p] = _mm512_setzero_ps();                                           \
        for (ptrdiff_t kk = 0; kk < k; kk++) {                                                                             \
            __m512 panel[NP];                                                                                              \
            UNROLL for (int p = 0; p < NP; p++) panel[p] = _mm512_loadu_ps(b + p * k * FLOAT_PANEL + kk * FLOAT_PANEL);   \
            UNROLL for (int i = 0; i < MR; i++) {                                                                          \
                const __m512 broadcast = _mm512_set1_ps(a[i * lda + kk]);                                                  \
                UNROLL for (int p = 0; p < NP; p++) acc[i][p] = _mm512_fmadd_ps(broadcast, panel[p], acc[i][p]);           \
            }                                                                                                              \
        }                                                                                                                  \
        for (int p = 0; p < NP; p++) {                                                                                     \
            const ptrdiff_t left = columns - p * FLOAT_PANEL;                                                              \
            const __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);                         \
            for (int i = 0; i < MR; i++) _mm512_mask_storeu_ps(c + i * ldc + p * FLOAT_PANEL, mask, acc[i][p]);            \
        }                                                                                                                  \
    }

typedef void (*SGEMMTile)(ptrdiff_t, const float *, ptrdiff_t, const float *, float *, ptrdiff_t, ptrdiff_t);

SGEMM_TILE(1, 1) SGEMM_TILE(2, 1) SGEMM_TILE(3, 1) SGEMM_TILE(4, 1) SGEMM_TILE(5, 1) SGEMM_TILE(6, 1)
SGEMM_TILE(7, 1) SGEMM_TILE(8, 1) SGEMM_TILE(9, 1) SGEMM_TILE(10, 1) SGEMM_TILE(11, 1) SGEMM_TILE(12, 1)
SGEMM_TILE(1, 2) SGEMM_TILE(2, 2) SGEMM_TILE(3, 2) SGEMM_TILE(4, 2) SGEMM_TILE(5, 2) SGEMM_TILE(6, 2)
SGEMM_TILE(7, 2) SGEMM_TILE(8, 2) SGEMM_TILE(9, 2) SGEMM_TILE(10, 2) SGEMM_TILE(11, 2) SGEMM_TILE(12, 2)

static const SGEMMTile sgemm_tiles[2][12] = {
    {sgemm_tile_1_1, sgemm_tile_2_1, sgemm_tile_3_1, sgemm_tile_4_1, sgemm_tile_5_1, sgemm_tile_6_1,
     sgemm_tile_7_1, sgemm_tile_8_1, sgemm_tile_9_1, sgemm_tile_10_1, sgemm_tile_11_1, sgemm_tile_12_1},
    {sgemm_tile_1_2, sgemm_tile_2_2, sgemm_tile_3_2, sgemm_tile_4_2, sgemm_tile_5_2, sgemm_tile_6_2,
     sgemm_tile_7_2, sgemm_tile_8_2, sgemm_tile_9_2, sgemm_tile_10_2, sgemm_tile_11_2, sgemm_tile_12_2},
};
#endif

int serval_sgemm_packed_available(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

void serval_sgemm_packed(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda, const float *packed, float *c, ptrdiff_t ldc) {
#if defined(__x86_64__)
    // Column blocks of two panels; inside, row blocks of 12 walk down A while the 2 × k × 16 floats of B stay in cache.
    for (ptrdiff_t column = 0; column < n; column += 2 * FLOAT_PANEL) {
        const float *b = packed + (column / FLOAT_PANEL) * k * FLOAT_PANEL;
        const int panels = n - column > FLOAT_PANEL ? 2 : 1;
        for (ptrdiff_t row = 0; row < m; row += 12) {
            const int rows = m - row >= 12 ? 12 : (int)(m - row);
            sgemm_tiles[panels - 1][rows - 1](k, a + row * lda, lda, b, c + row * ldc + column, ldc, n - column);
        }
    }
#else
    (void)m; (void)n; (void)k; (void)a; (void)lda; (void)packed; (void)c; (void)ldc;
#endif
}
