/* test_emulated_avx512.c — the AVX-512 and AVX-512 VNNI kernels on any x86-64 CPU.
**
** Built by tools/run_c_tests.sh from the kernel sources with tools/emulated_avx512/immintrin.h in front of the
** compiler's (every intrinsic portable C from SIMDe) and MOERT_EMULATED_AVX512 (the CPU check claims AVX-512 F, BW,
** VL and VNNI, and AVX2), so that a machine without AVX-512 still checks what those kernels compute:
**  - the quantized GEMVs' avx512 kernel (VNNI's vpdpbusd) gives the avx2 kernel's bits, and both meet a double loop
**    over the dequantized weights and the 8-bit activations;
**  - the q4_0/q3_0/q4_k prefill GEMM's avx512 kernel (VNNI) gives the avx2 kernel's bits, and q8_0's (VNNI; on
**    avx2 a float kernel) meets a double loop over the dequantized weights and the 8-bit activations;
**  - the float GEMV and GEMM's avx512 kernels meet double loops.
** tools/emulated_avx512.sh runs the whole Swift kernel and parity suites the same way. */
#include "check.h"
#include "moert_kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int quant_types[] = {MOERT_QUANT_Q8_0, MOERT_QUANT_Q4_0, MOERT_QUANT_Q3_0, MOERT_QUANT_Q4_K};
static const char *const quant_names[] = {"q8_0", "q4_0", "q3_0", "q4_k"};
enum { QUANT_TYPES = 4 };

/* A value in [-1, 1) from a 64-bit LCG. */
static float next_value(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(*state >> 40) / (float)(1 << 23) - 1.0f;
}

static float *random_floats(int64_t count, uint64_t seed) {
    float *v = malloc(sizeof *v * (size_t)count);
    if (!v) abort();
    for (int64_t i = 0; i < count; i++) v[i] = next_value(&seed);
    return v;
}

/* rows x cols weights quantized to `type` (with one block of the largest quants: 1 and -1 at the ends of a block
** make q8_0's 127 and -127, q4_0's 7 and -8; for q4_k 0 and 15), and the values they hold. */
static void *quantized(int type, int64_t rows, int64_t cols, uint64_t seed, float **values) {
    float *w = random_floats(rows * cols, seed);
    for (int i = 0; i < 32 && i < cols; i++) w[i] = i % 2 ? -1.0f : 1.0f;
    void *q = malloc((size_t)(moert_quant_block_bytes(type) * rows * cols / moert_quant_block_values(type)));
    *values = malloc(sizeof(float) * (size_t)(rows * cols));
    if (!q || !*values) abort();
    moert_quantize(type, w, q, rows * cols);
    moert_dequantize_portable(type, q, *values, rows * cols);
    free(w);
    return q;
}

/* The activation as moert_quantize_activation leaves it: per block a float32 scale and 32 int8. */
static void activation_values(const float *x, int64_t cols, float *out) {
    uint8_t *xq = malloc((size_t)moert_quant_activation_bytes(cols));
    if (!xq) abort();
    moert_quantize_activation(x, xq, cols);
    for (int64_t c = 0; c < cols; c++) {
        const uint8_t *block = xq + c / 32 * MOERT_QA_BLOCK_BYTES;
        float d;
        memcpy(&d, block, sizeof d);
        out[c] = d * (float)(int8_t)block[4 + c % 32];
    }
    free(xq);
}

/* The largest difference of the m x n product c (row stride ldc) from a double loop over the dequantized weights w
** [n, k] and a's rows as 8-bit activations, and (in *scale) the largest magnitude of the exact products (at least 1). */
static double gemm_error(const float *a, const float *w, const float *c, int64_t m, int64_t n, int64_t k,
                         int64_t ldc, double *scale) {
    float *row = malloc(sizeof(float) * (size_t)k);
    if (!row) abort();
    double worst = 0;
    *scale = 1;
    for (int64_t i = 0; i < m; i++) {
        activation_values(a + i * k, k, row);
        for (int64_t j = 0; j < n; j++) {
            double exact = 0;
            for (int64_t p = 0; p < k; p++) exact += (double)row[p] * w[j * k + p];
            worst = fmax(worst, fabs(c[i * ldc + j] - exact));
            *scale = fmax(*scale, fabs(exact));
        }
    }
    free(row);
    return worst;
}

static void quantized_gemv(void) {
    /* odd block counts (the two-block loops' tails), one block, and rows above the threading threshold */
    const int64_t shapes[][2] = {{1, 32}, {7, 96}, {33, 288}, {600, 512}, {2048, 512}};
    for (int t = 0; t < QUANT_TYPES; t++) {
        char name[64];
        snprintf(name, sizeof name, "gemv.%s: avx512 (VNNI) = avx2 bit for bit, both = double loop", quant_names[t]);
        group_begin(name);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            /* q4_k: rows of whole super-blocks, 8 times the columns */
            const int64_t rows = shapes[s][0], cols = shapes[s][1] * (quant_types[t] == MOERT_QUANT_Q4_K ? 8 : 1);
            float *w, *x = random_floats(cols, 7 + s);
            float *y2 = malloc(sizeof(float) * (size_t)rows), *y5 = malloc(sizeof(float) * (size_t)rows);
            void *q = quantized(quant_types[t], rows, cols, 100 + s, &w);
            void *xq = malloc((size_t)moert_quant_activation_bytes(cols));
            if (!y2 || !y5 || !xq) abort();
            moert_gemv_quant_kernel(MOERT_KERNEL_AVX2, q, quant_types[t], x, xq, y2, rows, cols);
            moert_gemv_quant_kernel(MOERT_KERNEL_AVX512, q, quant_types[t], x, xq, y5, rows, cols);
            CHECK(memcmp(y2, y5, sizeof(float) * (size_t)rows) == 0, "%s %lldx%lld: avx512 differs from avx2",
                  quant_names[t], (long long)rows, (long long)cols);
            double scale, worst = gemm_error(x, w, y5, 1, rows, cols, rows, &scale);  /* y as a 1 x rows product */
            CHECK(worst <= 1e-5 * scale, "%s %lldx%lld: %g from the double loop", quant_names[t], (long long)rows,
                  (long long)cols, worst);
            free(w), free(x), free(y2), free(y5), free(q), free(xq);
        }
        group_end();
    }
}

static void quantized_gemm(void) {
    /* rows off the 6-row tile, columns off the 16-column panel, k over the 512-column slice */
    const int64_t shapes[][3] = {{1, 1, 32}, {5, 17, 64}, {13, 40, 96}, {64, 100, 1056}};
    for (int t = 0; t < QUANT_TYPES; t++) {
        const int q8_0 = quant_types[t] == MOERT_QUANT_Q8_0;
        char name[80];
        snprintf(name, sizeof name, q8_0 ? "gemm %s: avx512 (VNNI) = double loop with 8-bit activations"
                                         : "gemm %s: avx512 (VNNI) = avx2 bit for bit", quant_names[t]);
        group_begin(name);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            /* q4_k: k of whole super-blocks, 8 times as deep (the last shape in three slices: 512, 512, 256) */
            const int64_t m = shapes[s][0], n = shapes[s][1], ldc = n + 3;
            const int64_t k = quant_types[t] == MOERT_QUANT_Q4_K ? (s == 3 ? 1280 : shapes[s][2] * 8) : shapes[s][2];
            float *w, *a = random_floats(m * k, 40 + s);
            float *c2 = malloc(sizeof(float) * (size_t)(m * ldc)), *c5 = malloc(sizeof(float) * (size_t)(m * ldc));
            void *b = quantized(quant_types[t], n, k, 200 + s, &w);
            if (!c2 || !c5) abort();
            const int done2 = moert_gemm_nt_kernel(MOERT_KERNEL_AVX2, m, n, k, a, k, b, quant_types[t], k, c2, ldc);
            const int done5 = moert_gemm_nt_kernel(MOERT_KERNEL_AVX512, m, n, k, a, k, b, quant_types[t], k, c5, ldc);
            CHECK(done2 == 1 && done5 == 1, "%lldx%lldx%lld: ran %d %d", (long long)m, (long long)n, (long long)k,
                  done2, done5);
            if (q8_0) {
                double scale, worst = gemm_error(a, w, c5, m, n, k, ldc, &scale);
                CHECK(worst <= 1e-5 * scale, "q8_0 %lldx%lldx%lld: %g from the double loop", (long long)m,
                      (long long)n, (long long)k, worst);
            } else {
                int same = 1;
                for (int64_t i = 0; i < m; i++)
                    same &= memcmp(c2 + i * ldc, c5 + i * ldc, sizeof(float) * (size_t)n) == 0;
                CHECK(same, "%s %lldx%lldx%lld: avx512 differs from avx2", quant_names[t], (long long)m, (long long)n,
                      (long long)k);
            }
            free(w), free(a), free(c2), free(c5), free(b);
        }
        group_end();
    }
}

static void float_products(void) {
    group_begin("gemv.f32 and gemm.f32 on avx512 = double loops");
    const int64_t m = 13, n = 37, k = 300;
    float *a = random_floats(m * k, 1), *b = random_floats(n * k, 2), *c = malloc(sizeof(float) * (size_t)(m * n));
    float *y = malloc(sizeof(float) * (size_t)n);
    if (!c || !y) abort();
    CHECK(moert_gemv_f32_kernel(MOERT_KERNEL_AVX512, b, a, y, n, k) == 1, "the GEMV ran");
    CHECK(moert_gemm_nt_kernel(MOERT_KERNEL_AVX512, m, n, k, a, k, b, MOERT_GEMM_F32, k, c, n) == 1, "the GEMM ran");
    double gemv_worst = 0, gemm_worst = 0;
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double exact = 0;
            for (int64_t p = 0; p < k; p++) exact += (double)a[i * k + p] * b[j * k + p];
            gemm_worst = fmax(gemm_worst, fabs(c[i * n + j] - exact));
            if (i == 0) gemv_worst = fmax(gemv_worst, fabs(y[j] - exact));
        }
    }
    CHECK(gemv_worst <= 1e-4, "GEMV %g from the double loop", gemv_worst);
    CHECK(gemm_worst <= 1e-4, "GEMM %g from the double loop", gemm_worst);
    free(a), free(b), free(c), free(y);
    group_end();
}

int main(void) {
    moert_kernels_set_threads(2);
    if (!check(moert_kernels_have_avx512() && moert_kernels_have_avx512_vnni(), "emulated AVX-512 VNNI is on",
               "built without MOERT_EMULATED_AVX512, or MOERT_AVX512=0 in the environment"))
        return check_summary();
    quantized_gemv();
    quantized_gemm();
    float_products();
    return check_summary();
}
