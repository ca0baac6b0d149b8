/* cpu.c: the run-time checks of the CPU features the kernels use, each made once. */
#include "kernels_internal.h"

#include <stdlib.h>
#include <string.h>

static int have_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return cached;
}

int moert_kernels_have_avx2(void) { return have_avx2(); }

/* AVX-512 F, BW and VL (and F16C), unless the environment sets MOERT_AVX512=0. */
static int have_avx512(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        const char *env = getenv("MOERT_AVX512");
        int allowed = !(env && strcmp(env, "0") == 0);
        cached = allowed && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && have_avx2();
    }
    return cached;
}

int moert_kernels_have_avx512(void) { return have_avx512(); }
