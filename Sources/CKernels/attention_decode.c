/* attention_decode.c: attention of one new position (decode) against the KV cache, in every cache element type.
**
** Decode reads the whole cache once per token, so at long contexts it costs as much as the weights: the kernel reads
** each cached row once. Each value read costs two FMAs per query head that shares it (and, for f16, a conversion
** that competes with them), so the arithmetic is close to the memory's pace (BENCHMARKS.md, "Decode at depth").
**  - The positions are cut into chunks, one worker thread per run of chunks; each chunk reads whole rows (all key/
**    value heads), so that threads never share a cache line, and keeps its own softmax maximum and sum; the chunks
**    are merged at the end (flash decoding).
**  - The AVX2 path runs a chunk in blocks of 64 positions with an online softmax: a block's scores, its
**    exponentials against the running maximum (rescaling what came before when it grows), then its values; keys
**    and values are read side by side and prefetched ahead by software, into the first-level cache (avx2) or the
**    second (avx2l2; a q8_0 cache keeps the first).
**  - Keys: 4 positions at a time, each row widened once for two query heads of the group that shares it (8
**    independent FMA chains; one horizontal reduction per 4 products).
**  - Values: in blocks of 32 positions, 32 output dimensions of two query heads accumulate in registers while the
**    block's rows are read once.
** Without AVX2 the same arithmetic runs in plain loops, each chunk in three passes (scores, softmax, values).
** A sliding-window layer's ring buffer wraps: a chunk that spans its end runs as two runs of rows, so that a full
** layer's loops are the same as without windows. An attention sink is merged as one more chunk.
** Multi-head latent attention's absorbed form is the case of one key/value head whose value is the first `rank`
** values of the key row itself (moert_latent_attention_decode). */
#include "kernels_internal.h"

#include <immintrin.h>
#include <math.h>

/* Positions per chunk at least, and the most chunks (which bounds the merge scratch). Keys are read PREFETCH_ROWS
** rows ahead of their use and values one VALUE_BLOCK ahead, by software prefetch of the same columns: the hardware
** prefetcher alone keeps too few lines in flight for the strided walk over a block (measured on a 2-core EPYC, Zen
** 3: 12.5 -> 15.2 GB/s through decode attention over an f16 cache at depth 4000, medians of 5 rounds). */
enum { MIN_CHUNK = 64, MAX_CHUNKS = 64, VALUE_BLOCK = 32, FUSED_BLOCK = 64, PREFETCH_ROWS = 16 };

typedef struct decode_job {
    const float *q;
    const uint8_t *keys, *values;
    int type, n_heads, n_kv_heads, head_dim, group;
    int value_dim;  /* values are the first value_dim (<= head_dim) of each value head's row */
    int64_t total, row_bytes, head_bytes;
    int64_t first, ring;  /* position j is row (first + j) % ring */
    const float *sinks;   /* [n_heads] or NULL */
    int chunks, fast, l2;  /* fast: the AVX2 path; l2: with its software prefetch into the second-level cache */
    float scale;
    float *scores;   /* [n_heads][total]: scores, then their exponentials */
    float *partial;  /* [chunks][n_heads][value_dim + 2]: unnormalised output, then the chunk's maximum and sum */
} decode_job;

/* ---- Scalar path ---- */

/* Element i of a head's row of KV type `type`. */
static float kv_value(const uint8_t *head, int type, int i) {
    switch (type) {
    case MOERT_KV_F32: {
        float v;
        memcpy(&v, head + (int64_t)i * 4, 4);
        return v;
    }
    case MOERT_KV_F16:
    case MOERT_KV_BF16: {
        uint16_t h;
        memcpy(&h, head + (int64_t)i * 2, 2);
        return moert_widen_half(h, type);
    }
    default: {
        const uint8_t *block = head + (int64_t)(i / MOERT_Q8_0_BLOCK) * MOERT_Q8_0_BLOCK_BYTES;
        return moert_block_scale(block) * (float)(int8_t)block[2 + i % MOERT_Q8_0_BLOCK];
    }
    }
}

/* Scores of positions [p0, p1) for every head; position j is row j + shift. */
static void scores_scalar(const decode_job *a, int64_t p0, int64_t p1, int64_t shift) {
    for (int h = 0; h < a->n_heads; h++) {
        const float *qh = a->q + (int64_t)h * a->head_dim;
        const int64_t g = h / a->group;
        for (int64_t j = p0; j < p1; j++) {
            const uint8_t *k = a->keys + (j + shift) * a->row_bytes + g * a->head_bytes;
            float s = 0;
            for (int i = 0; i < a->head_dim; i++) s += qh[i] * kv_value(k, a->type, i);
            a->scores[h * a->total + j] = s * a->scale;
        }
    }
}

/* o[h] += sum over [p0, p1) of p[h, j] * values[j + shift, g] for every head. */
static void values_scalar(const decode_job *a, int64_t p0, int64_t p1, int64_t shift, float *o) {
    for (int h = 0; h < a->n_heads; h++) {
        const int64_t g = h / a->group;
        float *oh = o + (int64_t)h * (a->value_dim + 2);
        for (int64_t j = p0; j < p1; j++) {
            const uint8_t *v = a->values + (j + shift) * a->row_bytes + g * a->head_bytes;
            const float p = a->scores[h * a->total + j];
            for (int i = 0; i < a->value_dim; i++) oh[i] += p * kv_value(v, a->type, i);
        }
    }
}

/* ---- AVX2 path ---- */

/* 8 values of a head's row from element i (a multiple of 8), without a q8_0 block's scale. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 load8_unscaled(const uint8_t *head, int type, int i) {
    switch (type) {
    case MOERT_KV_F32: return _mm256_loadu_ps((const float *)head + i);
    case MOERT_KV_F16:
    case MOERT_KV_BF16: return moert_load8((const uint16_t *)head + i, type);
    default:
        return moert_load8_q8(head + (int64_t)(i / MOERT_Q8_0_BLOCK) * MOERT_Q8_0_BLOCK_BYTES + 2 + i % MOERT_Q8_0_BLOCK);
    }
}

/* The scale of the q8_0 block holding element i of a head's row. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline float q8_scale(const uint8_t *head, int i) {
    return moert_block_scale_f16c(head + (int64_t)(i / MOERT_Q8_0_BLOCK) * MOERT_Q8_0_BLOCK_BYTES);
}

/* q . k over head_dim (a multiple of 8): one row. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 dot_accumulate(const float *q, const uint8_t *k, int type, int head_dim) {
    __m256 acc = _mm256_setzero_ps();
    if (type == MOERT_KV_Q8_0) {
        for (int i = 0; i < head_dim; i += MOERT_Q8_0_BLOCK) {
            __m256 t = _mm256_mul_ps(_mm256_loadu_ps(q + i), load8_unscaled(k, type, i));
            for (int u = 8; u < MOERT_Q8_0_BLOCK; u += 8) t = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + u), load8_unscaled(k, type, i + u), t);
            acc = _mm256_fmadd_ps(t, _mm256_set1_ps(q8_scale(k, i)), acc);
        }
        return acc;
    }
    for (int i = 0; i < head_dim; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8_unscaled(k, type, i), acc);
    return acc;
}

/* q_h . k for 4 consecutive rows from k (row_bytes apart) and the query heads h0 and (when `pair`) h0 + 1 of q (at
** q0 and q0 + head_dim), their partial sums in acc[head][row]. Each row's values are widened once for both heads,
** and the 8 chains of FMAs are independent, so that their latency overlaps. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void dot_rows4(const float *q0, int pair, const uint8_t *k, int64_t row_bytes, int type, int head_dim,
                             __m256 acc[2][4]) {
    const float *q1 = q0 + head_dim;
    for (int r = 0; r < 4; r++) acc[0][r] = acc[1][r] = _mm256_setzero_ps();
    if (type == MOERT_KV_Q8_0) {
        for (int i = 0; i < head_dim; i += MOERT_Q8_0_BLOCK) {
            for (int r = 0; r < 4; r++) {
                const uint8_t *row = k + r * row_bytes;
                const __m256 x0 = load8_unscaled(row, type, i), x1 = load8_unscaled(row, type, i + 8);
                const __m256 x2 = load8_unscaled(row, type, i + 16), x3 = load8_unscaled(row, type, i + 24);
                const __m256 d = _mm256_set1_ps(q8_scale(row, i));
                __m256 t = _mm256_mul_ps(_mm256_loadu_ps(q0 + i), x0);
                t = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + i + 8), x1, t);
                t = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + i + 16), x2, t);
                t = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + i + 24), x3, t);
                acc[0][r] = _mm256_fmadd_ps(t, d, acc[0][r]);
                if (pair) {
                    __m256 u = _mm256_mul_ps(_mm256_loadu_ps(q1 + i), x0);
                    u = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + i + 8), x1, u);
                    u = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + i + 16), x2, u);
                    u = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + i + 24), x3, u);
                    acc[1][r] = _mm256_fmadd_ps(u, d, acc[1][r]);
                }
            }
        }
        return;
    }
    for (int i = 0; i < head_dim; i += 8) {
        const __m256 qa = _mm256_loadu_ps(q0 + i), qb = pair ? _mm256_loadu_ps(q1 + i) : qa;
        for (int r = 0; r < 4; r++) {
            const __m256 x = load8_unscaled(k + r * row_bytes, type, i);
            acc[0][r] = _mm256_fmadd_ps(qa, x, acc[0][r]);
            if (pair) acc[1][r] = _mm256_fmadd_ps(qb, x, acc[1][r]);
        }
    }
}

/* The sums of 4 vectors: lane r holds the sum of v[r]'s lanes. */
__attribute__((target("avx2"), always_inline))
static inline __m128 reduce4(const __m256 v[4]) {
    const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* Bytes of the first n values of a head's row of KV type `type` (n a multiple of 8; for q8_0 whole blocks, or part
** of the last one). */
static inline int64_t kv_bytes(int type, int n) {
    switch (type) {
    case MOERT_KV_F32: return 4 * (int64_t)n;
    case MOERT_KV_Q8_0: return (int64_t)(n + MOERT_Q8_0_BLOCK - 1) / MOERT_Q8_0_BLOCK * MOERT_Q8_0_BLOCK_BYTES;
    default: return 2 * (int64_t)n;
    }
}

/* A software prefetch of p's cache line into the first-level cache, or (`l2`) the second. */
__attribute__((always_inline))
static inline void prefetch_line(const uint8_t *p, int l2) {
    if (l2) _mm_prefetch((const char *)p, _MM_HINT_T1);
    else _mm_prefetch((const char *)p, _MM_HINT_T0);
}

/* Asks for the `bytes` bytes at p: a software prefetch of each of their cache lines, and of the last byte's line when
** rows of `type` need not start on a line (q8_0 blocks of 34 bytes), into the first-level cache or (`l2`) the second.
** Rows past the cache's end are harmless: a prefetch never faults. On a Zen 4 EPYC prefetches into the first level
** stalled the loop with the first level's misses in flight (a thread read an f16 cache at 9-13 GB/s, 23 into the
** second level; 26 GB/s for a plain sequential read). */
__attribute__((always_inline))
static inline void prefetch_span(const uint8_t *p, int type, int64_t bytes, int l2) {
    for (int64_t b = 0; b < bytes; b += 64) prefetch_line(p + b, l2);
    if (type == MOERT_KV_Q8_0) prefetch_line(p + bytes - 1, l2);
}

/* Scores of heads h and (when `pair`) h + 1, which share the key/value head of k, for 4 rows from k, stored at
** scores[h][j ..< j + 4] (and scores[h + 1][...]). Meanwhile the key rows PREFETCH_ROWS ahead are requested and,
** except for q8_0, the value rows FUSED_BLOCK ahead (the next block's, in the keys' sequential order: the value
** tiles' own prefetch, one VALUE_BLOCK ahead, then finds them in L2). q8_0's attention is bound by its arithmetic,
** where the extra requests cost more than they bring; values that are the keys' own rows (latent attention) are
** read by the key pass. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void scores_block4(const decode_job *a, int type, int l2, int pair, const uint8_t *k, int h,
                                 int64_t j) {
    const uint8_t *v = a->values + (k - a->keys);
    for (int r = 0; r < 4; r++) {
        prefetch_span(k + (PREFETCH_ROWS + r) * a->row_bytes, type, a->head_bytes, l2);
        if (type != MOERT_KV_Q8_0 && v != k) prefetch_span(v + (FUSED_BLOCK + r) * a->row_bytes, type, a->head_bytes, l2);
    }
    __m256 acc[2][4];
    dot_rows4(a->q + (int64_t)h * a->head_dim, pair, k, a->row_bytes, type, a->head_dim, acc);
    const __m128 scale = _mm_set1_ps(a->scale);
    float *s = a->scores + h * a->total + j;
    _mm_storeu_ps(s, _mm_mul_ps(reduce4(acc[0]), scale));
    if (pair) _mm_storeu_ps(s + a->total, _mm_mul_ps(reduce4(acc[1]), scale));
}

/* Scores of positions [p0, p1) for every head (position j is row j + shift): per key/value head, 4 rows at a time,
** each widened once for two query heads of its group. The heads are walked by group, pairs first, so that neither a
** division nor a test of the pairing runs per row. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void scores_avx2_type(const decode_job *a, int type, int l2, int64_t p0, int64_t p1, int64_t shift) {
    int64_t j = p0;
    for (; j + 4 <= p1; j += 4) {
        const uint8_t *rows = a->keys + (j + shift) * a->row_bytes;
        for (int g = 0, h = 0; g < a->n_kv_heads; g++) {
            const uint8_t *k = rows + g * a->head_bytes;
            const int end = h + a->group;
            for (; h + 1 < end; h += 2) scores_block4(a, type, l2, 1, k, h, j);
            if (h < end) scores_block4(a, type, l2, 0, k, h++, j);
        }
    }
    for (; j < p1; j++) {
        for (int h = 0; h < a->n_heads; h++) {
            const uint8_t *k = a->keys + (j + shift) * a->row_bytes + (int64_t)(h / a->group) * a->head_bytes;
            a->scores[h * a->total + j] = moert_hsum256(dot_accumulate(a->q + (int64_t)h * a->head_dim, k, type, a->head_dim)) * a->scale;
        }
    }
}

/* o[h][i0 .. i0 + 8 * VECTORS) += sum over [p0, p1) of p[h, j] * values[j, g][...], for heads h0 and (when `pair`)
** h0 + 1, which share key/value head g: the accumulators stay in registers while the rows are read once, and the
** same columns one VALUE_BLOCK ahead are requested. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void values_tile(const decode_job *a, int type, int l2, int pair, int vectors, int64_t p0, int64_t p1,
                               int64_t shift, int g, int h0, int i0, float *o) {
    float *o0 = o + (int64_t)h0 * (a->value_dim + 2) + i0, *o1 = o0 + (a->value_dim + 2);
    const float *s0 = a->scores + h0 * a->total, *s1 = s0 + a->total;
    const int64_t row_bytes = a->row_bytes, ahead = VALUE_BLOCK * row_bytes + kv_bytes(type, i0);
    const uint8_t *row = a->values + (p0 + shift) * row_bytes + (int64_t)g * a->head_bytes;
    __m256 acc0[4], acc1[4];
    for (int u = 0; u < vectors; u++) {
        acc0[u] = _mm256_loadu_ps(o0 + 8 * u);
        acc1[u] = pair ? _mm256_loadu_ps(o1 + 8 * u) : _mm256_setzero_ps();
    }
    for (int64_t j = p0; j < p1; j++, row += row_bytes) {
        prefetch_span(row + ahead, type, kv_bytes(type, 8 * vectors), l2);
        float w0 = s0[j], w1 = pair ? s1[j] : 0;
        if (type == MOERT_KV_Q8_0) {
            const float d = q8_scale(row, i0);
            w0 *= d;
            w1 *= d;
        }
        const __m256 p = _mm256_set1_ps(w0), p1v = _mm256_set1_ps(w1);
        for (int u = 0; u < vectors; u++) {
            const __m256 x = load8_unscaled(row, type, i0 + 8 * u);
            acc0[u] = _mm256_fmadd_ps(p, x, acc0[u]);
            if (pair) acc1[u] = _mm256_fmadd_ps(p1v, x, acc1[u]);
        }
    }
    for (int u = 0; u < vectors; u++) {
        _mm256_storeu_ps(o0 + 8 * u, acc0[u]);
        if (pair) _mm256_storeu_ps(o1 + 8 * u, acc1[u]);
    }
}

/* values_tile for heads h and (when `pair`) h + 1 over every 32-dimension tile of value_dim (one q8_0 block each). */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void values_heads(const decode_job *a, int type, int l2, int pair, int64_t p0, int64_t p1, int64_t shift,
                                int g, int h, float *o) {
    int i = 0;
    for (; i + 32 <= a->value_dim; i += 32) values_tile(a, type, l2, pair, 4, p0, p1, shift, g, h, i, o);
    switch ((a->value_dim - i) / 8) {
    case 3: values_tile(a, type, l2, pair, 3, p0, p1, shift, g, h, i, o); break;
    case 2: values_tile(a, type, l2, pair, 2, p0, p1, shift, g, h, i, o); break;
    case 1: values_tile(a, type, l2, pair, 1, p0, p1, shift, g, h, i, o); break;
    default: break;
    }
}

/* o[h] += sum over [p0, p1) of p[h, j] * values[j, g] for every head, in blocks of VALUE_BLOCK positions, the heads
** walked by group, pairs first, as for the scores. */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void values_avx2_type(const decode_job *a, int type, int l2, int64_t p0, int64_t p1, int64_t shift,
                                    float *o) {
    for (int64_t b0 = p0; b0 < p1; b0 += VALUE_BLOCK) {
        const int64_t b1 = b0 + VALUE_BLOCK < p1 ? b0 + VALUE_BLOCK : p1;
        for (int g = 0, h = 0; g < a->n_kv_heads; g++) {
            const int end = h + a->group;
            for (; h + 1 < end; h += 2) values_heads(a, type, l2, 1, b0, b1, shift, g, h, o);
            if (h < end) values_heads(a, type, l2, 0, b0, b1, shift, g, h++, o);
        }
    }
}

/* The scores and the values of every cache type, with the software prefetch into the first-level cache (L2 0) or the
** second (L2 1; a q8_0 cache, bound by its arithmetic, keeps the first: 0.75-0.8x into the second on a Zen 4 EPYC). */
#define DEFINE_SCORES_VALUES(SCORES, VALUES, L2)                                                                   \
__attribute__((target("avx2,fma,f16c")))                                                                           \
static void SCORES(const decode_job *a, int64_t p0, int64_t p1, int64_t shift) {                                   \
    switch (a->type) {                                                                                             \
    case MOERT_KV_F32: scores_avx2_type(a, MOERT_KV_F32, L2, p0, p1, shift); break;                                \
    case MOERT_KV_F16: scores_avx2_type(a, MOERT_KV_F16, L2, p0, p1, shift); break;                                \
    case MOERT_KV_BF16: scores_avx2_type(a, MOERT_KV_BF16, L2, p0, p1, shift); break;                              \
    default: scores_avx2_type(a, MOERT_KV_Q8_0, 0, p0, p1, shift); break;                                          \
    }                                                                                                              \
}                                                                                                                  \
__attribute__((target("avx2,fma,f16c")))                                                                           \
static void VALUES(const decode_job *a, int64_t p0, int64_t p1, int64_t shift, float *o) {                         \
    switch (a->type) {                                                                                             \
    case MOERT_KV_F32: values_avx2_type(a, MOERT_KV_F32, L2, p0, p1, shift, o); break;                             \
    case MOERT_KV_F16: values_avx2_type(a, MOERT_KV_F16, L2, p0, p1, shift, o); break;                             \
    case MOERT_KV_BF16: values_avx2_type(a, MOERT_KV_BF16, L2, p0, p1, shift, o); break;                           \
    default: values_avx2_type(a, MOERT_KV_Q8_0, 0, p0, p1, shift, o); break;                                       \
    }                                                                                                              \
}

DEFINE_SCORES_VALUES(scores_avx2, values_avx2, 0)
DEFINE_SCORES_VALUES(scores_avx2_l2, values_avx2_l2, 1)

/* e^x for 8 floats x <= 0 (softmax terms), within a few ulp of expf; below -87.3 (where 2^n would leave the normal
** range) the result is 0. */
__attribute__((target("avx2,fma"), always_inline))
static inline __m256 exp_nonpositive8(__m256 x) {
    const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33f), _CMP_LT_OQ);
    return _mm256_andnot_ps(underflow, moert_exp256(x));
}

/* s[j] = e^(s[j] - max) for j < count; returns the sum. */
__attribute__((target("avx2,fma")))
static float exp_and_sum_avx2(float *s, int64_t count, float max) {
    const __m256 m = _mm256_set1_ps(max);
    __m256 sum = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= count; j += 8) {
        const __m256 e = exp_nonpositive8(_mm256_sub_ps(_mm256_loadu_ps(s + j), m));
        _mm256_storeu_ps(s + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    float total = moert_hsum256(sum);
    for (; j < count; j++) total += s[j] = expf(s[j] - max);
    return total;
}

/* ---- One chunk, the parts, the merge ---- */

/* The largest of s[0 ..< count] (count >= 1). */
__attribute__((target("avx2")))
static float max_avx2(const float *s, int64_t count) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= count; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + j));
    const __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    float lanes[4], top;
    _mm_storeu_ps(lanes, h);
    top = fmaxf(fmaxf(lanes[0], lanes[1]), fmaxf(lanes[2], lanes[3]));
    for (; j < count; j++) top = s[j] > top ? s[j] : top;
    return top;
}

/* The AVX2 path of a chunk, one block of FUSED_BLOCK positions at a time (an online softmax): the block's scores,
** then its exponentials against each head's running maximum (the output and sum so far rescaled when the maximum
** grows), then its values. Keys and values are thus read side by side, two streams per thread, and the scores stay
** in the first-level cache. Blocks never straddle `split` (the end of a ring buffer). */
static void chunk_avx2(const decode_job *a, int64_t p0, int64_t p1, int64_t split, int64_t wrap, float *o) {
    const int vd = a->value_dim;
    const int64_t stride = vd + 2;
    for (int64_t b0 = p0; b0 < p1;) {
        int64_t b1 = b0 + FUSED_BLOCK < p1 ? b0 + FUSED_BLOCK : p1;
        if (b0 < split && b1 > split) b1 = split;
        const int64_t shift = b0 < split ? a->first : -wrap;
        if (a->l2) scores_avx2_l2(a, b0, b1, shift);
        else scores_avx2(a, b0, b1, shift);
        for (int h = 0; h < a->n_heads; h++) {
            float *s = a->scores + h * a->total + b0, *oh = o + h * stride;
            const float top = max_avx2(s, b1 - b0);
            if (top > oh[vd]) {
                if (oh[vd] != -INFINITY) {
                    const float f = expf(oh[vd] - top);
                    for (int i = 0; i < vd; i++) oh[i] *= f;
                    oh[vd + 1] *= f;
                }
                oh[vd] = top;
            }
            oh[vd + 1] += exp_and_sum_avx2(s, b1 - b0, oh[vd]);
        }
        if (a->l2) values_avx2_l2(a, b0, b1, shift, o);
        else values_avx2(a, b0, b1, shift, o);
        b0 = b1;
    }
}

/* Chunk c: positions [p0, p1) of every head, into its partial output, maximum and sum. Positions before `wrap` are
** rows first + j, the later ones rows j - wrap (the start of a ring buffer). */
static void decode_chunk(const decode_job *a, int c, int fast) {
    const int64_t p0 = a->total * c / a->chunks, p1 = a->total * (c + 1) / a->chunks;
    const int64_t wrap = a->ring - a->first, split = p0 > wrap ? p0 : (p1 < wrap ? p1 : wrap);
    const int vd = a->value_dim;
    const int64_t stride = vd + 2;
    float *o = a->partial + (int64_t)c * a->n_heads * stride;
    if (fast) {
        for (int h = 0; h < a->n_heads; h++) {
            float *oh = o + h * stride;
            memset(oh, 0, (size_t)stride * sizeof *oh);
            oh[vd] = -INFINITY;
        }
        chunk_avx2(a, p0, p1, split, wrap, o);
        return;
    }
    if (p0 < split) scores_scalar(a, p0, split, a->first);
    if (split < p1) scores_scalar(a, split, p1, -wrap);
    for (int h = 0; h < a->n_heads; h++) {
        float *s = a->scores + h * a->total + p0, m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < p1 - p0; j++) m = s[j] > m ? s[j] : m;
        for (int64_t j = 0; j < p1 - p0; j++) sum += s[j] = expf(s[j] - m);
        float *oh = o + h * stride;
        memset(oh, 0, (size_t)vd * sizeof *oh);
        oh[vd] = m;
        oh[vd + 1] = sum;
    }
    if (p0 < split) values_scalar(a, p0, split, a->first, o);
    if (split < p1) values_scalar(a, split, p1, -wrap, o);
}

static void decode_part(void *ctx, int part, int parts) {
    const decode_job *a = ctx;
    for (int c = a->chunks * part / parts; c < a->chunks * (part + 1) / parts; c++) decode_chunk(a, c, a->fast);
}

int64_t moert_attention_decode_scratch(int n_heads, int head_dim, int64_t capacity) {
    return (int64_t)n_heads * capacity + (int64_t)MAX_CHUNKS * n_heads * (head_dim + 2);
}

/* moert_attention_decode with values of value_dim (<= head_dim) values per head, on the AVX2 path when `fast` (with
** its prefetch into the second-level cache when `l2`). */
static void attention_decode(const float *q, const void *keys, const void *values, int kv_type, int n_heads,
                             int n_kv_heads, int head_dim, int value_dim, int64_t first, int64_t total, int64_t ring,
                             const float *sinks, float scale, float *scratch, float *out, int fast, int l2) {
    const int64_t row_bytes = moert_kv_row_bytes(kv_type, (int64_t)n_kv_heads * head_dim);
    const int group = n_heads / n_kv_heads;
    /* One chunk on this thread until the work outweighs a hand-off to the workers (a few microseconds): 2^18 bytes of
    ** keys and values read per layer, for one pair of query heads per row (each further pair adds as much
    ** arithmetic); then chunks of at least MIN_CHUNK positions, four per thread to even out the parts. */
    const int64_t work = total * row_bytes * (keys == values ? 1 : 2) * (group > 2 ? group / 2 : 1);
    int chunks = 1;
    if (work >= (1 << 18)) {
        int64_t by_threads = 4 * (int64_t)moert_kernels_threads(), by_length = total / MIN_CHUNK;
        int64_t c = by_threads < by_length ? by_threads : by_length;
        chunks = c < 1 ? 1 : (c > MAX_CHUNKS ? MAX_CHUNKS : (int)c);
    }
    decode_job a = {q, keys, values, kv_type, n_heads, n_kv_heads, head_dim, group, value_dim, total, row_bytes,
                    row_bytes / n_kv_heads, first, ring, sinks, chunks, fast, fast && l2, scale, scratch,
                    scratch + (int64_t)n_heads * total};
    moert_parallel(decode_part, &a, chunks);

    /* Merge: out[h] = sum_c e^(m_c - M) o_c / (sum_c e^(m_c - M) l_c [+ e^(sink_h - M)]), with M the largest chunk
    ** maximum (or the sink): the sink is a chunk of one logit whose value row is zero. */
    const int64_t stride = value_dim + 2;
    for (int h = 0; h < n_heads; h++) {
        float top = sinks ? sinks[h] : -INFINITY, sum = 0;
        for (int c = 0; c < chunks; c++) {
            const float m = a.partial[((int64_t)c * n_heads + h) * stride + value_dim];
            top = m > top ? m : top;
        }
        if (sinks) sum = expf(sinks[h] - top);
        float *oh = out + (int64_t)h * value_dim;
        memset(oh, 0, (size_t)value_dim * sizeof *oh);
        for (int c = 0; c < chunks; c++) {
            const float *p = a.partial + ((int64_t)c * n_heads + h) * stride;
            const float w = chunks == 1 && !sinks ? 1 : expf(p[value_dim] - top);
            sum += w * p[value_dim + 1];
            for (int i = 0; i < value_dim; i++) oh[i] += w * p[i];
        }
        const float inv = 1 / sum;
        for (int i = 0; i < value_dim; i++) oh[i] *= inv;
    }
}

void moert_attention_decode(const float *q, const void *keys, const void *values, int kv_type, int n_heads,
                            int n_kv_heads, int head_dim, int64_t first, int64_t total, int64_t ring,
                            const float *sinks, float scale, float *scratch, float *out) {
    moert_attention_decode_kernel(moert_kernel_chosen(MOERT_PRODUCT_ATTENTION_DECODE), q, keys, values, kv_type,
                                  n_heads, n_kv_heads, head_dim, first, total, ring, sinks, scale, scratch, out);
}

/* Whether `kernel` is one of the AVX2 paths (avx2, avx2l2) and this CPU runs it. */
static int avx2_path(int kernel) {
    return (kernel == MOERT_KERNEL_AVX2 || kernel == MOERT_KERNEL_AVX2L2) && moert_kernels_have_avx2();
}

void moert_attention_decode_kernel(int kernel, const float *q, const void *keys, const void *values, int kv_type,
                                   int n_heads, int n_kv_heads, int head_dim, int64_t first, int64_t total,
                                   int64_t ring, const float *sinks, float scale, float *scratch, float *out) {
    const int avx2 = avx2_path(kernel) && head_dim % 8 == 0;
    attention_decode(q, keys, values, kv_type, n_heads, n_kv_heads, head_dim, head_dim, first, total, ring, sinks,
                     scale, scratch, out, avx2, kernel == MOERT_KERNEL_AVX2L2);
}

void moert_latent_attention_decode(int kernel, const float *q, const void *rows, int kv_type, int n_heads, int width,
                                   int rank, int64_t total, float scale, float *scratch, float *out) {
    const int avx2 = avx2_path(kernel) && width % 8 == 0 && rank % 8 == 0;
    attention_decode(q, rows, rows, kv_type, n_heads, 1, width, rank, 0, total, total, NULL, scale, scratch, out,
                     avx2, kernel == MOERT_KERNEL_AVX2L2);
}
