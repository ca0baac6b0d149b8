/* swiglu.c: the activation between an expert's two products, silu(gate) * up, with a vector exponential and the
** rows split among the worker threads. In a 512-token prefill it runs on a million elements per layer; with
** libm's scalar expf on one thread it kept the other thread waiting for about a tenth of the prefill. */
#include "kernels_internal.h"

typedef struct swiglu_task {
    const float *gate_up;
    int64_t rows, width;
    float *out;
} swiglu_task;

/* Rows [r0, r1): silu(g) * u = g * u / (1 + e^-g), 16 elements at a time. */
__attribute__((target("avx512f")))
static void swiglu_rows(const swiglu_task *t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *g = t->gate_up + r * 2 * t->width, *u = g + t->width;
        float *o = t->out + r * t->width;
        for (int64_t c = 0; c < t->width; c += 16) {
            __mmask16 m = moert_mask16(t->width - c);
            __m512 gv = _mm512_maskz_loadu_ps(m, g + c), uv = _mm512_maskz_loadu_ps(m, u + c);
            __m512 denominator = _mm512_add_ps(_mm512_set1_ps(1.0f), moert_exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv)));
            _mm512_mask_storeu_ps(o + c, m, _mm512_div_ps(_mm512_mul_ps(gv, uv), denominator));
        }
    }
}

static void swiglu_part(void *ctx, int part, int parts) {
    const swiglu_task *t = ctx;
    swiglu_rows(t, t->rows * part / parts, t->rows * (part + 1) / parts);
}

int moert_swiglu(const float *gate_up, int64_t rows, int64_t width, float *out) {
    if (!moert_kernels_have_avx512()) return 0;
    swiglu_task t = {gate_up, rows, width, out};
    /* Split from 32768 elements (a few microseconds of work). */
    moert_parallel(swiglu_part, &t, rows * width < (1 << 15) ? 1 : (int)rows);
    return 1;
}
