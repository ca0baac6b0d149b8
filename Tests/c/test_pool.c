/* test_pool.c — the worker pool (Sources/CKernels/pool.c) runs every part of every job exactly once, or the whole
** job as one part on the caller (one thread, or the pool busy with another caller's job): any thread count, any part
** count, threads removed after they started, two callers at once, and a thread slowed down while the others take its
** parts. Built from the kernel sources, also under ThreadSanitizer (tools/run_c_tests.sh). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "kernels_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

enum { MOST = 70000 };

/* A job that counts the runs of each part, the parts count each run was told, and the parts run off `slow`. */
typedef struct counting_job {
    _Atomic int runs[MOST];
    _Atomic int wrong_parts;   /* calls whose `parts` was neither the job's nor 1 */
    _Atomic int whole;         /* calls of the whole job as one part */
    _Atomic int by_others;     /* parts run by a thread other than `slow` */
    int parts;
    pthread_t slow;            /* a thread whose parts take SLOW_MICROSECONDS each */
    int has_slow;
} counting_job;

enum { SLOW_MICROSECONDS = 500 };

static void sleep_microseconds(long us) {
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&t, NULL);
}

static void count_part(void *ctx, int part, int parts) {
    counting_job *j = ctx;
    if (parts == 1 && part == 0 && j->parts != 1) {
        atomic_fetch_add(&j->whole, 1);
        return;
    }
    if (parts != j->parts || part < 0 || part >= parts) {
        atomic_fetch_add(&j->wrong_parts, 1);
        return;
    }
    atomic_fetch_add(&j->runs[part], 1);
    if (j->has_slow && pthread_equal(pthread_self(), j->slow)) sleep_microseconds(SLOW_MICROSECONDS);
    else atomic_fetch_add(&j->by_others, 1);
}

static counting_job *new_job(int parts) {
    counting_job *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->parts = parts;
    return j;
}

/* Whether every part of j ran exactly once, or the whole job once and nothing else; the first part that did not is
** in *bad (-1: a wrong count of parts, or the whole job beside parts or twice). */
static int each_once(const counting_job *j, int *bad) {
    const int whole = atomic_load(&j->whole);
    *bad = -1;
    if (atomic_load(&j->wrong_parts) != 0 || whole > 1) return 0;
    if (whole == 1) {
        for (int p = 0; p < j->parts; p++)
            if (atomic_load(&j->runs[p]) != 0) return 0;
        return 1;
    }
    for (int p = 0; p < j->parts; p++) {
        if (atomic_load(&j->runs[p]) != 1) {
            *bad = p;
            return 0;
        }
    }
    return 1;
}

/* Every part count from 1 to a few thousand and the most, on 1 to 5 threads, and after going down from 5 to 2 (the
** workers started stay and take parts too). */
static void every_part_once(void) {
    group_begin("every part runs once, any thread and part count");
    static const int threads[] = {1, 2, 3, 4, 5, 2, 1, 2};
    static const int counts[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 63, 64, 65, 1000, 4097, 0xfffe, 0xffff};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        moert_kernels_set_threads(threads[t]);
        for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
            for (int repeat = 0; repeat < 3; repeat++) {
                counting_job *j = new_job(counts[c]);
                moert_parallel_parts(count_part, j, counts[c]);
                int bad = 0;
                CHECK(each_once(j, &bad), "%d threads, %d parts: part %d ran %d times", threads[t], counts[c], bad,
                      bad >= 0 ? atomic_load(&j->runs[bad]) : -1);
                free(j);
            }
        }
    }
    group_end();
}

/* moert_parallel caps the parts at the threads' share: it tells every part the count it made. */
static void capped_parts(void) {
    group_begin("moert_parallel's parts");
    moert_kernels_set_threads(2);
    for (int max_parts = 1; max_parts <= 100; max_parts += 3) {
        const int parts = moert_parallel_share(max_parts);
        counting_job *j = new_job(parts);
        moert_parallel(count_part, j, max_parts);
        int bad = 0;
        CHECK(parts >= 1 && parts <= max_parts, "max %d: %d parts", max_parts, parts);
        CHECK(each_once(j, &bad), "max %d: part %d of %d ran %d times", max_parts, bad, parts,
              bad >= 0 ? atomic_load(&j->runs[bad]) : -1);
        free(j);
    }
    group_end();
}

/* A caller whose parts are slow: the workers, done with their own runs, take what is left of the caller's. Timing
** decides how many they take, so a run passes when any of a few tries shows it. */
static void others_take_a_slow_threads_parts(void) {
    group_begin("a slow thread's parts are taken by the others");
    moert_kernels_set_threads(2);
    const int parts = 16;
    int most = 0;
    for (int attempt = 0; attempt < 20 && most <= parts / 2; attempt++) {
        counting_job *j = new_job(parts);
        j->slow = pthread_self();
        j->has_slow = 1;
        moert_parallel_parts(count_part, j, parts);
        int bad = 0;
        CHECK(each_once(j, &bad), "part %d ran %d times", bad, bad >= 0 ? atomic_load(&j->runs[bad]) : -1);
        const int others = atomic_load(&j->by_others);
        most = others > most ? others : most;
        free(j);
    }
    CHECK(most > parts / 2, "the worker ran at most %d of %d parts: it never took the slow caller's", most, parts);
    group_end();
}

/* Two callers at once: one gets the pool, the other computes alone; both jobs complete, each part once. */
typedef struct caller_args {
    int parts, rounds, failures;
} caller_args;

static void *caller(void *arg) {
    caller_args *a = arg;
    for (int r = 0; r < a->rounds; r++) {
        counting_job *j = new_job(a->parts + r % 7);
        moert_parallel_parts(count_part, j, j->parts);
        int bad = 0;
        if (!each_once(j, &bad)) a->failures++;
        free(j);
    }
    return NULL;
}

static void two_callers(void) {
    group_begin("two callers at once");
    moert_kernels_set_threads(3);
    caller_args a = {13, 400, 0}, b = {64, 400, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, caller, &a) == 0, "pthread_create");
    caller(&b);
    pthread_join(t, NULL);
    CHECK(a.failures == 0 && b.failures == 0, "jobs with a part not run exactly once: %d and %d", a.failures,
          b.failures);
    group_end();
}

int main(void) {
    every_part_once();
    capped_parts();
    others_take_a_slow_threads_parts();
    two_callers();
    return check_summary();
}
