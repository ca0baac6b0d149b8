/* gemv_avx512.c: the rows of a decode GEMV (y = W x, one output per weight row) with AVX-512, for float32, f16 and
** bf16 weights. Decode is bound by memory bandwidth, so the loop is shaped for the memory system: four rows at a
** time share each load of x, every row reads two whole cache lines per step, and each step prefetches the same
** columns PREFETCH_ROWS rows ahead (the hardware prefetcher follows four streams poorly). Against the AVX2 kernel
** for halves and OpenBLAS's sgemv for float32 it streams 7-10% more bytes per second on the 2-core EPYC (paired
** runs over a decode-like sequence of matrices). */
#include "kernels_internal.h"

#include <immintrin.h>

enum { PREFETCH_ROWS = 8, ROWS = 4 };

/* 16 weights from p as float32 (`dtype` is a constant where this is inlined); `mask` selects the valid ones. */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"), always_inline))
static inline __m512 load16(const void *p, int dtype, __mmask16 mask) {
    if (dtype == MOERT_GEMM_F32) return _mm512_maskz_loadu_ps(mask, p);
    __m256i h = _mm256_maskz_loadu_epi16(mask, p);
    if (dtype == MOERT_HALF_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* y[r] for r in [r0, r1). Elements per step: two cache lines of weights (32 floats or 64 halves). */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma"), always_inline))
static inline void rows_generic(const void *w, int dtype, const float *x, float *y, int64_t r0, int64_t r1,
                                int64_t cols) {
    const int64_t size = dtype == MOERT_GEMM_F32 ? 4 : 2, step = 128 / size, body = cols - cols % step;
    const __mmask16 all = 0xffff;
    const char *base = w;
    int64_t r = r0;
    for (; r + ROWS <= r1; r += ROWS) {
        const char *p[ROWS];
        __m512 a[ROWS], b[ROWS];
        for (int i = 0; i < ROWS; i++) {
            p[i] = base + (r + i) * cols * size;
            a[i] = b[i] = _mm512_setzero_ps();
        }
        for (int64_t c = 0; c < body; c += step) {
            for (int i = 0; i < ROWS; i++) {
                const char *ahead = p[i] + (c + PREFETCH_ROWS * cols) * size;
                _mm_prefetch(ahead, _MM_HINT_T0);
                _mm_prefetch(ahead + 64, _MM_HINT_T0);
            }
            for (int64_t s = 0; s < step; s += 32) {
                __m512 x0 = _mm512_loadu_ps(x + c + s), x1 = _mm512_loadu_ps(x + c + s + 16);
                for (int i = 0; i < ROWS; i++) {
                    a[i] = _mm512_fmadd_ps(load16(p[i] + (c + s) * size, dtype, all), x0, a[i]);
                    b[i] = _mm512_fmadd_ps(load16(p[i] + (c + s + 16) * size, dtype, all), x1, b[i]);
                }
            }
        }
        for (int64_t c = body; c < cols; c += 16) {
            __mmask16 m = cols - c >= 16 ? all : (__mmask16)((1u << (cols - c)) - 1);
            __m512 xv = _mm512_maskz_loadu_ps(m, x + c);
            for (int i = 0; i < ROWS; i++) a[i] = _mm512_fmadd_ps(load16(p[i] + c * size, dtype, m), xv, a[i]);
        }
        for (int i = 0; i < ROWS; i++) y[r + i] = _mm512_reduce_add_ps(_mm512_add_ps(a[i], b[i]));
    }
    for (; r < r1; r++) {
        const char *p = base + r * cols * size;
        __m512 a = _mm512_setzero_ps();
        for (int64_t c = 0; c < cols; c += 16) {
            __mmask16 m = cols - c >= 16 ? all : (__mmask16)((1u << (cols - c)) - 1);
            a = _mm512_fmadd_ps(load16(p + c * size, dtype, m), _mm512_maskz_loadu_ps(m, x + c), a);
        }
        y[r] = _mm512_reduce_add_ps(a);
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
