/* stream_read.c: moert_stream_read, a plain read of a buffer split among the worker threads: the yardstick against
** which `moert bench --bandwidth` sets decode's bytes per second, measured on the same threads in the same seconds.
** Each thread reads a run of consecutive parts as one sequential stream with the hardware prefetcher alone
** (benchmarks/machine_peak.c's read_sequential): in plain C, which the compiler vectorises; on a Zen 4 EPYC it read
** as fast as AVX2 loads, which with a software prefetch 8 KiB ahead read 5-15% slower (decode then outran them). */
#include "kernels_internal.h"

enum { READ_PARTS = 64, STEP = 256 };

typedef struct read_task {
    const uint8_t *p;
    int64_t steps;
    float sums[READ_PARTS];
} read_task;

/* Steps [part / parts) of the buffer: the sum of their floats, in 8 independent chains. */
static void read_part(void *ctx, int part, int parts) {
    read_task *t = ctx;
    const int64_t s0 = t->steps * part / parts, s1 = t->steps * (part + 1) / parts;
    float s[8] = {0};
    for (const uint8_t *p = t->p + s0 * STEP, *end = t->p + s1 * STEP; p < end; p += 32) {
        float v[8];
        memcpy(v, p, sizeof v);
        for (int k = 0; k < 8; k++) s[k] += v[k];
    }
    t->sums[part] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

float moert_stream_read(const void *p, int64_t bytes) {
    read_task t = {p, bytes / STEP, {0}};
    moert_parallel(read_part, &t, READ_PARTS);
    float sum = 0;
    for (int i = 0; i < READ_PARTS; i++) sum += t.sums[i];
    return sum;
}
