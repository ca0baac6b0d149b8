/* pool.c: the worker pool that runs moert_parallel's functions, and the thread count the kernels use. */
#include "kernels_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

/* n_threads - 1 workers; a job is split into parts, and the caller and the workers claim the parts one at a time
** until none is left, so a thread the system has not scheduled (another process busy on the cores) holds up only the
** part it is running, never the parts it has not claimed: the running threads take those. Each thread has a home run
** of consecutive parts, claimed from its front in order, so that a thread reads one sequential stream of weights per
** job as the hardware prefetcher likes; a thread whose run is done takes the parts left in the others' runs from
** their backs. (Claiming parts in turn from one counter instead, each thread's next part was the one after the
** other thread's: a new stream per part. With one part per thread a descheduled thread held up the whole job.)
** A part computes the same values whichever thread runs it, so results do not depend on who claimed what.
** Decode issues about a hundred short GEMVs per token, so waking workers through a condition variable (tens of
** microseconds) would cost as much as the work: workers spin on an atomic job counter for a while after each job
** and only then sleep on the condition variable. One job runs at a time: a caller that finds the pool busy
** (another session's job) computes alone instead of waiting. */

/* A job's function: fn(ctx, part, parts) for each part. */
typedef void (*pool_fn)(void *ctx, int part, int parts);

/* A waiting thread pauses SPIN_PAUSES times, then yields its CPU (so a machine with fewer free cores than
** threads still makes progress), and a worker sleeps after SPIN_YIELDS yields without work. */
enum { SPIN_PAUSES = 256, SPIN_YIELDS = 4096 };

static pthread_mutex_t pool_busy = PTHREAD_MUTEX_INITIALIZER;   /* held by the caller that owns the pool */
static pthread_mutex_t pool_sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static _Atomic uint64_t pool_generation = 0;                     /* bumped once per job */
static _Atomic int pool_pending = 0;                             /* parts not finished */
static _Atomic int pool_sleepers = 0;
static int pool_threads = 1, pool_started = 0;                   /* guarded by pool_busy */
/* The job, written before the generation bump (atomics: a worker late for a job may read fields of the next one, and
** then claims nothing, below). */
static _Atomic(pool_fn) job_fn;
static _Atomic(void *) job_ctx;
static _Atomic int job_parts;
/* The parts of each home run not yet claimed, [front, back), with the low 32 bits of their job's generation above
** them: generation << 32 | front << 16 | back, one word per thread (the caller's is 0, worker i's i) on its own cache
** line. A part is claimed by moving front or back, only while the word carries the claimer's generation. The runs of
** a job are written before its generation is published, and every part of a job is claimed before the next job is
** written, so a worker late for a job that reads some fields of the next one finds nothing to claim. */
typedef struct claim_slot {
    _Alignas(64) _Atomic uint64_t word;
} claim_slot;
static claim_slot pool_claims[MOERT_MAX_THREADS];
static _Atomic int job_runs;  /* home runs of the job: min(threads, parts) */
enum { MOST_PARTS = 0xffff };

/* One step of a busy wait: a pause for the first SPIN_PAUSES steps, then a yield of the CPU. */
static inline void wait_step(int step) {
    if (step < SPIN_PAUSES) __builtin_ia32_pause();
    else sched_yield();
}

/* The generation current when each worker was created: a job published after that is one it must run, even if the
** thread first gets a CPU after the job was published. */
static uint64_t worker_first_generation[MOERT_MAX_THREADS];

/* The claim word of parts [front, back) of job `generation`. */
static inline uint64_t claim_word(uint64_t generation, int front, int back) {
    return (generation & 0xffffffff) << 32 | (uint64_t)front << 16 | (uint64_t)back;
}

/* Claims a part of home run `run` of job `generation`, its first (`from_back` 0) or its last; -1 when none is left. */
static int claim(int run, uint64_t generation, int from_back) {
    _Atomic uint64_t *word = &pool_claims[run].word;
    uint64_t w = atomic_load_explicit(word, memory_order_acquire);
    for (;;) {
        const int front = (int)(w >> 16 & 0xffff), back = (int)(w & 0xffff);
        if (w >> 32 != (generation & 0xffffffff) || front >= back) return -1;
        const uint64_t next = from_back ? w - 1 : w + (1 << 16);
        if (atomic_compare_exchange_weak_explicit(word, &w, next, memory_order_acq_rel, memory_order_acquire))
            return from_back ? back - 1 : front;
    }
}

/* Thread `self` (0: the caller) runs parts of job `generation` until none is left: its own run from the front, then
** what is left of the others' from their backs. */
static void run_parts(int self, uint64_t generation, pool_fn fn, void *ctx, int parts, int runs) {
    for (int i = 0; i < runs; i++) {
        const int run = (self + i) % runs;
        const int from_back = run != self;
        for (int part; (part = claim(run, generation, from_back)) >= 0;) {
            fn(ctx, part, parts);
            atomic_fetch_sub_explicit(&pool_pending, 1, memory_order_release);
        }
    }
}

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
        run_parts(index, g, atomic_load_explicit(&job_fn, memory_order_acquire),
                  atomic_load_explicit(&job_ctx, memory_order_acquire),
                  atomic_load_explicit(&job_parts, memory_order_acquire),
                  atomic_load_explicit(&job_runs, memory_order_acquire));
    }
    return NULL;
}

/* Starts workers up to n_threads - 1 and sets the thread count; pool_busy held. */
static void set_threads_locked(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > MOERT_MAX_THREADS) n_threads = MOERT_MAX_THREADS;
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

/* The parts moert_parallel makes of a job of at most max_parts with `threads` threads: the threads' share. */
static int share(int threads, int max_parts) {
    const int most = threads * MOERT_PARTS_PER_THREAD;
    return max_parts < 2 || threads < 2 ? 1 : (most < max_parts ? most : max_parts);
}

int moert_parallel_share(int max_parts) { return share(moert_kernels_threads(), max_parts); }

/* Runs the parts on the pool (the caller claims parts too, part 0 first), or fn(ctx, 0, 1) alone on this thread when
** max_parts < 2 (without touching the pool's lock, as most decode products are too small to split) or when the pool
** is busy or has no workers. With `capped` (moert_parallel) at most the threads' share of parts, else max_parts. */
static void run_job(void (*fn)(void *ctx, int part, int parts), void *ctx, int max_parts, int capped) {
    if (max_parts < 2) {
        fn(ctx, 0, 1);
        return;
    }
    if (!atomic_load_explicit(&pool_configured, memory_order_relaxed)) configure_default();
    if (pthread_mutex_trylock(&pool_busy) != 0) {
        fn(ctx, 0, 1);
        return;
    }
    if (pool_threads < 2) {
        pthread_mutex_unlock(&pool_busy);
        fn(ctx, 0, 1);
        return;
    }
    const int parts = capped ? share(pool_threads, max_parts) : max_parts;
    const uint64_t generation = atomic_load_explicit(&pool_generation, memory_order_relaxed) + 1;
    const int runs = pool_threads < parts ? pool_threads : parts;
    /* pool_busy is held: this thread alone publishes jobs, one at a time */
    atomic_store_explicit(&job_fn, fn, memory_order_release);
    atomic_store_explicit(&job_ctx, ctx, memory_order_release);
    atomic_store_explicit(&job_parts, parts, memory_order_release);
    atomic_store_explicit(&job_runs, runs, memory_order_release);
    atomic_store_explicit(&pool_pending, parts, memory_order_relaxed);
    for (int i = 0; i < runs; i++)
        atomic_store_explicit(&pool_claims[i].word, claim_word(generation, (int)((int64_t)parts * i / runs),
                                                               (int)((int64_t)parts * (i + 1) / runs)),
                              memory_order_release);
    atomic_store_explicit(&pool_generation, generation, memory_order_release);
    if (atomic_load(&pool_sleepers) > 0) {
        pthread_mutex_lock(&pool_sleep_lock);
        pthread_cond_broadcast(&pool_wake);
        pthread_mutex_unlock(&pool_sleep_lock);
    }
    run_parts(0, generation, fn, ctx, parts, runs);
    for (int step = 0; atomic_load_explicit(&pool_pending, memory_order_acquire) > 0; step++) wait_step(step);
    pthread_mutex_unlock(&pool_busy);
}

void moert_parallel(void (*fn)(void *ctx, int part, int parts), void *ctx, int max_parts) {
    run_job(fn, ctx, max_parts, 1);
}

void moert_parallel_parts(void (*fn)(void *ctx, int part, int parts), void *ctx, int parts) {
    run_job(fn, ctx, parts < MOST_PARTS ? parts : MOST_PARTS, 0);
}
