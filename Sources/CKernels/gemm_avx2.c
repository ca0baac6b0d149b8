/* gemm_avx2.c: the prefill products C = A · B^T of gemm.c on CPUs with AVX2, FMA and F16C, for weights B [n, k]
** stored as float32, f16, bf16 or q8_0 (q4_0, q3_0 and q4_k weights go to gemm_q4_0.c, in integers).
**
** The layout of gemm.c with 256-bit vectors: for each slice of KC columns of k, a block of MC rows of A is copied
** into panels of MR rows, k-major; each group of NR rows of B is transposed into a panel [kc][NR], widened to float32
** on the way (half-precision values converted, quantized blocks multiplied by their scale), so that weights are
** read as stored, once per block of A, and never copied wide in full. The micro-kernel holds an MR x NR tile of C in
** 12 of the 16 vector registers: per k, two loads from the B panel (in L1), MR broadcasts from the A panel (in L2)
** and 12 fused multiply-adds. Threads split the columns of C in whole panels; every element of C sums over k in the
** same order whatever the thread count. */
#include "kernels_internal.h"

#include <immintrin.h>

/* MR x NR tile; KC columns of k per slice (a multiple of the quantized block); MC rows of A per block (A's block,
** MC x KC floats, stays in L2). */
enum { MR = 6, NR = 16, KC = 256, MC = 240 };
_Static_assert(MC % MR == 0 && KC % MOERT_QUANT_BLOCK == 0, "whole panels and whole blocks");
_Static_assert((int)MC < (int)MOERT_GEMM_BUFFER_ROWS && (int)KC <= (int)MOERT_GEMM_BUFFER_DEPTH &&
                   (int)NR <= (int)MOERT_GEMM_BUFFER_COLUMNS,
               "fits gemm.c's per-thread buffers, with room past A's block for pack_a's last store");

_Static_assert(MR == 6 && NR == 16, "the tile of moert_store_tile6x16");

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* ---- Packing ---- */

/* Eight float32 values of row `row` of B from column kk (a multiple of 8; of 32 for quantized types, whose 32 values
** per block come four vectors at a time through load_block). */
AVX2 __attribute__((always_inline))
static inline __m256 load_row8(const char *row, int dtype, int64_t kk) {
    return dtype == MOERT_GEMM_F32 ? _mm256_loadu_ps((const float *)row + kk)
                                   : moert_load8((const uint16_t *)row + kk, dtype);
}

/* The 32 values of the q8_0 block of `row` that starts at column kk (a multiple of 32), as four vectors. */
AVX2 __attribute__((always_inline))
static inline void load_block(const char *row, int64_t kk, __m256 v[4]) {
    moert_block_values((const uint8_t *)row + kk / MOERT_QUANT_BLOCK * MOERT_Q8_0_BLOCK_BYTES, MOERT_QUANT_Q8_0, v);
}

/* Packs rows [0, rows) (rows <= NR) x columns [0, kc) of B (row stride `row_bytes`) into a panel [kc][NR], transposed
** and widened; rows past `rows` are zero. kc is a multiple of 8 (of 32 for quantized types) except at the end of a
** float row, whose tail goes one value at a time. `dtype` is a constant where this is inlined. */
AVX2 __attribute__((always_inline))
static inline void pack_b_typed(const char *b, int dtype, int64_t row_bytes, int rows, int64_t kc, float *dst) {
    const int quantized = dtype == MOERT_QUANT_Q8_0;
    const int64_t body = quantized ? kc : kc - kc % 8;
    for (int half = 0; half < NR / 8; half++) {
        const int first = half * 8;
        if (first >= rows) {
            for (int64_t kk = 0; kk < kc; kk++) _mm256_store_ps(dst + kk * NR + first, _mm256_setzero_ps());
            continue;
        }
        const char *row[8];
        for (int r = 0; r < 8; r++) row[r] = first + r < rows ? b + (first + r) * row_bytes : NULL;
        if (quantized) {
            for (int64_t kk = 0; kk < body; kk += MOERT_QUANT_BLOCK) {
                __m256 v[4][8];
                for (int r = 0; r < 8; r++) {
                    if (row[r]) {
                        __m256 w[4];
                        load_block(row[r], kk, w);
                        for (int q = 0; q < 4; q++) v[q][r] = w[q];
                    } else {
                        for (int q = 0; q < 4; q++) v[q][r] = _mm256_setzero_ps();
                    }
                }
                for (int q = 0; q < 4; q++) {
                    moert_transpose8(v[q]);
                    for (int t = 0; t < 8; t++) _mm256_store_ps(dst + (kk + 8 * q + t) * NR + first, v[q][t]);
                }
            }
        } else {
            for (int64_t kk = 0; kk < body; kk += 8) {
                __m256 v[8];
                for (int r = 0; r < 8; r++) v[r] = row[r] ? load_row8(row[r], dtype, kk) : _mm256_setzero_ps();
                moert_transpose8(v);
                for (int t = 0; t < 8; t++) _mm256_store_ps(dst + (kk + t) * NR + first, v[t]);
            }
            for (int64_t kk = body; kk < kc; kk++) {
                for (int r = 0; r < 8; r++) dst[kk * NR + first + r] = row[r] ? moert_weight_at(row[r], dtype, kk) : 0;
            }
        }
    }
}

AVX2 static void pack_b(const char *b, int dtype, int64_t row_bytes, int rows, int64_t kc, float *dst) {
    switch (dtype) {
    case MOERT_GEMM_F32: pack_b_typed(b, MOERT_GEMM_F32, row_bytes, rows, kc, dst); break;
    case MOERT_HALF_F16: pack_b_typed(b, MOERT_HALF_F16, row_bytes, rows, kc, dst); break;
    case MOERT_HALF_BF16: pack_b_typed(b, MOERT_HALF_BF16, row_bytes, rows, kc, dst); break;
    default: pack_b_typed(b, MOERT_QUANT_Q8_0, row_bytes, rows, kc, dst); break;
    }
}

/* Packs columns [0, cols) (cols <= NR) x rows [0, kc) of a float32 matrix B stored [k, n] (row stride ldb) into a
** panel [kc][NR]: row kk of B's slice becomes row kk of the panel, columns past `cols` zero. */
AVX2 static void pack_b_kn(const float *b, int64_t ldb, int cols, int64_t kc, float *dst) {
    for (int64_t kk = 0; kk < kc; kk++) {
        const float *row = b + kk * ldb;
        float *d = dst + kk * NR;
        if (cols == NR) {
            _mm256_store_ps(d, _mm256_loadu_ps(row));
            _mm256_store_ps(d + 8, _mm256_loadu_ps(row + 8));
        } else {
            int j = 0;
            for (; j < cols; j++) d[j] = row[j];
            for (; j < NR; j++) d[j] = 0;
        }
    }
}

/* Copies rows [0, rows) x columns [0, kc) of A into a panel [kc][MR], rows past `rows` zero. A full panel moves 8
** columns at a time through a transposition, each column stored as 8 floats of which the next column's store
** overwrites the last 2 (so the panel's last store writes 2 floats past its end: the buffer has room, see MC). */
AVX2 static void pack_a(const float *a, int64_t lda, int rows, int64_t kc, float *dst) {
    int64_t kk = 0;
    if (rows == MR) {
        for (; kk + 8 <= kc; kk += 8) {
            __m256 v[8];
            for (int r = 0; r < MR; r++) v[r] = _mm256_loadu_ps(a + r * lda + kk);
            v[6] = v[7] = _mm256_setzero_ps();
            moert_transpose8(v);
            for (int t = 0; t < 8; t++) _mm256_storeu_ps(dst + (kk + t) * MR, v[t]);
        }
    }
    for (; kk < kc; kk++) {
        float *d = dst + kk * MR;
        int r = 0;
        for (; r < rows; r++) d[r] = a[r * lda + kk];
        for (; r < MR; r++) d[r] = 0;
    }
}

/* ---- Micro-kernel ---- */

/* The MR x NR tile: c[r][0 ..< 16] (=, or += when `accumulate`) the product of an A panel [kc][MR] and a B panel
** [kc][NR], for rows r < rows and columns < cols of C (row stride ldc). */
AVX2 static void kernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int rows, int cols,
                        int accumulate) {
    __m256 acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t kk = 0; kk < kc; kk++) {
        const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
        _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++) {
            const __m256 a = _mm256_broadcast_ss(ap + r);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
        ap += MR;
        bp += NR;
    }
    moert_store_tile6x16(acc, rows, cols, c, ldc, accumulate);
}

/* ---- Driver ---- */

typedef struct gemm_task {
    int64_t m, n, k;
    const float *a;
    int64_t lda;
    const char *b;
    int dtype;
    int64_t row_bytes;   /* bytes from one row of B to the next */
    int b_kn;            /* B is float32 [k, n] (C = A B) with row stride ldb, instead of [n, k] (C = A B^T) */
    int64_t ldb;
    float *c;
    int64_t ldc;
    int failed;          /* set by a part that could not get its buffers */
} gemm_task;

/* Bytes of `count` consecutive values of `dtype` from the start of a row (for quantized types, count a multiple of
** the block). */
static int64_t value_bytes(int dtype, int64_t count) {
    if (dtype == MOERT_GEMM_F32) return 4 * count;
    if (dtype == MOERT_HALF_F16 || dtype == MOERT_HALF_BF16) return 2 * count;
    return count / MOERT_QUANT_BLOCK * moert_quant_block_bytes(dtype);
}

/* Columns [j0, j1) of C: for each block of rows and slice of k, pack A once, then each B panel and its tiles. */
AVX2 static void gemm_columns(gemm_task *t, int64_t j0, int64_t j1) {
    float *abuf, *bbuf;
    if (!moert_gemm_buffers(&abuf, &bbuf)) {
        __atomic_store_n(&t->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    const int64_t slices = (t->k + KC - 1) / KC;
    const int64_t kc_even = ((t->k + slices - 1) / slices + 31) & ~(int64_t)31;   /* equal slices of whole blocks */
    for (int64_t i0 = 0; i0 < t->m; i0 += MC) {
        const int64_t mc = t->m - i0 < MC ? t->m - i0 : MC;
        for (int64_t p0 = 0; p0 < t->k; p0 += kc_even) {
            const int64_t kc = t->k - p0 < kc_even ? t->k - p0 : kc_even;
            for (int64_t r = 0; r < mc; r += MR) {
                const int rows = mc - r < MR ? (int)(mc - r) : MR;
                pack_a(t->a + (i0 + r) * t->lda + p0, t->lda, rows, kc, abuf + r * kc);
            }
            for (int64_t j = j0; j < j1; j += NR) {
                const int cols = j1 - j < NR ? (int)(j1 - j) : NR;
                if (t->b_kn) pack_b_kn((const float *)t->b + p0 * t->ldb + j, t->ldb, cols, kc, bbuf);
                else pack_b(t->b + j * t->row_bytes + value_bytes(t->dtype, p0), t->dtype, t->row_bytes, cols, kc, bbuf);
                for (int64_t r = 0; r < mc; r += MR) {
                    const int rows = mc - r < MR ? (int)(mc - r) : MR;
                    kernel(kc, abuf + r * kc, bbuf, t->c + (i0 + r) * t->ldc + j, t->ldc, rows, cols, p0 > 0);
                }
            }
        }
    }
}

/* Part `part` of `parts`: a contiguous run of whole NR-column panels. */
static void gemm_part(void *ctx, int part, int parts) {
    gemm_task *t = ctx;
    int64_t j0, j1;
    moert_part_panels(t->n, NR, part, parts, &j0, &j1);
    if (j0 < j1) gemm_columns(t, j0, j1);
}

int moert_gemm_nt_avx2(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const void *b, int dtype,
                       int64_t ldb, float *c, int64_t ldc) {
    if (dtype == MOERT_QUANT_Q4_0 || dtype == MOERT_QUANT_Q3_0 || dtype == MOERT_QUANT_Q4_K)
        return moert_gemm_q4_0_avx2(dtype, 0, m, n, k, a, lda, b, ldb, c, ldc);
    if (!moert_kernels_have_avx2() || m <= 0 || n <= 0 || k <= 0) return 0;
    if (dtype != MOERT_GEMM_F32 && dtype != MOERT_HALF_F16 && dtype != MOERT_HALF_BF16 && dtype != MOERT_QUANT_Q8_0)
        return 0;
    if (dtype == MOERT_QUANT_Q8_0 && (k % MOERT_QUANT_BLOCK || ldb % MOERT_QUANT_BLOCK)) return 0;
    gemm_task t = {m, n, k, a, lda, b, dtype, value_bytes(dtype, ldb), 0, ldb, c, ldc, 0};
    moert_parallel(gemm_part, &t, moert_gemm_parts(m, n, k, NR));
    return !t.failed;
}

int moert_gemm_serial_avx2(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b, int b_kn,
                           int64_t ldb, float *c, int64_t ldc) {
    if (!moert_kernels_have_avx2() || m <= 0 || n <= 0 || k <= 0) return 0;
    gemm_task t = {m, n, k, a, lda, (const char *)b, MOERT_GEMM_F32, 4 * ldb, b_kn, ldb, c, ldc, 0};
    gemm_columns(&t, 0, n);
    return !t.failed;
}
