/* kv_cache.c: rows of the KV cache in its element type — float32, f16, bf16, or q8_0 (blocks of 32 values with one
** f16 scale, quant.c's weight format) — written from float32 and read back. */
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
        moert_quantize(MOERT_QUANT_Q8_0, src, dst, count);
        return;
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
    case MOERT_KV_Q8_0:
        moert_dequantize(MOERT_QUANT_Q8_0, src, dst, count);
        return;
    }
}
