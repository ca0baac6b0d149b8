/* quant.c: the block-quantized weight formats — q8_0, q4_0 and q4_k, with the layouts, semantics and rounding of
** GGML's block_q8_0 / block_q4_0 / block_q4_K and quantize_row_q8_0_ref / quantize_row_q4_0_ref /
** quantize_row_q4_K_ref, and q3_0, q4_0's rule with 3 bits (GGML has no 3-bit format in blocks of 32) — written from
** float32, read back, and checked; and the 8-bit blocks an activation vector is quantized to once per product (see
** gemv_quant.c).
**
** A row of `cols` weights is cols / 32 blocks (q4_k: cols / 256 super-blocks), one after the other:
**   q8_0 (34 bytes): f16 scale d, then 32 int8 q;      value i = d * q[i]
**   q4_0 (18 bytes): f16 scale d, then 16 bytes qs;    value i = d * ((qs[i] & 15) - 8) for i < 16,
**                                                               d * ((qs[i - 16] >> 4) - 8) for i >= 16
**   q3_0 (14 bytes): f16 scale d, 8 bytes qs, then 4 bytes qh;
**                                                      value i = d * (((qs[i % 8] >> 2 (i / 8)) & 3)
**                                                                     + 4 ((qh[i % 4] >> (i / 4)) & 1) - 4)
**   q4_k (144 bytes, 256 values in 8 sub-blocks of 32): f16 d, f16 dmin, 12 bytes of 6-bit scales sc[j] and mins
**        m[j] (moert_q4_k_scale_min), then 128 bytes qs;  value i of sub-block j = d sc[j] q - dmin m[j], where q is
**        the low nibble of qs[32 (j / 2) + i] for even j, its high nibble for odd j. */
#include "kernels_internal.h"

#include <immintrin.h>
#include <math.h>

/* Every product and sum below rounds on its own, as GGML's reference code does where it is built without fused
** multiply-adds: the quantizers' choices (and q4_k's read-back) depend on it. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

int64_t moert_quant_block_bytes(int type) {
    switch (type) {
    case MOERT_QUANT_Q8_0: return MOERT_Q8_0_BLOCK_BYTES;
    case MOERT_QUANT_Q4_0: return MOERT_Q4_0_BLOCK_BYTES;
    case MOERT_QUANT_Q3_0: return MOERT_Q3_0_BLOCK_BYTES;
    case MOERT_QUANT_Q4_K: return MOERT_Q4_K_BLOCK_BYTES;
    default: return 0;
    }
}

int64_t moert_quant_block_values(int type) { return type == MOERT_QUANT_Q4_K ? MOERT_Q4_K_BLOCK : MOERT_QUANT_BLOCK; }

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

/* x rounded to the nearest integer, halves to even (|x| < 2^22, as GGML's nearest_int). */
static inline int nearest(float x) { return (int)nearbyintf(x); }

/* The refits of a q4_k sub-block's affine fit (fit_q4_k_sub_block), in step order: step s tries the inverse scale
** (LEVELS - 1 + 0.1 s) / (max - *min) and replaces the quants in L, *scale, *min and *best when its weighted squared
** error is below *best; the later steps then start from the new *min, as the reference's loop does. */
enum { Q4_K_SUB = 32, Q4_K_LEVELS = 15, Q4_K_STEPS = 20 };

/* The least-squares scale and minimum of one refit from its weighted sums (sum_w: of the weights, sum_x: of w x,
** sum_l, sum_l2, sum_xl: of w l, w l l, w l x); a minimum above 0 becomes 0, the scale then fitted alone. Returns 0
** when the quants do not determine them (all equal). */
static inline int solve_q4_k_refit(float sum_w, float sum_x, float sum_l, float sum_l2, float sum_xl, float *scale,
                                   float *min) {
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0)) return 0;
    *scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    *min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (*min > 0) {
        *min = 0;
        *scale = sum_xl / sum_l2;
    }
    return 1;
}

/* The inverse scale refit step `step` tries from the minimum `low` (both refit loops: the same bits). */
static inline float q4_k_refit_iscale(int step, float max, float low) {
    return (-1.0f + 0.1f * (float)step + Q4_K_LEVELS) / (max - low);
}

static void refit_q4_k(const float *x, const float *w, float sum_w, float sum_x, float max, float *min, float *scale,
                       float *best, uint8_t *L) {
    enum { N = Q4_K_SUB, LEVELS = Q4_K_LEVELS };
    for (int step = 0; step <= Q4_K_STEPS; step++) {
        uint8_t trial[N];
        const float low = *min, iscale = q4_k_refit_iscale(step, max, low);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < N; i++) {
            int l = nearest(iscale * (x[i] - low));
            l = l < 0 ? 0 : l > LEVELS ? LEVELS : l;
            trial[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        float this_scale, this_min;
        if (!solve_q4_k_refit(sum_w, sum_x, sum_l, sum_l2, sum_xl, &this_scale, &this_min)) continue;
        float error = 0;
        for (int i = 0; i < N; i++) {
            const float diff = this_scale * trial[i] + this_min - x[i];
            error += w[i] * (diff * diff);
        }
        if (error < *best) {
            memcpy(L, trial, N);
            *best = error;
            *scale = this_scale;
            *min = this_min;
        }
    }
}

/* refit_q4_k with the steps in the lanes of vectors: the steps from `first` on are tried at once with the current
** *min, then scanned in order; at the first that improves, it is taken and the steps after it are tried again from
** the new *min (the reference's order, so the same choices). Each step's sums and error run over the values in the
** same order, every operation rounded on its own (no FMA in this target): the same bytes, in less than half the
** time (each improvement costs a retry of the later steps; 2.4x on a whole model, BENCHMARKS.md). */
__attribute__((target("avx2")))
static void refit_q4_k_avx2(const float *x, const float *w, float sum_w, float sum_x, float max, float *min,
                            float *scale, float *best, uint8_t *L) {
    enum { N = Q4_K_SUB, LEVELS = Q4_K_LEVELS, LANES = 24, VECTORS = LANES / 8 };
    const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(LEVELS);
    int first = 0;
    while (first <= Q4_K_STEPS) {
        const float low = *min;
        const int count = Q4_K_STEPS + 1 - first, vectors = (count + 7) / 8;
        float iscales[LANES] = {0};
        for (int k = 0; k < count; k++) iscales[k] = q4_k_refit_iscale(first + k, max, low);
        __m256 trial[N][VECTORS], sum_l[VECTORS], sum_l2[VECTORS], sum_xl[VECTORS];
        for (int v = 0; v < vectors; v++) sum_l[v] = sum_l2[v] = sum_xl[v] = _mm256_setzero_ps();
        for (int i = 0; i < N; i++) {
            const __m256 centred = _mm256_set1_ps(x[i] - low), wi = _mm256_set1_ps(w[i]), xi = _mm256_set1_ps(x[i]);
            for (int v = 0; v < vectors; v++) {
                const __m256 t = _mm256_mul_ps(_mm256_loadu_ps(iscales + 8 * v), centred);
                const __m256 l = _mm256_min_ps(
                    _mm256_max_ps(_mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zero), top);
                const __m256 wl = _mm256_mul_ps(wi, l);
                trial[i][v] = l;
                sum_l[v] = _mm256_add_ps(sum_l[v], wl);
                sum_l2[v] = _mm256_add_ps(sum_l2[v], _mm256_mul_ps(wl, l));
                sum_xl[v] = _mm256_add_ps(sum_xl[v], _mm256_mul_ps(wl, xi));
            }
        }
        float sl[LANES], sl2[LANES], sxl[LANES], scales[LANES] = {0}, mins[LANES] = {0}, errors[LANES];
        int usable[LANES] = {0};
        for (int v = 0; v < vectors; v++) {
            _mm256_storeu_ps(sl + 8 * v, sum_l[v]);
            _mm256_storeu_ps(sl2 + 8 * v, sum_l2[v]);
            _mm256_storeu_ps(sxl + 8 * v, sum_xl[v]);
        }
        for (int k = 0; k < count; k++)
            usable[k] = solve_q4_k_refit(sum_w, sum_x, sl[k], sl2[k], sxl[k], &scales[k], &mins[k]);
        for (int v = 0; v < vectors; v++) {
            const __m256 sc = _mm256_loadu_ps(scales + 8 * v), mn = _mm256_loadu_ps(mins + 8 * v);
            __m256 error = _mm256_setzero_ps();
            for (int i = 0; i < N; i++) {
                const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(sc, trial[i][v]), mn), _mm256_set1_ps(x[i]));
                error = _mm256_add_ps(error, _mm256_mul_ps(_mm256_set1_ps(w[i]), _mm256_mul_ps(diff, diff)));
            }
            _mm256_storeu_ps(errors + 8 * v, error);
        }
        int taken = -1;
        for (int k = 0; k < count && taken < 0; k++) {
            if (usable[k] && errors[k] < *best) taken = k;
        }
        if (taken < 0) return;
        *best = errors[taken];
        *scale = scales[taken];
        *min = mins[taken];
        float lanes[8];
        for (int i = 0; i < N; i++) {
            _mm256_storeu_ps(lanes, trial[i][taken / 8]);
            L[i] = (uint8_t)lanes[taken % 8];
        }
        first += taken + 1;
    }
}

/* The affine fit of one q4_k sub-block (GGML's make_qkx2_quants with 15 levels, rmin -1, rdelta 0.1, 20 steps, squared
** error): quants l in 0 ... 15 with x ~ scale * l - min, weighted by w, chosen as the best of a first guess from the
** range and 21 least-squares refits at nearby inverse scales (refit_q4_k, or refit_q4_k_avx2 when `avx2`). Writes
** the quants to L and min (>= 0) to *min_out; returns the scale. Every operation rounds as written (no fused
** multiply-add), as the reference does. */
static float fit_q4_k_sub_block(const float *x, const float *w, uint8_t *L, float *min_out, int avx2) {
    enum { N = Q4_K_SUB, LEVELS = Q4_K_LEVELS };
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < N; i++) {
        min = x[i] < min ? x[i] : min;
        max = x[i] > max ? x[i] : max;
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, N);
        *min_out = -min;
        return 0;
    }
    float iscale = LEVELS / (max - min), scale = 1 / iscale, best = 0;
    for (int i = 0; i < N; i++) {
        const int l = nearest(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > LEVELS ? LEVELS : l);
        const float diff = scale * L[i] + min - x[i];
        best += w[i] * (diff * diff);
    }
    if (avx2) refit_q4_k_avx2(x, w, sum_w, sum_x, max, &min, &scale, &best, L);
    else refit_q4_k(x, w, sum_w, sum_x, max, &min, &scale, &best, L);
    *min_out = -min;
    return scale;
}

/* One q4_k super-block (GGML's quantize_row_q4_K_ref): each sub-block fitted (weights: its root mean square plus
** |x|), the eight scales and mins stored as 6-bit fractions of the largest (d = largest scale / 63, dmin = largest
** min / 63, as f16), then every value quantized again against its sub-block's stored scale and min. */
static void quantize_block_q4_k(const float *x, uint8_t *block, int avx2) {
    enum { SUB = 32, SUBS = MOERT_Q4_K_BLOCK / 32 };
    uint8_t L[MOERT_Q4_K_BLOCK];
    float scales[SUBS], mins[SUBS], max_scale = 0, max_min = 0;
    for (int j = 0; j < SUBS; j++) {
        const float *xj = x + SUB * j;
        float sum_x2 = 0, w[SUB];
        for (int i = 0; i < SUB; i++) sum_x2 += xj[i] * xj[i];
        const float av_x = sqrtf(sum_x2 / SUB);
        for (int i = 0; i < SUB; i++) w[i] = av_x + fabsf(xj[i]);
        scales[j] = fit_q4_k_sub_block(xj, w, L + SUB * j, &mins[j], avx2);
        max_scale = scales[j] > max_scale ? scales[j] : max_scale;
        max_min = mins[j] > max_min ? mins[j] : max_min;
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0, inv_min = max_min > 0 ? 63.0f / max_min : 0;
    uint8_t *packed = block + 4;
    for (int j = 0; j < SUBS; j++) {
        int ls = nearest(inv_scale * scales[j]), lm = nearest(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            packed[j] = (uint8_t)ls;
            packed[j + 4] = (uint8_t)lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 15) | (lm & 15) << 4);
            packed[j - 4] |= (uint8_t)((ls >> 4) << 6);
            packed[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    const uint16_t dh = moert_narrow_f16(max_scale / 63.0f), mh = moert_narrow_f16(max_min / 63.0f);
    memcpy(block, &dh, 2);
    memcpy(block + 2, &mh, 2);
    const float d_all = moert_block_scale(block), dmin_all = moert_block_scale(block + 2);
    for (int j = 0; j < SUBS; j++) {
        int sc, m;
        moert_q4_k_scale_min(packed, j, &sc, &m);
        const float d = d_all * (float)sc, dm = dmin_all * (float)m;
        if (d == 0) continue; /* keeps the fit's quants, as the reference does */
        for (int i = 0; i < SUB; i++) {
            const int l = nearest((x[SUB * j + i] + dm) / d);
            L[SUB * j + i] = (uint8_t)(l < 0 ? 0 : l > 15 ? 15 : l);
        }
    }
    uint8_t *qs = block + 16;
    for (int p = 0; p < SUBS / 2; p++) {
        for (int i = 0; i < SUB; i++) qs[SUB * p + i] = (uint8_t)(L[2 * SUB * p + i] | L[2 * SUB * p + SUB + i] << 4);
    }
}

typedef struct quantize_job {
    int type;
    const float *src;
    uint8_t *dst;
    int64_t blocks;
    int avx2;  /* q4_k's refits on AVX2 (the same bytes) */
} quantize_job;

/* Part `part` of `parts` of a quantize_job: a contiguous run of blocks (each block depends on its values alone). */
static void quantize_part(void *ctx, int part, int parts) {
    const quantize_job *j = ctx;
    const int64_t bytes = moert_quant_block_bytes(j->type), values = moert_quant_block_values(j->type);
    for (int64_t b = j->blocks * part / parts; b < j->blocks * (part + 1) / parts; b++) {
        const float *x = j->src + b * values;
        uint8_t *block = j->dst + b * bytes;
        if (j->type == MOERT_QUANT_Q8_0) quantize_block_q8_0(x, block);
        else if (j->type == MOERT_QUANT_Q3_0) quantize_block_q3_0(x, block);
        else if (j->type == MOERT_QUANT_Q4_K) quantize_block_q4_k(x, block, j->avx2);
        else quantize_block_q4_0(x, block);
    }
}

/* moert_quantize, q4_k's refits on AVX2 when `avx2`. */
static void quantize(int type, const float *src, void *dst, int64_t count, int avx2) {
    /* On the pool from 64 Ki values (q4_k's fit costs about 90 ns per value on one core of a Zen 3 EPYC, 200
    ** without AVX2; the others' a few; a hand-off a few microseconds). */
    quantize_job j = {type, src, dst, count / moert_quant_block_values(type), avx2};
    moert_parallel(quantize_part, &j, count < (1 << 16) ? 1 : MOERT_MAX_THREADS * MOERT_PARTS_PER_THREAD);
}

void moert_quantize(int type, const float *src, void *dst, int64_t count) {
    quantize(type, src, dst, count, moert_kernels_have_avx2());
}

void moert_quantize_portable(int type, const float *src, void *dst, int64_t count) {
    quantize(type, src, dst, count, 0);
}

/* ---- Reading weights back ---- */

__attribute__((target("avx2,fma,f16c")))
static void dequantize_avx2(int type, const uint8_t *src, float *dst, int64_t count) {
    __m256 v[4];
    if (type == MOERT_QUANT_Q4_K) {
        for (int64_t b = 0; b < count / MOERT_Q4_K_BLOCK; b++, src += MOERT_Q4_K_BLOCK_BYTES) {
            for (int j = 0; j < MOERT_Q4_K_BLOCK / 32; j++, dst += 32) {
                moert_q4_k_values(src, j, v);
                for (int q = 0; q < 4; q++) _mm256_storeu_ps(dst + 8 * q, v[q]);
            }
        }
        return;
    }
    const int64_t bytes = moert_quant_block_bytes(type);
    for (int64_t b = 0; b < count / MOERT_QUANT_BLOCK; b++, src += bytes, dst += MOERT_QUANT_BLOCK) {
        moert_block_values(src, type, v);
        for (int q = 0; q < 4; q++) _mm256_storeu_ps(dst + 8 * q, v[q]);
    }
}

void moert_dequantize_portable(int type, const void *src, float *dst, int64_t count) {
    const int64_t bytes = moert_quant_block_bytes(type);
    const uint8_t *s = src;
    if (type == MOERT_QUANT_Q4_K) {
        for (int64_t b = 0; b < count / MOERT_Q4_K_BLOCK; b++, s += bytes) {
            for (int j = 0; j < MOERT_Q4_K_BLOCK / 32; j++, dst += 32) {
                int sc, m;
                moert_q4_k_scale_min(s + 4, j, &sc, &m);
                const float d = moert_block_scale(s) * (float)sc, dm = moert_block_scale(s + 2) * (float)m;
                const uint8_t *qs = s + 16 + 32 * (j / 2);
                for (int i = 0; i < 32; i++) dst[i] = d * (float)(j % 2 ? qs[i] >> 4 : qs[i] & 15) - dm;
            }
        }
        return;
    }
    for (int64_t b = 0; b < count / MOERT_QUANT_BLOCK; b++, s += bytes, dst += MOERT_QUANT_BLOCK) {
        const float d = moert_block_scale(s);
        for (int i = 0; i < MOERT_QUANT_BLOCK; i++) dst[i] = d * (float)moert_block_quant(s, type, i);
    }
}

void moert_dequantize(int type, const void *src, float *dst, int64_t count) {
    if (moert_kernels_have_avx2()) dequantize_avx2(type, src, dst, count);
    else moert_dequantize_portable(type, src, dst, count);
}

/* Whether the f16 at p is infinite or NaN. */
static int nonfinite_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return (h & 0x7c00) == 0x7c00;
}

int64_t moert_quant_first_nonfinite(int type, const void *src, int64_t blocks) {
    const int64_t bytes = moert_quant_block_bytes(type);
    const uint8_t *s = src;
    for (int64_t b = 0; b < blocks; b++, s += bytes) {
        if (nonfinite_f16(s) || (type == MOERT_QUANT_Q4_K && nonfinite_f16(s + 2))) return b;
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
