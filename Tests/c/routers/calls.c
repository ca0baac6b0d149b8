/* calls.c — calling a router kind the way moert does: layer facts, create(), route() buffers, concurrent route(). */
#define _POSIX_C_SOURCE 200809L

#include "router_test.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/** The host table handed to create(); a fresh copy per call shows that plugins keep no pointer to it. */
static moert_host_api call_host;

int close_to(double got, double want, double tol) {
    double scale = fabs(want) > 1.0 ? fabs(want) : 1.0;
    return fabs(got - want) <= tol * scale;
}

moert_layer_info make_layer(int32_t layer, int32_t H, int32_t E, int32_t top_k, int32_t vocab) {
    moert_layer_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    info.layer = layer;
    info.moe_index = layer;
    info.n_moe_layers = 4;
    info.hidden_size = H;
    info.n_experts = E;
    info.top_k = top_k;
    info.vocab_size = vocab;
    info.expert_index = -1;
    return info;
}

moert_status create_router(const moert_router_ops *ops, const char *prefix, const fake_param *params,
                           int n_params, const moert_layer_info *layer, moert_router_caps *caps, void **out) {
    struct moert_create_context ctx = {prefix, params, n_params};
    caps->struct_size = sizeof *caps;
    caps->max_experts_per_token = layer->top_k;
    caps->state_size = 0;
    moert_layer_info info = *layer;
    call_host = make_host();
    *out = (void *)&ctx;  /* must be overwritten */
    return ops->create(&call_host, &ctx, &info, caps, out);
}

void route_out_init(route_out *r, int32_t n, int32_t cap, int32_t experts) {
    r->n = n;
    r->cap = cap;
    r->experts = experts;
    r->ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)(n * (cap > 0 ? cap : 1)));
    r->weights = (float *)malloc(sizeof(float) * (size_t)(n * (cap > 0 ? cap : 1)));
    r->counts = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
    r->logits = (float *)malloc(sizeof(float) * (size_t)(n * experts));
    for (int32_t i = 0; i < n * cap; i++) {
        r->ids[i] = -99;
        r->weights[i] = NAN;
    }
    for (int32_t i = 0; i < n; i++) r->counts[i] = -1;
    for (int32_t i = 0; i < n * experts; i++) r->logits[i] = NAN;
    memset(&r->out, 0, sizeof r->out);
    r->out.struct_size = sizeof r->out;
    r->out.max_per_token = cap;
    r->out.expert_ids = r->ids;
    r->out.weights = r->weights;
    r->out.counts = r->counts;
    r->out.logits = r->logits;
}

void route_out_free(route_out *r) {
    free(r->ids);
    free(r->weights);
    free(r->counts);
    free(r->logits);
}

moert_router_input make_input(int32_t n, int32_t H, const float *x, const int32_t *tokens, const int32_t *pos,
                              const int32_t *prev, float *state, int32_t stride) {
    moert_router_input in;
    memset(&in, 0, sizeof in);
    in.struct_size = sizeof in;
    in.n_tokens = n;
    in.hidden_size = H;
    in.x = x;
    in.token_ids = tokens;
    in.positions = pos;
    in.prev_token_ids = prev;
    in.state = state;
    in.state_stride = stride;
    return in;
}

void expect_create_fails(const char *name, const moert_router_ops *ops, const char *prefix,
                         const fake_param *params, int n_params, const moert_layer_info *layer,
                         const char *substring) {
    int before_allocs = atomic_load(&live_allocations);
    error_calls = 0;
    last_error[0] = 0;
    moert_router_caps caps;
    void *inst = NULL;
    moert_status status = create_router(ops, prefix, params, n_params, layer, &caps, &inst);
    int leak = atomic_load(&live_allocations) - before_allocs;
    int ok = status != MOERT_OK && error_calls > 0 && last_error[0] != 0 && inst == NULL && leak == 0 &&
             (substring == NULL || strstr(last_error, substring) != NULL);
    check(ok, name, "status %d, set_error calls %d, message \"%s\", instance %p, leaked allocations %d", (int)status,
          error_calls, last_error, inst, leak);
    if (status == MOERT_OK && inst != NULL) ops->destroy(inst);
}

int32_t ref_select(const double *v, int32_t n, int32_t cap, double floor_value, int32_t *ids) {
    int32_t count = 0;
    char *taken = (char *)calloc((size_t)n, 1);
    while (count < cap) {
        int32_t best = -1;
        for (int32_t e = 0; e < n; e++) {
            if (!taken[e] && v[e] > floor_value && (best < 0 || v[e] > v[best])) best = e;
        }
        if (best < 0) break;
        taken[best] = 1;
        ids[count++] = best;
    }
    free(taken);
    return count;
}

typedef struct race_job {
    const moert_router_ops *ops;
    void *inst;
    int32_t n, H, E, cap, r;
    const float *x;
    const float *state0;  /* initial state rows [n, r] or NULL */
    const int32_t *ids0;
    const float *weights0;
    const int32_t *counts0;
    int mismatches;
} race_job;

static void *race_worker(void *arg) {
    race_job *job = (race_job *)arg;
    int32_t tokens[64] = {0}, pos[64] = {0}, prev[64] = {0};
    for (int iter = 0; iter < 40; iter++) {
        float state[64 * 16];
        if (job->state0 != NULL) memcpy(state, job->state0, sizeof(float) * (size_t)(job->n * job->r));
        route_out ro;
        route_out_init(&ro, job->n, job->cap, job->E);
        moert_router_input in = make_input(job->n, job->H, job->x, tokens, pos, prev,
                                           job->state0 != NULL ? state : NULL, job->state0 != NULL ? job->r : 0);
        if (job->ops->route(job->inst, &in, &ro.out) != MOERT_OK ||
            memcmp(ro.counts, job->counts0, sizeof(int32_t) * (size_t)job->n) != 0 ||
            memcmp(ro.ids, job->ids0, sizeof(int32_t) * (size_t)(job->n * job->cap)) != 0 ||
            memcmp(ro.weights, job->weights0, sizeof(float) * (size_t)(job->n * job->cap)) != 0) {
            job->mismatches++;
        }
        route_out_free(&ro);
    }
    return NULL;
}

void race(const char *label, const moert_router_ops *ops, void *inst, int32_t n, int32_t H, int32_t E,
          int32_t cap, int32_t r) {
    float *x = (float *)malloc(sizeof(float) * (size_t)(n * H));
    for (int32_t i = 0; i < n * H; i++) x[i] = urand(-1, 1);
    float state0[64 * 16], state[64 * 16];
    for (int32_t i = 0; i < n * r; i++) state0[i] = state[i] = urand(-0.5f, 0.5f);
    int32_t tokens[64] = {0};
    route_out base;
    route_out_init(&base, n, cap, E);
    moert_router_input in = make_input(n, H, x, tokens, tokens, tokens, r > 0 ? state : NULL, r);
    moert_status status = ops->route(inst, &in, &base.out);
    race_job jobs[4];
    pthread_t threads[4];
    int started = 0;
    for (int i = 0; i < 4 && status == MOERT_OK; i++) {
        jobs[i] = (race_job){ops, inst, n, H, E, cap, r, x, r > 0 ? state0 : NULL, base.ids, base.weights, base.counts, 0};
        if (pthread_create(&threads[i], NULL, race_worker, &jobs[i]) == 0) started++;
    }
    int mismatches = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
        mismatches += jobs[i].mismatches;
    }
    char name[128];
    snprintf(name, sizeof name, "%s: concurrent route() on one instance gives identical results", label);
    check(status == MOERT_OK && started == 4 && mismatches == 0, name, "status %d, threads %d, mismatching calls %d",
          (int)status, started, mismatches);
    route_out_free(&base);
    free(x);
}
