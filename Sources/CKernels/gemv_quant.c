/* gemv_quant.c: the decode GEMV on block-quantized weights (q8_0, q4_0; see quant.c), y = W x, with its rows split
** over the worker pool.
**
** As llama.cpp does, x is quantized once per product to 8-bit blocks (moert_quantize_activation), and each weight
** block meets its activation block in integer arithmetic: 32 products summed exactly, then scaled by the two block
** scales and accumulated in float32. With AVX2 the signed bytes are multiplied with vpmaddubsw (the weight's magnitude
** times the activation carrying the weight's sign) and pairs summed with vpmaddwd; without AVX2, plain loops. Decode
** is bound by memory bandwidth, so the loop streams one row at a time with a software prefetch ahead, as gemv.c. */
#include "kernels_internal.h"

#include <immintrin.h>

enum { PREFETCH_BYTES = 4096 };

/* The f16 scale of a weight block as float32, with F16C. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline float weight_scale_f16c(const uint8_t *block) {
    uint16_t h;
    memcpy(&h, block, sizeof h);
    return _cvtsh_ss(h);
}

/* The scale of an activation block. */
static inline float activation_scale(const uint8_t *block) {
    float d;
    memcpy(&d, block, sizeof d);
    return d;
}

/* The 32 quants of weight block `wb` of type `type` as signed bytes. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i weight_quants(const uint8_t *wb, int type) {
    if (type == MOERT_QUANT_Q8_0) return _mm256_loadu_si256((const __m256i *)(wb + 2));
    const __m128i b = _mm_loadu_si128((const __m128i *)(wb + 2));
    const __m256i nibbles = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(15));
    return _mm256_sub_epi8(nibbles, _mm256_set1_epi8(8));
}

/* Eight partial sums of the 32 products w[i] * a[i] of two blocks of signed bytes, as floats (exact: each is at most
** 4 * 128 * 127 in magnitude). vpmaddubsw multiplies unsigned by signed bytes, so the weight gives its magnitude and
** its sign moves to the activation; -128 (only in a hostile file) is 128 as unsigned and still right. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 block_dot(__m256i w, __m256i a) {
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

/* y[r] for r in [r0, r1): two blocks per step into two accumulators. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void rows_avx2(const uint8_t *w, int type, const uint8_t *xq, float *y, int64_t r0, int64_t r1,
                             int64_t blocks) {
    const int64_t bb = moert_quant_block_bytes(type), ab = MOERT_QA_BLOCK_BYTES;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * blocks * bb;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
        int64_t b = 0;
        for (; b + 2 <= blocks; b += 2) {
            const uint8_t *w0 = row + b * bb, *a0 = xq + b * ab;
            _mm_prefetch((const char *)w0 + PREFETCH_BYTES, _MM_HINT_T0);
            const __m256 s0 = _mm256_set1_ps(weight_scale_f16c(w0) * activation_scale(a0));
            const __m256 s1 = _mm256_set1_ps(weight_scale_f16c(w0 + bb) * activation_scale(a0 + ab));
            acc0 = _mm256_fmadd_ps(block_dot(weight_quants(w0, type), _mm256_loadu_si256((const __m256i *)(a0 + 4))), s0, acc0);
            acc1 = _mm256_fmadd_ps(block_dot(weight_quants(w0 + bb, type), _mm256_loadu_si256((const __m256i *)(a0 + ab + 4))), s1, acc1);
        }
        for (; b < blocks; b++) {
            const uint8_t *w0 = row + b * bb, *a0 = xq + b * ab;
            const __m256 s0 = _mm256_set1_ps(weight_scale_f16c(w0) * activation_scale(a0));
            acc0 = _mm256_fmadd_ps(block_dot(weight_quants(w0, type), _mm256_loadu_si256((const __m256i *)(a0 + 4))), s0, acc0);
        }
        y[r] = moert_hsum256(_mm256_add_ps(acc0, acc1));
    }
}

__attribute__((target("avx2,fma,f16c")))
static void rows_avx2_q8_0(const uint8_t *w, const uint8_t *xq, float *y, int64_t r0, int64_t r1, int64_t blocks) {
    rows_avx2(w, MOERT_QUANT_Q8_0, xq, y, r0, r1, blocks);
}

__attribute__((target("avx2,fma,f16c")))
static void rows_avx2_q4_0(const uint8_t *w, const uint8_t *xq, float *y, int64_t r0, int64_t r1, int64_t blocks) {
    rows_avx2(w, MOERT_QUANT_Q4_0, xq, y, r0, r1, blocks);
}

/* The portable rows: the same sums, one value at a time. */
static void rows_scalar(const uint8_t *w, int type, const uint8_t *xq, float *y, int64_t r0, int64_t r1,
                        int64_t blocks) {
    const int64_t bb = moert_quant_block_bytes(type), ab = MOERT_QA_BLOCK_BYTES;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * blocks * bb;
        float acc = 0;
        for (int64_t b = 0; b < blocks; b++) {
            const uint8_t *wb = row + b * bb, *ab8 = xq + b * ab + 4;
            int32_t sum = 0;
            for (int i = 0; i < MOERT_QUANT_BLOCK; i++) {
                const int q = type == MOERT_QUANT_Q8_0 ? (int8_t)wb[2 + i]
                            : i < 16 ? (wb[2 + i] & 15) - 8 : (wb[2 + i - 16] >> 4) - 8;
                sum += q * (int8_t)ab8[i];
            }
            acc += (float)sum * (moert_q8_0_scale(wb) * activation_scale(xq + b * ab));
        }
        y[r] = acc;
    }
}

/* ---- The product on the pool ---- */

typedef struct gemv_quant_task {
    const uint8_t *w;
    int type;
    const uint8_t *xq;
    float *y;
    int64_t rows, blocks;
    int portable;
} gemv_quant_task;

/* Part `part` of `parts`: a contiguous range of rows. */
static void gemv_quant_part(void *ctx, int part, int parts) {
    const gemv_quant_task *t = ctx;
    int64_t per = (t->rows + parts - 1) / parts;
    int64_t r0 = per * part, r1 = r0 + per < t->rows ? r0 + per : t->rows;
    if (r0 >= r1) return;
    if (t->portable || !moert_kernels_have_avx2()) rows_scalar(t->w, t->type, t->xq, t->y, r0, r1, t->blocks);
    else if (t->type == MOERT_QUANT_Q8_0) rows_avx2_q8_0(t->w, t->xq, t->y, r0, r1, t->blocks);
    else rows_avx2_q4_0(t->w, t->xq, t->y, r0, r1, t->blocks);
}

/* Quantizes x into xq, then the rows on the pool; products under 512 KiB of weights run on this thread. */
static void run(const void *w, int type, const float *x, void *xq, float *y, int64_t rows, int64_t cols,
                int portable) {
    moert_quantize_activation_kernel(x, xq, cols, portable);
    const int64_t blocks = cols / MOERT_QUANT_BLOCK;
    gemv_quant_task t = {w, type, xq, y, rows, blocks, portable};
    moert_parallel(gemv_quant_part, &t, rows * blocks * moert_quant_block_bytes(type) < (1 << 19) ? 1 : MOERT_MAX_THREADS);
}

void moert_gemv_quant(const void *w, int type, const float *x, void *xq, float *y, int64_t rows, int64_t cols) {
    run(w, type, x, xq, y, rows, cols, 0);
}

void moert_gemv_quant_portable(const void *w, int type, const float *x, void *xq, float *y, int64_t rows,
                               int64_t cols) {
    run(w, type, x, xq, y, rows, cols, 1);
}
