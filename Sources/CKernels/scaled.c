/* scaled.c: weights stored with scales beside them, decoded once: block-wise FP8 (e4m3 with float32 block scales,
** DeepSeek-V3's weight_scale_inv) to float32 and MXFP4 (e2m1 in blocks of 32 with an e8m0 scale, gpt-oss) to bf16. */
#include "kernels_internal.h"

#include <math.h>
#include <string.h>

/* ---- FP8 e4m3 ---- */

/* One e4m3fn byte as float32, exactly (OCP 8-bit floating point, E4M3: bias 7, no infinities, S.1111.111 is NaN). */
static float e4m3_value(uint8_t b) {
    int e = (b >> 3) & 15, m = b & 7;
    float v = e == 0 ? ldexpf((float)m, -9) : ldexpf((float)(8 + m), e - 10);
    if (e == 15 && m == 7) v = NAN;
    return (b & 0x80) ? -v : v;
}

/* Scale `i` of a scale tensor of element type `scale_type` (MOERT_GEMM_F32 or a MOERT_HALF_ type) at any alignment. */
static float scale_at(const void *scales, int scale_type, int64_t i) {
    if (scale_type == MOERT_GEMM_F32) {
        float f;
        memcpy(&f, (const char *)scales + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, (const char *)scales + 2 * i, 2);
    return moert_widen_half(h, scale_type);
}

int64_t moert_fp8_first_bad_scale(const void *scales, int scale_type, int64_t count) {
    for (int64_t i = 0; i < count; i++) {
        if (!isfinite(scale_at(scales, scale_type, i))) return i;
    }
    return -1;
}

int64_t moert_fp8_dequantize(const uint8_t *w, const void *scales, int scale_type, int64_t rows, int64_t cols,
                             int64_t block_rows, int64_t block_cols, float *dst) {
    float table[256];
    for (int i = 0; i < 256; i++) table[i] = e4m3_value((uint8_t)i);
    const int64_t scale_cols = (cols + block_cols - 1) / block_cols;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *src = w + r * cols;
        float *out = dst + r * cols;
        const int64_t scale_row = (r / block_rows) * scale_cols;
        /* The last block of a row (and the last block row) may be partial: it covers what is left. */
        for (int64_t c0 = 0, j = 0; c0 < cols; c0 += block_cols, j++) {
            const float s = scale_at(scales, scale_type, scale_row + j);
            const int64_t c1 = c0 + block_cols < cols ? c0 + block_cols : cols;
            for (int64_t c = c0; c < c1; c++) {
                if ((src[c] & 0x7f) == 0x7f) return r * cols + c;
                out[c] = table[src[c]] * s;  /* one float32 product, as transformers' dequantization computes it */
            }
        }
    }
    return -1;
}

/* ---- MXFP4 ---- */

/* The e2m1 values by nibble (transformers' FP4_VALUES, OCP Microscaling Formats v1.0, FP4 E2M1). */
static const float e2m1_values[16] = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
                                      -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

int64_t moert_mxfp4_dequantize(const uint8_t *blocks, const uint8_t *scales, int64_t first_row, int64_t row_step,
                               int64_t rows, int64_t groups, int out_type, void *dst) {
    const int64_t cols = groups * 32;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t src_row = first_row + r * row_step;
        for (int64_t g = 0; g < groups; g++) {
            const int64_t block = src_row * groups + g;
            const uint8_t e = scales[block];
            if (e == 255) return block;  /* e8m0 NaN */
            /* 2^(e - 127): a power of two times a value of two significant bits is exact in float32 and bf16 (the
             * smallest, 0.5 * 2^-127, is a subnormal of both), unless it overflows. */
            const float s = ldexpf(1.0f, (int)e - 127);
            const uint8_t *b = blocks + block * 16;
            float v[32];
            for (int i = 0; i < 16; i++) {
                v[2 * i] = e2m1_values[b[i] & 15] * s;  /* low nibble first */
                v[2 * i + 1] = e2m1_values[b[i] >> 4] * s;
            }
            for (int i = 0; i < 32; i++) {
                if (isinf(v[i])) return block;
            }
            const int64_t at = r * cols + g * 32;
            if (out_type == MOERT_GEMM_F32) {
                memcpy((float *)dst + at, v, sizeof v);
            } else {
                uint16_t *out = (uint16_t *)dst + at;
                for (int i = 0; i < 32; i++) {
                    uint32_t x;
                    memcpy(&x, &v[i], 4);
                    out[i] = (uint16_t)(x >> 16);  /* exact: the low 16 bits are zero (see above) */
                }
            }
        }
    }
    return -1;
}
