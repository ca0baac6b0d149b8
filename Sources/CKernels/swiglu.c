/* swiglu.c: the activation between an expert's two products, silu(gate) * up, with a vector exponential and the
** rows split among the worker threads. In a 512-token prefill it runs on a million elements per layer; with
** libm's scalar expf on one thread it kept the other thread waiting for about a tenth of the prefill. The avx512 and
** avx2 kernels of the product live here; its portable kernel is the caller's loop. */
#include "kernels_internal.h"

#include <math.h>

typedef struct swiglu_task {
    const float *gate, *up;  /* row r's gate at gate + r * stride, its up at up + r * stride */
    int64_t rows, width, stride;
    float *out;
    int kernel;
} swiglu_task;

/* Rows [r0, r1): silu(g) * u = g * u / (1 + e^-g), 16 elements at a time. */
__attribute__((target("avx512f")))
static void swiglu_rows_avx512(const swiglu_task *t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *g = t->gate + r * t->stride, *u = t->up + r * t->stride;
        float *o = t->out + r * t->width;
        for (int64_t c = 0; c < t->width; c += 16) {
            __mmask16 m = moert_mask16(t->width - c);
            __m512 gv = _mm512_maskz_loadu_ps(m, g + c), uv = _mm512_maskz_loadu_ps(m, u + c);
            __m512 denominator = _mm512_add_ps(_mm512_set1_ps(1.0f), moert_exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv)));
            _mm512_mask_storeu_ps(o + c, m, _mm512_div_ps(_mm512_mul_ps(gv, uv), denominator));
        }
    }
}

/* Rows [r0, r1), 8 elements at a time (the tail of a row with libm's expf). moert_exp256 clamps its argument: at the
** ends 1 + e^-g is 1, or about 2.4e38, which leaves g * u / (1 + e^-g) at what the exact exponential gives to float32
** rounding (for g below -88 both are within a few 1e-37 of 0). */
__attribute__((target("avx2,fma")))
static void swiglu_rows_avx2(const swiglu_task *t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *g = t->gate + r * t->stride, *u = t->up + r * t->stride;
        float *o = t->out + r * t->width;
        int64_t c = 0;
        for (; c + 8 <= t->width; c += 8) {
            __m256 gv = _mm256_loadu_ps(g + c), uv = _mm256_loadu_ps(u + c);
            __m256 denominator = _mm256_add_ps(_mm256_set1_ps(1.0f), moert_exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv)));
            _mm256_storeu_ps(o + c, _mm256_div_ps(_mm256_mul_ps(gv, uv), denominator));
        }
        for (; c < t->width; c++) o[c] = g[c] * u[c] / (1.0f + expf(-g[c]));
    }
}

static void swiglu_part(void *ctx, int part, int parts) {
    const swiglu_task *t = ctx;
    const int64_t r0 = t->rows * part / parts, r1 = t->rows * (part + 1) / parts;
    if (t->kernel == MOERT_KERNEL_AVX512) swiglu_rows_avx512(t, r0, r1);
    else swiglu_rows_avx2(t, r0, r1);
}

int moert_swiglu(const float *gate_up, int64_t rows, int64_t width, float *out) {
    return moert_swiglu_kernel(moert_kernel_chosen(MOERT_PRODUCT_SWIGLU), gate_up, rows, width, out);
}

/* The rows of t on the pool: 1 when done, 0 when `kernel` is not a kernel of this file this CPU runs. */
static int swiglu_run(swiglu_task *t) {
    if ((t->kernel != MOERT_KERNEL_AVX512 && t->kernel != MOERT_KERNEL_AVX2) ||
        !moert_kernel_available(MOERT_PRODUCT_SWIGLU, t->kernel))
        return 0;
    /* Split from 32768 elements (a few microseconds of work). */
    moert_parallel(swiglu_part, t, t->rows * t->width < (1 << 15) ? 1 : (int)t->rows);
    return 1;
}

int moert_swiglu_kernel(int kernel, const float *gate_up, int64_t rows, int64_t width, float *out) {
    swiglu_task t = {gate_up, gate_up + width, rows, width, 2 * width, out, kernel};
    return swiglu_run(&t);
}

int moert_swiglu_split_kernel(int kernel, const float *gate, const float *up, int64_t rows, int64_t width, float *out) {
    swiglu_task t = {gate, up, rows, width, width, out, kernel};
    return swiglu_run(&t);
}
