/* kernels_internal.h: what the kernel files share with each other and nothing else. */
#ifndef MOERT_KERNELS_INTERNAL_H
#define MOERT_KERNELS_INTERNAL_H

#include "moert_kernels.h"

#include <immintrin.h>
#include <string.h>

/** The most threads the pool runs, the caller included: as max_parts of moert_parallel, "as many parts as it makes". */
enum { MOERT_MAX_THREADS = 64 };

/** Parts per thread moert_parallel makes at most: threads claim parts one at a time, so with several parts each a
 * thread the system has descheduled holds up only the part it runs, and the threads finish a job closer together.
 * Each thread's parts are consecutive (pool.c), so more of them cost no new streams: 8 decoded a small DeepSeek-V2's
 * f16 model 1.06x faster than 4 on a 2-core Zen 4 EPYC (8 paired rounds); 16 was no faster than 8. */
enum { MOERT_PARTS_PER_THREAD = 8 };

/* y[r] = W x for rows r0 ..< r1 of the GEMV on `kernel` (avx512, avx2, avx2x4, else one value at a time; never
** blas), on this thread: gemv.c's row kernels, for products that split their work their own way (latent.c). */
MOERT_KERNEL void moert_gemv_rows(int kernel, const void *w, int dtype, const float *x, float *y, int64_t r0,
                                  int64_t r1, int64_t cols);

/** The most parts moert_parallel makes of a decode GEMV of `rows` x `cols` weights of `dtype` (MOERT_GEMM_F32,
 * MOERT_HALF_F16 or MOERT_HALF_BF16): 1, on the caller's thread, under 512 KiB of weights (a hand-off to the workers
 * would cost more), else as many as it makes. */
static inline int moert_gemv_parts(int dtype, int64_t rows, int64_t cols) {
    return rows * cols * (dtype == MOERT_GEMM_F32 ? 4 : 2) < (1 << 19) ? 1 : MOERT_MAX_THREADS;
}

/** As moert_gemv_parts for a quantized GEMV: 1 under 2^18 weights (the float threshold in weights rather than bytes:
 * a quantized weight costs more work per byte). */
static inline int moert_gemv_quant_parts(int64_t rows, int64_t cols) {
    return rows * cols < (1 << 18) ? 1 : MOERT_MAX_THREADS;
}

/** The kernel a float GEMV of `dtype` asked to run on `kernel` runs on (moert_gemv_half_kernel's rule: the product's
 * preferred kernel when `kernel` is not available). */
MOERT_KERNEL int moert_gemv_half_resolve(int kernel, int dtype);

/** The kernel a quantized GEMV of `type` asked to run on `kernel` runs on: avx2 or avx512 when available, else
 * portable (moert_gemv_quant_kernel's rule). */
MOERT_KERNEL int moert_gemv_quant_resolve(int kernel, int type);

/** The two steps of moert_gemv_quant_kernel on a resolved kernel (moert_gemv_quant_resolve): x quantized into xq in
 * the layout of `kernel`'s rows, then y[r] for rows r in [r0, r1) on this thread. */
MOERT_KERNEL void moert_gemv_quant_prepare(int kernel, int type, const float *x, void *xq, int64_t cols);
MOERT_KERNEL void moert_gemv_quant_rows(int kernel, int type, const void *w, const void *xq, float *y, int64_t r0,
                                        int64_t r1, int64_t cols);

/** The parts moert_parallel makes of a job of at most `max_parts` when it gets the pool: 1 below 2 or without
 * workers, else max_parts capped at MOERT_PARTS_PER_THREAD per thread. */
MOERT_KERNEL int moert_parallel_share(int max_parts);

/** Runs fn(ctx, part, parts) for every part of exactly `parts` (1 to 65,535) on the pool, as moert_parallel does but
 * without capping the count at the threads' share (a job made of several products' own parts). */
MOERT_KERNEL void moert_parallel_parts(void (*fn)(void *ctx, int part, int parts), void *ctx, int parts);

/** y[r] = sum_c w[r, c] * x[c] for r in [r0, r1), w row-major with `cols` elements of type `dtype` per row
 * (MOERT_GEMM_F32, MOERT_HALF_F16 or MOERT_HALF_BF16). Only on CPUs with AVX-512 (moert_kernels_have_avx512). */
MOERT_KERNEL void moert_rows_avx512(const void *w, int dtype, const float *x, float *y, int64_t r0, int64_t r1,
                                    int64_t cols);

/** The per-thread packing buffers of the prefill GEMMs (gemm.c, gemm_avx2.c, gemm_q4_0.c): *a holds
 * MOERT_GEMM_BUFFER_ROWS x MOERT_GEMM_BUFFER_DEPTH floats, *b MOERT_GEMM_BUFFER_DEPTH x MOERT_GEMM_BUFFER_COLUMNS, both
 * 64-byte aligned; allocated on a thread's first use and freed when it ends. Returns 0 without memory. */
enum { MOERT_GEMM_BUFFER_ROWS = 512, MOERT_GEMM_BUFFER_DEPTH = 256, MOERT_GEMM_BUFFER_COLUMNS = 32 };
MOERT_KERNEL int moert_gemm_buffers(float **a, float **b);

/** moert_gemm_nt on the AVX2 kernel (gemm_avx2.c), which also reads q8_0, q4_0, q3_0 and q4_k weights (k and ldb whole
 * blocks; q4_0, q3_0 and q4_k through moert_gemm_q4_0_avx2); 0 when it computed nothing (no AVX2, empty product, no
 * memory). */
MOERT_KERNEL int moert_gemm_nt_avx2(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const void *b,
                                    int dtype, int64_t ldb, float *c, int64_t ldc);

/** moert_gemm_nt of q4_0, q3_0 or q4_k weights (`type`) B [n, k] (row stride ldb values), in integer arithmetic: A's
 * rows quantized to 8-bit blocks as moert_quantize_activation does, each block's (q4_k: sub-block's) 32 products
 * summed exactly and scaled by both scales (gemm_q4_0.c), with AVX2's vpmaddubsw, or with AVX-512 VNNI's vpdpbusd
 * when `vnni` (the same bits); q8_0 weights with `vnni` only. k and ldb whole blocks of the type; 0 when it computed
 * nothing (also when `vnni` and the CPU has no VNNI, or for q8_0 without `vnni`). */
MOERT_KERNEL int moert_gemm_q4_0_avx2(int type, int vnni, int64_t m, int64_t n, int64_t k, const float *a,
                                      int64_t lda, const void *b, int64_t ldb, float *c, int64_t ldc);

/** moert_gemm_serial on the AVX2 kernel: on the calling thread alone, c = a b^T (b [n, k]) or, with b_kn, c = a b
 * (b [k, n]); float32. 0 when it computed nothing. */
MOERT_KERNEL int moert_gemm_serial_avx2(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                                        int b_kn, int64_t ldb, float *c, int64_t ldc);

/** moert_quantize_activation with the AVX2 loop (when the CPU has it) or, with `portable`, the plain one. */
MOERT_KERNEL void moert_quantize_activation_kernel(const float *x, void *xq, int64_t cols, int portable);

/** Bytes of a pair of activation blocks in the layout of moert_quantize_activation_pairs. */
#define MOERT_QA_PAIR_BYTES 128

/** Quantizes `cols` floats as moert_quantize_activation does, laid out for the AVX2 q4_0 GEMV in pairs of blocks
 * (b0, b1), 128 bytes each: quants 0-15 of b0 then of b1; quants 16-31 of b0 then of b1 (the order of q4_0's low and
 * high nibbles); the scales as floats [d0 x4, d1 x4]; and 2 * (sum of the quants) of each block [x4 each], so that
 * the four lanes of a block subtract 8 * its quant sum (q4_0's offset of 8). An odd last block pairs with zeros. */
MOERT_KERNEL void moert_quantize_activation_pairs(const float *x, void *xq, int64_t cols);

/** Rows [*r0, *r1) of part `part` of `parts` of `rows` rows: contiguous ranges of equal size (the last shorter);
 * empty (r0 >= r1) for a part beyond the rows. */
static inline void moert_part_rows(int64_t rows, int part, int parts, int64_t *r0, int64_t *r1) {
    const int64_t per = (rows + parts - 1) / parts;
    *r0 = per * part;
    *r1 = *r0 + per < rows ? *r0 + per : rows;
}

/** Columns [*j0, *j1) of part `part` of `parts` of a GEMM's n columns: a contiguous run of whole nr-column panels
 * (empty, j0 >= j1, for a part beyond them). */
static inline void moert_part_panels(int64_t n, int nr, int part, int parts, int64_t *j0, int64_t *j1) {
    const int64_t panels = (n + nr - 1) / nr, p0 = panels * part / parts, p1 = panels * (part + 1) / parts;
    *j0 = p0 * nr;
    *j1 = p1 * nr < n ? p1 * nr : n;
}

/** The parts a prefill GEMM of m x n x k in nr-column panels splits into: one per thread (each part packs the rows
 * of A again), and just one below about a million multiply-adds, where a thread would get too little work. */
static inline int moert_gemm_parts(int64_t m, int64_t n, int64_t k, int nr) {
    const int64_t panels = (n + nr - 1) / nr, threads = moert_kernels_threads();
    return m * n * k < (1 << 20) ? 1 : (int)(panels < threads ? panels : threads);
}

/** One f16 value widened to float32, exactly (subnormals, infinities and NaNs included). */
static inline float moert_widen_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/** One bf16 value widened to float32: its 16 bits are the high half of the float's. */
static inline float moert_widen_bf16(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/** One float32 value narrowed to f16, rounding to nearest even (as F16C's vcvtps2ph): beyond the f16 range it
 * becomes infinity, below it a subnormal or zero; NaN stays NaN. */
static inline uint16_t moert_narrow_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000, a = x & 0x7fffffff;
    if (a > 0x7f800000) return (uint16_t)(sign | 0x7e00);  /* NaN */
    if (a >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* >= 65520 rounds to infinity */
    if (a < 0x38800000) {                                  /* below 2^-14: a subnormal f16 or zero */
        float v, t;
        memcpy(&v, &a, sizeof v);
        t = v + 0.5f;  /* the ulp of 0.5f is 2^-24, the f16 subnormal step: the addition rounds to nearest even */
        uint32_t bits;
        memcpy(&bits, &t, sizeof bits);
        return (uint16_t)(sign | (bits - 0x3f000000));
    }
    return (uint16_t)(sign | ((a - 0x38000000 + 0xfff + ((a >> 13) & 1)) >> 13));
}

/** One float32 value narrowed to bf16, rounding to nearest even; NaN stays NaN. */
static inline uint16_t moert_narrow_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

/** One value of type `dtype` (MOERT_HALF_F16 or MOERT_HALF_BF16) widened to float32: the scalar path and the tails
 * of the vector ones. */
static inline float moert_widen_half(uint16_t h, int dtype) {
    return dtype == MOERT_HALF_F16 ? moert_widen_f16(h) : moert_widen_bf16(h);
}

/** 8 values of type `dtype` (MOERT_HALF_F16 or MOERT_HALF_BF16) from p widened to float32 with AVX2 and F16C. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 moert_load8(const uint16_t *p, int dtype) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (dtype == MOERT_HALF_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/** Weight c of a row of `dtype` (MOERT_GEMM_F32, MOERT_HALF_F16 or MOERT_HALF_BF16) as float32. */
static inline float moert_weight_at(const void *row, int dtype, int64_t c) {
    if (dtype == MOERT_GEMM_F32) return ((const float *)row)[c];
    return moert_widen_half(((const uint16_t *)row)[c], dtype);
}

/** 8 weights of `dtype` from p as floats (dtype is a constant where this is inlined). */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 moert_load8_weights(const void *p, int dtype) {
    return dtype == MOERT_GEMM_F32 ? _mm256_loadu_ps(p) : moert_load8(p, dtype);
}

/** The decode GEMV product of weights of `dtype`. */
static inline int moert_gemv_product(int dtype) {
    return dtype == MOERT_GEMM_F32 ? MOERT_PRODUCT_GEMV_F32
         : dtype == MOERT_HALF_F16 ? MOERT_PRODUCT_GEMV_F16 : MOERT_PRODUCT_GEMV_BF16;
}

/** The scale of a q8_0, q4_0 or q3_0 block (its leading f16), as float32 (of a q4_k super-block: d, and dmin at
 * block + 2). */
static inline float moert_block_scale(const uint8_t *block) {
    uint16_t h;
    memcpy(&h, block, sizeof h);
    return moert_widen_f16(h);
}

/** moert_block_scale with F16C (for the AVX2 paths: one instruction instead of moert_widen_f16's branches). */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline float moert_block_scale_f16c(const uint8_t *block) {
    uint16_t h;
    memcpy(&h, block, sizeof h);
    return _cvtsh_ss(h);
}

/** Quant i (0-31) of a block of `type` (MOERT_QUANT_Q8_0, _Q4_0 or _Q3_0), before its scale: q8_0's int8; q4_0's
 * low nibble of byte i (i < 16) or high nibble of byte i - 16, minus 8; q3_0's two low bits from byte i % 8 plus its
 * high bit from byte i % 4 of the four after them, minus 4. */
static inline int moert_block_quant(const uint8_t *block, int type, int i) {
    if (type == MOERT_QUANT_Q8_0) return (int8_t)block[2 + i];
    if (type == MOERT_QUANT_Q3_0) {
        const int low = block[2 + i % 8] >> (2 * (i / 8)) & 3, high = block[10 + i % 4] >> (i / 4) & 1;
        return low + 4 * high - 4;
    }
    return i < 16 ? (block[2 + i] & 15) - 8 : (block[2 + i - 16] >> 4) - 8;
}

/** The 32 nibbles of a q4_0 block's 16 bytes as unsigned bytes in 0 ... 15 (each quant plus 8), in value order: the
 * low nibbles (values 0-15), then the high ones (values 16-31). */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i moert_q4_0_nibbles(const uint8_t *qs) {
    const __m128i b = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(15));
}

/** The 32 quants of a q4_0 block's 16 bytes, as signed bytes in -8 ... 7: the low nibbles (values 0-15), then the
 * high ones (values 16-31). */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i moert_unpack_q4_0(const uint8_t *qs) {
    return _mm256_sub_epi8(moert_q4_0_nibbles(qs), _mm256_set1_epi8(8));
}

/** The 32 quants of a q3_0 block's 12 bytes (after its scale) plus 4, as unsigned bytes in 0 ... 7, in value order:
 * the low parts' 8 bytes repeated in each 64-bit lane and shifted by 2 bits per lane (lane k holds values 8k ... 8k +
 * 7), and 4 where the high bit is set: the 4 high bytes repeated in each 32-bit lane put value i's byte (i % 4) at
 * byte i, where bit i / 4 is tested. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i moert_q3_0_quants(const uint8_t *qs) {
    int64_t lows;
    int32_t highs;
    memcpy(&lows, qs, 8);
    memcpy(&highs, qs + 8, 4);
    const __m256i low = _mm256_and_si256(_mm256_srlv_epi64(_mm256_set1_epi64x(lows), _mm256_setr_epi64x(0, 2, 4, 6)),
                                         _mm256_set1_epi8(3));
    const __m256i bit = _mm256_setr_epi64x(0x0202020201010101, 0x0808080804040404, 0x2020202010101010,
                                           (int64_t)0x8080808040404040);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_set1_epi32(highs), bit), bit);
    return _mm256_or_si256(low, _mm256_and_si256(set, _mm256_set1_epi8(4)));
}

/** The 32 quants of a q3_0 block's 12 bytes, as signed bytes in -4 ... 3, in value order. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i moert_unpack_q3_0(const uint8_t *qs) {
    return _mm256_sub_epi8(moert_q3_0_quants(qs), _mm256_set1_epi8(4));
}

/** 8 signed bytes from p as 8 floats (the quants of a q8_0 block, before its scale). */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 moert_load8_q8(const uint8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/** The 32 values of a block of `type` (MOERT_QUANT_Q8_0, _Q4_0 or _Q3_0) as float32, scale times quant, in four
 * vectors of 8 (values 0-7, 8-15, 16-23, 24-31). */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void moert_block_values(const uint8_t *block, int type, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(moert_block_scale_f16c(block));
    const __m256i q = type == MOERT_QUANT_Q8_0   ? _mm256_loadu_si256((const __m256i *)(block + 2))
                      : type == MOERT_QUANT_Q3_0 ? moert_unpack_q3_0(block + 2)
                                                 : moert_unpack_q4_0(block + 2);
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    v[0] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)));
    v[1] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))));
    v[2] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)));
    v[3] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))));
}

/** The 6-bit scale and minimum of sub-block j (0-7) of a q4_k super-block, from its 12 packed bytes (GGML's
 * get_scale_min_k4 layout): for j < 4 the low 6 bits of bytes j and j + 4; for j >= 4 the nibbles of byte j + 4
 * below, and the top 2 bits of bytes j - 4 and j above. */
static inline void moert_q4_k_scale_min(const uint8_t *packed, int j, int *scale, int *min) {
    if (j < 4) {
        *scale = packed[j] & 63;
        *min = packed[j + 4] & 63;
    } else {
        *scale = (packed[j + 4] & 15) | (packed[j - 4] >> 6) << 4;
        *min = (packed[j + 4] >> 4) | (packed[j] >> 6) << 4;
    }
}

/** The 32 quants (0 ... 15) of sub-block j of a q4_k super-block as unsigned bytes, in value order: sub-blocks 2p
 * and 2p + 1 share the 32 bytes at 16 + 32p, the first in their low nibbles, the second in their high ones. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i moert_q4_k_quants(const uint8_t *block, int j) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(block + 16 + 32 * (j / 2)));
    return _mm256_and_si256(j % 2 ? _mm256_srli_epi16(q, 4) : q, _mm256_set1_epi8(15));
}

/** The 32 values of sub-block j of a q4_k super-block as float32, (d * scale_j) * q - dmin * min_j (a product, then
 * a difference: GGML's dequantize_row_q4_K), in four vectors of 8. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void moert_q4_k_values(const uint8_t *block, int j, __m256 v[4]) {
    int sc, m;
    moert_q4_k_scale_min(block + 4, j, &sc, &m);
    const __m256 d = _mm256_set1_ps(moert_block_scale_f16c(block) * (float)sc);
    const __m256 dm = _mm256_set1_ps(moert_block_scale_f16c(block + 2) * (float)m);
    const __m256i q = moert_q4_k_quants(block, j);
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++)
        v[k] = _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k]))), dm);
}

/** The mask of the first min(count, 16) lanes of a 16-float vector (count >= 1): the tail of a row. */
static inline __mmask16 moert_mask16(int64_t count) {
    return count >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << count) - 1);
}

/** 16 weights from p widened to float32 (`dtype` is a constant where this is inlined: MOERT_GEMM_F32, MOERT_HALF_F16
 * or MOERT_HALF_BF16); lanes outside `mask` are zero and their memory is not read. */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"), always_inline))
static inline __m512 moert_load16(const void *p, int dtype, __mmask16 mask) {
    if (dtype == MOERT_GEMM_F32) return _mm512_maskz_loadu_ps(mask, p);
    __m256i h = _mm256_maskz_loadu_epi16(mask, p);
    if (dtype == MOERT_HALF_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/** Transposes 8 vectors of 8 floats (or of any 32-bit lanes) in place: r[i][j] becomes r[j][i]. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void moert_transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 2; g++) {
        u[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int q = 0; q < 4; q++) {
        r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
        r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
    }
}

/** One activation block of 32 floats quantized as moert_quantize_activation does, with AVX2: its scale
 * d = max|x| / 127 (returned) and the 32 quants x / d, rounded to nearest even, in `q`. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline float moert_quantize_block_avx2(const float *x, __m256i *q) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4), d = amax / 127, id = d != 0 ? 127 / amax : 0;
    const __m256 s = _mm256_set1_ps(id);
    /* cvtps rounds to nearest even (the default rounding mode), as quant.c's plain loop with nearbyintf */
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, s)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, s)),
            i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, s)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, s));
    /* packs work within 128-bit lanes: the permutation puts the 32 bytes back in order */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    *q = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    return d;
}

/** The sum of 32 signed bytes (the quants of an activation block; exact: at most 32 * 128 in magnitude). */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline int moert_quant_sum_avx2(__m256i q) {
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
    const __m256i sums = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
    const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
    return _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1)));
}

/** Stores rows [0, rows) (rows <= 6) x columns [0, cols) (cols <= 16) of a tile of the AVX2 GEMMs, tile[r][0] holding
 * columns 0-7 of row r and tile[r][1] columns 8-15, into c (row stride ldc), or adds it to c with `accumulate`: whole
 * rows with vector stores, a partial row through memory. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void moert_store_tile6x16(const __m256 tile[6][2], int rows, int cols, float *c, int64_t ldc,
                                        int accumulate) {
    for (int r = 0; r < rows; r++) {
        float *row = c + r * ldc;
        if (cols == 16) {
            __m256 lo = tile[r][0], hi = tile[r][1];
            if (accumulate) {
                lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
                hi = _mm256_add_ps(hi, _mm256_loadu_ps(row + 8));
            }
            _mm256_storeu_ps(row, lo);
            _mm256_storeu_ps(row + 8, hi);
        } else {
            float out[16];
            _mm256_storeu_ps(out, tile[r][0]);
            _mm256_storeu_ps(out + 8, tile[r][1]);
            for (int j = 0; j < cols; j++) row[j] = accumulate ? row[j] + out[j] : out[j];
        }
    }
}

/** The sum of the 8 floats of v. */
__attribute__((target("avx2"), always_inline))
static inline float moert_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/** e^x for 8 floats, within 2 ulp of expf for x in [-87.3, 88.3] (the method of moert_exp512, with 2^n built in the
 * exponent bits); x is first clamped to that range, whose ends give the smallest normal float and about 2.4e38. */
__attribute__((target("avx2,fma"), always_inline))
static inline __m256 moert_exp256(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)), _mm256_set1_ps(-87.3365478515625f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n));
}

/** e^x for 16 floats, within 2 ulp of expf over the float range: x = n ln2 + r with |r| <= ln2 / 2, e^r from the
 * degree-6 polynomial of Cephes' expf, times 2^n. Below -87.3 the result is 0 (or subnormal), above 88.7 +inf. */
__attribute__((target("avx512f"), always_inline))
static inline __m512 moert_exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7228f)), _mm512_set1_ps(-103.9721f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

#endif
