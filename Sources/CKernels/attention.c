/* attention.c: attention of a single decode position. In decode a head's scores are one row of `total` dot products
** of length head_dim; through sgemm each head costs two library calls whose fixed overhead outweighs the work (two
** calls per head and layer, about 130 per token on the small bench model). Plain loops here, AVX2 when available. */
#include "moert_kernels.h"

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
    __m256 s = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
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

void moert_attention_one(const float *q, const float *keys, const float *values, int n_heads, int n_kv_heads,
                         int head_dim, int64_t total, float scale, float *scores, float *out) {
    const int fast = moert_kernels_have_avx2();
    const int group = n_heads / n_kv_heads;
    const int64_t row = (int64_t)n_kv_heads * head_dim;
    for (int h = 0; h < n_heads; h++) {
        const float *qh = q + (int64_t)h * head_dim;
        const int64_t g = (int64_t)(h / group) * head_dim;
        float *oh = out + (int64_t)h * head_dim;
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
}
