/* attention.c: attention of a single decode position, and of a prefill chunk. In decode a head's scores are one row
** of `total` dot products of length head_dim; through sgemm each head costs two library calls whose fixed overhead
** outweighs the work (two calls per head and layer, about 130 per token on the small bench model). Plain loops here,
** AVX2 when available; long contexts split the heads among the worker threads, since reading the cache then costs as
** much as the weights. Prefill runs each head's two products through the AVX-512 GEMM, the heads split among the
** threads, so that the softmax between the products runs on every thread too. */
#include "kernels_internal.h"

#include <immintrin.h>
#include <math.h>

__attribute__((target("avx2,fma")))
static float dot_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    float r = moert_hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

/* y += a * x */
__attribute__((target("avx2,fma")))
static void axpy_avx2(float a, const float *x, float *y, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static float dot_scalar(const float *a, const float *b, int n) {
    float r = 0;
    for (int i = 0; i < n; i++) r += a[i] * b[i];
    return r;
}

static void axpy_scalar(float a, const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* One head: out_h = softmax(scale * q_h . K_g) . V_g with scores[total] as scratch. */
static void attend_head(const float *qh, const float *keys, const float *values, int64_t row, int64_t g,
                        int head_dim, int64_t total, float scale, float *scores, float *oh, int fast) {
    float m = -INFINITY;
    for (int64_t j = 0; j < total; j++) {
        const float *k = keys + j * row + g;
        float s = scale * (fast ? dot_avx2(qh, k, head_dim) : dot_scalar(qh, k, head_dim));
        scores[j] = s;
        if (s > m) m = s;
    }
    float sum = 0;
    for (int64_t j = 0; j < total; j++) {
        scores[j] = expf(scores[j] - m);
        sum += scores[j];
    }
    const float inv = 1 / sum;
    for (int i = 0; i < head_dim; i++) oh[i] = 0;
    for (int64_t j = 0; j < total; j++) {
        const float *v = values + j * row + g;
        if (fast) axpy_avx2(scores[j] * inv, v, oh, head_dim);
        else axpy_scalar(scores[j] * inv, v, oh, head_dim);
    }
}

typedef struct attention_job {
    const float *q, *keys, *values;
    int n_heads, n_kv_heads, head_dim;
    int64_t total;
    float scale;
    float *scores, *out;
} attention_job;

/* Part `part` of `parts`: a contiguous range of heads, with its own `total` floats of scratch. */
static void attention_part(void *ctx, int part, int parts) {
    const attention_job *a = ctx;
    const int fast = moert_kernels_have_avx2(), group = a->n_heads / a->n_kv_heads;
    const int64_t row = (int64_t)a->n_kv_heads * a->head_dim;
    int per = (a->n_heads + parts - 1) / parts, h0 = per * part, h1 = h0 + per < a->n_heads ? h0 + per : a->n_heads;
    for (int h = h0; h < h1; h++) {
        attend_head(a->q + (int64_t)h * a->head_dim, a->keys, a->values, row, (int64_t)(h / group) * a->head_dim,
                    a->head_dim, a->total, a->scale, a->scores + part * a->total, a->out + (int64_t)h * a->head_dim,
                    fast);
    }
}

void moert_attention_one(const float *q, const float *keys, const float *values, int n_heads, int n_kv_heads,
                         int head_dim, int64_t total, float scale, float *scores, int64_t scores_capacity,
                         float *out) {
    attention_job a = {q, keys, values, n_heads, n_kv_heads, head_dim, total, scale, scores, out};
    /* Split the heads once the cache is long enough that reading it outweighs a hand-off to the workers (a few
    ** microseconds): at 2^16 key and value elements per layer. */
    int64_t max_parts = total * n_kv_heads * head_dim < (1 << 16) ? 1 : scores_capacity / total;
    if (max_parts > n_heads) max_parts = n_heads;
    moert_parallel(attention_part, &a, (int)max_parts);
}

/* ---- Prefill ---- */

/* Query rows per block: a block's scores span only the keys its last row sees, which halves the work of a causal
** prefill from an empty cache against full [n, position + n] products. */
enum { PREFILL_ROWS = 64 };

typedef struct prefill_job {
    const float *q, *keys, *values;
    int64_t n, position;
    int n_heads, n_kv_heads, head_dim;
    float scale;
    float *scores, *out;
    int failed;
} prefill_job;

/* scale, causal mask and softmax of one row of scores: entries [0, visible) become probabilities, [visible, width)
** zero. 16 entries at a time, with the vector exponential. */
__attribute__((target("avx512f")))
static void softmax_row(float *row, int64_t visible, int64_t width, float scale) {
    const __m512 vscale = _mm512_set1_ps(scale);
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < visible; j += 16) {
        __mmask16 m = moert_mask16(visible - j);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), vscale);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, v);
    }
    const __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t j = 0; j < visible; j += 16) {
        __mmask16 m = moert_mask16(visible - j);
        __m512 e = moert_exp512(_mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), vscale), top));
        e = _mm512_maskz_mov_ps(m, e);
        vsum = _mm512_add_ps(vsum, e);
        _mm512_mask_storeu_ps(row + j, m, e);
    }
    const __m512 inv = _mm512_set1_ps(1 / _mm512_reduce_add_ps(vsum));
    for (int64_t j = 0; j < visible; j += 16) {
        __mmask16 m = moert_mask16(visible - j);
        _mm512_mask_storeu_ps(row + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), inv));
    }
    for (int64_t j = visible; j < width; j++) row[j] = 0;
}

/* Part `part` of `parts`: a contiguous range of heads, each a sequence of row blocks: S = Q_h K_g^T, softmax,
** O_h = S V_g. */
static void prefill_part(void *ctx, int part, int parts) {
    prefill_job *a = ctx;
    const int64_t qw = (int64_t)a->n_heads * a->head_dim, kvw = (int64_t)a->n_kv_heads * a->head_dim;
    const int group = a->n_heads / a->n_kv_heads;
    int h0 = a->n_heads * part / parts, h1 = a->n_heads * (part + 1) / parts;
    const int64_t block = a->n < PREFILL_ROWS ? a->n : PREFILL_ROWS;
    float *scores = a->scores + (int64_t)part * block * (a->position + a->n);
    for (int h = h0; h < h1; h++) {
        const float *kh = a->keys + (int64_t)(h / group) * a->head_dim;
        const float *vh = a->values + (int64_t)(h / group) * a->head_dim;
        for (int64_t t0 = 0; t0 < a->n; t0 += PREFILL_ROWS) {
            int64_t rows = a->n - t0 < PREFILL_ROWS ? a->n - t0 : PREFILL_ROWS;
            int64_t width = a->position + t0 + rows;   /* keys the block's last row sees */
            const float *qh = a->q + t0 * qw + (int64_t)h * a->head_dim;
            float *oh = a->out + t0 * qw + (int64_t)h * a->head_dim;
            /* S [rows, width] = Q_h K_g^T */
            if (!moert_gemm_serial(rows, width, a->head_dim, qh, qw, kh, 0, kvw, scores, width)) goto fail;
            for (int64_t r = 0; r < rows; r++) softmax_row(scores + r * width, a->position + t0 + r + 1, width, a->scale);
            /* O_h [rows, head_dim] = S V_g */
            if (!moert_gemm_serial(rows, a->head_dim, width, scores, width, vh, 1, kvw, oh, qw)) goto fail;
        }
    }
    return;
fail:
    __atomic_store_n(&a->failed, 1, __ATOMIC_RELAXED);
}

int moert_attention_prefill(const float *q, const float *keys, const float *values, int64_t n, int64_t position,
                            int n_heads, int n_kv_heads, int head_dim, float scale, float *scores,
                            int64_t scores_capacity, float *out) {
    if (!moert_kernels_have_avx512() || n <= 0) return 0;
    prefill_job a = {q, keys, values, n, position, n_heads, n_kv_heads, head_dim, scale, scores, out, 0};
    int64_t max_parts = scores_capacity / ((n < PREFILL_ROWS ? n : PREFILL_ROWS) * (position + n));
    if (max_parts > n_heads) max_parts = n_heads;
    if (max_parts < 1) return 0;
    moert_parallel(prefill_part, &a, (int)max_parts);
    return !a.failed;
}
