/* parallel.c — several sessions of one model on several threads reproduce a sequential run. */
#include "api_test.h"

#include <pthread.h>
#include <stdlib.h>

/*
** Concurrent sessions must reproduce the sequential logits. The work per session is identical, but BLAS may
** split a product differently when several callers run at once, so a last-bit difference is allowed.
*/
#define PARALLEL_RTOL 1e-6

#define N_WORKERS 4

/** One worker: evaluates the fixture's whole sequence on its own session of the shared model. */
typedef struct worker {
    const fixture *fx;
    moert_model *model;
    float *logits;        /* [n_prompt + n_greedy, vocab]: ALL logits of the sequence, then the decode rows */
    moert_status status;
} worker;

/** Evaluates the sequence with ALL logits, then re-evaluates it prompt-then-decode, overwriting the rows. */
static moert_status run_sequence(moert_session *s, const fixture *fx, float *logits) {
    int32_t seq[MAX_TOKENS];
    size_t n = fixture_sequence(fx, seq), v = fx->vocab;
    moert_status st = moert_session_eval(s, seq, n, MOERT_LOGITS_ALL, logits, n * v);
    if (st == MOERT_OK) st = moert_session_reset(s);
    if (st == MOERT_OK) st = moert_session_eval(s, seq, fx->n_prompt, MOERT_LOGITS_LAST, logits + (fx->n_prompt - 1) * v, v);
    for (size_t i = fx->n_prompt; st == MOERT_OK && i < n; i++) {
        st = moert_session_eval(s, &seq[i], 1, MOERT_LOGITS_LAST, logits + i * v, v);
    }
    return st;
}

/** Thread body: a session of its own, three passes over the sequence. */
static void *worker_main(void *arg) {
    worker *w = arg;
    moert_session *s = NULL;
    w->status = moert_session_create(w->model, NULL, &s);
    for (int pass = 0; pass < 3 && w->status == MOERT_OK; pass++) {
        w->status = moert_session_reset(s);
        if (w->status == MOERT_OK) w->status = run_sequence(s, w->fx, w->logits);
    }
    moert_session_free(s);
    return NULL;
}

/** Several sessions of one model on several threads give the logits of a sequential run. */
void test_parallel(const fixture *fx, moert_model *model) {
    group_begin("parallel sessions");
    size_t n = (fx->n_prompt + fx->n_greedy) * fx->vocab;
    float *sequential = calloc(n, sizeof *sequential);
    moert_session *s = new_session(model, 0, 0);
    worker workers[N_WORKERS];
    pthread_t threads[N_WORKERS];
    int started[N_WORKERS] = {0};
    if (!s || !sequential || !CHECK_STATUS(run_sequence(s, fx, sequential), MOERT_OK, "sequential run")) {
        moert_session_free(s);
        free(sequential);
        group_end();
        return;
    }
    CHECK(rel_error(sequential, fx->full_logits, n) <= LOGITS_RTOL, "sequential decode differs from full_logits");
    for (int i = 0; i < N_WORKERS; i++) {
        workers[i] = (worker){fx, model, calloc(n, sizeof(float)), MOERT_ERR_INTERNAL};
        started[i] = workers[i].logits && pthread_create(&threads[i], NULL, worker_main, &workers[i]) == 0;
        CHECK(started[i], "cannot start worker %d", i);
    }
    for (int i = 0; i < N_WORKERS; i++) {
        if (!started[i]) continue;
        pthread_join(threads[i], NULL);
        CHECK_STATUS(workers[i].status, MOERT_OK, "worker");
        double err = rel_error(workers[i].logits, sequential, n);
        CHECK(err <= PARALLEL_RTOL, "worker %d: logits differ from the sequential run by %.3g", i, err);
    }
    for (int i = 0; i < N_WORKERS; i++) free(workers[i].logits);
    moert_session_free(s);
    free(sequential);
    group_end();
}
