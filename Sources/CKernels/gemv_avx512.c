/* gemv_avx512.c: the rows of a decode GEMV (y = W x, one output per weight row) with AVX-512, for float32, f16 and
** bf16 weights. Decode is bound by memory bandwidth, so the loop is shaped for the memory system: one row at a time
** (one sequential stream per thread; the rows of a thread's range are contiguous), 256 bytes of weights per step into
** four accumulators, and a software prefetch 4 KiB ahead in the same stream, which keeps more lines in flight than the
** hardware prefetcher does on its own. On the 2-core EPYC this streams 6-18% more bytes per second than four rows at a
** time with a prefetch eight rows ahead (paired runs over decode-like sequences of matrices of both bench presets),
** and 7-10% more than the AVX2 kernel for halves and OpenBLAS's sgemv for float32. */
#include "kernels_internal.h"

#include <immintrin.h>

enum { PREFETCH_BYTES = 4096, STEP_BYTES = 256 };

/* y[r] for r in [r0, r1). */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma"), always_inline))
static inline void rows_generic(const void *w, int dtype, const float *x, float *y, int64_t r0, int64_t r1,
                                int64_t cols) {
    const int64_t size = dtype == MOERT_GEMM_F32 ? 4 : 2, step = STEP_BYTES / size, body = cols - cols % step;
    const __mmask16 all = 0xffff;
    for (int64_t r = r0; r < r1; r++) {
        const char *row = (const char *)w + r * cols * size;
        __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
        for (int64_t k = 0; k < body; k += step) {
            const char *p = row + k * size;
            for (int line = 0; line < STEP_BYTES; line += 64) _mm_prefetch(p + PREFETCH_BYTES + line, _MM_HINT_T0);
            for (int64_t s = 0; s < step; s += 64) {
                a = _mm512_fmadd_ps(moert_load16(p + s * size, dtype, all), _mm512_loadu_ps(x + k + s), a);
                b = _mm512_fmadd_ps(moert_load16(p + (s + 16) * size, dtype, all), _mm512_loadu_ps(x + k + s + 16), b);
                c = _mm512_fmadd_ps(moert_load16(p + (s + 32) * size, dtype, all), _mm512_loadu_ps(x + k + s + 32), c);
                d = _mm512_fmadd_ps(moert_load16(p + (s + 48) * size, dtype, all), _mm512_loadu_ps(x + k + s + 48), d);
            }
        }
        for (int64_t k = body; k < cols; k += 16) {
            __mmask16 m = moert_mask16(cols - k);
            a = _mm512_fmadd_ps(moert_load16(row + k * size, dtype, m), _mm512_maskz_loadu_ps(m, x + k), a);
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))
void moert_rows_avx512(const void *w, int dtype, const float *x, float *y, int64_t r0, int64_t r1, int64_t cols) {
    switch (dtype) {
    case MOERT_GEMM_F32: rows_generic(w, MOERT_GEMM_F32, x, y, r0, r1, cols); break;
    case MOERT_HALF_F16: rows_generic(w, MOERT_HALF_F16, x, y, r0, r1, cols); break;
    default: rows_generic(w, MOERT_HALF_BF16, x, y, r0, r1, cols); break;
    }
}
