/* kv_cache.c: rows of the KV cache in its element type — float32, f16, bf16, or q8_0 (blocks of 32 values with one
** f16 scale, the semantics and rounding of GGML's quantize_row_q8_0_ref) — written from float32 and read back. */
#include "kernels_internal.h"

#include <immintrin.h>
#include <math.h>

int64_t moert_kv_row_bytes(int type, int64_t width) {
    switch (type) {
    case MOERT_KV_F32: return width * 4;
    case MOERT_KV_F16:
    case MOERT_KV_BF16: return width * 2;
    case MOERT_KV_Q8_0: return width / MOERT_Q8_0_BLOCK * MOERT_Q8_0_BLOCK_BYTES;
    default: return 0;
    }
}

/* One block of 32: d = max|x| / 127 stored as f16, q = round(x / d) (half away from zero, as roundf). */
static void quantize_block_q8_0(const float *x, uint8_t *block) {
    float amax = 0;
    for (int i = 0; i < MOERT_Q8_0_BLOCK; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float d = amax / 127, id = d != 0 ? 1 / d : 0;
    const uint16_t dh = moert_narrow_f16(d);
    memcpy(block, &dh, 2);
    int8_t *q = (int8_t *)(block + 2);
    for (int i = 0; i < MOERT_Q8_0_BLOCK; i++) q[i] = (int8_t)roundf(x[i] * id);
}

void moert_kv_store(int type, const float *src, void *dst, int64_t count) {
    switch (type) {
    case MOERT_KV_F32:
        memcpy(dst, src, (size_t)count * 4);
        return;
    case MOERT_KV_F16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < count; i++) d[i] = moert_narrow_f16(src[i]);
        return;
    }
    case MOERT_KV_BF16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < count; i++) d[i] = moert_narrow_bf16(src[i]);
        return;
    }
    case MOERT_KV_Q8_0:
        for (int64_t b = 0; b < count / MOERT_Q8_0_BLOCK; b++) {
            quantize_block_q8_0(src + b * MOERT_Q8_0_BLOCK, (uint8_t *)dst + b * MOERT_Q8_0_BLOCK_BYTES);
        }
        return;
    }
}

__attribute__((target("avx2,fma,f16c")))
static void load_q8_0_avx2(const uint8_t *src, float *dst, int64_t blocks) {
    for (int64_t b = 0; b < blocks; b++, src += MOERT_Q8_0_BLOCK_BYTES, dst += MOERT_Q8_0_BLOCK) {
        const __m256 d = _mm256_set1_ps(moert_q8_0_scale(src));
        for (int i = 0; i < MOERT_Q8_0_BLOCK; i += 8) {
            _mm256_storeu_ps(dst + i, _mm256_mul_ps(d, moert_load8_q8(src + 2 + i)));
        }
    }
}

void moert_kv_load(int type, const void *src, float *dst, int64_t count) {
    switch (type) {
    case MOERT_KV_F32:
        memcpy(dst, src, (size_t)count * 4);
        return;
    case MOERT_KV_F16:
    case MOERT_KV_BF16:
        moert_half_to_float(src, type, dst, count);
        return;
    case MOERT_KV_Q8_0: {
        const int64_t blocks = count / MOERT_Q8_0_BLOCK;
        if (moert_kernels_have_avx2()) {
            load_q8_0_avx2(src, dst, blocks);
            return;
        }
        const uint8_t *s = src;
        for (int64_t b = 0; b < blocks; b++, s += MOERT_Q8_0_BLOCK_BYTES) {
            const float d = moert_q8_0_scale(s);
            for (int i = 0; i < MOERT_Q8_0_BLOCK; i++) dst[b * MOERT_Q8_0_BLOCK + i] = d * (float)(int8_t)s[2 + i];
        }
        return;
    }
    }
}
