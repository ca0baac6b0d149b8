/* moert_kernels.h: internal C kernels of moert — half-precision GEMV with conversion in registers, and a small
** worker pool. Not part of the public API. */
#ifndef MOERT_KERNELS_H
#define MOERT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Internal to libmoert.so: never exported. */
#define MOERT_KERNEL __attribute__((visibility("hidden")))

/** Element types of half-precision weights. */
#define MOERT_HALF_F16  1
#define MOERT_HALF_BF16 2

/** Sets the number of threads the kernels use (>= 1), including the caller. Until it is called they use every
 * online CPU. */
MOERT_KERNEL void moert_kernels_set_threads(int n_threads);

/** The number of threads the kernels use, including the caller. */
MOERT_KERNEL int moert_kernels_threads(void);

/** True when the AVX2/FMA/F16C paths are in use (checked at run time). */
MOERT_KERNEL int moert_kernels_have_avx2(void);

/**
 * y[r] = sum_c w[r, c] * x[c] for r < rows, with w stored as f16 or bf16, row-major, `cols` per row.
 * Rows are split among the worker threads; each element is widened to float32 in registers.
 */
MOERT_KERNEL void moert_gemv_half(const void *w, int dtype, const float *x, float *y, int64_t rows, int64_t cols);

/**
 * Attention of one new position (decode) against `total` cached positions. For each query
 * head h of n_heads, with key/value head g = h / (n_heads / n_kv_heads):
 *   out[h] = softmax(scale * q[h] . keys[j, g] for j < total) . values[:, g]
 * q and out are [n_heads * head_dim]; keys and values are [total, n_kv_heads * head_dim], row-major; `scores` is
 * scratch for `scores_capacity` >= total floats. Long contexts split the heads among the worker threads (each part
 * needs `total` floats of scratch). The softmax subtracts the maximum, like the prefill path's.
 */
MOERT_KERNEL void moert_attention_one(const float *q, const float *keys, const float *values, int n_heads,
                                      int n_kv_heads, int head_dim, int64_t total, float scale, float *scores,
                                      int64_t scores_capacity, float *out);

/**
 * Calls fn(ctx, part, parts) for part = 0 ..< parts on the worker pool (part 0 on the calling thread), with
 * parts = min(max_parts, threads); parts = 1, on this thread alone, when the pool is busy.
 */
MOERT_KERNEL void moert_parallel(void (*fn)(void *ctx, int part, int parts), void *ctx, int max_parts);

/** memcpy of `bytes` (dst and src must not overlap), split among the worker threads when large. */
MOERT_KERNEL void moert_copy(void *dst, const void *src, int64_t bytes);

/** Widens `count` f16 or bf16 values to float32. */
MOERT_KERNEL void moert_half_to_float(const void *src, int dtype, float *dst, int64_t count);

#endif
