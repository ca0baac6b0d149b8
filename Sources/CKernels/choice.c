/* choice.c: which kernel each product runs. Every product has one or more kernels; the CPU (and MOERT_AVX512=0)
** decides which of them can run, and MoertTensor's KernelChoice picks among those (by measurement, a table or
** MOERT_KERNELS) and records its pick here, where the kernels' entry points read it. */
#include "kernels_internal.h"

#include <stdatomic.h>

static const char *const product_names[MOERT_PRODUCT_COUNT] = {
    [MOERT_PRODUCT_GEMV_F32] = "gemv.f32",
    [MOERT_PRODUCT_GEMV_F16] = "gemv.f16",
    [MOERT_PRODUCT_GEMV_BF16] = "gemv.bf16",
    [MOERT_PRODUCT_GEMV_Q8_0] = "gemv.q8_0",
    [MOERT_PRODUCT_GEMV_Q4_0] = "gemv.q4_0",
    [MOERT_PRODUCT_GEMV_Q3_0] = "gemv.q3_0",
    [MOERT_PRODUCT_GEMV_Q4_K] = "gemv.q4_k",
    [MOERT_PRODUCT_GEMM_F32] = "gemm.f32",
    [MOERT_PRODUCT_GEMM_F16] = "gemm.f16",
    [MOERT_PRODUCT_GEMM_BF16] = "gemm.bf16",
    [MOERT_PRODUCT_ATTENTION_PREFILL] = "attention.prefill",
    [MOERT_PRODUCT_ATTENTION_DECODE] = "attention.decode",
    [MOERT_PRODUCT_SWIGLU] = "swiglu",
};

static const char *const kernel_names[MOERT_KERNEL_COUNT] = {
    [MOERT_KERNEL_PORTABLE] = "portable",
    [MOERT_KERNEL_BLAS] = "blas",
    [MOERT_KERNEL_AVX2] = "avx2",
    [MOERT_KERNEL_AVX512] = "avx512",
    [MOERT_KERNEL_AVX2X4] = "avx2x4",
    [MOERT_KERNEL_AVX2HW] = "avx2hw",
    [MOERT_KERNEL_AVX2L2] = "avx2l2",
};

/* Bit k set: the product has kernel k (whether or not this CPU can run it). */
#define HAS(k) (1u << (k))
static const unsigned product_kernels[MOERT_PRODUCT_COUNT] = {
    [MOERT_PRODUCT_GEMV_F32] = HAS(MOERT_KERNEL_BLAS) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX512) |
                               HAS(MOERT_KERNEL_AVX2X4) | HAS(MOERT_KERNEL_AVX2HW),
    [MOERT_PRODUCT_GEMV_F16] = HAS(MOERT_KERNEL_PORTABLE) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX512) |
                               HAS(MOERT_KERNEL_AVX2X4) | HAS(MOERT_KERNEL_AVX2HW),
    [MOERT_PRODUCT_GEMV_BF16] = HAS(MOERT_KERNEL_PORTABLE) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX512) |
                                HAS(MOERT_KERNEL_AVX2X4) | HAS(MOERT_KERNEL_AVX2HW),
    [MOERT_PRODUCT_GEMV_Q8_0] = HAS(MOERT_KERNEL_PORTABLE) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX512),
    [MOERT_PRODUCT_GEMV_Q4_0] = HAS(MOERT_KERNEL_PORTABLE) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX512),
    [MOERT_PRODUCT_GEMV_Q3_0] = HAS(MOERT_KERNEL_PORTABLE) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX512),
    [MOERT_PRODUCT_GEMV_Q4_K] = HAS(MOERT_KERNEL_PORTABLE) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX512),
    [MOERT_PRODUCT_GEMM_F32] = HAS(MOERT_KERNEL_BLAS) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX512),
    [MOERT_PRODUCT_GEMM_F16] = HAS(MOERT_KERNEL_BLAS) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX512),
    [MOERT_PRODUCT_GEMM_BF16] = HAS(MOERT_KERNEL_BLAS) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX512),
    [MOERT_PRODUCT_ATTENTION_PREFILL] = HAS(MOERT_KERNEL_BLAS) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX512),
    [MOERT_PRODUCT_ATTENTION_DECODE] = HAS(MOERT_KERNEL_PORTABLE) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX2L2),
    [MOERT_PRODUCT_SWIGLU] = HAS(MOERT_KERNEL_PORTABLE) | HAS(MOERT_KERNEL_AVX2) | HAS(MOERT_KERNEL_AVX512),
};

/* The kernel each product runs; -1 until chosen (then the preferred available one). */
static _Atomic int chosen[MOERT_PRODUCT_COUNT] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};
_Static_assert(MOERT_PRODUCT_COUNT == 13, "one initialiser per product");

const char *moert_product_name(int product) {
    return product >= 0 && product < MOERT_PRODUCT_COUNT ? product_names[product] : NULL;
}

const char *moert_kernel_name(int kernel) {
    return kernel >= 0 && kernel < MOERT_KERNEL_COUNT ? kernel_names[kernel] : NULL;
}

int moert_kernel_exists(int product, int kernel) {
    if (product < 0 || product >= MOERT_PRODUCT_COUNT || kernel < 0 || kernel >= MOERT_KERNEL_COUNT) return 0;
    return (product_kernels[product] & HAS(kernel)) != 0;
}

/* Whether `product` is a decode GEMV on block-quantized weights. */
static int quantized_gemv(int product) {
    return product == MOERT_PRODUCT_GEMV_Q8_0 || product == MOERT_PRODUCT_GEMV_Q4_0 ||
           product == MOERT_PRODUCT_GEMV_Q3_0 || product == MOERT_PRODUCT_GEMV_Q4_K;
}

int moert_kernel_available(int product, int kernel) {
    if (!moert_kernel_exists(product, kernel)) return 0;
    switch (kernel) {
    case MOERT_KERNEL_AVX512: /* the quantized GEMVs' avx512 kernel is AVX-512 VNNI's */
        return moert_kernels_have_avx512() && (!quantized_gemv(product) || moert_kernels_have_avx512_vnni());
    case MOERT_KERNEL_AVX2:
    case MOERT_KERNEL_AVX2X4:
    case MOERT_KERNEL_AVX2HW:
    case MOERT_KERNEL_AVX2L2: return moert_kernels_have_avx2();
    default: return 1;
    }
}

int moert_kernel_preferred(int product) {
    static const int order[] = {MOERT_KERNEL_AVX512, MOERT_KERNEL_AVX2, MOERT_KERNEL_BLAS, MOERT_KERNEL_PORTABLE,
                                MOERT_KERNEL_AVX2X4, MOERT_KERNEL_AVX2HW, MOERT_KERNEL_AVX2L2};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (moert_kernel_available(product, order[i])) return order[i];
    return MOERT_KERNEL_PORTABLE;
}

int moert_kernel_chosen(int product) {
    if (product < 0 || product >= MOERT_PRODUCT_COUNT) return MOERT_KERNEL_PORTABLE;
    int k = atomic_load_explicit(&chosen[product], memory_order_relaxed);
    return k >= 0 ? k : moert_kernel_preferred(product);
}

int moert_kernel_choose(int product, int kernel) {
    if (!moert_kernel_available(product, kernel)) return 0;
    atomic_store_explicit(&chosen[product], kernel, memory_order_relaxed);
    return 1;
}
