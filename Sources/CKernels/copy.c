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

int moert_cache_evict(const void *p, int64_t bytes) {
#if defined(__x86_64__) || defined(__i386__)
    for (int64_t i = 0; i < bytes; i += 64) _mm_clflush((const char *)p + i);
    _mm_mfence();
    return 1;
#else
    (void)p;
    (void)bytes;
    return 0;
#endif
}

/* The destination row of source column c: c itself, or for `interleaved` columns (pairs a0 b0 a1 b1 ...) the a's
 * first, then the b's. */
static inline int64_t transposed_row(int64_t c, int64_t cols, int interleaved) {
    return interleaved ? (c & 1) * (cols / 2) + c / 2 : c;
}

void moert_transpose_copy(void *dst, const void *src, int64_t rows, int64_t cols, int elem_bytes, int interleaved) {
    enum { TILE = 32 };
    const char *s = src;
    char *d = dst;
    for (int64_t r0 = 0; r0 < rows; r0 += TILE) {
        int64_t r1 = r0 + TILE < rows ? r0 + TILE : rows;
        for (int64_t c0 = 0; c0 < cols; c0 += TILE) {
            int64_t c1 = c0 + TILE < cols ? c0 + TILE : cols;
            for (int64_t c = c0; c < c1; c++) {
                char *out = d + transposed_row(c, cols, interleaved) * rows * elem_bytes;
                for (int64_t r = r0; r < r1; r++) {
                    memcpy(out + r * elem_bytes, s + (r * cols + c) * elem_bytes, (size_t)elem_bytes);
                }
            }
        }
    }
}
