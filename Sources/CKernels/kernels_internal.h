/* kernels_internal.h: what the kernel files share with each other and nothing else. */
#ifndef MOERT_KERNELS_INTERNAL_H
#define MOERT_KERNELS_INTERNAL_H

#include "moert_kernels.h"

/** y[r] = sum_c w[r, c] * x[c] for r in [r0, r1), w row-major with `cols` elements of type `dtype` per row
 * (MOERT_GEMM_F32, MOERT_HALF_F16 or MOERT_HALF_BF16). Only on CPUs with AVX-512 (moert_kernels_have_avx512). */
MOERT_KERNEL void moert_rows_avx512(const void *w, int dtype, const float *x, float *y, int64_t r0, int64_t r1,
                                    int64_t cols);

#endif
