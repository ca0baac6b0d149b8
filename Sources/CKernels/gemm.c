/* gemm.c: the products of prefill, C = A · B^T with activations A [m, k] in float32 and weights B [n, k] stored as
** nn.Linear stores them (float32, f16 or bf16), with AVX-512 when the CPU has it (gemm_avx2.c: the same with AVX2).
**
** Layout follows the usual packed GEMM: for each slice of KC columns of k, a block of A is copied into panels of MR
** rows, k-major ([kc][MR], rows past m zero), and each group of NR rows of B is transposed into a panel [kc][NR]
** (widened to float32 on the way, so half-precision weights are converted once per use and never stored wide). A
** micro-kernel then accumulates an MR x NR tile of C in 2 * MR vector registers: per k, two loads from the B panel
** and MR broadcasts from the A panel. The B panel (32 KiB) stays in L1 while every A panel of the block streams
** from L2. Threads split the columns of C (rows of B) in whole panels, so each thread reads the weights it needs
** once, and every element of C sums over k in the same order whatever the thread count. */
#include "kernels_internal.h"

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

/* MR x NR tile (28 accumulators of 32 registers); KC columns of k per slice; MC rows of A per block. */
enum { MR = 14, NR = 32, KC = MOERT_GEMM_BUFFER_DEPTH, MC = MOERT_GEMM_BUFFER_ROWS };
_Static_assert((int)NR == (int)MOERT_GEMM_BUFFER_COLUMNS, "a B panel fills the buffer");

/* Packing prefetches each row of B this many elements ahead. */
enum { PACK_PREFETCH = 64 };

/* The kernels below need AVX-512 F, BW and VL (and F16C). */
static int gemm_enabled(void) { return moert_kernels_have_avx512(); }

/* The product of prefill products with weights of `dtype` (gemm.f32 for quantized weights). */
static int gemm_product(int dtype) {
    return dtype == MOERT_HALF_F16 ? MOERT_PRODUCT_GEMM_F16
         : dtype == MOERT_HALF_BF16 ? MOERT_PRODUCT_GEMM_BF16 : MOERT_PRODUCT_GEMM_F32;
}

/* ---- Per-thread packing buffers ---- */

typedef struct pack_buffers {
    float *a;   /* MC x KC floats */
    float *b;   /* KC x NR floats */
} pack_buffers;

static pthread_key_t buffers_key;
static pthread_once_t buffers_once = PTHREAD_ONCE_INIT;

static void free_buffers(void *p) {
    pack_buffers *buf = p;
    free(buf->a);
    free(buf->b);
    free(buf);
}

static void make_key(void) { pthread_key_create(&buffers_key, free_buffers); }

/* This thread's packing buffers, allocated on first use and freed when the thread ends; NULL without memory. */
static pack_buffers *thread_buffers(void) {
    pthread_once(&buffers_once, make_key);
    pack_buffers *buf = pthread_getspecific(buffers_key);
    if (buf) return buf;
    buf = calloc(1, sizeof *buf);
    if (!buf) return NULL;
    buf->a = aligned_alloc(64, sizeof(float) * MC * KC);
    buf->b = aligned_alloc(64, sizeof(float) * KC * NR);
    if (!buf->a || !buf->b || pthread_setspecific(buffers_key, buf) != 0) {
        free_buffers(buf);
        return NULL;
    }
    return buf;
}

int moert_gemm_buffers(float **a, float **b) {
    pack_buffers *buf = thread_buffers();
    if (!buf) return 0;
    *a = buf->a;
    *b = buf->b;
    return 1;
}

/* The part of moert_gemm_prepare_threads: this thread's buffers, then a wait (bounded) until every part has
** started, so that each part runs on a thread of its own. */
static void prepare_part(void *ctx, int part, int parts) {
    (void)part;
    _Atomic int *arrived = ctx;
    float *a, *b;
    moert_gemm_buffers(&a, &b);
    atomic_fetch_add(arrived, 1);
    for (long step = 0; atomic_load(arrived) < parts && step < (1L << 20); step++) sched_yield();
}

void moert_gemm_prepare_threads(void) {
    if (!moert_kernels_have_avx2()) return;   /* neither GEMM can run: nothing will use the buffers */
    _Atomic int arrived = 0;
    moert_parallel(prepare_part, &arrived, moert_kernels_threads());
}

/* ---- Packing ---- */

/* Transposes 16 vectors of 16 floats in place: r[i][j] becomes r[j][i]. */
__attribute__((target("avx512f")))
static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4g + q], 128-bit lane L: column 4L + q of rows 4g ..< 4g + 4 */
    for (int g = 0; g < 4; g++) {
        u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    /* column 4L + q gathers lane L of u[q], u[4 + q], u[8 + q], u[12 + q] */
    for (int q = 0; q < 4; q++) {
        __m512 lo1 = _mm512_shuffle_f32x4(u[q], u[4 + q], _MM_SHUFFLE(1, 0, 1, 0));
        __m512 lo2 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], _MM_SHUFFLE(1, 0, 1, 0));
        __m512 hi1 = _mm512_shuffle_f32x4(u[q], u[4 + q], _MM_SHUFFLE(3, 2, 3, 2));
        __m512 hi2 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], _MM_SHUFFLE(3, 2, 3, 2));
        r[q] = _mm512_shuffle_f32x4(lo1, lo2, _MM_SHUFFLE(2, 0, 2, 0));
        r[4 + q] = _mm512_shuffle_f32x4(lo1, lo2, _MM_SHUFFLE(3, 1, 3, 1));
        r[8 + q] = _mm512_shuffle_f32x4(hi1, hi2, _MM_SHUFFLE(2, 0, 2, 0));
        r[12 + q] = _mm512_shuffle_f32x4(hi1, hi2, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/* pack_b for a full panel (NR rows) and kc a multiple of 16: no masks, no branches in the loop. */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"), always_inline))
static inline void pack_b_full(const void *b, int dtype, int64_t ldb, int64_t kc, float *dst) {
    size_t elem = dtype == MOERT_GEMM_F32 ? 4 : 2;
    for (int half = 0; half < NR / 16; half++) {
        const char *rows = (const char *)b + (int64_t)half * 16 * ldb * elem;
        for (int64_t kk = 0; kk < kc; kk += 16) {
            __m512 v[16];
            for (int r = 0; r < 16; r++) {
                _mm_prefetch(rows + (r * ldb + kk + PACK_PREFETCH) * elem, _MM_HINT_T0);
                v[r] = moert_load16(rows + (r * ldb + kk) * elem, dtype, 0xffff);
            }
            transpose16(v);
            for (int t = 0; t < 16; t++) _mm512_store_ps(dst + (kk + t) * NR + half * 16, v[t]);
        }
    }
}

/* Packs rows [0, rows) (rows <= NR) x columns [0, kc) of B into a panel [kc][NR], transposed and widened; rows past
** `rows` are zero. */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c")))
static void pack_b(const void *b, int dtype, int64_t ldb, int rows, int64_t kc, float *dst) {
    if (rows == NR && kc % 16 == 0) {
        switch (dtype) {
        case MOERT_GEMM_F32: pack_b_full(b, MOERT_GEMM_F32, ldb, kc, dst); return;
        case MOERT_HALF_F16: pack_b_full(b, MOERT_HALF_F16, ldb, kc, dst); return;
        default: pack_b_full(b, MOERT_HALF_BF16, ldb, kc, dst); return;
        }
    }
    size_t elem = dtype == MOERT_GEMM_F32 ? 4 : 2;
    for (int half = 0; half < NR / 16; half++) {
        int first = half * 16;
        for (int64_t kk = 0; kk < kc; kk += 16) {
            int count = kc - kk < 16 ? (int)(kc - kk) : 16;
            __mmask16 mask = moert_mask16(count);
            __m512 v[16];
            for (int r = 0; r < 16; r++) {
                int row = first + r;
                v[r] = row < rows ? moert_load16((const char *)b + ((int64_t)row * ldb + kk) * elem, dtype, mask)
                                  : _mm512_setzero_ps();
            }
            transpose16(v);
            for (int t = 0; t < count; t++) _mm512_store_ps(dst + (kk + t) * NR + first, v[t]);
        }
    }
}

/* Packs columns [0, cols) (cols <= NR) x rows [0, kc) of a [k, n] matrix B (float32) into a panel [kc][NR]: row kk
** of B's slice becomes row kk of the panel, columns past `cols` zero. */
__attribute__((target("avx512f")))
static void pack_b_kn(const float *b, int64_t ldb, int cols, int64_t kc, float *dst) {
    __mmask16 m0 = moert_mask16(cols), m1 = cols > 16 ? moert_mask16(cols - 16) : 0;
    for (int64_t kk = 0; kk < kc; kk++) {
        _mm512_store_ps(dst + kk * NR, _mm512_maskz_loadu_ps(m0, b + kk * ldb));
        _mm512_store_ps(dst + kk * NR + 16, _mm512_maskz_loadu_ps(m1, b + kk * ldb + 16));
    }
}

/* Copies rows [0, rows) x columns [0, kc) of A into a panel [kc][width], rows rows ..< width zero. A full panel
** (MR rows) moves 16 columns at a time through a transposition; the rest element by element. */
__attribute__((target("avx512f")))
static void pack_a(const float *a, int64_t lda, int rows, int width, int64_t kc, float *dst) {
    int64_t kk = 0;
    if (rows == MR && width == MR) {
        for (; kk + 16 <= kc; kk += 16) {
            __m512 v[16];
            for (int r = 0; r < MR; r++) v[r] = _mm512_loadu_ps(a + r * lda + kk);
            for (int r = MR; r < 16; r++) v[r] = _mm512_setzero_ps();
            transpose16(v);
            for (int t = 0; t < 16; t++) _mm512_mask_storeu_ps(dst + (kk + t) * MR, (1u << MR) - 1, v[t]);
        }
    }
    for (; kk < kc; kk++) {
        float *d = dst + kk * width;
        int r = 0;
        for (; r < rows; r++) d[r] = a[r * lda + kk];
        for (; r < width; r++) d[r] = 0;
    }
}

/* ---- Micro-kernels ---- */

/* C[0 ..< rows, 0 ..< 32] (=, or += when `accumulate`) the product of an A panel [kc][W] and a B panel [kc][32];
** masks m0 and m1 select the valid columns of each half. One kernel per panel width W. */
#define DEFINE_KERNEL(W)                                                                                           \
__attribute__((target("avx512f")))                                                                                 \
static void kernel_##W(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int rows,            \
                       __mmask16 m0, __mmask16 m1, int accumulate) {                                               \
    __m512 lo[W], hi[W];                                                                                           \
    _Pragma("GCC unroll 16") for (int r = 0; r < W; r++) lo[r] = hi[r] = _mm512_setzero_ps();                     \
    for (int64_t kk = 0; kk < kc; kk++) {                                                                          \
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);                                              \
        _Pragma("GCC unroll 16") for (int r = 0; r < W; r++) {                                                     \
            __m512 a = _mm512_set1_ps(ap[r]);                                                                      \
            lo[r] = _mm512_fmadd_ps(a, b0, lo[r]);                                                                 \
            hi[r] = _mm512_fmadd_ps(a, b1, hi[r]);                                                                 \
        }                                                                                                          \
        ap += W;                                                                                                   \
        bp += NR;                                                                                                  \
    }                                                                                                              \
    _Pragma("GCC unroll 16") for (int r = 0; r < W; r++) {                                                         \
        if (r >= rows) break;                                                                                      \
        float *row = c + r * ldc;                                                                                  \
        if (accumulate) {                                                                                          \
            lo[r] = _mm512_add_ps(lo[r], _mm512_maskz_loadu_ps(m0, row));                                          \
            hi[r] = _mm512_add_ps(hi[r], _mm512_maskz_loadu_ps(m1, row + 16));                                     \
        }                                                                                                          \
        _mm512_mask_storeu_ps(row, m0, lo[r]);                                                                     \
        _mm512_mask_storeu_ps(row + 16, m1, hi[r]);                                                                \
    }                                                                                                              \
}

DEFINE_KERNEL(14)
DEFINE_KERNEL(8)
DEFINE_KERNEL(4)
DEFINE_KERNEL(2)
DEFINE_KERNEL(1)

typedef void (*kernel_fn)(int64_t, const float *, const float *, float *, int64_t, int, __mmask16, __mmask16, int);

/* The narrowest kernel width that covers `rows` (<= MR) rows. */
static int panel_width(int rows) { return rows > 8 ? 14 : rows > 4 ? 8 : rows > 2 ? 4 : rows; }

static kernel_fn kernel_for(int width) {
    switch (width) {
    case 14: return kernel_14;
    case 8: return kernel_8;
    case 4: return kernel_4;
    case 2: return kernel_2;
    default: return kernel_1;
    }
}

/* ---- Driver ---- */

typedef struct gemm_task {
    int64_t m, n, k;
    const float *a;
    int64_t lda;
    const void *b;
    int dtype;
    int64_t ldb;
    int b_kn;     /* b is [k, n] (c = a b) instead of [n, k] (c = a b^T); float32 only */
    float *c;
    int64_t ldc;
    int failed;   /* set by a part that could not get its buffers */
} gemm_task;

/* Columns [j0, j1) of C: for each block of rows and slice of k, pack A once, then each B panel and its tiles. */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c")))
static void gemm_columns(gemm_task *t, int64_t j0, int64_t j1) {
    pack_buffers *buf = thread_buffers();
    if (!buf) {
        __atomic_store_n(&t->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    size_t elem = t->dtype == MOERT_GEMM_F32 ? 4 : 2;
    int64_t slices = (t->k + KC - 1) / KC;
    int64_t kc_even = ((t->k + slices - 1) / slices + 15) & ~(int64_t)15;   /* equal slices, multiples of 16 */
    for (int64_t i0 = 0; i0 < t->m; i0 += MC) {
        int64_t mc = t->m - i0 < MC ? t->m - i0 : MC;
        for (int64_t p0 = 0; p0 < t->k; p0 += kc_even) {
            int64_t kc = t->k - p0 < kc_even ? t->k - p0 : kc_even;
            /* A block: full panels of MR rows, then one narrower panel for the rest */
            for (int64_t r = 0; r < mc; r += MR) {
                int rows = mc - r < MR ? (int)(mc - r) : MR;
                pack_a(t->a + (i0 + r) * t->lda + p0, t->lda, rows, panel_width(rows), kc, buf->a + r * kc);
            }
            for (int64_t j = j0; j < j1; j += NR) {
                int cols = j1 - j < NR ? (int)(j1 - j) : NR;
                if (t->b_kn) pack_b_kn((const float *)t->b + p0 * t->ldb + j, t->ldb, cols, kc, buf->b);
                else pack_b((const char *)t->b + (j * t->ldb + p0) * elem, t->dtype, t->ldb, cols, kc, buf->b);
                __mmask16 m0 = moert_mask16(cols), m1 = cols > 16 ? moert_mask16(cols - 16) : 0;
                for (int64_t r = 0; r < mc; r += MR) {
                    int rows = mc - r < MR ? (int)(mc - r) : MR;
                    kernel_for(panel_width(rows))(kc, buf->a + r * kc, buf->b, t->c + (i0 + r) * t->ldc + j,
                                                  t->ldc, rows, m0, m1, p0 > 0);
                }
            }
        }
    }
}

/* Part `part` of `parts`: a contiguous run of whole NR-column panels. */
static void gemm_part(void *ctx, int part, int parts) {
    gemm_task *t = ctx;
    int64_t j0, j1;
    moert_part_panels(t->n, NR, part, parts, &j0, &j1);
    if (j0 < j1) gemm_columns(t, j0, j1);
}

int moert_gemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const void *b, int dtype, int64_t ldb,
                  float *c, int64_t ldc) {
    return moert_gemm_nt_kernel(moert_kernel_chosen(gemm_product(dtype)), m, n, k, a, lda, b, dtype, ldb, c, ldc);
}

int moert_gemm_nt_kernel(int kernel, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const void *b,
                         int dtype, int64_t ldb, float *c, int64_t ldc) {
    if (kernel == MOERT_KERNEL_AVX2) return moert_gemm_nt_avx2(m, n, k, a, lda, b, dtype, ldb, c, ldc);
    /* q4_0, q3_0, q4_k and q8_0 weights with AVX-512 VNNI: the integer kernel on vpdpbusd (without VNNI the caller
    ** reads them back to float32 for this GEMM) */
    if (kernel == MOERT_KERNEL_AVX512 && (dtype == MOERT_QUANT_Q4_0 || dtype == MOERT_QUANT_Q3_0 ||
                                          dtype == MOERT_QUANT_Q4_K || dtype == MOERT_QUANT_Q8_0))
        return moert_gemm_q4_0_avx2(dtype, 1, m, n, k, a, lda, b, ldb, c, ldc);
    if (kernel != MOERT_KERNEL_AVX512 || !gemm_enabled() || m <= 0 || n <= 0 || k <= 0) return 0;
    if (dtype != MOERT_GEMM_F32 && dtype != MOERT_HALF_F16 && dtype != MOERT_HALF_BF16) return 0;
    gemm_task t = {m, n, k, a, lda, b, dtype, ldb, 0, c, ldc, 0};
    moert_parallel(gemm_part, &t, moert_gemm_parts(m, n, k, NR));
    return !t.failed;
}

int moert_gemm_serial(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b, int b_kn,
                      int64_t ldb, float *c, int64_t ldc) {
    if (!gemm_enabled() || m <= 0 || n <= 0 || k <= 0) return 0;
    gemm_task t = {m, n, k, a, lda, b, MOERT_GEMM_F32, ldb, b_kn, c, ldc, 0};
    gemm_columns(&t, 0, n);
    return !t.failed;
}
