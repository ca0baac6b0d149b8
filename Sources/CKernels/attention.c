/* attention.c: attention of a prefill chunk (decode is attention_decode.c). Each head's two products run through
** moert's AVX-512 or AVX2 GEMM on one thread, the heads split among the threads, so that the softmax between the
** products runs on every thread too. */
#include "kernels_internal.h"

#include <immintrin.h>
#include <math.h>

/* ---- Prefill ---- */

/* Query rows per block: a block's scores span only the keys its last row sees, which halves the work of a causal
** prefill from an empty cache against full [n, position + n] products. */
enum { PREFILL_ROWS = 64 };

typedef struct prefill_job {
    const float *q, *keys, *values;
    int64_t n, position, window;
    const float *sinks;
    int n_heads, n_kv_heads, head_dim;
    int value_dim;  /* values are the first value_dim (<= head_dim) of each value head's row */
    float scale;
    float *scores, *out;
    int kernel;   /* MOERT_KERNEL_AVX512 or MOERT_KERNEL_AVX2 */
    int failed;
} prefill_job;

/* scale, mask and softmax of one row of scores: entries [lo, hi) become probabilities, the others of [0, width)
** zero. With a sink (NULL: none), its logit joins the maximum and the denominator (modeling_gpt_oss.py
** eager_attention_forward: the sink column is concatenated, the row's maximum subtracted, and the column dropped after
** the softmax). 16 entries at a time, with the vector exponential. */
__attribute__((target("avx512f")))
static void softmax_row(float *row, int64_t lo, int64_t hi, int64_t width, float scale, const float *sink) {
    const __m512 vscale = _mm512_set1_ps(scale);
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t j = lo; j < hi; j += 16) {
        __mmask16 m = moert_mask16(hi - j);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), vscale);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, v);
    }
    float max = _mm512_reduce_max_ps(vmax);
    if (sink && *sink > max) max = *sink;
    const __m512 top = _mm512_set1_ps(max);
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t j = lo; j < hi; j += 16) {
        __mmask16 m = moert_mask16(hi - j);
        __m512 e = moert_exp512(_mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), vscale), top));
        e = _mm512_maskz_mov_ps(m, e);
        vsum = _mm512_add_ps(vsum, e);
        _mm512_mask_storeu_ps(row + j, m, e);
    }
    float sum = _mm512_reduce_add_ps(vsum);
    if (sink) sum += expf(*sink - max);
    const __m512 inv = _mm512_set1_ps(1 / sum);
    for (int64_t j = lo; j < hi; j += 16) {
        __mmask16 m = moert_mask16(hi - j);
        _mm512_mask_storeu_ps(row + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), inv));
    }
    for (int64_t j = 0; j < lo; j++) row[j] = 0;
    for (int64_t j = hi; j < width; j++) row[j] = 0;
}

/* softmax_row with AVX2: 8 entries at a time, the tail one at a time. */
__attribute__((target("avx2,fma")))
static void softmax_row_avx2(float *row, int64_t lo, int64_t hi, int64_t width, float scale, const float *sink) {
    const __m256 vscale = _mm256_set1_ps(scale);
    const int64_t body = lo + (hi - lo) / 8 * 8;
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (int64_t j = lo; j < body; j += 8) vmax = _mm256_max_ps(vmax, _mm256_mul_ps(_mm256_loadu_ps(row + j), vscale));
    float lanes[8], max = -INFINITY;
    _mm256_storeu_ps(lanes, vmax);
    for (int i = 0; i < 8; i++) max = lanes[i] > max ? lanes[i] : max;
    for (int64_t j = body; j < hi; j++) max = row[j] * scale > max ? row[j] * scale : max;
    if (sink && *sink > max) max = *sink;
    const __m256 top = _mm256_set1_ps(max);
    __m256 vsum = _mm256_setzero_ps();
    for (int64_t j = lo; j < body; j += 8) {
        const __m256 e = moert_exp256(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(row + j), vscale), top));
        vsum = _mm256_add_ps(vsum, e);
        _mm256_storeu_ps(row + j, e);
    }
    float sum = moert_hsum256(vsum);
    for (int64_t j = body; j < hi; j++) {
        const float e = _mm256_cvtss_f32(moert_exp256(_mm256_set1_ps(row[j] * scale - max)));
        row[j] = e;
        sum += e;
    }
    if (sink) sum += expf(*sink - max);
    const __m256 inv = _mm256_set1_ps(1 / sum);
    for (int64_t j = lo; j < body; j += 8) _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), inv));
    for (int64_t j = body; j < hi; j++) row[j] *= 1 / sum;
    for (int64_t j = 0; j < lo; j++) row[j] = 0;
    for (int64_t j = hi; j < width; j++) row[j] = 0;
}

/* The one-thread GEMM of `kernel` (see moert_gemm_serial). */
static int head_product(int kernel, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                        int b_kn, int64_t ldb, float *c, int64_t ldc) {
    return kernel == MOERT_KERNEL_AVX512 ? moert_gemm_serial(m, n, k, a, lda, b, b_kn, ldb, c, ldc)
                                         : moert_gemm_serial_avx2(m, n, k, a, lda, b, b_kn, ldb, c, ldc);
}

/* The first key position p sees: p - window + 1 (transformers' sliding_window_overlay: kv_idx > q_idx - window), or
** 0 without a window. */
static inline int64_t window_start(int64_t p, int64_t window) {
    return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

/* Part `part` of `parts`: a contiguous range of heads, each a sequence of row blocks: S = Q_h K_g^T, softmax,
** O_h = S V_g. A block's products span the keys from the first its first row sees (with a window) to the last its
** last row sees. */
static void prefill_part(void *ctx, int part, int parts) {
    prefill_job *a = ctx;
    const int64_t qw = (int64_t)a->n_heads * a->head_dim, kvw = (int64_t)a->n_kv_heads * a->head_dim;
    const int64_t ow = (int64_t)a->n_heads * a->value_dim;
    const int group = a->n_heads / a->n_kv_heads;
    int h0 = a->n_heads * part / parts, h1 = a->n_heads * (part + 1) / parts;
    const int64_t block = a->n < PREFILL_ROWS ? a->n : PREFILL_ROWS;
    float *scores = a->scores + (int64_t)part * block * (a->position + a->n);
    for (int h = h0; h < h1; h++) {
        const float *kh = a->keys + (int64_t)(h / group) * a->head_dim;
        const float *vh = a->values + (int64_t)(h / group) * a->head_dim;
        for (int64_t t0 = 0; t0 < a->n; t0 += PREFILL_ROWS) {
            int64_t rows = a->n - t0 < PREFILL_ROWS ? a->n - t0 : PREFILL_ROWS;
            int64_t first = window_start(a->position + t0, a->window);  /* first key the block's first row sees */
            int64_t width = a->position + t0 + rows - first;            /* through the last its last row sees */
            const float *qh = a->q + t0 * qw + (int64_t)h * a->head_dim;
            float *oh = a->out + t0 * ow + (int64_t)h * a->value_dim;
            const float *sink = a->sinks ? a->sinks + h : NULL;
            /* S [rows, width] = Q_h K_g[first ..]^T */
            if (!head_product(a->kernel, rows, width, a->head_dim, qh, qw, kh + first * kvw, 0, kvw, scores, width))
                goto fail;
            for (int64_t r = 0; r < rows; r++) {
                const int64_t p = a->position + t0 + r, lo = window_start(p, a->window) - first, hi = p + 1 - first;
                if (a->kernel == MOERT_KERNEL_AVX512) softmax_row(scores + r * width, lo, hi, width, a->scale, sink);
                else softmax_row_avx2(scores + r * width, lo, hi, width, a->scale, sink);
            }
            /* O_h [rows, value_dim] = S V_g[first ..] */
            if (!head_product(a->kernel, rows, a->value_dim, width, scores, width, vh + first * kvw, 1, kvw, oh, ow))
                goto fail;
        }
    }
    return;
fail:
    __atomic_store_n(&a->failed, 1, __ATOMIC_RELAXED);
}

int moert_attention_prefill(const float *q, const float *keys, const float *values, int64_t n, int64_t position,
                            int64_t window, const float *sinks, int n_heads, int n_kv_heads, int head_dim, float scale,
                            float *scores, int64_t scores_capacity, float *out) {
    return moert_attention_prefill_kernel(moert_kernel_chosen(MOERT_PRODUCT_ATTENTION_PREFILL), q, keys, values, n,
                                          position, window, sinks, n_heads, n_kv_heads, head_dim, scale, scores,
                                          scores_capacity, out);
}

int moert_attention_prefill_kernel(int kernel, const float *q, const float *keys, const float *values, int64_t n,
                                   int64_t position, int64_t window, const float *sinks, int n_heads, int n_kv_heads,
                                   int head_dim, float scale, float *scores, int64_t scores_capacity, float *out) {
    return moert_attention_prefill_values(kernel, q, keys, values, n, position, window, sinks, n_heads, n_kv_heads,
                                          head_dim, head_dim, scale, scores, scores_capacity, out);
}

int moert_attention_prefill_values(int kernel, const float *q, const float *keys, const float *values, int64_t n,
                                   int64_t position, int64_t window, const float *sinks, int n_heads, int n_kv_heads,
                                   int head_dim, int value_dim, float scale, float *scores, int64_t scores_capacity,
                                   float *out) {
    if (!moert_kernel_available(MOERT_PRODUCT_ATTENTION_PREFILL, kernel) || kernel == MOERT_KERNEL_BLAS || n <= 0 ||
        value_dim < 1 || value_dim > head_dim)
        return 0;
    prefill_job a = {q, keys, values, n, position, window, sinks, n_heads, n_kv_heads, head_dim, value_dim, scale,
                     scores, out, kernel, 0};
    int64_t max_parts = scores_capacity / ((n < PREFILL_ROWS ? n : PREFILL_ROWS) * (position + n));
    if (max_parts > n_heads) max_parts = n_heads;
    if (max_parts < 1) return 0;
    moert_parallel(prefill_part, &a, (int)max_parts);
    return !a.failed;
}
