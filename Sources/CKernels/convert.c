/* convert.c: f16 and bf16 values widened to float32 (moert_half_to_float), with AVX2 and F16C when the CPU has them. */
#include "kernels_internal.h"

#include <immintrin.h>

__attribute__((target("avx2,fma,f16c")))
static void convert_avx2(const uint16_t *src, int dtype, float *dst, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, moert_load8(src + i, dtype));
    for (; i < count; i++) dst[i] = moert_widen_half(src[i], dtype);
}

void moert_half_to_float(const void *src, int dtype, float *dst, int64_t count) {
    if (moert_kernels_have_avx2()) {
        convert_avx2(src, dtype, dst, count);
        return;
    }
    const uint16_t *s = src;
    for (int64_t i = 0; i < count; i++) dst[i] = moert_widen_half(s[i], dtype);
}
