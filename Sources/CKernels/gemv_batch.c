/* gemv_batch.c: several decode GEMVs as one job on the worker pool.
**
** Decode runs about a hundred GEMVs per token, each its own job: the threads meet at the end of every one, and a
** product too small to split (under 512 KiB) runs on the caller while the workers wait. Products that do not depend
** on each other (the attention's input projections; the experts a token is routed to) run here as one job: each
** product is cut into the parts its own GEMV would make, on the kernel it would run, and the threads claim the parts
** of all of them (each thread a run of consecutive parts first, pool.c). Every output gets its own GEMV's bits: a
** row's sum depends on its kernel, not on where a part starts (gemv.c, gemv_quant.c). */
#include "kernels_internal.h"

typedef struct batch_job {
    const moert_gemv_item *items;
    int count;
    int kernel[MOERT_GEMV_BATCH_MAX];    /* each item's kernel as its own GEMV resolves it */
    int first[MOERT_GEMV_BATCH_MAX + 1]; /* the job's part where each item's parts begin; first[count]: all parts */
} batch_job;

/* Whether weights of `type` are block-quantized (their GEMV is gemv_quant.c's). */
static int is_quantized(int type) { return moert_quant_block_bytes(type) != 0; }

/* Parts [g0, g1) of the job, out of `parts` pieces of it (one piece per part of the pool's job, or all of them on the
** caller when the pool was busy). */
static void batch_part(void *ctx, int part, int parts) {
    const batch_job *b = ctx;
    const int total = b->first[b->count];
    const int g0 = (int)((int64_t)total * part / parts), g1 = (int)((int64_t)total * (part + 1) / parts);
    int i = 0;
    for (int g = g0; g < g1; g++) {
        while (g >= b->first[i + 1]) i++;
        const moert_gemv_item *t = b->items + i;
        int64_t r0, r1;
        moert_part_rows(t->rows, g - b->first[i], b->first[i + 1] - b->first[i], &r0, &r1);
        if (r0 >= r1) continue;
        if (is_quantized(t->type)) moert_gemv_quant_rows(b->kernel[i], t->type, t->w, t->xq, t->y, r0, r1, t->cols);
        else moert_gemv_rows(b->kernel[i], t->w, t->type, t->x, t->y, r0, r1, t->cols);
    }
}

int moert_gemv_batch(const moert_gemv_item *items, int count) {
    if (count < 0 || count > MOERT_GEMV_BATCH_MAX) return 0;
    batch_job b = {items, count, {0}, {0}};
    for (int i = 0; i < count; i++) {
        const moert_gemv_item *t = items + i;
        if (t->type == MOERT_GEMM_F32 &&
            (t->kernel == MOERT_KERNEL_BLAS || !moert_kernel_available(MOERT_PRODUCT_GEMV_F32, t->kernel)))
            return 0;
        b.kernel[i] = is_quantized(t->type) ? moert_gemv_quant_resolve(t->kernel, t->type)
                                            : moert_gemv_half_resolve(t->kernel, t->type);
    }
    /* The parts moert_parallel makes of each product alone. */
    for (int i = 0; i < count; i++) {
        const moert_gemv_item *t = items + i;
        const int own = is_quantized(t->type) ? moert_gemv_quant_parts(t->rows, t->cols)
                                              : moert_gemv_parts(t->type, t->rows, t->cols);
        b.first[i + 1] = b.first[i] + moert_parallel_share(own);
        if (is_quantized(t->type)) moert_gemv_quant_prepare(b.kernel[i], t->type, t->x, t->xq, t->cols);
    }
    if (count > 0) moert_parallel_parts(batch_part, &b, b.first[count]);
    return 1;
}
