/* moert_kernels.h: the internal C kernels MoertCore calls, one section per source file: CPU checks, which kernel each
** product runs, the worker pool they share, decode GEMV (half precision widened in registers; float32 with AVX2 or
** AVX-512), prefill GEMM, attention and SwiGLU, half-to-float conversion and a parallel copy. Not part of the
** public API. */
#ifndef MOERT_KERNELS_H
#define MOERT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Internal to libmoert.so: never exported. */
#define MOERT_KERNEL __attribute__((visibility("hidden")))

/** Element types of weights: float32 (for the AVX-512 kernels) and the half-precision ones. */
#define MOERT_GEMM_F32  0
#define MOERT_HALF_F16  1
#define MOERT_HALF_BF16 2

/* ---- CPU features (cpu.c) ---- */

/** True when the AVX2/FMA/F16C kernels can run (checked at run time). */
MOERT_KERNEL int moert_kernels_have_avx2(void);

/** True when the AVX-512 kernels can run: the CPU has AVX-512 F, BW and VL (with AVX2, FMA and F16C) and the
 * environment variable MOERT_AVX512 is not "0". Whether a product runs one is its kernel choice (below). */
MOERT_KERNEL int moert_kernels_have_avx512(void);

/** True when the AVX-512 kernels can run and the CPU also has AVX-512 VNNI (the quantized GEMVs' avx512 kernel). */
MOERT_KERNEL int moert_kernels_have_avx512_vnni(void);

/** Features of moert_cpu_features. */
#define MOERT_CPU_AVX2       (1u << 0)
#define MOERT_CPU_FMA        (1u << 1)
#define MOERT_CPU_F16C       (1u << 2)
#define MOERT_CPU_AVX512F    (1u << 3)
#define MOERT_CPU_AVX512BW   (1u << 4)
#define MOERT_CPU_AVX512VL   (1u << 5)
#define MOERT_CPU_AVX512VNNI (1u << 6)
#define MOERT_CPU_AVX512BF16 (1u << 7)

/** The CPU's features (MOERT_CPU_*), as the CPU reports them (whatever MOERT_AVX512 says). */
MOERT_KERNEL unsigned moert_cpu_features(void);

/** Who made the CPU and which one it is, from CPUID: vendor ("AuthenticAMD", "GenuineIntel"), the brand string,
 * and family, model and stepping as /proc/cpuinfo shows them (extended fields included). */
typedef struct moert_cpu_identity {
    char vendor[16];
    char brand[64];
    int family, model, stepping;
} moert_cpu_identity;

/** Fills `id` (zeroed fields when CPUID does not say). */
MOERT_KERNEL void moert_cpu_identify(moert_cpu_identity *id);

/* ---- Kernel choice (choice.c) ---- */

/** The products whose kernel is chosen at run time. */
enum {
    MOERT_PRODUCT_GEMV_F32,          /* decode GEMV, float32 weights */
    MOERT_PRODUCT_GEMV_F16,          /* decode GEMV, f16 weights */
    MOERT_PRODUCT_GEMV_BF16,         /* decode GEMV, bf16 weights */
    MOERT_PRODUCT_GEMV_Q8_0,         /* decode GEMV, q8_0 weights */
    MOERT_PRODUCT_GEMV_Q4_0,         /* decode GEMV, q4_0 weights */
    MOERT_PRODUCT_GEMV_Q3_0,         /* decode GEMV, q3_0 weights */
    MOERT_PRODUCT_GEMV_Q4_K,         /* decode GEMV, q4_k weights */
    MOERT_PRODUCT_GEMM_F32,          /* prefill GEMM, float32 weights (and quantized ones read back to float32) */
    MOERT_PRODUCT_GEMM_F16,          /* prefill GEMM, f16 weights */
    MOERT_PRODUCT_GEMM_BF16,         /* prefill GEMM, bf16 weights */
    MOERT_PRODUCT_ATTENTION_PREFILL, /* attention of a prefill chunk */
    MOERT_PRODUCT_ATTENTION_DECODE,  /* attention of one decoded position */
    MOERT_PRODUCT_SWIGLU,            /* silu(gate) * up of the experts */
    MOERT_PRODUCT_COUNT
};

/** The kernels: plain C (or Swift) loops, OpenBLAS, AVX2 with FMA and F16C, AVX-512 F/BW/VL, AVX2 reading four
 * rows at a time as four far-apart streams, and AVX2 one row at a time without software prefetch, the hardware
 * prefetcher alone (decode GEMVs: each faster than the avx2 kernel on some CPUs and shapes, slower on others;
 * measured per CPU), and AVX2 with its software prefetch into the second-level cache instead of the first (decode
 * attention: 1.0-2.0x the avx2 kernel's bytes per second over a cache in memory on a Zen 4 EPYC). */
enum {
    MOERT_KERNEL_PORTABLE,
    MOERT_KERNEL_BLAS,
    MOERT_KERNEL_AVX2,
    MOERT_KERNEL_AVX512,
    MOERT_KERNEL_AVX2X4,
    MOERT_KERNEL_AVX2HW,
    MOERT_KERNEL_AVX2L2,
    MOERT_KERNEL_COUNT
};

/** The name of a product ("gemv.f16") or kernel ("avx2"); NULL when out of range. */
MOERT_KERNEL const char *moert_product_name(int product);
MOERT_KERNEL const char *moert_kernel_name(int kernel);

/** 1 when `product` has kernel `kernel`, whatever the CPU. */
MOERT_KERNEL int moert_kernel_exists(int product, int kernel);

/** 1 when `product` has kernel `kernel` and this CPU can run it (AVX-512 also needs MOERT_AVX512 not "0"). */
MOERT_KERNEL int moert_kernel_available(int product, int kernel);

/** The first available of avx512, avx2, blas, portable, avx2x4, avx2hw, avx2l2: what a product runs until a kernel
 * is chosen for it. */
MOERT_KERNEL int moert_kernel_preferred(int product);

/** The kernel `product` runs. */
MOERT_KERNEL int moert_kernel_chosen(int product);

/** Makes `product` run `kernel` from now on, process-wide. Returns 0, changing nothing, when it is not available. */
MOERT_KERNEL int moert_kernel_choose(int product, int kernel);

/* ---- Multi-head latent attention at decode (latent.c) ---- */

/**
 * The absorbed query of each head of one position: out[h * out_stride + c] = sum_i q[h * q_stride + i] *
 * kv_b[h * (nope + value_dim) + i, c] for c < rank, i < nope, where kv_b (kv_b_proj, [n_heads * (nope +
 * value_dim), rank] row-major) holds `dtype` values (MOERT_GEMM_F32, MOERT_HALF_F16 or MOERT_HALF_BF16). On
 * `kernel` as the GEMV of that type runs it (its AVX2 loops for avx2, avx2x4 and avx512; blas or a kernel the CPU
 * cannot run: avx2 when it can, else portable); the heads are split among the worker threads.
 */
MOERT_KERNEL void moert_latent_query(int kernel, const void *kv_b, int dtype, const float *q, int64_t q_stride,
                                     int n_heads, int64_t nope, int64_t value_dim, int64_t rank, float *out,
                                     int64_t out_stride);

/**
 * The output of each head of one position out of the latent space: out[h * value_dim + r] = sum_c ctx[h * rank +
 * c] * kv_b[h * (nope + value_dim) + nope + r, c] for r < value_dim, c < rank (kv_b as for moert_latent_query),
 * on the GEMV rows of `kernel` (blas or a kernel the CPU cannot run: avx2 when it can, else portable).
 */
MOERT_KERNEL void moert_latent_output(int kernel, const void *kv_b, int dtype, const float *ctx, int n_heads,
                                      int64_t nope, int64_t value_dim, int64_t rank, float *out);

/**
 * Attention of one position's absorbed queries over the latent cache (attention_decode.c): every query head
 * attends over the same `total` cached rows [latent (rank) | rope key (width - rank)] of KV type `kv_type`, the whole
 * row as its key and the latent as its value:
 *   out[h] = softmax(scale * q[h] . rows[j] for j < total) . rows[:, :rank]
 * q is [n_heads * width] float32 ([q_lat | q_pe] per head), rows `total` rows moert_kv_row_bytes(kv_type, width)
 * apart (width a multiple of MOERT_Q8_0_BLOCK for q8_0), out [n_heads * rank]. Each row is read once for every head;
 * the positions are split among the worker threads as moert_attention_decode splits them. `scratch` holds
 * moert_attention_decode_scratch(n_heads, width, total) floats. On `kernel` as attention.decode runs it (avx2 needs
 * width and rank multiples of 8, else portable runs).
 */
MOERT_KERNEL void moert_latent_attention_decode(int kernel, const float *q, const void *rows, int kv_type,
                                                int n_heads, int width, int rank, int64_t total, float scale,
                                                float *scratch, float *out);

/* ---- Several decode GEMVs as one job (gemv_batch.c) ---- */

/** The most products one moert_gemv_batch runs. */
#define MOERT_GEMV_BATCH_MAX 32

/** One product of moert_gemv_batch: y = W x, W [rows, cols] row-major of `type` (MOERT_GEMM_F32, MOERT_HALF_F16,
 * MOERT_HALF_BF16, or MOERT_QUANT_Q8_0/_Q4_0/_Q3_0/_Q4_K with cols whole blocks of the type), on `kernel` as that
 * type's own GEMV runs it. A quantized product quantizes x into `xq` (moert_quant_activation_bytes(cols) bytes, its
 * own); the others leave xq unused. */
typedef struct moert_gemv_item {
    const void *w;
    int type;
    int kernel;
    const float *x;
    void *xq;
    float *y;
    int64_t rows, cols;
} moert_gemv_item;

/**
 * Runs `count` independent decode GEMVs as one job on the worker pool: each product cut into the parts its own GEMV
 * (moert_gemv_half_kernel, moert_gemv_f32_kernel, moert_gemv_quant_kernel) would make, on the kernel it would run, so
 * that every y gets the same bits as there, and the threads claim the parts of all of them in turn (a product too small to split runs beside the
 * others' parts instead of alone, and the threads meet once). No y may overlap another product's x, xq or y. Returns
 * 1, or 0 computing nothing when count is outside 0 ... MOERT_GEMV_BATCH_MAX or a float32 product is on blas (or a
 * kernel the CPU cannot run): the caller runs sgemv.
 */
MOERT_KERNEL int moert_gemv_batch(const moert_gemv_item *items, int count);

/* ---- Worker pool (pool.c) ---- */

/** Sets the number of threads the kernels use (>= 1), including the caller. Until it is called they use every
 * online CPU. */
MOERT_KERNEL void moert_kernels_set_threads(int n_threads);

/** The number of threads the kernels use, including the caller. */
MOERT_KERNEL int moert_kernels_threads(void);

/**
 * Calls fn(ctx, part, parts) for part = 0 ..< parts on the worker pool, with parts = min(max_parts, 4 * threads):
 * the calling thread and the workers claim parts one at a time until none is left, so any thread may run any part
 * (fn must compute a part the same way whichever thread runs it, and two parts may run at once); parts = 1, on this
 * thread alone, when the pool is busy or max_parts < 2.
 */
MOERT_KERNEL void moert_parallel(void (*fn)(void *ctx, int part, int parts), void *ctx, int max_parts);

/* ---- Decode GEMV (gemv.c, with the AVX-512 rows of gemv_avx512.c) ---- */

/**
 * y[r] = sum_c w[r, c] * x[c] for r < rows, with w stored as f16 or bf16, row-major, `cols` per row, on the kernel
 * chosen for gemv.f16 / gemv.bf16. Rows are split among the worker threads; each element is widened to float32 in
 * registers.
 */
MOERT_KERNEL void moert_gemv_half(const void *w, int dtype, const float *x, float *y, int64_t rows, int64_t cols);

/** moert_gemv_half on `kernel` (the preferred kernel instead when the CPU cannot run it): for measurements and tests.
 * The other *_kernel functions below are the same for their products. */
MOERT_KERNEL void moert_gemv_half_kernel(int kernel, const void *w, int dtype, const float *x, float *y, int64_t rows,
                                         int64_t cols);

/**
 * y[r] = sum_c w[r, c] * x[c] for r < rows, w float32 row-major; rows split among the worker threads. Returns 1
 * when done, 0 when it computed nothing (gemv.f32 runs on blas): the caller then uses sgemv.
 */
MOERT_KERNEL int moert_gemv_f32(const float *w, const float *x, float *y, int64_t rows, int64_t cols);
MOERT_KERNEL int moert_gemv_f32_kernel(int kernel, const float *w, const float *x, float *y, int64_t rows,
                                       int64_t cols);

/* ---- Prefill GEMM (gemm.c, gemm_avx2.c) ---- */

/**
 * c[i, j] = sum_p a[i, p] * b[j, p] for i < m, j < n: activations a [m, k] (float32, row stride lda) times the
 * transpose of weights b [n, k] (row stride ldb in elements, element type `dtype`: MOERT_GEMM_F32, MOERT_HALF_F16,
 * MOERT_HALF_BF16, or on the avx2 kernel also MOERT_QUANT_Q8_0, _Q4_0, _Q3_0 and _Q4_K, on the avx512 kernel _Q4_0
 * and _Q3_0 when the CPU has AVX-512 VNNI, with k and ldb whole blocks of the type), into c (row stride ldc).
 * The columns of c are split among the worker threads; each element sums over p in the same order for any thread
 * count. Returns 1 when done, 0 when it computed nothing (the product
 * gemm.f32, gemm.f16 or gemm.bf16 of `dtype` — gemm.f32 for quantized types — runs on blas, the kernel cannot read
 * `dtype`, or no memory for its buffers): the caller then uses sgemm.
 */
/**
 * Allocates the prefill GEMMs' packing buffers of the calling thread and of each of the pool's workers now (about
 * half a MiB each, once per thread), so that a session's first prefill allocates nothing. Best effort: a thread it
 * missed (the pool busy with another caller's job) allocates its buffers on its first GEMM.
 */
MOERT_KERNEL void moert_gemm_prepare_threads(void);

MOERT_KERNEL int moert_gemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const void *b, int dtype,
                               int64_t ldb, float *c, int64_t ldc);
MOERT_KERNEL int moert_gemm_nt_kernel(int kernel, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                                      const void *b, int dtype, int64_t ldb, float *c, int64_t ldc);

/**
 * A float32 product on the calling thread alone: c = a b^T with b [n, k] (b_kn = 0, as moert_gemm_nt), or c = a b
 * with b [k, n] (b_kn = 1). Returns 1 when done, 0 when it computed nothing (no
 * AVX-512, or no memory for its buffers). Used by attention.prefill's avx512 kernel.
 */
MOERT_KERNEL int moert_gemm_serial(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                                   int b_kn, int64_t ldb, float *c, int64_t ldc);

/* ---- KV cache rows (kv_cache.c) ---- */

/** Element types of the KV cache: float32, f16 and bf16 (the codes of MOERT_GEMM_F32, MOERT_HALF_F16 and
 * MOERT_HALF_BF16), and q8_0: blocks of MOERT_Q8_0_BLOCK values, each an f16 scale followed by as many int8. */
#define MOERT_KV_F32  0
#define MOERT_KV_F16  1
#define MOERT_KV_BF16 2
#define MOERT_KV_Q8_0 3
/** Values per q8_0 block, and its bytes. */
#define MOERT_Q8_0_BLOCK 32
#define MOERT_Q8_0_BLOCK_BYTES 34

/** Bytes of `width` values of KV type `type` (for q8_0, width must be a multiple of MOERT_Q8_0_BLOCK); 0 for an
 * unknown type. */
MOERT_KERNEL int64_t moert_kv_row_bytes(int type, int64_t width);

/** Writes `count` float32 values as KV type `type` (rounded to nearest even; q8_0 as GGML's quantize_row_q8_0_ref,
 * `count` a multiple of MOERT_Q8_0_BLOCK). */
MOERT_KERNEL void moert_kv_store(int type, const float *src, void *dst, int64_t count);

/** Reads `count` values of KV type `type` back as float32. */
MOERT_KERNEL void moert_kv_load(int type, const void *src, float *dst, int64_t count);

/* ---- Quantized weights (quant.c, gemv_quant.c) ---- */

/** Block-quantized weight types (after MOERT_GEMM_F32, MOERT_HALF_F16 and MOERT_HALF_BF16): blocks of
 * MOERT_QUANT_BLOCK values, each an f16 scale then the quants — q8_0: 32 int8 (MOERT_Q8_0_BLOCK_BYTES), q4_0: 16
 * bytes of two 4-bit quants, value i in the low nibble of byte i, value i + 16 in its high nibble, each minus 8
 * (MOERT_Q4_0_BLOCK_BYTES); the layouts and rounding of GGML's block_q8_0 and block_q4_0. q3_0 (moert's own, no GGML
 * type): 8 bytes of 2-bit low parts, value i in bits 2 * (i / 8) of byte i % 8, then 4 bytes of high bits, value
 * i's in bit i / 4 of byte i % 4; quant = low + 4 * high - 4 (MOERT_Q3_0_BLOCK_BYTES; q4_0's rounding with 3 bits).
 * q4_k: super-blocks of MOERT_Q4_K_BLOCK values (MOERT_Q4_K_BLOCK_BYTES), GGML's block_q4_K: f16 d, f16 dmin, 12
 * bytes of eight 6-bit scales and mins, then 128 bytes of nibbles; value i of sub-block j (32 values) is
 * d * scale_j * q - dmin * min_j (quant.c has the bit layout). */
#define MOERT_QUANT_Q8_0 3
#define MOERT_QUANT_Q4_0 4
#define MOERT_QUANT_Q3_0 5
#define MOERT_QUANT_Q4_K 6
#define MOERT_QUANT_BLOCK 32
#define MOERT_Q4_0_BLOCK_BYTES 18
#define MOERT_Q3_0_BLOCK_BYTES 14
#define MOERT_Q4_K_BLOCK 256
#define MOERT_Q4_K_BLOCK_BYTES 144
/** Bytes of an activation block (moert_quantize_activation): a float32 scale, then 32 int8. */
#define MOERT_QA_BLOCK_BYTES 36

/** Bytes of one block of `type` (a q4_k super-block: MOERT_Q4_K_BLOCK_BYTES); 0 for a type that is not
 * block-quantized. */
MOERT_KERNEL int64_t moert_quant_block_bytes(int type);

/** Values per block of `type`: MOERT_Q4_K_BLOCK for q4_k, MOERT_QUANT_BLOCK for the others. Rows of a quantized
 * type hold whole blocks. */
MOERT_KERNEL int64_t moert_quant_block_values(int type);

/** Quantizes `count` floats (whole blocks of `type`, all finite) to blocks of `type`, as GGML's
 * quantize_row_q8_0_ref / quantize_row_q4_0_ref / quantize_row_q4_K_ref (q3_0: q4_0's rule with 3 bits); from
 * 65,536 values on, the blocks are split among the worker threads (each block's bytes are the same either way);
 * q4_k's refits run in AVX2 vectors where the CPU has them (the same bytes). */
MOERT_KERNEL void moert_quantize(int type, const float *src, void *dst, int64_t count);

/** moert_quantize without vector instructions (q4_k's refits one step at a time): the same bytes; for tests. */
MOERT_KERNEL void moert_quantize_portable(int type, const float *src, void *dst, int64_t count);

/** Reads `count` values (whole blocks) of blocks of `type` as float32 (scale times quant; for q4_k minus the
 * sub-block's minimum). */
MOERT_KERNEL void moert_dequantize(int type, const void *src, float *dst, int64_t count);

/** moert_dequantize on the portable loop alone (for the tests of that path). */
MOERT_KERNEL void moert_dequantize_portable(int type, const void *src, float *dst, int64_t count);

/** The index of the first of `blocks` blocks of `type` whose scale (or q4_k's d or dmin) is infinite or NaN; -1 when
 * all are finite. */
MOERT_KERNEL int64_t moert_quant_first_nonfinite(int type, const void *src, int64_t blocks);

/** Bytes moert_quantize_activation writes for `cols` values (and the GEMVs' own layouts of them need). */
MOERT_KERNEL int64_t moert_quant_activation_bytes(int64_t cols);

/** Quantizes `cols` floats (a multiple of MOERT_QUANT_BLOCK) to activation blocks: per block d = max|x| / 127 as
 * float32, q = x / d rounded to nearest even. */
MOERT_KERNEL void moert_quantize_activation(const float *x, void *xq, int64_t cols);

/**
 * y[r] = sum_c w[r, c] * x[c] for r < rows, w of `type` (MOERT_QUANT_Q8_0, _Q4_0, _Q3_0 or _Q4_K) with `cols`
 * (whole blocks) values per row. x is first quantized into `xq` (moert_quant_activation_bytes(cols) bytes); then
 * each block's 32 products (q4_k: each sub-block's) are summed in integers and scaled by both block scales, on the
 * kernel chosen for gemv.q8_0 / gemv.q4_0 / gemv.q3_0 / gemv.q4_k. Rows are split among the worker threads.
 */
MOERT_KERNEL void moert_gemv_quant(const void *w, int type, const float *x, void *xq, float *y, int64_t rows,
                                   int64_t cols);
MOERT_KERNEL void moert_gemv_quant_kernel(int kernel, const void *w, int type, const float *x, void *xq, float *y,
                                          int64_t rows, int64_t cols);

/* ---- Attention (attention.c) ---- */

/**
 * Attention of one new position (decode) against `total` cached positions of KV type `kv_type`. For each query
 * head h of n_heads, with key/value head g = h / (n_heads / n_kv_heads):
 *   out[h] = softmax(scale * q[h] . keys[j, g] for j < total [, sinks[h]]) . values[:, g]
 * where `sinks` (NULL: none) adds one learned logit per query head to the softmax denominator and is then dropped
 * (gpt-oss, `eager_attention_forward` of modeling_gpt_oss.py). q and out are [n_heads * head_dim] float32; keys and
 * values are `ring` rows of n_kv_heads * head_dim values, moert_kv_row_bytes apart (head_dim a multiple of
 * MOERT_Q8_0_BLOCK for q8_0), and position j of the `total` attended is row (first + j) % ring (0 <= first < ring,
 * total <= ring): a linear cache passes first = 0 and ring = total, the ring buffer of a sliding-window layer the
 * row of its oldest visible position. Each cached row is read once for all the heads that share it; long contexts
 * split the positions among the worker threads, whose partial softmaxes are then merged (flash decoding).
 * `scratch` holds moert_attention_decode_scratch(n_heads, head_dim, total) floats. The kernel chosen for
 * attention.decode runs (its avx2 kernel needs head_dim a multiple of 8, else portable runs).
 */
MOERT_KERNEL void moert_attention_decode(const float *q, const void *keys, const void *values, int kv_type,
                                         int n_heads, int n_kv_heads, int head_dim, int64_t first, int64_t total,
                                         int64_t ring, const float *sinks, float scale, float *scratch, float *out);
MOERT_KERNEL void moert_attention_decode_kernel(int kernel, const float *q, const void *keys, const void *values,
                                                int kv_type, int n_heads, int n_kv_heads, int head_dim, int64_t first,
                                                int64_t total, int64_t ring, const float *sinks, float scale,
                                                float *scratch, float *out);

/** Floats of scratch moert_attention_decode needs for a cache of up to `capacity` positions. */
MOERT_KERNEL int64_t moert_attention_decode_scratch(int n_heads, int head_dim, int64_t capacity);

/**
 * Causal attention of `n` new positions (prefill) at positions position ..< position + n against keys and values
 * that already hold them: for each query head h (key/value head g = h / (n_heads / n_kv_heads)) and new position t,
 *   out[t, h] = softmax(scale * q[t, h] . keys[j, g] for lo <= j <= position + t [, sinks[h]]) . values[:, g]
 * with lo = 0, or with a sliding `window` (0: none) lo = max(0, position + t - window + 1): the query sees the
 * `window` keys ending at its own (`sliding_window_overlay` of transformers' masking_utils.py: kv_idx > q_idx -
 * window). `sinks` (NULL: none) adds one learned logit per query head to the softmax denominator, as
 * moert_attention_decode. q and out are [n, n_heads * head_dim]; keys and values [position + n, n_kv_heads *
 * head_dim]. The heads are split among the worker threads, each with its own part of `scores` (scratch of
 * `scores_capacity` floats, at least min(n, 64) * (position + n)). Returns 1 when done, 0 when it computed nothing
 * (attention.prefill runs on blas): the caller computes it.
 */
MOERT_KERNEL int moert_attention_prefill(const float *q, const float *keys, const float *values, int64_t n,
                                         int64_t position, int64_t window, const float *sinks, int n_heads,
                                         int n_kv_heads, int head_dim, float scale, float *scores,
                                         int64_t scores_capacity, float *out);
MOERT_KERNEL int moert_attention_prefill_kernel(int kernel, const float *q, const float *keys, const float *values,
                                                int64_t n, int64_t position, int64_t window, const float *sinks,
                                                int n_heads, int n_kv_heads, int head_dim, float scale, float *scores,
                                                int64_t scores_capacity, float *out);

/**
 * moert_attention_prefill_kernel whose values are the first `value_dim` (1 ... head_dim) of each value head's row of
 * head_dim: out is [n, n_heads * value_dim]. Multi-head latent attention's absorbed form passes its cached rows as
 * both keys and values (one key/value head: the whole row [latent | rope key] as key, the latent as value).
 */
MOERT_KERNEL int moert_attention_prefill_values(int kernel, const float *q, const float *keys, const float *values,
                                                int64_t n, int64_t position, int64_t window, const float *sinks,
                                                int n_heads, int n_kv_heads, int head_dim, int value_dim, float scale,
                                                float *scores, int64_t scores_capacity, float *out);

/* ---- Activation (swiglu.c) ---- */

/**
 * SwiGLU of `rows` rows laid out as [gate (width) | up (width)]: out[r, c] = silu(gate[r, c]) * up[r, c], out
 * [rows, width]. `out` must not overlap `gate_up`, except that it may equal it when rows == 1. Rows are split among
 * the worker threads. Returns 1 when done, 0 when it computed nothing (swiglu runs on portable): the caller computes
 * it.
 */
MOERT_KERNEL int moert_swiglu(const float *gate_up, int64_t rows, int64_t width, float *out);
MOERT_KERNEL int moert_swiglu_kernel(int kernel, const float *gate_up, int64_t rows, int64_t width, float *out);

/**
 * moert_swiglu_kernel of gate [rows, width] and up [rows, width] held apart: the same bits for each row. `out` may
 * equal `gate`, and must not otherwise overlap either.
 */
MOERT_KERNEL int moert_swiglu_split_kernel(int kernel, const float *gate, const float *up, int64_t rows, int64_t width,
                                           float *out);

/* ---- Conversion (convert.c) ---- */

/** Widens `count` f16 or bf16 values to float32. */
MOERT_KERNEL void moert_half_to_float(const void *src, int dtype, float *dst, int64_t count);

/* ---- Scaled formats (scaled.c) ---- */

/**
 * Block-wise FP8: w [rows, cols] of e4m3fn bytes, scales [ceil(rows / block_rows), ceil(cols / block_cols)] of type
 * `scale_type` (MOERT_GEMM_F32, MOERT_HALF_BF16 or MOERT_HALF_F16; any alignment), one per block of block_rows x
 * block_cols values (the last block of a row or column covers what is left). Writes dst[r, c] = e4m3(w[r, c]) *
 * scale[r / block_rows, c / block_cols] in float32. Returns -1, or the index of the first weight that is NaN (then
 * dst is partly written).
 */
MOERT_KERNEL int64_t moert_fp8_dequantize(const uint8_t *w, const void *scales, int scale_type, int64_t rows,
                                          int64_t cols, int64_t block_rows, int64_t block_cols, float *dst);

/** Index of the first of `count` scales of type `scale_type` (as above) that is infinite or NaN, or -1. */
MOERT_KERNEL int64_t moert_fp8_first_bad_scale(const void *scales, int scale_type, int64_t count);

/**
 * MXFP4: source row i is `groups` blocks of 16 bytes at blocks + (i * groups + g) * 16, 32 e2m1 values (the low
 * nibble of each byte first), times 2^(scales[i * groups + g] - 127). Writes `rows` rows of groups * 32 values,
 * output row r being source row first_row + r * row_step, as `out_type` (MOERT_HALF_BF16 or MOERT_GEMM_F32; exact
 * for both). Returns -1, or the index (i * groups + g) of the first block whose scale is 255 (NaN in e8m0) or makes
 * a value overflow (then dst is partly written).
 */
MOERT_KERNEL int64_t moert_mxfp4_dequantize(const uint8_t *blocks, const uint8_t *scales, int64_t first_row,
                                            int64_t row_step, int64_t rows, int64_t groups, int out_type, void *dst);

/* ---- Copy (copy.c) ---- */

/** memcpy of `bytes` (dst and src must not overlap), split among the worker threads when large. */
MOERT_KERNEL void moert_copy(void *dst, const void *src, int64_t bytes);

/** Writes back and evicts the cache lines of `bytes` bytes from p from every cache level (x86's clflush), so that the
 * next read of them comes from memory: the kernel measurement's GEMVs read their weights as a decode does. Returns
 * 1, or 0 where the CPU has no such instruction (nothing done); moert_cache_evict(NULL, 0) asks. */
MOERT_KERNEL int moert_cache_evict(const void *p, int64_t bytes);
/* dst[cols, rows] = the transpose of src[rows, cols] (elements of elem_bytes, any alignment); with `interleaved`
 * (cols even) the source columns are pairs (a_0 b_0 a_1 b_1 ...) and the destination holds the a rows, then the b rows.
 * Single-threaded. */
MOERT_KERNEL void moert_transpose_copy(void *dst, const void *src, int64_t rows, int64_t cols, int elem_bytes,
                                       int interleaved);

/* ---- A plain read (stream_read.c) ---- */

/** Reads the `bytes` bytes at p (in 256-byte steps: a shorter tail is left out) as float32 values split among the
 * worker threads, one sequential stream per thread, and returns their sum (so that no compiler
 * drops the reads): the memory bandwidth a plain reader reaches, for `moert bench --bandwidth`. */
MOERT_KERNEL float moert_stream_read(const void *p, int64_t bytes);

#endif
