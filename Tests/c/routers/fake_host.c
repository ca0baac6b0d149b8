/* fake_host.c — the host table the router plugins are tested with: no libmoert, everything observable. */
/*
** Aligned alloc/free with a live allocation count (leak checks), a thread-local set_error, register_router capturing
** the ops, tensors served from an in-memory store, parameters from per-create lists, and a naive triple-loop sgemm.
*/
#define _POSIX_C_SOURCE 200809L

#include "router_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

atomic_int live_allocations;
_Thread_local char last_error[1024];
_Thread_local int error_calls;
const moert_router_ops *kinds[MAX_KINDS];
int kind_count;
const moert_expert_ops *expert_kinds[MAX_KINDS];
int expert_kind_count;
int registry_token;

static void *fake_alloc(size_t size, size_t alignment) {
    if (alignment == 0) alignment = 64;
    if (alignment < sizeof(void *)) alignment = sizeof(void *);
    size_t rounded = (size + alignment - 1) / alignment * alignment;
    void *p = aligned_alloc(alignment, rounded == 0 ? alignment : rounded);
    if (p != NULL) atomic_fetch_add(&live_allocations, 1);
    return p;
}

static void fake_free(void *p) {
    if (p == NULL) return;
    atomic_fetch_sub(&live_allocations, 1);
    free(p);
}

static void fake_log(int32_t level, const char *message) { (void)level, (void)message; }

static void fake_set_error(const char *message) {
    snprintf(last_error, sizeof last_error, "%s", message != NULL ? message : "");
    error_calls++;
}

static moert_status fake_register_router(void *host_context, const moert_router_ops *ops) {
    if (host_context != &registry_token || ops == NULL || kind_count == MAX_KINDS) return MOERT_ERR_INVALID_ARGUMENT;
    kinds[kind_count++] = ops;
    return MOERT_OK;
}

static moert_status fake_register_expert(void *host_context, const moert_expert_ops *ops) {
    if (host_context != &registry_token || ops == NULL || expert_kind_count == MAX_KINDS) return MOERT_ERR_INVALID_ARGUMENT;
    expert_kinds[expert_kind_count++] = ops;
    return MOERT_OK;
}

static moert_status serve_tensor(const char *full, moert_tensor *out) {
    if (out == NULL || out->struct_size < sizeof(moert_tensor)) return MOERT_ERR_INVALID_ARGUMENT;
    const fake_tensor *t = tensor_named(full);
    if (t == NULL) {
        char message[256];
        snprintf(message, sizeof message, "missing tensor %s", full);
        fake_set_error(message);
        return MOERT_ERR_FORMAT;
    }
    out->dtype = t->dtype;
    out->data = t->data;
    out->ndim = t->ndim;
    for (int i = 0; i < 4; i++) out->shape[i] = i < t->ndim ? t->shape[i] : 1;
    return MOERT_OK;
}

static moert_status fake_layer_tensor(const moert_create_context *ctx, const char *name, moert_tensor *out) {
    if (ctx == NULL || name == NULL) return MOERT_ERR_INVALID_ARGUMENT;
    char full[320];
    snprintf(full, sizeof full, "%s%s", ctx->prefix, name);
    return serve_tensor(full, out);
}

static moert_status fake_model_tensor(const moert_create_context *ctx, const char *name, moert_tensor *out) {
    if (ctx == NULL || name == NULL) return MOERT_ERR_INVALID_ARGUMENT;
    return serve_tensor(name, out);
}

static const fake_param *find_param(const moert_create_context *ctx, const char *key) {
    for (int i = 0; i < ctx->n_params; i++) {
        if (strcmp(ctx->params[i].key, key) == 0) return &ctx->params[i];
    }
    return NULL;
}

static moert_status fake_param_number(const moert_create_context *ctx, const char *key, double *out) {
    if (ctx == NULL || key == NULL || out == NULL) return MOERT_ERR_INVALID_ARGUMENT;
    const fake_param *p = find_param(ctx, key);
    if (p == NULL) return MOERT_ERR_OUT_OF_RANGE;
    if (p->type == PARAM_STRING) {
        char message[160];
        snprintf(message, sizeof message, "parameter %s is not a number", key);
        fake_set_error(message);
        return MOERT_ERR_FORMAT;
    }
    *out = p->number;
    return MOERT_OK;
}

static moert_status fake_param_string(const moert_create_context *ctx, const char *key, const char **out) {
    if (ctx == NULL || key == NULL || out == NULL) return MOERT_ERR_INVALID_ARGUMENT;
    const fake_param *p = find_param(ctx, key);
    if (p == NULL) return MOERT_ERR_OUT_OF_RANGE;
    if (p->type != PARAM_STRING) {
        char message[160];
        snprintf(message, sizeof message, "parameter %s is not a string", key);
        fake_set_error(message);
        return MOERT_ERR_FORMAT;
    }
    *out = p->string;
    return MOERT_OK;
}

/** Row-major C = alpha·op(A)·op(B) + beta·C by the definition, accumulated in double. */
static void fake_sgemm(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k, float alpha, const float *a,
                       int32_t lda, const float *b, int32_t ldb, float beta, float *c, int32_t ldc) {
    for (int32_t i = 0; i < m; i++) {
        for (int32_t j = 0; j < n; j++) {
            double acc = 0;
            for (int32_t p = 0; p < k; p++) {
                const float aip = trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                const float bpj = trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                acc += (double)aip * (double)bpj;
            }
            float *cij = &c[(size_t)i * ldc + j];
            *cij = (float)(alpha * acc) + (beta == 0.0f ? 0.0f : beta * *cij);
        }
    }
}

moert_host_api make_host(void) {
    moert_host_api h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    h.abi_version = MOERT_PLUGIN_ABI_VERSION;
    h.alloc = fake_alloc;
    h.free = fake_free;
    h.log = fake_log;
    h.set_error = fake_set_error;
    h.register_router = fake_register_router;
    h.register_expert = fake_register_expert;
    h.layer_tensor = fake_layer_tensor;
    h.model_tensor = fake_model_tensor;
    h.param_number = fake_param_number;
    h.param_string = fake_param_string;
    h.sgemm = fake_sgemm;
    return h;
}

/* ---- the tensor store ---- */

#define MAX_TENSORS 256
static fake_tensor store[MAX_TENSORS];
static int store_count;

void store_clear(void) {
    for (int i = 0; i < store_count; i++) free(store[i].data);
    store_count = 0;
}

void *add_tensor(const char *name, int32_t dtype, int32_t ndim, int64_t d0, int64_t d1, int64_t d2) {
    if (store_count == MAX_TENSORS) {
        fprintf(stderr, "tensor store full\n");
        exit(2);
    }
    fake_tensor *t = &store[store_count++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    const int64_t dims[3] = {d0, d1, d2};
    int64_t count = 1;
    for (int i = 0; i < 4; i++) {
        t->shape[i] = i < ndim ? dims[i] : 1;
        if (i < ndim) count *= dims[i];
    }
    size_t bytes = (size_t)(count > 0 ? count : 1) * 4;
    t->data = aligned_alloc(64, (bytes + 63) / 64 * 64);
    memset(t->data, 0, bytes);
    return t->data;
}

float *add_random(const char *name, int32_t ndim, int64_t d0, int64_t d1, int64_t d2, float scale) {
    float *p = (float *)add_tensor(name, MOERT_TENSOR_F32, ndim, d0, d1, d2);
    int64_t count = d0 * (ndim > 1 ? d1 : 1) * (ndim > 2 ? d2 : 1);
    for (int64_t i = 0; i < count; i++) p[i] = urand(-scale, scale);
    return p;
}

fake_tensor *tensor_named(const char *name) {
    for (int i = 0; i < store_count; i++) {
        if (strcmp(store[i].name, name) == 0) return &store[i];
    }
    return NULL;
}

void remove_tensor(const char *name) {
    fake_tensor *t = tensor_named(name);
    if (t == NULL) return;
    free(t->data);
    *t = store[--store_count];
}


/* ---- registered kinds and random numbers ---- */

const moert_router_ops *kind_named(const char *name) {
    for (int i = 0; i < kind_count; i++) {
        if (strcmp(kinds[i]->name, name) == 0) return kinds[i];
    }
    return NULL;
}

static uint64_t rng_state = 0x9d2c5680a1b3e7f1ull;

static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

float urand(float lo, float hi) {
    return lo + (hi - lo) * (float)((rng_next() >> 40) * (1.0 / 16777216.0));
}

int32_t irand(int32_t n) { return (int32_t)(rng_next() % (uint64_t)n); }
