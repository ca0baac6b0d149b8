/* quant.c: the block-quantized weight formats — q8_0 and q4_0, with the layouts, semantics and rounding of GGML's
** block_q8_0 / block_q4_0 and quantize_row_q8_0_ref / quantize_row_q4_0_ref, and q3_0, q4_0's rule with 3 bits (GGML
** has no 3-bit format in blocks of 32) — written from float32, read back, and checked; and the 8-bit blocks an
** activation vector is quantized to once per product (see gemv_quant.c).
**
** A row of `cols` weights is cols / 32 blocks, one after the other:
**   q8_0 (34 bytes): f16 scale d, then 32 int8 q;      value i = d * q[i]
**   q4_0 (18 bytes): f16 scale d, then 16 bytes qs;    value i = d * ((qs[i] & 15) - 8) for i < 16,
**                                                               d * ((qs[i - 16] >> 4) - 8) for i >= 16
**   q3_0 (14 bytes): f16 scale d, 8 bytes qs, then 4 bytes qh;
**                                                      value i = d * (((qs[i % 8] >> 2 (i / 8)) & 3)
**                                                                     + 4 ((qh[i % 4] >> (i / 4)) & 1) - 4) */
#include "kernels_internal.h"

#include <immintrin.h>
#include <math.h>

int64_t moert_quant_block_bytes(int type) {
    switch (type) {
    case MOERT_QUANT_Q8_0: return MOERT_Q8_0_BLOCK_BYTES;
    case MOERT_QUANT_Q4_0: return MOERT_Q4_0_BLOCK_BYTES;
    case MOERT_QUANT_Q3_0: return MOERT_Q3_0_BLOCK_BYTES;
    default: return 0;
    }
}

/* ---- Quantizing weights ---- */

/* One q8_0 block: d = max|x| / 127 stored as f16, q = round(x / d) (half away from zero, as roundf). */
static void quantize_block_q8_0(const float *x, uint8_t *block) {
    float amax = 0;
    for (int i = 0; i < MOERT_QUANT_BLOCK; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float d = amax / 127, id = d != 0 ? 1 / d : 0;
    const uint16_t dh = moert_narrow_f16(d);
    memcpy(block, &dh, 2);
    int8_t *q = (int8_t *)(block + 2);
    for (int i = 0; i < MOERT_QUANT_BLOCK; i++) q[i] = (int8_t)roundf(x[i] * id);
}

/* The value of largest magnitude of a block (the first one on a tie; 0 for a block of zeros). */
static float block_extreme(const float *x) {
    float amax = 0, max = 0;
    for (int i = 0; i < MOERT_QUANT_BLOCK; i++) {
        if (amax < fabsf(x[i])) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    return max;
}

/* One q4_0 block: d = m / -8 where m is the value of largest magnitude (the first one on a tie), stored as f16;
** q = min(15, (int8)(x / d + 8.5)), truncated toward zero as C's conversion does. */
static void quantize_block_q4_0(const float *x, uint8_t *block) {
    const float d = block_extreme(x) / -8, id = d != 0 ? 1 / d : 0;
    const uint16_t dh = moert_narrow_f16(d);
    memcpy(block, &dh, 2);
    for (int i = 0; i < MOERT_QUANT_BLOCK / 2; i++) {
        /* two roundings, as the reference: the product, then the sum (no fused multiply-add) */
        const float x0 = x[i] * id, x1 = x[i + MOERT_QUANT_BLOCK / 2] * id;
        const int8_t lo = (int8_t)(x0 + 8.5f), hi = (int8_t)(x1 + 8.5f);
        block[2 + i] = (uint8_t)((lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4);
    }
}

/* One q3_0 block: q4_0's rule with 3 bits: d = m / -4, q = min(7, (int8)(x / d + 4.5)); the low two bits of q go
** to qs, the third to qh. */
static void quantize_block_q3_0(const float *x, uint8_t *block) {
    const float d = block_extreme(x) / -4, id = d != 0 ? 1 / d : 0;
    const uint16_t dh = moert_narrow_f16(d);
    memcpy(block, &dh, 2);
    uint8_t qs[8] = {0}, qh[4] = {0};
    for (int i = 0; i < MOERT_QUANT_BLOCK; i++) {
        const float xi = x[i] * id; /* two roundings, as q4_0's */
        const int8_t t = (int8_t)(xi + 4.5f), q = t < 7 ? t : 7;
        qs[i % 8] |= (uint8_t)((q & 3) << (2 * (i / 8)));
        qh[i % 4] |= (uint8_t)((q >> 2) << (i / 4));
    }
    memcpy(block + 2, qs, 8);
    memcpy(block + 10, qh, 4);
}

void moert_quantize(int type, const float *src, void *dst, int64_t count) {
    const int64_t bytes = moert_quant_block_bytes(type);
    uint8_t *out = dst;
    for (int64_t b = 0; b < count / MOERT_QUANT_BLOCK; b++) {
        if (type == MOERT_QUANT_Q8_0) quantize_block_q8_0(src + b * MOERT_QUANT_BLOCK, out + b * bytes);
        else if (type == MOERT_QUANT_Q3_0) quantize_block_q3_0(src + b * MOERT_QUANT_BLOCK, out + b * bytes);
        else quantize_block_q4_0(src + b * MOERT_QUANT_BLOCK, out + b * bytes);
    }
}

/* ---- Reading weights back ---- */

__attribute__((target("avx2,fma,f16c")))
static void dequantize_avx2(int type, const uint8_t *src, float *dst, int64_t blocks) {
    const int64_t bytes = moert_quant_block_bytes(type);
    for (int64_t b = 0; b < blocks; b++, src += bytes, dst += MOERT_QUANT_BLOCK) {
        __m256 v[4];
        moert_block_values(src, type, v);
        for (int q = 0; q < 4; q++) _mm256_storeu_ps(dst + 8 * q, v[q]);
    }
}

void moert_dequantize_portable(int type, const void *src, float *dst, int64_t count) {
    const int64_t bytes = moert_quant_block_bytes(type);
    const uint8_t *s = src;
    for (int64_t b = 0; b < count / MOERT_QUANT_BLOCK; b++, s += bytes, dst += MOERT_QUANT_BLOCK) {
        const float d = moert_block_scale(s);
        for (int i = 0; i < MOERT_QUANT_BLOCK; i++) dst[i] = d * (float)moert_block_quant(s, type, i);
    }
}

void moert_dequantize(int type, const void *src, float *dst, int64_t count) {
    if (moert_kernels_have_avx2()) dequantize_avx2(type, src, dst, count / MOERT_QUANT_BLOCK);
    else moert_dequantize_portable(type, src, dst, count);
}

int64_t moert_quant_first_nonfinite(int type, const void *src, int64_t blocks) {
    const int64_t bytes = moert_quant_block_bytes(type);
    const uint8_t *s = src;
    for (int64_t b = 0; b < blocks; b++, s += bytes) {
        uint16_t h;
        memcpy(&h, s, 2);
        if ((h & 0x7c00) == 0x7c00) return b;
    }
    return -1;
}

/* ---- Activations ---- */

int64_t moert_quant_activation_bytes(int64_t cols) {
    const int64_t blocks = cols / MOERT_QUANT_BLOCK, single = blocks * MOERT_QA_BLOCK_BYTES,
                  pairs = (blocks + 1) / 2 * MOERT_QA_PAIR_BYTES;
    return single > pairs ? single : pairs;
}

/* One activation block: d = max|x| / 127 as float32, q = x / d rounded to nearest even. */
static void quantize_activation_block(const float *x, uint8_t *block) {
    float amax = 0;
    for (int i = 0; i < MOERT_QUANT_BLOCK; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float d = amax / 127, id = d != 0 ? 127 / amax : 0;
    memcpy(block, &d, 4);
    for (int i = 0; i < MOERT_QUANT_BLOCK; i++) block[4 + i] = (uint8_t)(int8_t)nearbyintf(x[i] * id);
}

__attribute__((target("avx2,fma,f16c")))
static void quantize_activation_avx2(const float *x, uint8_t *out, int64_t blocks) {
    for (int64_t b = 0; b < blocks; b++, x += MOERT_QUANT_BLOCK, out += MOERT_QA_BLOCK_BYTES) {
        __m256i q;
        const float d = moert_quantize_block_avx2(x, &q);
        memcpy(out, &d, 4);
        _mm256_storeu_si256((__m256i *)(out + 4), q);
    }
}

__attribute__((target("avx2,fma,f16c")))
void moert_quantize_activation_pairs(const float *x, void *xq, int64_t cols) {
    const int64_t blocks = cols / MOERT_QUANT_BLOCK;
    uint8_t *out = xq;
    for (int64_t b = 0; b < blocks; b++, x += MOERT_QUANT_BLOCK) {
        uint8_t *pair = out + b / 2 * MOERT_QA_PAIR_BYTES, half = (uint8_t)(b % 2 * 16);
        __m256i q;
        const float d = moert_quantize_block_avx2(x, &q);
        int8_t bytes[32];
        _mm256_storeu_si256((__m256i *)bytes, q);
        const int32_t sum = moert_quant_sum_avx2(q);
        memcpy(pair + half, bytes, 16);
        memcpy(pair + 32 + half, bytes + 16, 16);
        const float ds[4] = {d, d, d, d}, cs[4] = {2.0f * sum, 2.0f * sum, 2.0f * sum, 2.0f * sum};
        memcpy(pair + 64 + half, ds, 16);
        memcpy(pair + 96 + half, cs, 16);
        if (b == blocks - 1 && b % 2 == 0) { /* an odd count: the last pair's second half is zero */
            for (int part = 0; part < 4; part++) memset(pair + 32 * part + 16, 0, 16);
        }
    }
}

void moert_quantize_activation_kernel(const float *x, void *xq, int64_t cols, int portable) {
    const int64_t blocks = cols / MOERT_QUANT_BLOCK;
    if (!portable && moert_kernels_have_avx2()) {
        quantize_activation_avx2(x, xq, blocks);
        return;
    }
    for (int64_t b = 0; b < blocks; b++) {
        quantize_activation_block(x + b * MOERT_QUANT_BLOCK, (uint8_t *)xq + b * MOERT_QA_BLOCK_BYTES);
    }
}

void moert_quantize_activation(const float *x, void *xq, int64_t cols) { moert_quantize_activation_kernel(x, xq, cols, 0); }
