/* cpu.c: the run-time checks of the CPU features the kernels use, each made once, and the CPU's identity (which
** keys the kernel choices cached per CPU). */
#include "kernels_internal.h"

#include <cpuid.h>
#include <stdlib.h>
#include <string.h>

/* Whether the CPU has `feature` (a name __builtin_cpu_supports knows, one the kernels use). The emulated build
** (tools/emulated_avx512.sh, Tests/c/test_emulated_avx512.c: every intrinsic is C code) claims them all, on any
** x86-64 CPU. */
#ifdef MOERT_EMULATED_AVX512
#define cpu_supports(feature) 1
#else
#define cpu_supports(feature) __builtin_cpu_supports(feature)
#endif

static int have_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = cpu_supports("avx2") && cpu_supports("fma") && cpu_supports("f16c");
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
        cached = allowed && cpu_supports("avx512f") && cpu_supports("avx512bw") && cpu_supports("avx512vl") &&
                 have_avx2();
    }
    return cached;
}

int moert_kernels_have_avx512(void) { return have_avx512(); }

int moert_kernels_have_avx512_vnni(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = have_avx512() && cpu_supports("avx512vnni");
    }
    return cached;
}

unsigned moert_cpu_features(void) {
    __builtin_cpu_init();
    unsigned f = 0;
    if (cpu_supports("avx2")) f |= MOERT_CPU_AVX2;
    if (cpu_supports("fma")) f |= MOERT_CPU_FMA;
    if (cpu_supports("f16c")) f |= MOERT_CPU_F16C;
    if (cpu_supports("avx512f")) f |= MOERT_CPU_AVX512F;
    if (cpu_supports("avx512bw")) f |= MOERT_CPU_AVX512BW;
    if (cpu_supports("avx512vl")) f |= MOERT_CPU_AVX512VL;
    if (cpu_supports("avx512vnni")) f |= MOERT_CPU_AVX512VNNI;
    if (cpu_supports("avx512bf16")) f |= MOERT_CPU_AVX512BF16;
    return f;
}

void moert_cpu_identify(moert_cpu_identity *id) {
    memset(id, 0, sizeof *id);
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    memcpy(id->vendor, &b, 4);
    memcpy(id->vendor + 4, &d, 4);
    memcpy(id->vendor + 8, &c, 4);
    if (a >= 1 && __get_cpuid(1, &a, &b, &c, &d)) {
        /* The displayed family and model, as /proc/cpuinfo shows them: the extended fields count from family 15
        ** (and Intel's family 6). */
        const unsigned base = (a >> 8) & 0xf;
        unsigned family = base, model = (a >> 4) & 0xf;
        if (base == 15) family += (a >> 20) & 0xff;
        if (base == 15 || base == 6) model |= ((a >> 16) & 0xf) << 4;
        id->family = (int)family;
        id->model = (int)model;
        id->stepping = (int)(a & 0xf);
    }
    if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
        for (unsigned leaf = 0; leaf < 3; leaf++) {
            __get_cpuid(0x80000002 + leaf, &a, &b, &c, &d);
            unsigned regs[4] = {a, b, c, d};
            memcpy(id->brand + 16 * leaf, regs, 16);
        }
        id->brand[48] = 0;
    }
}
