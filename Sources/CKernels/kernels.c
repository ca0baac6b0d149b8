/* kernels.c: the decode GEMV for half-precision weights without AVX-512 (f16/bf16 widened in registers,
** AVX2+FMA+F16C when the CPU has them), and the worker pool that splits a GEMV's rows (with the AVX-512 rows of
** gemv_avx512.c when the CPU has them) or runs moert_parallel's functions. Decode is bound by memory bandwidth:
** reading 2-byte weights and converting them in registers halves the bytes per token against float32 copies. */
#include "kernels_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <immintrin.h>

/* ---- Row kernels ---- */

static void rows_scalar(const uint16_t *w, int dtype, const float *x, float *y, int64_t r0, int64_t r1, int64_t cols) {
    for (int64_t r = r0; r < r1; r++) {
        const uint16_t *row = w + r * cols;
        float acc = 0;
        for (int64_t c = 0; c < cols; c++) acc += moert_widen_half(row[c], dtype) * x[c];
        y[r] = acc;
    }
}

/* One row at a time (one sequential stream per thread), 256 bytes of weights per step into four accumulators, with a
** software prefetch PREFETCH_BYTES ahead in the same stream: the hardware prefetcher alone keeps too few lines in
** flight. Measured on the 2-core EPYC: 17-19% more bytes per second than four rows at a time with a prefetch eight
** rows ahead, the layout before (paired runs over decode-like sequences of matrices). */
enum { PREFETCH_BYTES = 4096 };

#define DEFINE_ROWS_AVX2(NAME, DTYPE)                                                                              \
__attribute__((target("avx2,fma,f16c")))                                                                           \
static void NAME(const uint16_t *w, const float *x, float *y, int64_t r0, int64_t r1, int64_t cols) {              \
    const int64_t body = cols & ~(int64_t)127;                                                                     \
    for (int64_t r = r0; r < r1; r++) {                                                                            \
        const uint16_t *row = w + r * cols;                                                                        \
        __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;                                                       \
        for (int64_t k = 0; k < body; k += 128) {                                                                  \
            const char *ahead = (const char *)(row + k) + PREFETCH_BYTES;                                          \
            for (int line = 0; line < 256; line += 64) _mm_prefetch(ahead + line, _MM_HINT_T0);                    \
            for (int64_t s = k; s < k + 128; s += 32) {                                                            \
                a = _mm256_fmadd_ps(moert_load8(row + s, DTYPE), _mm256_loadu_ps(x + s), a);                       \
                b = _mm256_fmadd_ps(moert_load8(row + s + 8, DTYPE), _mm256_loadu_ps(x + s + 8), b);               \
                c = _mm256_fmadd_ps(moert_load8(row + s + 16, DTYPE), _mm256_loadu_ps(x + s + 16), c);             \
                d = _mm256_fmadd_ps(moert_load8(row + s + 24, DTYPE), _mm256_loadu_ps(x + s + 24), d);             \
            }                                                                                                      \
        }                                                                                                          \
        int64_t k = body;                                                                                          \
        for (; k + 8 <= cols; k += 8) a = _mm256_fmadd_ps(moert_load8(row + k, DTYPE), _mm256_loadu_ps(x + k), a); \
        float sum = moert_hsum256(_mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));                        \
        for (; k < cols; k++) sum += moert_widen_half(row[k], DTYPE) * x[k];                                       \
        y[r] = sum;                                                                                                \
    }                                                                                                              \
}

DEFINE_ROWS_AVX2(rows_avx2_f16, MOERT_HALF_F16)
DEFINE_ROWS_AVX2(rows_avx2_bf16, MOERT_HALF_BF16)

/* ---- Worker pool ----
** n_threads - 1 workers; a job (a GEMV, or a moert_parallel function) is split into n_threads parts (contiguous row
** ranges of a GEMV) and the caller runs the first.
** Decode issues about a hundred short GEMVs per token, so waking workers through a condition variable (tens of
** microseconds) would cost as much as the work: workers spin on an atomic job counter for a while after each job
** and only then sleep on the condition variable. One job runs at a time: a caller that finds the pool busy
** (another session's job) computes alone instead of waiting. */

/* A job: a GEMV (rows of w), or, when fn is set, fn(ctx, part, parts) for each part (moert_parallel). */
typedef struct pool_task {
    const void *w;
    int dtype;
    const float *x;
    float *y;
    int64_t rows, cols;
    int parts;
    void (*fn)(void *ctx, int part, int parts);
    void *ctx;
} pool_task;

/* A waiting thread pauses SPIN_PAUSES times, then yields its CPU (so a machine with fewer free cores than
** threads still makes progress), and a worker sleeps after SPIN_YIELDS yields without work. */
enum { MAX_THREADS = 64, SPIN_PAUSES = 256, SPIN_YIELDS = 4096 };

static pthread_mutex_t pool_busy = PTHREAD_MUTEX_INITIALIZER;   /* held by the caller that owns the pool */
static pthread_mutex_t pool_sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static _Atomic uint64_t pool_generation = 0;                     /* bumped once per job */
static _Atomic int pool_pending = 0;                             /* worker parts not finished */
static _Atomic int pool_sleepers = 0;
static int pool_threads = 1, pool_started = 0;                   /* guarded by pool_busy */
static pool_task pool_job;                                        /* written before the generation bump */

static void run_part(const pool_task *job, int part) {
    if (job->fn) {
        job->fn(job->ctx, part, job->parts);
        return;
    }
    int64_t per = (job->rows + job->parts - 1) / job->parts;
    int64_t r0 = per * part, r1 = r0 + per < job->rows ? r0 + per : job->rows;
    if (r0 >= r1) return;
    if (moert_kernels_have_avx512()) moert_rows_avx512(job->w, job->dtype, job->x, job->y, r0, r1, job->cols);
    else if (!moert_kernels_have_avx2()) rows_scalar(job->w, job->dtype, job->x, job->y, r0, r1, job->cols);
    else if (job->dtype == MOERT_HALF_F16) rows_avx2_f16(job->w, job->x, job->y, r0, r1, job->cols);
    else rows_avx2_bf16(job->w, job->x, job->y, r0, r1, job->cols);
}

/* One step of a busy wait: a pause for the first SPIN_PAUSES steps, then a yield of the CPU. */
static inline void wait_step(int step) {
    if (step < SPIN_PAUSES) __builtin_ia32_pause();
    else sched_yield();
}

/* The generation current when each worker was created: a job published after that is one it must run, even if the
** thread first gets a CPU after the job was published. */
static uint64_t worker_first_generation[MAX_THREADS];

static void *worker(void *arg) {
    int index = (int)(intptr_t)arg;
    uint64_t seen = worker_first_generation[index];
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool_generation, memory_order_acquire)) == seen) {
            if (++spins < SPIN_PAUSES + SPIN_YIELDS) {
                wait_step(spins);
                continue;
            }
            pthread_mutex_lock(&pool_sleep_lock);
            atomic_fetch_add(&pool_sleepers, 1);
            while (atomic_load(&pool_generation) == seen) pthread_cond_wait(&pool_wake, &pool_sleep_lock);
            atomic_fetch_sub(&pool_sleepers, 1);
            pthread_mutex_unlock(&pool_sleep_lock);
            spins = 0;
        }
        seen = g;
        pool_task job = pool_job;
        if (index < job.parts) {
            run_part(&job, index);
            atomic_fetch_sub_explicit(&pool_pending, 1, memory_order_release);
        }
    }
    return NULL;
}

/* Starts workers up to n_threads - 1 and sets the thread count; pool_busy held. */
static void set_threads_locked(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    for (int i = pool_started + 1; i < n_threads; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* pool_busy is held, so no job can be published between this read and the thread's start */
        worker_first_generation[i] = atomic_load(&pool_generation);
        if (pthread_create(&t, &attr, worker, (void *)(intptr_t)i) == 0) pool_started = i;
        pthread_attr_destroy(&attr);
    }
    pool_threads = n_threads < pool_started + 1 ? n_threads : pool_started + 1;
}

/* Whether the thread count was set, by moert_kernels_set_threads or by the default below. */
static _Atomic int pool_configured = 0;

void moert_kernels_set_threads(int n_threads) {
    pthread_mutex_lock(&pool_busy);
    set_threads_locked(n_threads);
    atomic_store(&pool_configured, 1);
    pthread_mutex_unlock(&pool_busy);
}

/* Until a host sets the thread count, the pool uses every online CPU (the documented default of moert_set_threads,
** and what OpenBLAS does on its own). */
static void configure_default(void) {
    pthread_mutex_lock(&pool_busy);
    if (!atomic_load(&pool_configured)) {
        set_threads_locked((int)sysconf(_SC_NPROCESSORS_ONLN));
        atomic_store(&pool_configured, 1);
    }
    pthread_mutex_unlock(&pool_busy);
}

int moert_kernels_threads(void) {
    if (!atomic_load(&pool_configured)) configure_default();
    pthread_mutex_lock(&pool_busy);
    int n = pool_threads;
    pthread_mutex_unlock(&pool_busy);
    return n;
}

/* Runs `job` on the pool (the caller takes part 0), or alone on this thread when the pool is busy or has no workers. */
static void run_job(pool_task job, int max_parts) {
    if (max_parts < 2) {
        run_part(&job, 0);
        return;
    }
    if (!atomic_load_explicit(&pool_configured, memory_order_relaxed)) configure_default();
    if (pthread_mutex_trylock(&pool_busy) != 0) {
        run_part(&job, 0);
        return;
    }
    if (pool_threads < 2) {
        pthread_mutex_unlock(&pool_busy);
        run_part(&job, 0);
        return;
    }
    job.parts = pool_threads < max_parts ? pool_threads : max_parts;
    pool_job = job;
    atomic_store(&pool_pending, job.parts - 1);
    atomic_fetch_add_explicit(&pool_generation, 1, memory_order_release);
    if (atomic_load(&pool_sleepers) > 0) {
        pthread_mutex_lock(&pool_sleep_lock);
        pthread_cond_broadcast(&pool_wake);
        pthread_mutex_unlock(&pool_sleep_lock);
    }
    run_part(&job, 0);
    for (int step = 0; atomic_load_explicit(&pool_pending, memory_order_acquire) > 0; step++) wait_step(step);
    pthread_mutex_unlock(&pool_busy);
}

/* A GEMV on the pool; products under 512 KiB of weights run on this thread (a hand-off would cost more). */
static void run_gemv(const void *w, int dtype, const float *x, float *y, int64_t rows, int64_t cols) {
    pool_task job = {w, dtype, x, y, rows, cols, 1, NULL, NULL};
    int64_t bytes = rows * cols * (dtype == MOERT_GEMM_F32 ? 4 : 2);
    run_job(job, bytes < (1 << 19) ? 1 : MAX_THREADS);
}

void moert_gemv_half(const void *w, int dtype, const float *x, float *y, int64_t rows, int64_t cols) {
    run_gemv(w, dtype, x, y, rows, cols);
}

int moert_gemv_f32(const float *w, const float *x, float *y, int64_t rows, int64_t cols) {
    if (!moert_kernels_have_avx512()) return 0;
    run_gemv(w, MOERT_GEMM_F32, x, y, rows, cols);
    return 1;
}

void moert_parallel(void (*fn)(void *ctx, int part, int parts), void *ctx, int max_parts) {
    pool_task job = {NULL, 0, NULL, NULL, 0, 0, 1, fn, ctx};
    run_job(job, max_parts);
}

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
    moert_parallel(copy_part, &c, bytes < (1 << 20) ? 1 : MAX_THREADS);
}
