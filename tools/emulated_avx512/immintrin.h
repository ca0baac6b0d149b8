/* immintrin.h for the emulated AVX-512 builds (tools/emulated_avx512.sh, Tests/c/test_emulated_avx512.c): every x86
** intrinsic the kernels use, as portable C from SIMDe (Debian's libsimde-dev), so that the AVX-512 paths run and are
** tested on a CPU without AVX-512. Checks what the kernels compute, never how fast: an emulated instruction costs
** tens of real ones.
**
** This directory comes first on the include path of that build only (-I), so `#include <immintrin.h>` finds this
** file instead of the compiler's. SIMDe 0.7.4 lacks the few intrinsics below; they are written out lane by lane
** from Intel's definitions. */
#ifndef MOERT_EMULATED_IMMINTRIN_H
#define MOERT_EMULATED_IMMINTRIN_H

/* Vectors wider than the build's ISA travel in memory, the same way in every function of this build: the
** compiler's note that this differs from an AVX build's convention does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

/* SIMDe includes the compiler's SSE2 header, which in recent clang already names bf16 vectors __m128bh (and
** __m256bh, __m512bh): SIMDe's aliases of those names are renamed out of the way (the kernels use none of them). */
#include <emmintrin.h>
#define __m128bh moert_emulated_m128bh
#define __m256bh moert_emulated_m256bh
#define __m512bh moert_emulated_m512bh
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#include <simde/x86/fma.h>

#include <stdint.h>
#include <string.h>

typedef simde__mmask8 __mmask8;
typedef simde__mmask16 __mmask16;
typedef simde__mmask32 __mmask32;
typedef simde__mmask64 __mmask64;
#ifndef _CMP_LT_OQ
#define _CMP_LT_OQ SIMDE_CMP_LT_OQ
#endif
#ifndef _MM_FROUND_NO_EXC
#define _MM_FROUND_NO_EXC SIMDE_MM_FROUND_NO_EXC
#endif
#ifndef _MM_FROUND_TO_NEAREST_INT
#define _MM_FROUND_TO_NEAREST_INT SIMDE_MM_FROUND_TO_NEAREST_INT
#endif

/* The f16 value h as float32 (F16C's vcvtph2ps on one value). */
static inline float _cvtsh_ss(unsigned short h) {
    return simde_mm_cvtss_f32(simde_mm_cvtph_ps(simde_mm_cvtsi32_si128((int)h)));
}

/* The 16 lanes of a (the helper of what follows). */
static inline void moert_emulated_lanes(__m512 a, float lanes[16]) { simde_mm512_storeu_ps(lanes, a); }

/* Lane i = p[i] where bit i of k is set, else 0; unset lanes are not read (as the instruction, which never faults
** on them). */
static inline __m512 _mm512_maskz_loadu_ps(__mmask16 k, const void *p) {
    float lanes[16];
    for (int i = 0; i < 16; i++) {
        lanes[i] = 0;
        if (k >> i & 1) memcpy(&lanes[i], (const char *)p + 4 * i, 4);
    }
    return simde_mm512_loadu_ps(lanes);
}

static inline __m256i _mm256_maskz_loadu_epi16(__mmask16 k, const void *p) {
    uint16_t lanes[16];
    for (int i = 0; i < 16; i++) {
        lanes[i] = 0;
        if (k >> i & 1) memcpy(&lanes[i], (const char *)p + 2 * i, 2);
    }
    return simde_mm256_loadu_si256(lanes);
}

/* p[i] = lane i where bit i of k is set; the other elements of p are left alone (and not touched). */
static inline void _mm512_mask_storeu_ps(void *p, __mmask16 k, __m512 a) {
    float lanes[16];
    moert_emulated_lanes(a, lanes);
    for (int i = 0; i < 16; i++)
        if (k >> i & 1) memcpy((char *)p + 4 * i, &lanes[i], 4);
}

/* 16 unsigned 16-bit lanes, zero-extended to 32 bits. */
static inline __m512i _mm512_cvtepu16_epi32(__m256i a) {
    uint16_t in[16];
    uint32_t out[16];
    simde_mm256_storeu_si256(in, a);
    for (int i = 0; i < 16; i++) out[i] = in[i];
    return simde_mm512_loadu_si512(out);
}

/* 16 f16 values to float32. */
static inline __m512 _mm512_cvtph_ps(__m256i a) {
    uint16_t in[16];
    float out[16];
    simde_mm256_storeu_si256(in, a);
    for (int i = 0; i < 16; i++) out[i] = _cvtsh_ss(in[i]);
    return simde_mm512_loadu_ps(out);
}

/* The sum and the largest of the 16 lanes, halving the vector each step (8 + 8, 4 + 4, 2 + 2, 1 + 1), as the
** compilers' sequences for these intrinsics do. */
static inline float _mm512_reduce_add_ps(__m512 a) {
    float l[16];
    moert_emulated_lanes(a, l);
    for (int width = 8; width >= 1; width /= 2)
        for (int i = 0; i < width; i++) l[i] = l[i] + l[i + width];
    return l[0];
}

static inline float _mm512_reduce_max_ps(__m512 a) {
    float l[16];
    moert_emulated_lanes(a, l);
    for (int width = 8; width >= 1; width /= 2)
        for (int i = 0; i < width; i++) l[i] = l[i] > l[i + width] ? l[i] : l[i + width];
    return l[0];
}

/* 128-bit lanes: the result's lanes 0 and 1 are a's lanes imm[1:0] and imm[3:2], its lanes 2 and 3 b's lanes
** imm[5:4] and imm[7:6]. */
static inline __m512 _mm512_shuffle_f32x4(__m512 a, __m512 b, int imm) {
    float la[16], lb[16], out[16];
    moert_emulated_lanes(a, la);
    moert_emulated_lanes(b, lb);
    for (int lane = 0; lane < 4; lane++) {
        const float *from = lane < 2 ? la : lb;
        memcpy(out + 4 * lane, from + 4 * (imm >> (2 * lane) & 3), 16);
    }
    return simde_mm512_loadu_ps(out);
}

/* The kernels' functions carry __attribute__((target("avx512f,..."))) for the real instructions. Here every
** intrinsic is an ordinary C function: the attribute would make the compiler pass vectors to them in registers of a
** width they do not expect (clang refuses), and would let it emit the real instructions in the kernels' own loops.
** So in this build the attribute is a harmless one. */
#define target(features) unused

#endif
