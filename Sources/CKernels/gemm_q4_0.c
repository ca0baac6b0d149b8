/* gemm_q4_0.c: the prefill product C = A · B^T of gemm_avx2.c for q4_0 weights B [n, k], in integer arithmetic; and
** for q3_0 weights, whose quants plus 4 (0 ... 7) take the place of q4_0's nibbles, and q4_k weights, whose
** sub-blocks of 32 are blocks of nibbles with a scale d * scale_j and a minimum dmin * min_j.
**
** As the decode GEMV (gemv_quant.c) and llama.cpp do, each row of A is quantized to 8-bit blocks (the activation
** blocks of moert_quantize_activation: d = max|x| / 127, quants rounded to nearest even), and each weight block
** meets an activation block in integers: 32 products summed exactly, then scaled by both blocks' scales.
**
** The layout is gemm_avx2.c's with bytes in place of floats. A's block of MC rows x KC columns is quantized into
** panels of MR rows; per block of 32 columns a panel holds the quants as [8 quads][MR rows] of 4 bytes, then the MR
** scales d and the MR offsets -8 * d * (sum of the row's quants) that remove q4_0's 8 from its nibbles (q3_0: -4 and
** 4). B's panels of NR rows hold per block the nibbles (0 ... 15) as [8 quads][NR rows] of 4 bytes, then the NR
** scales. Per quad the
** micro-kernel broadcasts 4 bytes of a row of A and multiplies them with vpmaddubsw (nibbles unsigned, activations
** signed) by the 4 bytes of 16 rows of B, adding the pairs' sums into 16-bit lanes: over a block's 8 quads a lane
** reaches at most 8 * 2 * 15 * 127 = 30480, inside int16. At the end of each block vpmaddwd sums the lanes' pairs
** into 32 bits, and the float32 tile of C gains (sum * d_a + offset_a) * d_b; for q4_k, whose B panels also hold the
** NR minimums m_b of each block, (sum * d_a) * d_b - (d_a * sum of a's quants) * m_b. Per 32 x 16 multiply-adds of a
** row: 16 vpmaddubsw and 16 adds, where the float kernel spends 64 fused multiply-adds. With AVX-512 VNNI (the avx512
** kernel of q4_0/q3_0/q4_k weights, gemm.c) one vpdpbusd per quad and half adds the products into 32-bit lanes at
** once: the same exact sums, so the same bits.
**
** q8_0 weights take this path with VNNI only: their quants plus 128 (1 ... 255, the sign bit flipped) are the unsigned
** bytes and the offsets remove 128 * d * (sum of the row's quants). vpdpbusd sums into 32 bits (a block's sum is at
** most 32 * 255 * 127, exact in int32 and in float32); vpmaddubsw's 16-bit pairs would saturate (2 * 255 * 127), so
** on AVX2 q8_0 stays on gemm_avx2.c's float kernel. */
#include "kernels_internal.h"

#include <immintrin.h>

/* MR x NR tile; KC columns of k per slice, MC rows of A per block. A's panels (MC x KC bytes plus 8 bytes per row
** and block) and B's (KC x NR bytes plus 4 per row and block) fit in gemm.c's float buffers. */
enum { MR = 6, NR = 16, KC = 512, MC = 240, QUADS = MOERT_QUANT_BLOCK / 4 };
enum { A_BLOCK_BYTES = MR * (MOERT_QUANT_BLOCK + 8), B_BLOCK_BYTES = NR * (MOERT_QUANT_BLOCK + 4) };
enum { B_BLOCK_BYTES_MINS = B_BLOCK_BYTES + NR * 4 }; /* q4_k: the minimums after the scales */
_Static_assert(MC % MR == 0 && KC % MOERT_Q4_K_BLOCK == 0, "whole panels and whole blocks (q4_k's super-blocks)");
_Static_assert((int64_t)MC / MR * (KC / MOERT_QUANT_BLOCK) * A_BLOCK_BYTES <=
                   (int64_t)4 * MOERT_GEMM_BUFFER_ROWS * MOERT_GEMM_BUFFER_DEPTH &&
               KC / MOERT_QUANT_BLOCK * B_BLOCK_BYTES_MINS <= 4 * MOERT_GEMM_BUFFER_DEPTH * MOERT_GEMM_BUFFER_COLUMNS,
               "fits gemm.c's per-thread buffers");

_Static_assert(MR == 6 && NR == 16, "the tile of moert_store_tile6x16");

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/* ---- Packing ---- */

/* Quantizes rows [0, rows) (rows <= MR) x blocks [0, blocks) of A (row stride lda) into a panel of `blocks` blocks of
** A_BLOCK_BYTES, with offsets -zero * d * (sum of quants) for weights whose unsigned quants are `zero` above their
** values (8 for q4_0, 4 for q3_0; -1 for q4_k, whose kernel takes d * (sum of quants) for the minimums); rows past
** `rows` are zero. Each block's quants of 8 rows (MR of A's, 2 zero) go through one transposition
** of their 4-byte quads; each quad's store of 8 lanes is overwritten in its last 2 by the next one, and the last
** one's by the scales. */
AVX2 static void pack_a(const float *a, int64_t lda, int rows, int64_t blocks, float zero, uint8_t *dst) {
    for (int64_t b = 0; b < blocks; b++, dst += A_BLOCK_BYTES) {
        __m256 quads[8];
        float d[MR], offset[MR];
        for (int r = 0; r < 8; r++) {
            __m256i q = _mm256_setzero_si256();
            if (r < rows) {
                d[r] = moert_quantize_block_avx2(a + r * lda + b * MOERT_QUANT_BLOCK, &q);
                offset[r] = -zero * d[r] * (float)moert_quant_sum_avx2(q);
            } else if (r < MR) {
                d[r] = offset[r] = 0;
            }
            quads[r] = _mm256_castsi256_ps(q);
        }
        moert_transpose8(quads);
        for (int q = 0; q < QUADS; q++) _mm256_storeu_ps((float *)(dst + q * MR * 4), quads[q]);
        memcpy(dst + QUADS * MR * 4, d, sizeof d);
        memcpy(dst + QUADS * MR * 4 + sizeof d, offset, sizeof offset);
    }
}

/* Packs rows [0, rows) (rows <= NR) x blocks [0, blocks) of 32 columns of q4_0, q3_0, q4_k or q8_0 weights (`type`, blocks
** or q4_k super-blocks of `block_bytes`, row stride `row_bytes`, b at a super-block's start) into a panel of `blocks`
** blocks of B_BLOCK_BYTES (q4_k: B_BLOCK_BYTES_MINS, the minimums after the scales); rows past `rows` are zero. */
AVX2 static void pack_b(const uint8_t *b, int type, int64_t block_bytes, int64_t row_bytes, int rows, int64_t blocks,
                        uint8_t *dst) {
    const int q4_k = type == MOERT_QUANT_Q4_K;
    for (int64_t blk = 0; blk < blocks; blk++, dst += q4_k ? B_BLOCK_BYTES_MINS : B_BLOCK_BYTES) {
        float *scales = (float *)(dst + QUADS * NR * 4), *mins = scales + NR;
        for (int half = 0; half < NR / 8; half++) {
            __m256 quads[8];
            for (int r = 0; r < 8; r++) {
                const int row = half * 8 + r;
                if (row >= rows) {
                    quads[r] = _mm256_setzero_ps();
                    scales[row] = 0;
                    if (q4_k) mins[row] = 0;
                } else if (q4_k) {
                    const uint8_t *block = b + row * row_bytes + blk / 8 * block_bytes;
                    int sc, m;
                    moert_q4_k_scale_min(block + 4, (int)(blk % 8), &sc, &m);
                    quads[r] = _mm256_castsi256_ps(moert_q4_k_quants(block, (int)(blk % 8)));
                    scales[row] = moert_block_scale_f16c(block) * (float)sc;
                    mins[row] = moert_block_scale_f16c(block + 2) * (float)m;
                } else {
                    const uint8_t *block = b + row * row_bytes + blk * block_bytes;
                    __m256i quants;
                    if (type == MOERT_QUANT_Q8_0) /* the int8 quants plus 128: the sign bit flipped */
                        quants = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(block + 2)),
                                                  _mm256_set1_epi8((char)0x80));
                    else if (type == MOERT_QUANT_Q3_0) quants = moert_q3_0_quants(block + 2);
                    else quants = moert_q4_0_nibbles(block + 2);
                    quads[r] = _mm256_castsi256_ps(quants);
                    scales[row] = moert_block_scale_f16c(block);
                }
            }
            moert_transpose8(quads);
            for (int q = 0; q < QUADS; q++) _mm256_store_ps((float *)(dst + q * NR * 4 + half * 32), quads[q]);
        }
    }
}

/* ---- Micro-kernels ---- */

/* The MR x NR tile c[r][0 ..< 16] (=, or += when `accumulate`) the product of an A panel and a B panel of `blocks`
** blocks each, for rows r < rows and columns < cols of C (row stride ldc). On AVX2: per quad vpmaddubsw into 16-bit
** lanes, whose pairs are summed into 32 bits (vpmaddwd) once per block; the float32 tile then gains
** (sum * d_a + offset_a) * d_b, or with `mins` (q4_k; a constant where this is inlined) (sum * d_a) * d_b -
** offset_a * m_b. (One loop for both micro-kernels, each sum step a parameter, ran 20% slower here.) */
AVX2 __attribute__((always_inline))
static inline void kernel_avx2_body(int64_t blocks, const uint8_t *ap, const uint8_t *bp, float *c, int64_t ldc,
                                    int rows, int cols, int accumulate, const int mins) {
    __m256 tile[MR][2];
    for (int r = 0; r < MR; r++) tile[r][0] = tile[r][1] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < blocks; b++, ap += A_BLOCK_BYTES, bp += mins ? B_BLOCK_BYTES_MINS : B_BLOCK_BYTES) {
        __m256i sum[MR][2];
        _Pragma("GCC unroll 8") for (int q = 0; q < QUADS; q++) {
            const __m256i b0 = _mm256_load_si256((const __m256i *)(bp + q * NR * 4));
            const __m256i b1 = _mm256_load_si256((const __m256i *)(bp + q * NR * 4 + 32));
            _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++) {
                int32_t quad;
                memcpy(&quad, ap + (q * MR + r) * 4, 4);
                const __m256i a = _mm256_set1_epi32(quad);
                const __m256i p0 = _mm256_maddubs_epi16(b0, a), p1 = _mm256_maddubs_epi16(b1, a);
                sum[r][0] = q ? _mm256_add_epi16(sum[r][0], p0) : p0;
                sum[r][1] = q ? _mm256_add_epi16(sum[r][1], p1) : p1;
            }
        }
        const float *da = (const float *)(ap + QUADS * MR * 4), *offset = da + MR;
        const __m256 db0 = _mm256_load_ps((const float *)(bp + QUADS * NR * 4));
        const __m256 db1 = _mm256_load_ps((const float *)(bp + QUADS * NR * 4 + 32));
        if (mins) {
            const __m256 mb0 = _mm256_load_ps((const float *)(bp + QUADS * NR * 4 + 64));
            const __m256 mb1 = _mm256_load_ps((const float *)(bp + QUADS * NR * 4 + 96));
            _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++) {
                const __m256 d = _mm256_broadcast_ss(da + r), o = _mm256_broadcast_ss(offset + r);
                const __m256 s0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(sum[r][0], ones)), d);
                const __m256 s1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(sum[r][1], ones)), d);
                tile[r][0] = _mm256_fnmadd_ps(o, mb0, _mm256_fmadd_ps(s0, db0, tile[r][0]));
                tile[r][1] = _mm256_fnmadd_ps(o, mb1, _mm256_fmadd_ps(s1, db1, tile[r][1]));
            }
            continue;
        }
        _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++) {
            const __m256 d = _mm256_broadcast_ss(da + r), o = _mm256_broadcast_ss(offset + r);
            const __m256 s0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(sum[r][0], ones)), d, o);
            const __m256 s1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(sum[r][1], ones)), d, o);
            tile[r][0] = _mm256_fmadd_ps(s0, db0, tile[r][0]);
            tile[r][1] = _mm256_fmadd_ps(s1, db1, tile[r][1]);
        }
    }
    moert_store_tile6x16(tile, rows, cols, c, ldc, accumulate);
}

/* kernel_avx2_body for q4_0 and q3_0 weights, and (kernel_avx2_mins) for q4_k's. */
AVX2 static void kernel_avx2(int64_t blocks, const uint8_t *ap, const uint8_t *bp, float *c, int64_t ldc, int rows,
                             int cols, int accumulate) {
    kernel_avx2_body(blocks, ap, bp, c, ldc, rows, cols, accumulate, 0);
}

AVX2 static void kernel_avx2_mins(int64_t blocks, const uint8_t *ap, const uint8_t *bp, float *c, int64_t ldc,
                                  int rows, int cols, int accumulate) {
    kernel_avx2_body(blocks, ap, bp, c, ldc, rows, cols, accumulate, 1);
}

/* AVX-512 VNNI: per quad vpdpbusd straight into 32-bit lanes (the same sums as kernel_avx2_body's); the same scaling,
** with or without `mins`. */
VNNI __attribute__((always_inline))
static inline void kernel_vnni_body(int64_t blocks, const uint8_t *ap, const uint8_t *bp, float *c, int64_t ldc,
                                    int rows, int cols, int accumulate, const int mins) {
    __m256 tile[MR][2];
    for (int r = 0; r < MR; r++) tile[r][0] = tile[r][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; b++, ap += A_BLOCK_BYTES, bp += mins ? B_BLOCK_BYTES_MINS : B_BLOCK_BYTES) {
        __m256i sum[MR][2];
        for (int r = 0; r < MR; r++) sum[r][0] = sum[r][1] = _mm256_setzero_si256();
        _Pragma("GCC unroll 8") for (int q = 0; q < QUADS; q++) {
            const __m256i b0 = _mm256_load_si256((const __m256i *)(bp + q * NR * 4));
            const __m256i b1 = _mm256_load_si256((const __m256i *)(bp + q * NR * 4 + 32));
            _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++) {
                int32_t quad;
                memcpy(&quad, ap + (q * MR + r) * 4, 4);
                const __m256i a = _mm256_set1_epi32(quad);
                sum[r][0] = _mm256_dpbusd_epi32(sum[r][0], b0, a);
                sum[r][1] = _mm256_dpbusd_epi32(sum[r][1], b1, a);
            }
        }
        const float *da = (const float *)(ap + QUADS * MR * 4), *offset = da + MR;
        const __m256 db0 = _mm256_load_ps((const float *)(bp + QUADS * NR * 4));
        const __m256 db1 = _mm256_load_ps((const float *)(bp + QUADS * NR * 4 + 32));
        if (mins) {
            const __m256 mb0 = _mm256_load_ps((const float *)(bp + QUADS * NR * 4 + 64));
            const __m256 mb1 = _mm256_load_ps((const float *)(bp + QUADS * NR * 4 + 96));
            _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++) {
                const __m256 d = _mm256_broadcast_ss(da + r), o = _mm256_broadcast_ss(offset + r);
                const __m256 s0 = _mm256_mul_ps(_mm256_cvtepi32_ps(sum[r][0]), d);
                const __m256 s1 = _mm256_mul_ps(_mm256_cvtepi32_ps(sum[r][1]), d);
                tile[r][0] = _mm256_fnmadd_ps(o, mb0, _mm256_fmadd_ps(s0, db0, tile[r][0]));
                tile[r][1] = _mm256_fnmadd_ps(o, mb1, _mm256_fmadd_ps(s1, db1, tile[r][1]));
            }
            continue;
        }
        _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++) {
            const __m256 d = _mm256_broadcast_ss(da + r), o = _mm256_broadcast_ss(offset + r);
            tile[r][0] = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r][0]), d, o), db0, tile[r][0]);
            tile[r][1] = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r][1]), d, o), db1, tile[r][1]);
        }
    }
    moert_store_tile6x16(tile, rows, cols, c, ldc, accumulate);
}

/* kernel_vnni_body for q4_0 and q3_0 weights, and (kernel_vnni_mins) for q4_k's. */
VNNI static void kernel_vnni(int64_t blocks, const uint8_t *ap, const uint8_t *bp, float *c, int64_t ldc, int rows,
                             int cols, int accumulate) {
    kernel_vnni_body(blocks, ap, bp, c, ldc, rows, cols, accumulate, 0);
}

VNNI static void kernel_vnni_mins(int64_t blocks, const uint8_t *ap, const uint8_t *bp, float *c, int64_t ldc,
                                  int rows, int cols, int accumulate) {
    kernel_vnni_body(blocks, ap, bp, c, ldc, rows, cols, accumulate, 1);
}

/* ---- Driver ---- */

typedef struct gemm_q4_0_task {
    int64_t m, n, k;
    const float *a;
    int64_t lda;
    const uint8_t *b;
    int type;            /* MOERT_QUANT_Q4_0, MOERT_QUANT_Q3_0, MOERT_QUANT_Q4_K or (with vnni) MOERT_QUANT_Q8_0 */
    int64_t row_bytes;   /* bytes from one row of B to the next */
    float *c;
    int64_t ldc;
    int vnni;            /* kernel_vnni, else kernel_avx2 */
    int failed;          /* set by a part that could not get its buffers */
} gemm_q4_0_task;

/* Columns [j0, j1) of C: for each block of rows and slice of k, quantize A once, then each B panel and its tiles. */
AVX2 static void gemm_columns(gemm_q4_0_task *t, int64_t j0, int64_t j1) {
    float *abuf, *bbuf;
    if (!moert_gemm_buffers(&abuf, &bbuf)) {
        __atomic_store_n(&t->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    uint8_t *apanels = (uint8_t *)abuf, *bpanel = (uint8_t *)bbuf;
    const int64_t slices = (t->k + KC - 1) / KC, block_bytes = moert_quant_block_bytes(t->type);
    const int64_t block_values = moert_quant_block_values(t->type);
    const float zero = t->type == MOERT_QUANT_Q8_0 ? 128 : t->type == MOERT_QUANT_Q3_0 ? 4
                     : t->type == MOERT_QUANT_Q4_K ? -1 : 8;
    /* equal slices of whole blocks (q4_k: super-blocks) */
    const int64_t kc_even = ((t->k + slices - 1) / slices + block_values - 1) / block_values * block_values;
    for (int64_t i0 = 0; i0 < t->m; i0 += MC) {
        const int64_t mc = t->m - i0 < MC ? t->m - i0 : MC;
        for (int64_t p0 = 0; p0 < t->k; p0 += kc_even) {
            const int64_t blocks = (t->k - p0 < kc_even ? t->k - p0 : kc_even) / MOERT_QUANT_BLOCK;
            for (int64_t r = 0; r < mc; r += MR) {
                const int rows = mc - r < MR ? (int)(mc - r) : MR;
                pack_a(t->a + (i0 + r) * t->lda + p0, t->lda, rows, blocks, zero,
                       apanels + r / MR * blocks * A_BLOCK_BYTES);
            }
            for (int64_t j = j0; j < j1; j += NR) {
                const int cols = j1 - j < NR ? (int)(j1 - j) : NR;
                pack_b(t->b + j * t->row_bytes + p0 / block_values * block_bytes, t->type, block_bytes,
                       t->row_bytes, cols, blocks, bpanel);
                for (int64_t r = 0; r < mc; r += MR) {
                    const int rows = mc - r < MR ? (int)(mc - r) : MR;
                    const uint8_t *ap = apanels + r / MR * blocks * A_BLOCK_BYTES;
                    float *tile = t->c + (i0 + r) * t->ldc + j;
                    const int mins = t->type == MOERT_QUANT_Q4_K;
                    if (t->vnni && mins) kernel_vnni_mins(blocks, ap, bpanel, tile, t->ldc, rows, cols, p0 > 0);
                    else if (t->vnni) kernel_vnni(blocks, ap, bpanel, tile, t->ldc, rows, cols, p0 > 0);
                    else if (mins) kernel_avx2_mins(blocks, ap, bpanel, tile, t->ldc, rows, cols, p0 > 0);
                    else kernel_avx2(blocks, ap, bpanel, tile, t->ldc, rows, cols, p0 > 0);
                }
            }
        }
    }
}

/* Part `part` of `parts`: a contiguous run of whole NR-column panels. */
static void gemm_part(void *ctx, int part, int parts) {
    gemm_q4_0_task *t = ctx;
    int64_t j0, j1;
    moert_part_panels(t->n, NR, part, parts, &j0, &j1);
    if (j0 < j1) gemm_columns(t, j0, j1);
}

int moert_gemm_q4_0_avx2(int type, int vnni, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const void *b, int64_t ldb, float *c, int64_t ldc) {
    if (!moert_kernels_have_avx2() || (vnni && !moert_kernels_have_avx512_vnni())) return 0;
    if (m <= 0 || n <= 0 || k <= 0) return 0;
    if (type != MOERT_QUANT_Q4_0 && type != MOERT_QUANT_Q3_0 && type != MOERT_QUANT_Q4_K &&
        !(type == MOERT_QUANT_Q8_0 && vnni))
        return 0;
    const int64_t block_values = moert_quant_block_values(type);
    if (k % block_values || ldb % block_values) return 0;
    const int64_t row_bytes = ldb / block_values * moert_quant_block_bytes(type);
    gemm_q4_0_task t = {m, n, k, a, lda, b, type, row_bytes, c, ldc, vnni, 0};
    moert_parallel(gemm_part, &t, moert_gemm_parts(m, n, k, NR));
    return !t.failed;
}
