// Integer GEMM for quantized models (uint8 × int8 → int32), see serval_kernels.h for the packed layout.
#include "serval_kernels.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { PANEL_COLUMNS = 16, GROUP_BYTES = 64 };

static int level(void);  // the instruction-set path in use: 2 AVX-512 VNNI, 1 AVX2, 0 portable

static ptrdiff_t group_count(ptrdiff_t k) { return (k + 3) / 4; }

size_t serval_qgemm_packed_size(ptrdiff_t k, ptrdiff_t n) {
    return (size_t)((n + PANEL_COLUMNS - 1) / PANEL_COLUMNS) * (size_t)group_count(k) * GROUP_BYTES;
}

void serval_qgemm_pack_b(const int8_t *b, ptrdiff_t k, ptrdiff_t n, ptrdiff_t ldb, int8_t *packed, int32_t *column_sums) {
    const ptrdiff_t panel_bytes = group_count(k) * GROUP_BYTES;
    memset(packed, 0, serval_qgemm_packed_size(k, n));
    for (ptrdiff_t j = 0; j < n; j++) {
        int8_t *panel = packed + (j / PANEL_COLUMNS) * panel_bytes + (j % PANEL_COLUMNS) * 4;
        int32_t sum = 0;
        for (ptrdiff_t kk = 0; kk < k; kk++) {
            const int8_t value = b[kk * ldb + j];
            panel[(kk / 4) * GROUP_BYTES + kk % 4] = value;
            sum += value;
        }
        column_sums[j] = sum;
    }
}

const int8_t *serval_qgemm_panel(const int8_t *packed, ptrdiff_t k, ptrdiff_t n0) {
    return packed + (n0 / PANEL_COLUMNS) * group_count(k) * GROUP_BYTES;
}

/// Where results go: int32 sums as they are, or floats through the dequantizing epilogue.
typedef struct {
    int32_t *sums;
    float *values;
    ptrdiff_t ldc;
    const int32_t *column_offset;
    float row_scale;
    const float *column_scale;
    const float *bias;
} Output;

/// The four A bytes of group `g` in `row`, zero padded past k (never read beyond the row).
static inline uint32_t a_group(const uint8_t *row, ptrdiff_t g, ptrdiff_t k) {
    uint32_t value = 0;
    const ptrdiff_t start = g * 4;
    memcpy(&value, row + start, (size_t)(k - start < 4 ? k - start : 4));
    return value;
}

static inline void store_scalar(const Output *out, ptrdiff_t row, ptrdiff_t column, int32_t sum) {
    if (out->values == NULL) {
        out->sums[row * out->ldc + column] = sum;
        return;
    }
    float value = (float)(sum + out->column_offset[column]) * (out->row_scale * out->column_scale[column]);
    if (out->bias != NULL) value += out->bias[column];
    out->values[row * out->ldc + column] = value;
}

static void qgemm_portable(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *packed, const Output *out) {
    const ptrdiff_t groups = group_count(k), panel_bytes = groups * GROUP_BYTES;
    for (ptrdiff_t i = 0; i < m; i++) {
        for (ptrdiff_t j = 0; j < n; j++) {
            const int8_t *column = packed + (j / PANEL_COLUMNS) * panel_bytes + (j % PANEL_COLUMNS) * 4;
            int32_t sum = 0;
            for (ptrdiff_t kk = 0; kk < k; kk++) sum += (int32_t)a[i * lda + kk] * column[(kk / 4) * GROUP_BYTES + kk % 4];
            store_scalar(out, i, j, sum);
        }
    }
}

#if defined(__x86_64__)

#define TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

// ---- AVX-512 VNNI: vpdpbusd adds four u8·s8 products into each int32 lane, exactly. ----

INLINE TARGET_VNNI void vnni_store(const Output *out, ptrdiff_t row, ptrdiff_t column, ptrdiff_t count, __m512i sums) {
    const __mmask16 mask = count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1);
    if (out->values == NULL) {
        _mm512_mask_storeu_epi32(out->sums + row * out->ldc + column, mask, sums);
        return;
    }
    const __m512i offset = _mm512_maskz_loadu_epi32(mask, out->column_offset + column);
    const __m512 scale = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, out->column_scale + column), _mm512_set1_ps(out->row_scale));
    __m512 value = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(sums, offset)), scale);
    if (out->bias != NULL) value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, out->bias + column));
    _mm512_mask_storeu_ps(out->values + row * out->ldc + column, mask, value);
}

/// Rows [row, row + MR) × one or two panels starting at `column`.
#define VNNI_TILE(MR, NP)                                                                                                  \
    static TARGET_VNNI void vnni_tile_##MR##_##NP(ptrdiff_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *b,         \
                                                  ptrdiff_t panel_bytes, const Output *out, ptrdiff_t row,                 \
                                                  ptrdiff_t column, ptrdiff_t n) {                                         \
        __m512i acc[MR][NP];                                                                                               \
        for (int i = 0; i < MR; i++)                                                                                       \
            for (int p = 0; p < NP; p++) acc[i][p] = _mm512_setzero_si512();                                               \
        const ptrdiff_t full = k / 4;                                                                                      \
        /* Whole groups in the hot loop; the ragged last group (k % 4) once after it, so no call sits in the loop. */     \
        for (ptrdiff_t g = 0; g < full; g++) {                                                                             \
            __m512i panel[NP];                                                                                             \
            for (int p = 0; p < NP; p++) panel[p] = _mm512_loadu_si512(b + p * panel_bytes + g * GROUP_BYTES);            \
            for (int i = 0; i < MR; i++) {                                                                                 \
                uint32_t bytes;                                                                                            \
                memcpy(&bytes, a + i * lda + g * 4, 4);                                                                    \
                const __m512i broadcast = _mm512_set1_epi32((int)bytes);                                                   \
                for (int p = 0; p < NP; p++) acc[i][p] = _mm512_dpbusd_epi32(acc[i][p], broadcast, panel[p]);             \
            }                                                                                                              \
        }                                                                                                                  \
        if (k % 4 != 0) {                                                                                                  \
            uint32_t tail[MR];                                                                                             \
            for (int i = 0; i < MR; i++) tail[i] = a_group(a + i * lda, full, k);                                          \
            __m512i panel[NP];                                                                                             \
            for (int p = 0; p < NP; p++) panel[p] = _mm512_loadu_si512(b + p * panel_bytes + full * GROUP_BYTES);         \
            for (int i = 0; i < MR; i++)                                                                                   \
                for (int p = 0; p < NP; p++) acc[i][p] = _mm512_dpbusd_epi32(acc[i][p], _mm512_set1_epi32((int)tail[i]), panel[p]); \
        }                                                                                                                  \
        for (int i = 0; i < MR; i++)                                                                                       \
            for (int p = 0; p < NP; p++) vnni_store(out, row + i, column + p * 16, n - column - p * 16, acc[i][p]);        \
    }

typedef void (*VNNITile)(ptrdiff_t, const uint8_t *, ptrdiff_t, const int8_t *, ptrdiff_t, const Output *, ptrdiff_t, ptrdiff_t, ptrdiff_t);

VNNI_TILE(1, 1) VNNI_TILE(2, 1) VNNI_TILE(3, 1) VNNI_TILE(4, 1) VNNI_TILE(5, 1) VNNI_TILE(6, 1) VNNI_TILE(7, 1) VNNI_TILE(8, 1)
VNNI_TILE(1, 2) VNNI_TILE(2, 2) VNNI_TILE(3, 2) VNNI_TILE(4, 2) VNNI_TILE(5, 2) VNNI_TILE(6, 2) VNNI_TILE(7, 2) VNNI_TILE(8, 2)

static const VNNITile vnni_tiles[2][8] = {
    {vnni_tile_1_1, vnni_tile_2_1, vnni_tile_3_1, vnni_tile_4_1, vnni_tile_5_1, vnni_tile_6_1, vnni_tile_7_1, vnni_tile_8_1},
    {vnni_tile_1_2, vnni_tile_2_2, vnni_tile_3_2, vnni_tile_4_2, vnni_tile_5_2, vnni_tile_6_2, vnni_tile_7_2, vnni_tile_8_2},
};

static void qgemm_vnni(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *packed, const Output *out) {
    const ptrdiff_t panel_bytes = group_count(k) * GROUP_BYTES;
    // Two panels (32 columns, at most 2 × 24 KB of B for k = 1536) stay in cache while every row block passes over them.
    for (ptrdiff_t column = 0; column < n; column += 2 * PANEL_COLUMNS) {
        const int8_t *b = packed + (column / PANEL_COLUMNS) * panel_bytes;
        const int panels = n - column > PANEL_COLUMNS ? 2 : 1;
        for (ptrdiff_t row = 0; row < m; row += 8) {
            const int rows = m - row >= 8 ? 8 : (int)(m - row);
            vnni_tiles[panels - 1][rows - 1](k, a + row * lda, lda, b, panel_bytes, out, row, column, n);
        }
    }
}

// ---- AVX2: operands widened to int16, vpmaddwd adds pairs of products into int32 lanes, exactly. ----

/// The eight int32 results of columns [column, column + 8) of one row: pair sums added and put in column order.
INLINE TARGET_AVX2 __m256i avx2_reduce(__m256i first, __m256i second) {
    // first holds columns 0-3 as (lo, hi) pairs split over the two 128-bit lanes, second columns 4-7.
    const __m256i sums = _mm256_hadd_epi32(first, second);  // lanes: [c0 c1 c4 c5 | c2 c3 c6 c7]
    return _mm256_permutevar8x32_epi32(sums, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
}

INLINE TARGET_AVX2 void avx2_store(const Output *out, ptrdiff_t row, ptrdiff_t column, ptrdiff_t count, __m256i sums) {
    if (count < 8) {
        int32_t lanes[8];
        _mm256_storeu_si256((__m256i *)lanes, sums);
        for (ptrdiff_t j = 0; j < count; j++) store_scalar(out, row, column + j, lanes[j]);
        return;
    }
    if (out->values == NULL) {
        _mm256_storeu_si256((__m256i *)(out->sums + row * out->ldc + column), sums);
        return;
    }
    const __m256i offset = _mm256_loadu_si256((const __m256i *)(out->column_offset + column));
    const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(out->column_scale + column), _mm256_set1_ps(out->row_scale));
    __m256 value = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(sums, offset)), scale);
    if (out->bias != NULL) value = _mm256_add_ps(value, _mm256_loadu_ps(out->bias + column));
    _mm256_storeu_ps(out->values + row * out->ldc + column, value);
}

/// One group of 4 k for `rows` rows × 8 columns: B widened to int16 once, each row's 4 A values broadcast.
INLINE TARGET_AVX2 void avx2_step(const int rows, __m256i acc[][2], const uint32_t *bytes, const int8_t *group) {
    const __m256i low = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)group));
    const __m256i high = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(group + 16)));
    for (int i = 0; i < rows; i++) {
        const __m256i broadcast = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128((int)bytes[i])));
        acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(broadcast, low));
        acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(broadcast, high));
    }
}

/// Rows [row, row + MR) × 8 columns (half a panel, `b` already offset to it).
#define AVX2_TILE(MR)                                                                                                     \
    static TARGET_AVX2 void avx2_tile_##MR(ptrdiff_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *b,               \
                                           const Output *out, ptrdiff_t row, ptrdiff_t column, ptrdiff_t n) {            \
        __m256i acc[MR][2];                                                                                               \
        for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_si256();                                      \
        const ptrdiff_t full = k / 4;                                                                                     \
        for (ptrdiff_t g = 0; g < full; g++) {                                                                            \
            uint32_t bytes[MR];                                                                                           \
            for (int i = 0; i < MR; i++) memcpy(&bytes[i], a + i * lda + g * 4, 4);                                       \
            avx2_step(MR, acc, bytes, b + g * GROUP_BYTES);                                                               \
        }                                                                                                                 \
        if (k % 4 != 0) {                                                                                                 \
            uint32_t bytes[MR];                                                                                           \
            for (int i = 0; i < MR; i++) bytes[i] = a_group(a + i * lda, full, k);                                        \
            avx2_step(MR, acc, bytes, b + full * GROUP_BYTES);                                                            \
        }                                                                                                                 \
        for (int i = 0; i < MR; i++) avx2_store(out, row + i, column, n - column, avx2_reduce(acc[i][0], acc[i][1]));     \
    }

typedef void (*AVX2Tile)(ptrdiff_t, const uint8_t *, ptrdiff_t, const int8_t *, const Output *, ptrdiff_t, ptrdiff_t, ptrdiff_t);

AVX2_TILE(1) AVX2_TILE(2) AVX2_TILE(3) AVX2_TILE(4)

static const AVX2Tile avx2_tiles[4] = {avx2_tile_1, avx2_tile_2, avx2_tile_3, avx2_tile_4};

static void qgemm_avx2(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *packed, const Output *out) {
    const ptrdiff_t panel_bytes = group_count(k) * GROUP_BYTES;
    for (ptrdiff_t column = 0; column < n; column += 8) {
        // Columns 0-7 of a panel are the first 32 bytes of each group, columns 8-15 the last 32.
        const int8_t *b = packed + (column / PANEL_COLUMNS) * panel_bytes + (column % PANEL_COLUMNS) * 4;
        for (ptrdiff_t row = 0; row < m; row += 4) {
            const int rows = m - row >= 4 ? 4 : (int)(m - row);
            avx2_tiles[rows - 1](k, a + row * lda, lda, b, out, row, column, n);
        }
    }
}

#endif

static uint8_t quantize_one(float x, float scale, float zero_point) {
    const float q = nearbyintf(x / scale) + zero_point;  // the default rounding mode rounds half to even
    if (q != q) return (uint8_t)zero_point;
    return (uint8_t)(q < 0 ? 0 : (q > 255 ? 255 : q));
}

#if defined(__x86_64__)
static TARGET_AVX2 void quantize_avx2(const float *x, ptrdiff_t count, float scale, float zero_point, uint8_t *y) {
    const __m256 scales = _mm256_set1_ps(scale), zeros = _mm256_set1_ps(zero_point);
    const __m256 floor = _mm256_setzero_ps(), ceiling = _mm256_set1_ps(255);
    ptrdiff_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256 q = _mm256_add_ps(_mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x + i), scales), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zeros);
        q = _mm256_blendv_ps(q, zeros, _mm256_cmp_ps(q, q, _CMP_UNORD_Q));  // NaN → zero point
        q = _mm256_min_ps(_mm256_max_ps(q, floor), ceiling);
        const __m256i integers = _mm256_cvtps_epi32(q);  // exact: q is integral and in [0, 255]
        const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(integers), _mm256_extracti128_si256(integers, 1));
        _mm_storel_epi64((__m128i *)(y + i), _mm_packus_epi16(words, words));
    }
    for (; i < count; i++) y[i] = quantize_one(x[i], scale, zero_point);
}
#endif

void serval_quantize_u8(const float *x, ptrdiff_t count, float scale, float zero_point, uint8_t *y) {
#if defined(__x86_64__)
    if (level() >= 1) {
        quantize_avx2(x, count, scale, zero_point, y);
        return;
    }
#endif
    for (ptrdiff_t i = 0; i < count; i++) y[i] = quantize_one(x[i], scale, zero_point);
}


static int best_level(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512vnni"))
        return 2;
    if (__builtin_cpu_supports("avx2")) return 1;
#endif
    return 0;
}

static int selected_level = -1;  // set once on first use; tests may force a lower level

static int level(void) {
    int current = __atomic_load_n(&selected_level, __ATOMIC_RELAXED);
    if (current < 0) {
        current = best_level();
        __atomic_store_n(&selected_level, current, __ATOMIC_RELAXED);
    }
    return current;
}

int serval_qgemm_select(int requested) {
    const int best = best_level();
    const int chosen = requested < best ? (requested < 0 ? 0 : requested) : best;
    __atomic_store_n(&selected_level, chosen, __ATOMIC_RELAXED);
    return chosen;
}

const char *serval_qgemm_isa(void) {
    switch (level()) {
    case 2: return "avx512vnni";
    case 1: return "avx2";
    default: return "portable";
    }
}

static void run(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *packed, const Output *out) {
    if (m <= 0 || n <= 0) return;
#if defined(__x86_64__)
    switch (level()) {
    case 2: qgemm_vnni(m, n, k, a, lda, packed, out); return;
    case 1: qgemm_avx2(m, n, k, a, lda, packed, out); return;
    default: break;
    }
#endif
    qgemm_portable(m, n, k, a, lda, packed, out);
}

void serval_qgemm_u8s8(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *packed, int32_t *c, ptrdiff_t ldc) {
    const Output out = {.sums = c, .values = NULL, .ldc = ldc};
    run(m, n, k, a, lda, packed, &out);
}

void serval_qgemm_u8s8_f32(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *packed, float *c, ptrdiff_t ldc,
                           const int32_t *column_offset, float row_scale, const float *column_scale, const float *bias) {
    const Output out = {
        .sums = NULL, .values = c, .ldc = ldc, .column_offset = column_offset, .row_scale = row_scale,
        .column_scale = column_scale, .bias = bias,
    };
    run(m, n, k, a, lda, packed, &out);
}
