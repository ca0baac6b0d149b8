/* latent.c: the per-head products of multi-head latent attention in its absorbed form, for one position (decode).
** kv_b_proj holds, for each head, `nope` key rows and `value_dim` value rows of `rank` columns. Each head's query is
** moved into the latent space through its key rows (a vector times a matrix), and its attention output out of it
** through its value rows (a GEMV), reading the rows in their stored type (f32, f16, bf16) with no widened copy. The
** heads are split among the worker threads. */
#include "kernels_internal.h"

#include <immintrin.h>

typedef struct latent_job {
    const uint8_t *w;  /* kv_b_proj */
    int dtype, kernel, query;
    const float *x;
    int64_t x_stride;
    float *y;
    int64_t y_stride;
    int n_heads;
    int64_t nope, value_dim, rank;
} latent_job;

/* y[c] = sum_i x[i] w[i, c] for c in [c0, c1), i < rows (w: rows of `cols`): one value at a time. */
static void vecmat_scalar(const uint8_t *w, int dtype, const float *x, int64_t rows, int64_t cols, int64_t c0,
                          int64_t c1, float *y) {
    const int64_t size = dtype == MOERT_GEMM_F32 ? 4 : 2;
    for (int64_t c = c0; c < c1; c++) y[c] = 0;
    for (int64_t i = 0; i < rows; i++) {
        const uint8_t *row = w + i * cols * size;
        for (int64_t c = c0; c < c1; c++) y[c] += x[i] * moert_weight_at(row, dtype, c);
    }
}

/* vecmat_scalar over every column with AVX2: up to 32 columns at a time in registers over all rows (two rows per
** step, eight chains); the last columns (fewer than 8) one value at a time. */
__attribute__((target("avx2,fma,f16c")))
static void vecmat_avx2(const uint8_t *w, int dtype, const float *x, int64_t rows, int64_t cols, float *y) {
    const int64_t size = dtype == MOERT_GEMM_F32 ? 4 : 2, stride = cols * size, body = cols - cols % 8;
    for (int64_t c0 = 0; c0 < body; c0 += 32) {
        const int vectors = body - c0 >= 32 ? 4 : (int)((body - c0) / 8);
        __m256 a[4], b[4];
        for (int u = 0; u < 4; u++) a[u] = b[u] = _mm256_setzero_ps();
        const uint8_t *p = w + c0 * size;
        int64_t i = 0;
        for (; i + 2 <= rows; i += 2, p += 2 * stride) {
            const __m256 x0 = _mm256_set1_ps(x[i]), x1 = _mm256_set1_ps(x[i + 1]);
            for (int u = 0; u < vectors; u++) {
                a[u] = _mm256_fmadd_ps(x0, moert_load8_weights(p + 8 * u * size, dtype), a[u]);
                b[u] = _mm256_fmadd_ps(x1, moert_load8_weights(p + stride + 8 * u * size, dtype), b[u]);
            }
        }
        if (i < rows) {
            const __m256 x0 = _mm256_set1_ps(x[i]);
            for (int u = 0; u < vectors; u++) a[u] = _mm256_fmadd_ps(x0, moert_load8_weights(p + 8 * u * size, dtype), a[u]);
        }
        for (int u = 0; u < vectors; u++) _mm256_storeu_ps(y + c0 + 8 * u, _mm256_add_ps(a[u], b[u]));
    }
    if (body < cols) vecmat_scalar(w, dtype, x, rows, cols, body, cols, y);
}

static void latent_part(void *ctx, int part, int parts) {
    const latent_job *j = ctx;
    const int64_t size = j->dtype == MOERT_GEMM_F32 ? 4 : 2, head_rows = j->nope + j->value_dim;
    for (int h = j->n_heads * part / parts; h < j->n_heads * (part + 1) / parts; h++) {
        const uint8_t *head = j->w + h * head_rows * j->rank * size;
        const float *x = j->x + h * j->x_stride;
        float *y = j->y + h * j->y_stride;
        if (j->query) {
            if (j->kernel == MOERT_KERNEL_PORTABLE) vecmat_scalar(head, j->dtype, x, j->nope, j->rank, 0, j->rank, y);
            else vecmat_avx2(head, j->dtype, x, j->nope, j->rank, y);
        } else {
            moert_gemv_rows(j->kernel, head + j->nope * j->rank * size, j->dtype, x, y, 0, j->value_dim, j->rank);
        }
    }
}

/* Runs one of the two products on the pool, by heads; on this thread alone under LATENT_SPLIT_BYTES of the rows it
** reads (the key rows of every head, or the value rows). A product reads half of kv_b_proj, a few hundred KiB at
** most in released models, in short strided runs that one thread reads at a fraction of the memory's pace: a 2-core
** Zen 4 EPYC read the 128 KiB of a small DeepSeek-V2's f16 halves at ~10 GB/s on one thread. */
enum { LATENT_SPLIT_BYTES = 1 << 16 };

static void run_latent(latent_job *j) {
    if (j->kernel == MOERT_KERNEL_BLAS || !moert_kernel_available(moert_gemv_product(j->dtype), j->kernel))
        j->kernel = moert_kernels_have_avx2() ? MOERT_KERNEL_AVX2 : MOERT_KERNEL_PORTABLE;
    const int64_t size = j->dtype == MOERT_GEMM_F32 ? 4 : 2;
    const int64_t bytes = (int64_t)j->n_heads * (j->query ? j->nope : j->value_dim) * j->rank * size;
    moert_parallel(latent_part, j, bytes < LATENT_SPLIT_BYTES ? 1 : j->n_heads);
}

void moert_latent_query(int kernel, const void *kv_b, int dtype, const float *q, int64_t q_stride, int n_heads,
                        int64_t nope, int64_t value_dim, int64_t rank, float *out, int64_t out_stride) {
    latent_job j = {kv_b, dtype, kernel, 1, q, q_stride, out, out_stride, n_heads, nope, value_dim, rank};
    run_latent(&j);
}

void moert_latent_output(int kernel, const void *kv_b, int dtype, const float *ctx, int n_heads, int64_t nope,
                         int64_t value_dim, int64_t rank, float *out) {
    latent_job j = {kv_b, dtype, kernel, 0, ctx, rank, out, value_dim, n_heads, nope, value_dim, rank};
    run_latent(&j);
}
