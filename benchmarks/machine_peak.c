/* machine_peak.c: the two limits moert's speed is measured against, measured the way fast code reaches them.
**
**   cc -O3 -pthread benchmarks/machine_peak.c -o machine_peak && ./machine_peak [threads]
**
** read   GB/s reading a buffer once, split among the threads, in several patterns, each the best of several passes,
**        over 256 MiB and 1 GiB: a plain sequential sum (read_sequential_gbps; the hardware prefetcher alone), four
**        interleaved streams per thread with software prefetch 1 KiB ahead (a GEMV over four weight rows), and one
**        stream per thread, 256 bytes per step, with software prefetch 1, 4 or 8 KiB ahead (moert's decode GEMV).
**        Each pattern reads with 256-bit loads and, on a CPU with AVX-512, again with 512-bit ones (moert's kernel
**        choice runs AVX2 kernels on some AVX-512 CPUs, Zen 4 among them). Which pattern reads fastest differs
**        between CPUs, so read_gbps is the best of them all: a limit no reader of the same bytes should beat. Each
**        pattern's figure is printed too (read_<pattern>_<MiB>, with _avx512 for the 512-bit loads).
** fma    GFLOP/s of independent fused multiply-adds on every thread (AVX-512 when the CPU has it, else AVX2): the
**        compute ceiling of any float32 GEMM, best of 5 runs of about 0.2 s.
** Prints one line per measurement: "<name> <value>". */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct part {
    const float *data;
    long count;      /* floats */
    int streams;     /* 1: one stream; 4: four interleaved streams */
    int ahead;       /* software prefetch distance in bytes; 0: none */
    int wide;        /* AVX-512 */
    double sink;
} part;

__attribute__((target("avx512f")))
static double read_avx512(const float *p, long count, int streams, int ahead) {
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
    long per = count / streams;
    for (long i = 0; i < per; i += 64) {
        for (int s = 0; s < streams; s++) {
            const float *q = p + s * per + i;
            if (ahead)
                for (int line = 0; line < 256; line += 64) _mm_prefetch((const char *)q + ahead + line, _MM_HINT_T0);
            a = _mm512_add_ps(a, _mm512_load_ps(q));
            b = _mm512_add_ps(b, _mm512_load_ps(q + 16));
            c = _mm512_add_ps(c, _mm512_load_ps(q + 32));
            d = _mm512_add_ps(d, _mm512_load_ps(q + 48));
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

__attribute__((target("avx2")))
static double read_avx2(const float *p, long count, int streams, int ahead) {
    __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
    long per = count / streams;
    for (long i = 0; i < per; i += 64) {
        for (int s = 0; s < streams; s++) {
            const float *q = p + s * per + i;
            if (ahead)
                for (int line = 0; line < 256; line += 64) _mm_prefetch((const char *)q + ahead + line, _MM_HINT_T0);
            for (int k = 0; k < 64; k += 32) {
                a = _mm256_add_ps(a, _mm256_load_ps(q + k));
                b = _mm256_add_ps(b, _mm256_load_ps(q + k + 8));
                c = _mm256_add_ps(c, _mm256_load_ps(q + k + 16));
                d = _mm256_add_ps(d, _mm256_load_ps(q + k + 24));
            }
        }
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
    return out[0] + out[7];
}

static void *read_part(void *arg) {
    part *p = arg;
    p->sink = p->wide ? read_avx512(p->data, p->count, p->streams, p->ahead)
                      : read_avx2(p->data, p->count, p->streams, p->ahead);
    return NULL;
}

enum { CHAINS = 12 };
static long fma_iterations = 1 << 22;

__attribute__((target("avx512f")))
static double fma_avx512(void) {
    __m512 acc[CHAINS], m = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps((float)c);
    for (long i = 0; i < fma_iterations; i++)
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], m, add);
    __m512 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_ps(s, acc[c]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma")))
static double fma_avx2(void) {
    __m256 acc[CHAINS], m = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
    for (long i = 0; i < fma_iterations; i++)
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], m, add);
    float out[8];
    __m256 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
    _mm256_storeu_ps(out, s);
    return out[0];
}

static void *fma_part(void *arg) {
    part *p = arg;
    p->sink = p->wide ? fma_avx512() : fma_avx2();
    return NULL;
}

/* Runs fn on `threads` threads over `parts`; returns the wall time. */
static double run(void *(*fn)(void *), part *parts, int threads) {
    pthread_t t[64];
    double start = now();
    for (int i = 1; i < threads; i++) pthread_create(&t[i], NULL, fn, &parts[i]);
    fn(&parts[0]);
    for (int i = 1; i < threads; i++) pthread_join(t[i], NULL);
    return now() - start;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "usage: machine_peak [threads (1-64)]\n");
        return 2;
    }
    __builtin_cpu_init();
    int wide = __builtin_cpu_supports("avx512f") != 0;
    if (!wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
        fprintf(stderr, "machine_peak: needs AVX2 and FMA\n");
        return 1;
    }
    /* The read patterns: name, streams per thread, prefetch distance. */
    static const struct { const char *name; int streams, ahead; } patterns[] = {
        {"sequential", 1, 0}, {"streams4", 4, 1024}, {"ahead1k", 1, 1024}, {"ahead4k", 1, 4096}, {"ahead8k", 1, 8192},
    };
    const int n_patterns = (int)(sizeof patterns / sizeof patterns[0]);
    const long largest = 1L << 30;
    float *data = aligned_alloc(64, largest);
    if (!data) return 1;
    memset(data, 0, largest);
    part parts[64];
    double best_read = 0, best_sequential = 0;
    for (int wide_loads = 0; wide_loads <= wide; wide_loads++) {  /* 256-bit loads, then 512-bit ones */
        for (long bytes = 1L << 28; bytes <= largest; bytes <<= 2) {
            const long count = bytes / sizeof(float);
            const int reps = bytes < largest ? 16 : 6;
            for (int pt = 0; pt < n_patterns; pt++) {
                double best = 0;
                for (int rep = 0; rep < reps; rep++) {
                    for (int i = 0; i < threads; i++)
                        parts[i] = (part){data + count / threads * i, count / threads, patterns[pt].streams,
                                          patterns[pt].ahead, wide_loads, 0};
                    double t = run(read_part, parts, threads);
                    if (bytes / t > best) best = bytes / t;
                }
                printf("read_%s_%ld%s %.1f\n", patterns[pt].name, bytes >> 20, wide_loads ? "_avx512" : "", best / 1e9);
                if (best > best_read) best_read = best;
                if (pt == 0 && best > best_sequential) best_sequential = best;
            }
        }
    }
    printf("read_sequential_gbps %.1f\nread_gbps %.1f\n", best_sequential / 1e9, best_read / 1e9);
    free(data);
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        for (int i = 0; i < threads; i++) parts[i] = (part){NULL, 0, 0, 0, wide, 0};
        double t = run(fma_part, parts, threads);
        double flops = 2.0 * (wide ? 16 : 8) * CHAINS * fma_iterations * threads;
        if (flops / t > best) best = flops / t;
    }
    printf("fma_gflops %.1f\n", best / 1e9);
    printf("threads %d\nvector %s\n", threads, wide ? "avx512" : "avx2");
    return 0;
}
