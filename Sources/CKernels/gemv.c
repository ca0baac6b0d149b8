/* gemv.c: the decode GEMV, y = W x for f16, bf16 and float32 weights, with its rows split over the worker pool.
**
** The rows are those of gemv_avx512.c when the CPU has AVX-512, else f16/bf16 widened in registers with
** AVX2+FMA+F16C, else one value at a time. Decode is bound by memory bandwidth: reading 2-byte weights and converting
** them in registers halves the bytes per token against float32 copies. */
#include "kernels_internal.h"

#include <immintrin.h>

/* ---- Row kernels without AVX-512 ---- */

static void rows_scalar(const uint16_t *w, int dtype, const float *x, float *y, int64_t r0, int64_t r1, int64_t cols) {
    for (int64_t r = r0; r < r1; r++) {
        const uint16_t *row = w + r * cols;
        float acc = 0;
        for (int64_t c = 0; c < cols; c++) acc += moert_widen_half(row[c], dtype) * x[c];
        y[r] = acc;
    }
}

/* One row at a time (one sequential stream per thread), 256 bytes of weights per step into four accumulators, with a
** software prefetch PREFETCH_BYTES ahead in the same stream: the hardware prefetcher alone keeps too few lines in
** flight. Measured on the 2-core EPYC: 17-19% more bytes per second than four rows at a time with a prefetch eight
** rows ahead, the layout before (paired runs over decode-like sequences of matrices). */
enum { PREFETCH_BYTES = 4096 };

#define DEFINE_ROWS_AVX2(NAME, DTYPE)                                                                              \
__attribute__((target("avx2,fma,f16c")))                                                                           \
static void NAME(const uint16_t *w, const float *x, float *y, int64_t r0, int64_t r1, int64_t cols) {              \
    const int64_t body = cols & ~(int64_t)127;                                                                     \
    for (int64_t r = r0; r < r1; r++) {                                                                            \
        const uint16_t *row = w + r * cols;                                                                        \
        __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;                                                       \
        for (int64_t k = 0; k < body; k += 128) {                                                                  \
            const char *ahead = (const char *)(row + k) + PREFETCH_BYTES;                                          \
            for (int line = 0; line < 256; line += 64) _mm_prefetch(ahead + line, _MM_HINT_T0);                    \
            for (int64_t s = k; s < k + 128; s += 32) {                                                            \
                a = _mm256_fmadd_ps(moert_load8(row + s, DTYPE), _mm256_loadu_ps(x + s), a);                       \
                b = _mm256_fmadd_ps(moert_load8(row + s + 8, DTYPE), _mm256_loadu_ps(x + s + 8), b);               \
                c = _mm256_fmadd_ps(moert_load8(row + s + 16, DTYPE), _mm256_loadu_ps(x + s + 16), c);             \
                d = _mm256_fmadd_ps(moert_load8(row + s + 24, DTYPE), _mm256_loadu_ps(x + s + 24), d);             \
            }                                                                                                      \
        }                                                                                                          \
        int64_t k = body;                                                                                          \
        for (; k + 8 <= cols; k += 8) a = _mm256_fmadd_ps(moert_load8(row + k, DTYPE), _mm256_loadu_ps(x + k), a); \
        float sum = moert_hsum256(_mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));                        \
        for (; k < cols; k++) sum += moert_widen_half(row[k], DTYPE) * x[k];                                       \
        y[r] = sum;                                                                                                \
    }                                                                                                              \
}

DEFINE_ROWS_AVX2(rows_avx2_f16, MOERT_HALF_F16)
DEFINE_ROWS_AVX2(rows_avx2_bf16, MOERT_HALF_BF16)

/* ---- The product on the pool ---- */

typedef struct gemv_task {
    const void *w;
    int dtype;
    const float *x;
    float *y;
    int64_t rows, cols;
} gemv_task;

/* Part `part` of `parts`: a contiguous range of rows. */
static void gemv_part(void *ctx, int part, int parts) {
    const gemv_task *t = ctx;
    int64_t r0, r1;
    moert_part_rows(t->rows, part, parts, &r0, &r1);
    if (r0 >= r1) return;
    if (moert_kernels_have_avx512()) moert_rows_avx512(t->w, t->dtype, t->x, t->y, r0, r1, t->cols);
    else if (!moert_kernels_have_avx2()) rows_scalar(t->w, t->dtype, t->x, t->y, r0, r1, t->cols);
    else if (t->dtype == MOERT_HALF_F16) rows_avx2_f16(t->w, t->x, t->y, r0, r1, t->cols);
    else rows_avx2_bf16(t->w, t->x, t->y, r0, r1, t->cols);
}

/* A GEMV on the pool; products under 512 KiB of weights run on this thread (a hand-off would cost more). */
static void run_gemv(const void *w, int dtype, const float *x, float *y, int64_t rows, int64_t cols) {
    gemv_task t = {w, dtype, x, y, rows, cols};
    int64_t bytes = rows * cols * (dtype == MOERT_GEMM_F32 ? 4 : 2);
    moert_parallel(gemv_part, &t, bytes < (1 << 19) ? 1 : MOERT_MAX_THREADS);
}

void moert_gemv_half(const void *w, int dtype, const float *x, float *y, int64_t rows, int64_t cols) {
    run_gemv(w, dtype, x, y, rows, cols);
}

int moert_gemv_f32(const float *w, const float *x, float *y, int64_t rows, int64_t cols) {
    if (!moert_kernels_have_avx512()) return 0;
    run_gemv(w, MOERT_GEMM_F32, x, y, rows, cols);
    return 1;
}
