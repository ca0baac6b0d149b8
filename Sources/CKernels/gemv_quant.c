/* gemv_quant.c: the decode GEMV on block-quantized weights (q8_0, q4_0, q3_0, q4_k; see quant.c), y = W x, with its
** rows split over the worker pool.
**
** As llama.cpp does, x is quantized once per product to 8-bit blocks (moert_quantize_activation), and each weight
** block meets its activation block in integer arithmetic: 32 products summed exactly, then scaled by the two block
** scales and accumulated in float32. With AVX2 the bytes are multiplied with vpmaddubsw and pairs summed with
** vpmaddwd: for q8_0 the weight's magnitude times the activation carrying the weight's sign; for q4_0 the unsigned
** nibbles of two blocks at once against activations laid out in pairs (moert_quantize_activation_pairs), and for
** q3_0 the same with each block's quants first unpacked to unsigned bytes (moert_q3_0_quants); for q4_k each
** sub-block's unsigned nibbles against its activation block, the sub-blocks' minimums subtracted once per super-block
** through the activation blocks' sums (moert_gemv_quant_prepare writes them after the blocks). With AVX-512 VNNI
** (the avx512 kernel) the same loops multiply and add with vpdpbusd, to the same bits. Without AVX2, plain loops.
** The loops stream one row at a time with a software prefetch ahead, as gemv.c; on the 2-core EPYC (Zen 2) they are
** bound by instructions more than by bytes (BENCHMARKS.md, "Quantized weights"). */
#include "kernels_internal.h"

#include <immintrin.h>

enum { PREFETCH_BYTES = 4096 };

/* The scale of an activation block. */
static inline float activation_scale(const uint8_t *block) {
    float d;
    memcpy(&d, block, sizeof d);
    return d;
}

/* The AVX-512 VNNI kernels run on 256-bit registers (AVX-512 VL): vpdpbusd multiplies unsigned by signed bytes and
** adds each four products into a 32-bit lane, in one instruction where AVX2 needs vpmaddubsw and vpmaddwd. The sums
** are exact either way (no 16-bit lane can saturate, below), so both kernels give the same bits. */
#define VNNI_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"

/* Eight partial sums of the 32 products w[i] * a[i] of two blocks of signed bytes (exact: each at most 4 * 128 * 127
** in magnitude). The unsigned-by-signed products take the weight's magnitude and move its sign to the activation;
** -128 (only in a hostile file) is 128 as unsigned and still right, and a pair of products stays within 16 bits. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i block_sums_avx2(__m256i w, __m256i a) {
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

__attribute__((target(VNNI_TARGET), always_inline))
static inline __m256i block_sums_vnni(__m256i w, __m256i a) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

/* y[r] for r in [r0, r1) of q8_0 weights: two blocks per step into two accumulators; SUMS is block_sums_avx2 or
** block_sums_vnni. */
#define DEFINE_ROWS_Q8_0(NAME, TARGET, SUMS)                                                                       \
__attribute__((target(TARGET)))                                                                                   \
static void NAME(const uint8_t *w, const uint8_t *xq, float *y, int64_t r0, int64_t r1, int64_t blocks) {          \
    const int64_t bb = MOERT_Q8_0_BLOCK_BYTES, ab = MOERT_QA_BLOCK_BYTES;                                          \
    for (int64_t r = r0; r < r1; r++) {                                                                            \
        const uint8_t *row = w + r * blocks * bb;                                                                  \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;                                                            \
        int64_t b = 0;                                                                                             \
        for (; b + 2 <= blocks; b += 2) {                                                                          \
            const uint8_t *w0 = row + b * bb, *a0 = xq + b * ab;                                                   \
            _mm_prefetch((const char *)w0 + PREFETCH_BYTES, _MM_HINT_T0);                                          \
            const __m256 s0 = _mm256_set1_ps(moert_block_scale_f16c(w0) * activation_scale(a0));                   \
            const __m256 s1 = _mm256_set1_ps(moert_block_scale_f16c(w0 + bb) * activation_scale(a0 + ab));         \
            const __m256i p0 = SUMS(_mm256_loadu_si256((const __m256i *)(w0 + 2)),                                 \
                                    _mm256_loadu_si256((const __m256i *)(a0 + 4)));                                \
            const __m256i p1 = SUMS(_mm256_loadu_si256((const __m256i *)(w0 + bb + 2)),                            \
                                    _mm256_loadu_si256((const __m256i *)(a0 + ab + 4)));                           \
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), s0, acc0);                                              \
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), s1, acc1);                                              \
        }                                                                                                          \
        for (; b < blocks; b++) {                                                                                  \
            const uint8_t *w0 = row + b * bb, *a0 = xq + b * ab;                                                   \
            const __m256 s0 = _mm256_set1_ps(moert_block_scale_f16c(w0) * activation_scale(a0));                   \
            const __m256i p0 = SUMS(_mm256_loadu_si256((const __m256i *)(w0 + 2)),                                 \
                                    _mm256_loadu_si256((const __m256i *)(a0 + 4)));                                \
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), s0, acc0);                                              \
        }                                                                                                          \
        y[r] = moert_hsum256(_mm256_add_ps(acc0, acc1));                                                           \
    }                                                                                                              \
}

DEFINE_ROWS_Q8_0(rows_avx2_q8_0, "avx2,fma,f16c", block_sums_avx2)
DEFINE_ROWS_Q8_0(rows_vnni_q8_0, VNNI_TARGET, block_sums_vnni)

/* The 32-bit sums of a pair of blocks of unsigned quants (`lo`: quants 0-15 of block 0, then of block 1; `hi`:
** quants 16-31 of each) against the matching pair of activation blocks at a (moert_quantize_activation_pairs): lanes
** 0-3 hold block 0's, lanes 4-7 block 1's. A 16-bit lane holds at most 2 * 2 * 15 * 127. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i pair_sums_avx2(__m256i lo, __m256i hi, const uint8_t *a) {
    const __m256i sums = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)a)),
                                          _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a + 32))));
    return _mm256_madd_epi16(sums, _mm256_set1_epi16(1));
}

__attribute__((target(VNNI_TARGET), always_inline))
static inline __m256i pair_sums_vnni(__m256i lo, __m256i hi, const uint8_t *a) {
    const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, _mm256_loadu_si256((const __m256i *)a));
    return _mm256_dpbusd_epi32(sums, hi, _mm256_loadu_si256((const __m256i *)(a + 32)));
}

/* acc + a pair of blocks' products from their 32-bit sums (pair_sums_*), for quants stored plus `offset` (8 for q4_0,
** 4 for q3_0): `dw` the blocks' scales [d0 x4, d1 x4]; the activation pair's last 32 bytes hold in each of a block's
** four lanes 2 * the sum of its quants (8 * the sum in all): offset / 8 of each lane removes the offset. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 pair_dot(__m256i sums, __m256 dw, const uint8_t *a, int offset, __m256 acc) {
    const __m256 products = _mm256_cvtepi32_ps(sums);
    const __m256 sum2 = _mm256_loadu_ps((const float *)(a + 96));
    const __m256 dot = offset == 8 ? _mm256_sub_ps(products, sum2)
                                   : _mm256_fnmadd_ps(_mm256_set1_ps(offset / 8.0f), sum2, products);
    return _mm256_fmadd_ps(dot, _mm256_mul_ps(dw, _mm256_loadu_ps((const float *)(a + 64))), acc);
}

/* The scales of blocks b0 and b0 + bb as [d0 x4, d1 x4]. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 pair_scales(const uint8_t *b0, int64_t bb) {
    uint16_t h0, h1;
    memcpy(&h0, b0, 2);
    memcpy(&h1, b0 + bb, 2);
    const __m128 both = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | (uint32_t)h1 << 16)));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(both), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
}

/* The unsigned quants of the q4_0 or q3_0 (`type`) blocks b0 and b0 + bb, as pair_sums_* take them: `lo` quants 0-15
** of block 0, then of block 1; `hi` quants 16-31 of each. Without `both`, block 0 alone (block 1's lanes zero). */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void pair_quants(const uint8_t *b0, int64_t bb, int type, int both, __m256i *lo, __m256i *hi) {
    if (type == MOERT_QUANT_Q4_0) { /* 32 bytes of nibbles: the low ones are quants 0-15, the high ones 16-31 */
        const __m128i first = _mm_loadu_si128((const __m128i *)(b0 + 2));
        const __m256i q = both ? _mm256_inserti128_si256(_mm256_castsi128_si256(first),
                                                         _mm_loadu_si128((const __m128i *)(b0 + bb + 2)), 1)
                               : _mm256_zextsi128_si256(first);
        const __m256i low = _mm256_set1_epi8(15);
        *lo = _mm256_and_si256(q, low);
        *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
        return;
    }
    const __m256i u0 = moert_q3_0_quants(b0 + 2), u1 = both ? moert_q3_0_quants(b0 + bb + 2) : _mm256_setzero_si256();
    *lo = _mm256_permute2x128_si256(u0, u1, 0x20);
    *hi = _mm256_permute2x128_si256(u0, u1, 0x31);
}

/* y[r] for r in [r0, r1) of q4_0 or q3_0 weights (TYPE), against activations laid out in pairs of blocks
** (moert_quantize_activation_pairs); SUMS is pair_sums_avx2 or pair_sums_vnni. Two blocks per step: their quants
** unsigned (q4_0's nibbles as stored, q3_0's unpacked), quants 0-15 of each block in one register and 16-31 in
** another, multiplied by the matching activation bytes; the activation's quant sum (spread over the four lanes of
** its block) removes the quants' offset. Fewer instructions per block than unpacking each block to signed bytes: the
** loop is bound by them, not by memory. */
#define DEFINE_ROWS_PAIRS(NAME, TARGET, TYPE, SUMS)                                                                \
__attribute__((target(TARGET)))                                                                                   \
static void NAME(const uint8_t *w, const uint8_t *xq, float *y, int64_t r0, int64_t r1, int64_t blocks) {          \
    const int64_t bb = TYPE == MOERT_QUANT_Q3_0 ? MOERT_Q3_0_BLOCK_BYTES : MOERT_Q4_0_BLOCK_BYTES, pairs = blocks / 2; \
    const int offset = TYPE == MOERT_QUANT_Q3_0 ? 4 : 8;                                                           \
    for (int64_t r = r0; r < r1; r++) {                                                                            \
        const uint8_t *row = w + r * blocks * bb;                                                                  \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;                                                            \
        __m256i lo, hi;                                                                                            \
        for (int64_t p = 0; p < pairs; p++) {                                                                      \
            const uint8_t *b0 = row + 2 * p * bb, *a = xq + p * MOERT_QA_PAIR_BYTES;                               \
            _mm_prefetch((const char *)b0 + PREFETCH_BYTES, _MM_HINT_T0);                                          \
            pair_quants(b0, bb, TYPE, 1, &lo, &hi);                                                                \
            if (p % 2 == 0) acc0 = pair_dot(SUMS(lo, hi, a), pair_scales(b0, bb), a, offset, acc0);                \
            else acc1 = pair_dot(SUMS(lo, hi, a), pair_scales(b0, bb), a, offset, acc1);                           \
        }                                                                                                          \
        if (blocks % 2) { /* the last block, with the zero half of its activation pair */                          \
            const uint8_t *b0 = row + 2 * pairs * bb, *a = xq + pairs * MOERT_QA_PAIR_BYTES;                       \
            pair_quants(b0, bb, TYPE, 0, &lo, &hi);                                                                \
            acc0 = pair_dot(SUMS(lo, hi, a), _mm256_set1_ps(moert_block_scale_f16c(b0)), a, offset, acc0);         \
        }                                                                                                          \
        y[r] = moert_hsum256(_mm256_add_ps(acc0, acc1));                                                           \
    }                                                                                                              \
}

DEFINE_ROWS_PAIRS(rows_avx2_q4_0, "avx2,fma,f16c", MOERT_QUANT_Q4_0, pair_sums_avx2)
DEFINE_ROWS_PAIRS(rows_avx2_q3_0, "avx2,fma,f16c", MOERT_QUANT_Q3_0, pair_sums_avx2)
DEFINE_ROWS_PAIRS(rows_vnni_q4_0, VNNI_TARGET, MOERT_QUANT_Q4_0, pair_sums_vnni)
DEFINE_ROWS_PAIRS(rows_vnni_q3_0, VNNI_TARGET, MOERT_QUANT_Q3_0, pair_sums_vnni)

/* ---- q4_k ---- */

/* What q4_k's products read besides the `blocks` activation blocks at xq, after them: per block its scale times the
** sum of its quants, then per block its scale again, each as consecutive floats (the eight of a super-block load as
** one vector). 44 bytes per block in all, within moert_quant_activation_bytes. */
static inline const float *activation_sums(const uint8_t *xq, int64_t blocks) {
    return (const float *)(xq + blocks * MOERT_QA_BLOCK_BYTES);
}

static void write_activation_sums(uint8_t *xq, int64_t blocks) {
    float *sums = (float *)(xq + blocks * MOERT_QA_BLOCK_BYTES), *scales = sums + blocks;
    for (int64_t b = 0; b < blocks; b++) {
        const int8_t *q = (const int8_t *)(xq + b * MOERT_QA_BLOCK_BYTES + 4);
        int32_t sum = 0;
        for (int i = 0; i < MOERT_QUANT_BLOCK; i++) sum += q[i];
        scales[b] = activation_scale(xq + b * MOERT_QA_BLOCK_BYTES);
        sums[b] = scales[b] * (float)sum;
    }
}

/* The eight 6-bit scales (*scales) and minimums (*mins) of a q4_k super-block's 12 packed bytes, one per byte in
** sub-block order (moert_q4_k_scale_min for all eight at once): the low 6 bits of bytes 0-3 (scales) and 4-7
** (mins) for sub-blocks 0-3; for 4-7 the nibbles of bytes 8-11 and, above them, the top 2 bits of bytes 0-3 (scales)
** and 4-7 (mins). */
static inline void q4_k_unpack(const uint8_t *packed, uint64_t *scales, uint64_t *mins) {
    uint32_t w[3];
    memcpy(w, packed, sizeof w);
    const uint32_t low6 = 0x3f3f3f3f, nibble = 0x0f0f0f0f, top2 = 0x03030303;
    *scales = (w[0] & low6) | (uint64_t)((w[2] & nibble) | ((w[0] >> 6) & top2) << 4) << 32;
    *mins = (w[1] & low6) | (uint64_t)(((w[2] >> 4) & nibble) | ((w[1] >> 6) & top2) << 4) << 32;
}

/* Fills d_sub[j] = d * scale_j for the eight sub-blocks of a q4_k super-block; returns dmin times the sum over them of
** min_j times the activation block's scaled sum (`sums`, one per sub-block): what the row subtracts. */
static inline float q4_k_scales(const uint8_t *block, const float *sums, float d_sub[8]) {
    const float d = moert_block_scale(block), dmin = moert_block_scale(block + 2);
    float mins = 0;
    for (int j = 0; j < 8; j++) {
        int sc, m;
        moert_q4_k_scale_min(block + 4, j, &sc, &m);
        d_sub[j] = d * (float)sc;
        mins += (float)m * sums[j];
    }
    return dmin * mins;
}

/* Eight bytes as eight floats. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 bytes_to_floats(uint64_t bytes) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)bytes)));
}

/* The 32-bit sums of each four products of 32 unsigned quants u (at most 15) and 32 signed activation bytes a. With
** AVX2 a pair of products stays within 2 * 15 * 128 in a 16-bit lane; with VNNI vpdpbusd sums them in 32 bits: the
** same sums. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i unsigned_sums_avx2(__m256i u, __m256i a) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1));
}

__attribute__((target(VNNI_TARGET), always_inline))
static inline __m256i unsigned_sums_vnni(__m256i u, __m256i a) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, a);
}

/* y[r] for r in [r0, r1) of q4_k weights (`blocks` super-blocks per row) against plain activation blocks with their
** scales and sums: per super-block the eight sub-blocks' scale factors d * scale_j * (activation scale) in one vector
** and their minimums, dmin * min_j * (activation sum), accumulated in another; per pair of sub-blocks, 32 bytes of
** nibbles split into the two sub-blocks' unsigned quants, each multiplied by its activation block and summed into
** 32-bit lanes (SUMS: unsigned_sums_avx2 or unsigned_sums_vnni), then scaled in float32. */
#define DEFINE_ROWS_Q4_K(NAME, TARGET, SUMS)                                                                       \
__attribute__((target(TARGET)))                                                                                   \
static void NAME(const uint8_t *w, const uint8_t *xq, float *y, int64_t r0, int64_t r1, int64_t blocks) {          \
    const int64_t ab = MOERT_QA_BLOCK_BYTES;                                                                       \
    const float *sums = activation_sums(xq, blocks * 8), *scales = sums + blocks * 8;                              \
    const __m256i low = _mm256_set1_epi8(15);                                                                      \
    for (int64_t r = r0; r < r1; r++) {                                                                            \
        const uint8_t *row = w + r * blocks * MOERT_Q4_K_BLOCK_BYTES;                                              \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, mins = acc0;                                               \
        for (int64_t b = 0; b < blocks; b++) {                                                                     \
            const uint8_t *block = row + b * MOERT_Q4_K_BLOCK_BYTES, *a = xq + b * 8 * ab;                         \
            for (int line = 0; line < MOERT_Q4_K_BLOCK_BYTES; line += 64)                                          \
                _mm_prefetch((const char *)block + PREFETCH_BYTES + line, _MM_HINT_T0);                            \
            uint64_t sc, mn;                                                                                       \
            q4_k_unpack(block + 4, &sc, &mn);                                                                      \
            const __m256 factors = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(moert_block_scale_f16c(block)),      \
                                                               bytes_to_floats(sc)),                               \
                                                 _mm256_loadu_ps(scales + 8 * b));                                 \
            const __m256 dmin = _mm256_set1_ps(moert_block_scale_f16c(block + 2));                                 \
            mins = _mm256_fmadd_ps(_mm256_mul_ps(dmin, bytes_to_floats(mn)), _mm256_loadu_ps(sums + 8 * b), mins); \
            for (int p = 0; p < 4; p++) {                                                                          \
                const uint8_t *a0 = a + 2 * p * ab, *a1 = a0 + ab;                                                 \
                const __m256i q = _mm256_loadu_si256((const __m256i *)(block + 16 + 32 * p));                      \
                const __m256i s0 = SUMS(_mm256_and_si256(q, low), _mm256_loadu_si256((const __m256i *)(a0 + 4)));  \
                const __m256i s1 = SUMS(_mm256_and_si256(_mm256_srli_epi16(q, 4), low),                            \
                                        _mm256_loadu_si256((const __m256i *)(a1 + 4)));                            \
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0),                                                     \
                                       _mm256_permutevar8x32_ps(factors, _mm256_set1_epi32(2 * p)), acc0);         \
                acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1),                                                     \
                                       _mm256_permutevar8x32_ps(factors, _mm256_set1_epi32(2 * p + 1)), acc1);     \
            }                                                                                                      \
        }                                                                                                          \
        y[r] = moert_hsum256(_mm256_add_ps(acc0, acc1)) - moert_hsum256(mins);                                     \
    }                                                                                                              \
}

DEFINE_ROWS_Q4_K(rows_avx2_q4_k, "avx2,fma,f16c", unsigned_sums_avx2)
DEFINE_ROWS_Q4_K(rows_vnni_q4_k, VNNI_TARGET, unsigned_sums_vnni)

/* rows_avx2_q4_k one value at a time. */
static void rows_scalar_q4_k(const uint8_t *w, const uint8_t *xq, float *y, int64_t r0, int64_t r1, int64_t blocks) {
    const int64_t ab = MOERT_QA_BLOCK_BYTES;
    const float *sums = activation_sums(xq, blocks * 8);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * blocks * MOERT_Q4_K_BLOCK_BYTES;
        float acc = 0, mins = 0;
        for (int64_t b = 0; b < blocks; b++) {
            const uint8_t *block = row + b * MOERT_Q4_K_BLOCK_BYTES;
            float d_sub[8];
            mins += q4_k_scales(block, sums + 8 * b, d_sub);
            for (int j = 0; j < 8; j++) {
                const uint8_t *a = xq + (b * 8 + j) * ab, *qs = block + 16 + 32 * (j / 2);
                int32_t sum = 0;
                for (int i = 0; i < 32; i++) sum += (j % 2 ? qs[i] >> 4 : qs[i] & 15) * (int8_t)a[4 + i];
                acc += (float)sum * (d_sub[j] * activation_scale(a));
            }
        }
        y[r] = acc - mins;
    }
}

/* The portable rows: the same sums, one value at a time. */
static void rows_scalar(const uint8_t *w, int type, const uint8_t *xq, float *y, int64_t r0, int64_t r1,
                        int64_t blocks) {
    if (type == MOERT_QUANT_Q4_K) {
        rows_scalar_q4_k(w, xq, y, r0, r1, blocks);
        return;
    }
    const int64_t bb = moert_quant_block_bytes(type), ab = MOERT_QA_BLOCK_BYTES;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * blocks * bb;
        float acc = 0;
        for (int64_t b = 0; b < blocks; b++) {
            const uint8_t *wb = row + b * bb, *ab8 = xq + b * ab + 4;
            int32_t sum = 0;
            for (int i = 0; i < MOERT_QUANT_BLOCK; i++) sum += moert_block_quant(wb, type, i) * (int8_t)ab8[i];
            acc += (float)sum * (moert_block_scale(wb) * activation_scale(xq + b * ab));
        }
        y[r] = acc;
    }
}

/* ---- The product on the pool ---- */

/* The vector rows of one type and kernel: y[r] for r in [r0, r1). */
typedef void (*vector_rows)(const uint8_t *w, const uint8_t *xq, float *y, int64_t r0, int64_t r1, int64_t blocks);

/* The vector rows of `type` on `kernel` (avx2 or avx512), or NULL for the portable rows. */
static vector_rows rows_of(int kernel, int type) {
    if (kernel == MOERT_KERNEL_PORTABLE) return NULL;
    const int vnni = kernel == MOERT_KERNEL_AVX512;
    return type == MOERT_QUANT_Q8_0   ? (vnni ? rows_vnni_q8_0 : rows_avx2_q8_0)
         : type == MOERT_QUANT_Q4_K ? (vnni ? rows_vnni_q4_k : rows_avx2_q4_k)
         : type == MOERT_QUANT_Q3_0 ? (vnni ? rows_vnni_q3_0 : rows_avx2_q3_0)
                                    : (vnni ? rows_vnni_q4_0 : rows_avx2_q4_0);
}

void moert_gemv_quant_prepare(int kernel, int type, const float *x, void *xq, int64_t cols) {
    const int portable = kernel == MOERT_KERNEL_PORTABLE;
    if (!portable && type != MOERT_QUANT_Q8_0 && type != MOERT_QUANT_Q4_K) {
        moert_quantize_activation_pairs(x, xq, cols);
        return;
    }
    moert_quantize_activation_kernel(x, xq, cols, portable);
    if (type == MOERT_QUANT_Q4_K) write_activation_sums(xq, cols / MOERT_QUANT_BLOCK);
}

void moert_gemv_quant_rows(int kernel, int type, const void *w, const void *xq, float *y, int64_t r0, int64_t r1,
                           int64_t cols) {
    const vector_rows vector = rows_of(kernel, type);
    const int64_t blocks = cols / moert_quant_block_values(type);
    if (vector) vector(w, xq, y, r0, r1, blocks);
    else rows_scalar(w, type, xq, y, r0, r1, blocks);
}

typedef struct gemv_quant_task {
    const uint8_t *w;
    int type;
    const uint8_t *xq;
    float *y;
    int64_t rows, blocks;
    vector_rows vector; /* NULL: the portable rows */
} gemv_quant_task;

/* Part `part` of `parts`: a contiguous range of rows. */
static void gemv_quant_part(void *ctx, int part, int parts) {
    const gemv_quant_task *t = ctx;
    int64_t r0, r1;
    moert_part_rows(t->rows, part, parts, &r0, &r1);
    if (r0 >= r1) return;
    if (t->vector) t->vector(t->w, t->xq, t->y, r0, r1, t->blocks);
    else rows_scalar(t->w, t->type, t->xq, t->y, r0, r1, t->blocks);
}

/* Quantizes x into xq, then the rows on the pool (moert_gemv_quant_parts of them). */
static void run(const void *w, int type, const float *x, void *xq, float *y, int64_t rows, int64_t cols,
                int kernel) {
    moert_gemv_quant_prepare(kernel, type, x, xq, cols);
    gemv_quant_task t = {w, type, xq, y, rows, cols / moert_quant_block_values(type), rows_of(kernel, type)};
    moert_parallel(gemv_quant_part, &t, moert_gemv_quant_parts(rows, cols));
}

/* The product of weights of `type`. */
static int gemv_quant_product(int type) {
    return type == MOERT_QUANT_Q8_0   ? MOERT_PRODUCT_GEMV_Q8_0
         : type == MOERT_QUANT_Q3_0 ? MOERT_PRODUCT_GEMV_Q3_0
         : type == MOERT_QUANT_Q4_K ? MOERT_PRODUCT_GEMV_Q4_K
                                    : MOERT_PRODUCT_GEMV_Q4_0;
}

void moert_gemv_quant(const void *w, int type, const float *x, void *xq, float *y, int64_t rows, int64_t cols) {
    moert_gemv_quant_kernel(moert_kernel_chosen(gemv_quant_product(type)), w, type, x, xq, y, rows, cols);
}

int moert_gemv_quant_resolve(int kernel, int type) {
    const int simd = (kernel == MOERT_KERNEL_AVX2 || kernel == MOERT_KERNEL_AVX512) &&
                     moert_kernel_available(gemv_quant_product(type), kernel);
    return simd ? kernel : MOERT_KERNEL_PORTABLE;
}

void moert_gemv_quant_kernel(int kernel, const void *w, int type, const float *x, void *xq, float *y, int64_t rows,
                             int64_t cols) {
    run(w, type, x, xq, y, rows, cols, moert_gemv_quant_resolve(kernel, type));
}
