/* attention_decode.c: decode attention alone at a given depth, as a small-preset token runs it (8 layers, 8 query
** heads over 4 key/value heads of 64 dimensions), on one of its kernels (avx2 by default): milliseconds per token and
** the cache bytes read per second. Built from the kernel sources directly, so that two trees (before and after a change) can be compared
** round by round:
**
**     clang -O2 -ISources/CKernels/include -ISources/CKernels benchmarks/attention_decode.c Sources/CKernels/[a-z]*.c \
**         -lpthread -lm -o /tmp/attention_decode
**     /tmp/attention_decode q8_0 4000 [threads [kernel]]   # KV type f32, f16, bf16 or q8_0; depth; threads
**                                                          # (default 2); kernel avx2, avx2l2 or portable
**
** Prints the best of 15 timings of 20 tokens each. */
#define _POSIX_C_SOURCE 200809L
#include "moert_kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { LAYERS = 8, HEADS = 8, KV_HEADS = 4, HEAD_DIM = 64, TOKENS = 20, TIMINGS = 15 };

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A value in [-1, 1) from a 64-bit LCG (the benchmark needs no better). */
static float next_value(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(*state >> 40) / (float)(1 << 23) - 1.0f;
}

int main(int argc, char **argv) {
    const char *names[] = {"f32", "f16", "bf16", "q8_0"};
    const int types[] = {MOERT_KV_F32, MOERT_KV_F16, MOERT_KV_BF16, MOERT_KV_Q8_0};
    int type = -1;
    for (int i = 0; argc > 1 && i < 4; i++) if (strcmp(argv[1], names[i]) == 0) type = types[i];
    const long long depth = argc > 2 ? atoll(argv[2]) : 0;
    int kernel = MOERT_KERNEL_AVX2;
    for (int k = 0; argc > 4 && k < MOERT_KERNEL_COUNT; k++)
        if (strcmp(argv[4], moert_kernel_name(k)) == 0) kernel = k;
    if (type < 0 || depth < 1 || depth > 1000000 ||
        (argc > 4 && !moert_kernel_available(MOERT_PRODUCT_ATTENTION_DECODE, kernel)) ||
        (argc > 4 && strcmp(argv[4], moert_kernel_name(kernel)) != 0)) {
        fprintf(stderr, "usage: %s f32|f16|bf16|q8_0 DEPTH [THREADS [KERNEL]] (a kernel of attention.decode this CPU runs)\n", argv[0]);
        return 2;
    }
    moert_kernels_set_threads(argc > 3 ? atoi(argv[3]) : 2);
    const int64_t width = KV_HEADS * HEAD_DIM, row_bytes = moert_kv_row_bytes(type, width);
    float *values = malloc(sizeof(float) * (size_t)(depth * width));
    uint8_t *keys[LAYERS], *cached[LAYERS];
    float *scratch = malloc(sizeof(float) * (size_t)moert_attention_decode_scratch(HEADS, HEAD_DIM, depth));
    if (!values || !scratch) return 1;
    uint64_t state = 1;
    for (int64_t i = 0; i < depth * width; i++) values[i] = 2 * next_value(&state);
    for (int l = 0; l < LAYERS; l++) {
        /* 64-byte aligned, as moert's cache (FloatBuffer): malloc's large blocks start 16 bytes into a page, which
           would split every row's cache lines differently from a real decode. */
        const size_t bytes = ((size_t)(row_bytes * depth) + 63) / 64 * 64;
        keys[l] = aligned_alloc(64, bytes);
        cached[l] = aligned_alloc(64, bytes);
        if (!keys[l] || !cached[l]) return 1;
        moert_kv_store(type, values, keys[l], depth * width);
        moert_kv_store(type, values, cached[l], depth * width);
    }
    float q[HEADS * HEAD_DIM], out[HEADS * HEAD_DIM];
    for (int i = 0; i < HEADS * HEAD_DIM; i++) q[i] = next_value(&state) / 2;
    double best = 1e30;
    for (int t = 0; t < TIMINGS; t++) {
        const double start = seconds();
        for (int token = 0; token < TOKENS; token++) {
            for (int l = 0; l < LAYERS; l++) {
                moert_attention_decode_kernel(kernel, q, keys[l], cached[l], type, HEADS, KV_HEADS, HEAD_DIM,
                                              0, depth, depth, NULL, 0.125f, scratch, out);
            }
        }
        const double per_token = (seconds() - start) / TOKENS;
        best = per_token < best ? per_token : best;
    }
    printf("%s depth %lld, %s: %.3f ms per token (%d layers), %.1f GB/s of cache\n", argv[1], depth, moert_kernel_name(kernel), best * 1e3, LAYERS,
           2.0 * LAYERS * (double)row_bytes * (double)depth / best / 1e9);
    return 0;
}
