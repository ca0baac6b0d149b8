/* gemv.c: the decode GEMV, y = W x for f16, bf16 and float32 weights, with its rows split over the worker pool.
**
** The rows are those of the kernel chosen for the product (choice.c): gemv_avx512.c's, or AVX2+FMA(+F16C) ones here
** (f16/bf16 widened in registers) reading one row at a time (avx2) or four (avx2x4), or one value at a time. Decode
** is bound by memory bandwidth: reading 2-byte weights and converting them in registers halves the bytes per token
** against float32 copies. */
#include "kernels_internal.h"

#include <immintrin.h>

/* ---- Row kernels: portable and AVX2 ---- */

static void rows_scalar(const void *w, int dtype, const float *x, float *y, int64_t r0, int64_t r1, int64_t cols) {
    const int64_t size = dtype == MOERT_GEMM_F32 ? 4 : 2;
    for (int64_t r = r0; r < r1; r++) {
        const void *row = (const char *)w + r * cols * size;
        float acc = 0;
        for (int64_t c = 0; c < cols; c++) acc += moert_weight_at(row, dtype, c) * x[c];
        y[r] = acc;
    }
}

/* One row at a time (one sequential stream per thread), 256 bytes of weights per step into four accumulators, with a
** software prefetch PREFETCH_BYTES ahead in the same stream (avx2): on the family-23 EPYC the hardware prefetcher alone
** kept too few lines in flight; 17-19% more bytes per second than four rows at a time with a prefetch eight rows
** ahead, the layout before (paired runs over decode-like sequences of matrices). The same loop without the prefetch
** (AHEAD 0: avx2hw) decoded the medium bench preset's f16 model 1.06x faster on a Zen 4 EPYC (10 of 10 paired
** rounds) and its small one 0.94x: which is faster depends on the CPU and the shapes, so both are measured. */
enum { PREFETCH_BYTES = 4096, STEP_BYTES = 256 };

#define DEFINE_ROWS_AVX2(NAME, DTYPE, AHEAD)                                                                       \
__attribute__((target("avx2,fma,f16c")))                                                                           \
static void NAME(const void *w, const float *x, float *y, int64_t r0, int64_t r1, int64_t cols) {                  \
    const int64_t size = DTYPE == MOERT_GEMM_F32 ? 4 : 2, step = STEP_BYTES / size;                                \
    const int64_t body = cols - cols % step;                                                                       \
    for (int64_t r = r0; r < r1; r++) {                                                                            \
        const char *row = (const char *)w + r * cols * size;                                                       \
        __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;                                                       \
        for (int64_t k = 0; k < body; k += step) {                                                                 \
            const char *p = row + k * size;                                                                        \
            if (AHEAD)                                                                                             \
                for (int line = 0; line < STEP_BYTES; line += 64) _mm_prefetch(p + (AHEAD) + line, _MM_HINT_T0);   \
            for (int64_t s = 0; s < step; s += 32) {                                                               \
                a = _mm256_fmadd_ps(moert_load8_weights(p + s * size, DTYPE), _mm256_loadu_ps(x + k + s), a);      \
                b = _mm256_fmadd_ps(moert_load8_weights(p + (s + 8) * size, DTYPE), _mm256_loadu_ps(x + k + s + 8), b); \
                c = _mm256_fmadd_ps(moert_load8_weights(p + (s + 16) * size, DTYPE), _mm256_loadu_ps(x + k + s + 16), c); \
                d = _mm256_fmadd_ps(moert_load8_weights(p + (s + 24) * size, DTYPE), _mm256_loadu_ps(x + k + s + 24), d); \
            }                                                                                                      \
        }                                                                                                          \
        int64_t k = body;                                                                                          \
        for (; k + 8 <= cols; k += 8) a = _mm256_fmadd_ps(moert_load8_weights(row + k * size, DTYPE), _mm256_loadu_ps(x + k), a); \
        float sum = moert_hsum256(_mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));                        \
        for (; k < cols; k++) sum += moert_weight_at(row, DTYPE, k) * x[k];                                        \
        y[r] = sum;                                                                                                \
    }                                                                                                              \
}

DEFINE_ROWS_AVX2(rows_avx2_f16, MOERT_HALF_F16, PREFETCH_BYTES)
DEFINE_ROWS_AVX2(rows_avx2_bf16, MOERT_HALF_BF16, PREFETCH_BYTES)
DEFINE_ROWS_AVX2(rows_avx2_f32, MOERT_GEMM_F32, PREFETCH_BYTES)
DEFINE_ROWS_AVX2(rows_avx2hw_f16, MOERT_HALF_F16, 0)
DEFINE_ROWS_AVX2(rows_avx2hw_bf16, MOERT_HALF_BF16, 0)
DEFINE_ROWS_AVX2(rows_avx2hw_f32, MOERT_GEMM_F32, 0)

/* Four rows at a time: rows [r0, r1) cut into four quarters, row i of each read at the same time, so that the thread
** reads four far-apart sequential streams (consecutive rows of a quarter are contiguous), STEP_BYTES of each per step
** with a software prefetch STREAM_AHEAD bytes ahead in each; x is loaded once for the four rows. Measured on a
** 2-core EPYC of family 25 (Zen 3): 31-34 GB/s against 21-24 for one row at a time (f16, decode-like matrices); on
** the family-23 EPYC one row at a time read faster than four rows with a prefetch eight rows ahead. Rows beyond four
** quarters run one at a time with the same arithmetic (two accumulators, 16 values per step), so that a row's bits do
** not depend on where the range [r0, r1) starts and ends: the pool cuts a product into more or fewer parts by its
** thread count and whether another caller holds it, and moert_gemv_batch into the parts each product would make. */
enum { STREAM_AHEAD = 1024 };

/* The sums of STREAMS rows (1 or 4) at row[0 ..< STREAMS] into *out[0 ..< STREAMS], read side by side: each row's sum
** in two accumulators, 16 values per step, whatever the number of streams. Uses the enclosing function's x, cols,
** size, step and body. */
#define ROWS_STREAMS_AVX2(STREAMS, DTYPE, row, out)                                                                \
    do {                                                                                                           \
        __m256 acc[STREAMS][2];                                                                                    \
        for (int s = 0; s < STREAMS; s++) acc[s][0] = acc[s][1] = _mm256_setzero_ps();                             \
        for (int64_t k = 0; k < body; k += step) {                                                                 \
            for (int s = 0; s < STREAMS; s++)                                                                      \
                for (int line = 0; line < STEP_BYTES; line += 64)                                                  \
                    _mm_prefetch(row[s] + k * size + STREAM_AHEAD + line, _MM_HINT_T0);                            \
            for (int64_t u = k; u < k + step; u += 16) {                                                           \
                const __m256 xa = _mm256_loadu_ps(x + u), xb = _mm256_loadu_ps(x + u + 8);                         \
                for (int s = 0; s < STREAMS; s++) {                                                                \
                    acc[s][0] = _mm256_fmadd_ps(moert_load8_weights(row[s] + u * size, DTYPE), xa, acc[s][0]);     \
                    acc[s][1] = _mm256_fmadd_ps(moert_load8_weights(row[s] + (u + 8) * size, DTYPE), xb, acc[s][1]); \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
        for (int s = 0; s < STREAMS; s++) {                                                                        \
            __m256 a = acc[s][0];                                                                                  \
            int64_t k = body;                                                                                      \
            for (; k + 8 <= cols; k += 8) a = _mm256_fmadd_ps(moert_load8_weights(row[s] + k * size, DTYPE), _mm256_loadu_ps(x + k), a); \
            float sum = moert_hsum256(_mm256_add_ps(a, acc[s][1]));                                                \
            for (; k < cols; k++) sum += moert_weight_at(row[s], DTYPE, k) * x[k];                                 \
            *out[s] = sum;                                                                                         \
        }                                                                                                          \
    } while (0)

#define DEFINE_ROWS4_AVX2(NAME, DTYPE)                                                                             \
__attribute__((target("avx2,fma,f16c")))                                                                           \
static void NAME(const void *w, const float *x, float *y, int64_t r0, int64_t r1, int64_t cols) {                  \
    const int64_t size = DTYPE == MOERT_GEMM_F32 ? 4 : 2, step = STEP_BYTES / size;                                \
    const int64_t body = cols - cols % step, quarter = (r1 - r0) / 4;                                              \
    for (int64_t i = 0; i < quarter; i++) {                                                                        \
        const char *row[4];                                                                                        \
        float *out[4];                                                                                             \
        for (int s = 0; s < 4; s++) {                                                                              \
            row[s] = (const char *)w + (r0 + s * quarter + i) * cols * size;                                       \
            out[s] = y + r0 + s * quarter + i;                                                                     \
        }                                                                                                          \
        ROWS_STREAMS_AVX2(4, DTYPE, row, out);                                                                     \
    }                                                                                                              \
    for (int64_t r = r0 + 4 * quarter; r < r1; r++) {                                                              \
        const char *row[1] = {(const char *)w + r * cols * size};                                                  \
        float *out[1] = {y + r};                                                                                   \
        ROWS_STREAMS_AVX2(1, DTYPE, row, out);                                                                     \
    }                                                                                                              \
}

DEFINE_ROWS4_AVX2(rows4_avx2_f16, MOERT_HALF_F16)
DEFINE_ROWS4_AVX2(rows4_avx2_bf16, MOERT_HALF_BF16)
DEFINE_ROWS4_AVX2(rows4_avx2_f32, MOERT_GEMM_F32)

/* ---- The product on the pool ---- */

typedef struct gemv_task {
    const void *w;
    int dtype, kernel;
    const float *x;
    float *y;
    int64_t rows, cols;
} gemv_task;

void moert_gemv_rows(int kernel, const void *w, int dtype, const float *x, float *y, int64_t r0, int64_t r1,
                     int64_t cols) {  /* kernels_internal.h */
    switch (kernel) {
    case MOERT_KERNEL_AVX512: moert_rows_avx512(w, dtype, x, y, r0, r1, cols); break;
    case MOERT_KERNEL_AVX2:
        if (dtype == MOERT_GEMM_F32) rows_avx2_f32(w, x, y, r0, r1, cols);
        else if (dtype == MOERT_HALF_F16) rows_avx2_f16(w, x, y, r0, r1, cols);
        else rows_avx2_bf16(w, x, y, r0, r1, cols);
        break;
    case MOERT_KERNEL_AVX2HW:
        if (dtype == MOERT_GEMM_F32) rows_avx2hw_f32(w, x, y, r0, r1, cols);
        else if (dtype == MOERT_HALF_F16) rows_avx2hw_f16(w, x, y, r0, r1, cols);
        else rows_avx2hw_bf16(w, x, y, r0, r1, cols);
        break;
    case MOERT_KERNEL_AVX2X4:
        if (dtype == MOERT_GEMM_F32) rows4_avx2_f32(w, x, y, r0, r1, cols);
        else if (dtype == MOERT_HALF_F16) rows4_avx2_f16(w, x, y, r0, r1, cols);
        else rows4_avx2_bf16(w, x, y, r0, r1, cols);
        break;
    default: rows_scalar(w, dtype, x, y, r0, r1, cols); break;
    }
}

/* Part `part` of `parts`: a contiguous range of rows, on the task's kernel (never blas: the caller of a float32
** product on blas runs sgemv instead). */
static void gemv_part(void *ctx, int part, int parts) {
    const gemv_task *t = ctx;
    int64_t r0, r1;
    moert_part_rows(t->rows, part, parts, &r0, &r1);
    if (r0 < r1) moert_gemv_rows(t->kernel, t->w, t->dtype, t->x, t->y, r0, r1, t->cols);
}

/* A GEMV on `kernel` (one the CPU can run, never blas) on the pool, in moert_gemv_parts parts. */
static void run_gemv(int kernel, const void *w, int dtype, const float *x, float *y, int64_t rows, int64_t cols) {
    gemv_task t = {w, dtype, kernel, x, y, rows, cols};
    moert_parallel(gemv_part, &t, moert_gemv_parts(dtype, rows, cols));
}

void moert_gemv_half(const void *w, int dtype, const float *x, float *y, int64_t rows, int64_t cols) {
    run_gemv(moert_kernel_chosen(moert_gemv_product(dtype)), w, dtype, x, y, rows, cols);
}

int moert_gemv_half_resolve(int kernel, int dtype) {
    const int product = moert_gemv_product(dtype);
    return moert_kernel_available(product, kernel) ? kernel : moert_kernel_preferred(product);
}

void moert_gemv_half_kernel(int kernel, const void *w, int dtype, const float *x, float *y, int64_t rows,
                            int64_t cols) {
    run_gemv(moert_gemv_half_resolve(kernel, dtype), w, dtype, x, y, rows, cols);
}

int moert_gemv_f32(const float *w, const float *x, float *y, int64_t rows, int64_t cols) {
    return moert_gemv_f32_kernel(moert_kernel_chosen(MOERT_PRODUCT_GEMV_F32), w, x, y, rows, cols);
}

int moert_gemv_f32_kernel(int kernel, const float *w, const float *x, float *y, int64_t rows, int64_t cols) {
    if (kernel == MOERT_KERNEL_BLAS || !moert_kernel_available(MOERT_PRODUCT_GEMV_F32, kernel)) return 0;
    run_gemv(kernel, w, MOERT_GEMM_F32, x, y, rows, cols);
    return 1;
}
