/* copy.c: moert_copy, a memcpy split in page-aligned slices over the worker pool when it is large. */
#include "kernels_internal.h"

#include <string.h>

typedef struct copy_task {
    char *dst;
    const char *src;
    int64_t bytes;
} copy_task;

/* Part `part` of a copy: a page-aligned slice of the bytes. */
static void copy_part(void *ctx, int part, int parts) {
    const copy_task *c = ctx;
    int64_t per = ((c->bytes + parts - 1) / parts + 4095) & ~(int64_t)4095;
    int64_t b0 = per * part, b1 = b0 + per < c->bytes ? b0 + per : c->bytes;
    if (b0 < b1) memcpy(c->dst + b0, c->src + b0, (size_t)(b1 - b0));
}

void moert_copy(void *dst, const void *src, int64_t bytes) {
    copy_task c = {dst, src, bytes};
    moert_parallel(copy_part, &c, bytes < (1 << 20) ? 1 : MOERT_MAX_THREADS);
}
