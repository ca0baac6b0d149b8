/*
** test_plugins.c — unit tests of the gru, hash and comet router plugins through the plugin ABI, without libmoert.
**
** Usage: test_plugins PLUGIN.so...   (built by Tests/c/run_plugin_tests.sh)
**
** Each library is dlopen()ed and initialised with a fake host table built here: aligned alloc/free with a live
** allocation count (leak checks), a thread-local set_error, register_router capturing the ops, tensors served from
** an in-memory store, parameters from per-create lists, and a naive triple-loop sgemm. Outputs of route() are
** compared with references written from the formulas of ALGORITHMS.md (§2 RMoE, §3.1 COMET, §4 Hash layers):
** per-token loops in double precision, no BLAS. Expert ids must be equal; weights, logits and states must agree
** within 1e-5 (relative to max(1, |reference|)): float32 evaluation of the same few dot products, softmax and
** tanh/sigmoid stays a few ulps of 1e-7 away from double, so 1e-5 leaves two orders of margin without hiding an
** error in the math. Malformed inputs must make create() fail with a message set through set_error, without leaks.
** The last line printed is "N passed, M failed"; the exit status is non-zero when a check failed.
*/
#define _POSIX_C_SOURCE 200809L

#include <moert_plugin.h>

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------------------ */
/* Checks                                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

static int passed, failed;

/** Records one check; a failure prints its name and the formatted detail. */
static void check(int ok, const char *name, const char *detail_format, ...) __attribute__((format(printf, 3, 4)));

static void check(int ok, const char *name, const char *detail_format, ...) {
    if (ok) {
        passed++;
        printf("ok    %s\n", name);
        return;
    }
    failed++;
    char detail[1024];
    va_list args;
    va_start(args, detail_format);
    vsnprintf(detail, sizeof detail, detail_format, args);
    va_end(args);
    printf("FAIL  %s: %s\n", name, detail);
}

/** |got - want| <= tol * max(1, |want|), false for NaN. */
static int close_to(double got, double want, double tol) {
    double scale = fabs(want) > 1.0 ? fabs(want) : 1.0;
    return fabs(got - want) <= tol * scale;
}

#define TOL 1e-5

/* ------------------------------------------------------------------------------------------------------------ */
/* Deterministic random numbers (xorshift64*)                                                                   */
/* ------------------------------------------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9d2c5680a1b3e7f1ull;

static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/** Uniform in [lo, hi). */
static float urand(float lo, float hi) {
    return lo + (hi - lo) * (float)((rng_next() >> 40) * (1.0 / 16777216.0));
}

/** Uniform in [0, n). */
static int32_t irand(int32_t n) { return (int32_t)(rng_next() % (uint64_t)n); }

/* ------------------------------------------------------------------------------------------------------------ */
/* The fake host                                                                                                */
/* ------------------------------------------------------------------------------------------------------------ */

/** A tensor of the in-memory "checkpoint", by full name. */
typedef struct fake_tensor {
    char name[160];
    int32_t dtype;
    int32_t ndim;
    int64_t shape[4];
    void *data;
} fake_tensor;

#define MAX_TENSORS 256
static fake_tensor store[MAX_TENSORS];
static int store_count;

/** A parameter of one create() call. */
typedef struct fake_param {
    const char *key;
    int type;  /* PARAM_NUMBER, PARAM_STRING or PARAM_BOOL */
    double number;
    const char *string;
} fake_param;

enum { PARAM_NUMBER = 0, PARAM_STRING = 1, PARAM_BOOL = 2 };

#define NUM(k, v) ((fake_param){(k), PARAM_NUMBER, (v), NULL})
#define STR(k, v) ((fake_param){(k), PARAM_STRING, 0, (v)})
#define BOOL(k, v) ((fake_param){(k), PARAM_BOOL, (v), NULL})

/** What moert_create_context stands for here: the block prefix and the parameters. */
struct moert_create_context {
    const char *prefix;
    const fake_param *params;
    int n_params;
};

static atomic_int live_allocations;
static _Thread_local char last_error[1024];
static _Thread_local int error_calls;

/** Kinds captured by register_router. */
#define MAX_KINDS 16
static const moert_router_ops *kinds[MAX_KINDS];
static int kind_count;
static int registry_token;  /* its address is the host_context */

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
    (void)host_context, (void)ops;
    fake_set_error("this test host registers no expert kinds");
    return MOERT_ERR_PLUGIN;
}

static const fake_tensor *find_tensor(const char *name) {
    for (int i = 0; i < store_count; i++) {
        if (strcmp(store[i].name, name) == 0) return &store[i];
    }
    return NULL;
}

static moert_status serve_tensor(const char *full, moert_tensor *out) {
    if (out == NULL || out->struct_size < sizeof(moert_tensor)) return MOERT_ERR_INVALID_ARGUMENT;
    const fake_tensor *t = find_tensor(full);
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

static moert_host_api make_host(void) {
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

/** The host table handed to create(); a fresh copy per call shows that plugins keep no pointer to it. */
static moert_host_api call_host;

/* ---- the tensor store ---- */

static void store_clear(void) {
    for (int i = 0; i < store_count; i++) free(store[i].data);
    store_count = 0;
}

/** Adds a zeroed tensor; returns its data. */
static void *add_tensor(const char *name, int32_t dtype, int32_t ndim, int64_t d0, int64_t d1, int64_t d2) {
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

static float *add_random(const char *name, int32_t ndim, int64_t d0, int64_t d1, int64_t d2, float scale) {
    float *p = (float *)add_tensor(name, MOERT_TENSOR_F32, ndim, d0, d1, d2);
    int64_t count = d0 * (ndim > 1 ? d1 : 1) * (ndim > 2 ? d2 : 1);
    for (int64_t i = 0; i < count; i++) p[i] = urand(-scale, scale);
    return p;
}

static fake_tensor *tensor_named(const char *name) {
    for (int i = 0; i < store_count; i++) {
        if (strcmp(store[i].name, name) == 0) return &store[i];
    }
    return NULL;
}

/** Removes a tensor from the store. */
static void remove_tensor(const char *name) {
    fake_tensor *t = tensor_named(name);
    if (t == NULL) return;
    free(t->data);
    *t = store[--store_count];
}

/* ---- create/route helpers ---- */

static const moert_router_ops *kind_named(const char *name) {
    for (int i = 0; i < kind_count; i++) {
        if (strcmp(kinds[i]->name, name) == 0) return kinds[i];
    }
    return NULL;
}

static moert_layer_info make_layer(int32_t layer, int32_t H, int32_t E, int32_t top_k, int32_t vocab) {
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

/** Calls create() the way moert does (caps prefilled with the defaults). */
static moert_status create_router(const moert_router_ops *ops, const char *prefix, const fake_param *params,
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

/** Output buffers of one route() call, prefilled with sentinels. */
typedef struct route_out {
    int32_t n, cap, experts;
    int32_t *ids;
    float *weights;
    int32_t *counts;
    float *logits;
    moert_router_output out;
} route_out;

static void route_out_init(route_out *r, int32_t n, int32_t cap, int32_t experts) {
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

static void route_out_free(route_out *r) {
    free(r->ids);
    free(r->weights);
    free(r->counts);
    free(r->logits);
}

static moert_router_input make_input(int32_t n, int32_t H, const float *x, const int32_t *tokens, const int32_t *pos,
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

/** Runs a create() that must fail: non-OK status, set_error called with a message, no instance, no leak. */
static void expect_create_fails(const char *name, const moert_router_ops *ops, const char *prefix,
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

/** Sorted-descending selection of at most `cap` entries of v[0..n) with v > floor, ties to the lower index. */
static int32_t ref_select(const double *v, int32_t n, int32_t cap, double floor_value, int32_t *ids) {
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

/* ------------------------------------------------------------------------------------------------------------ */
/* Loading and init                                                                                             */
/* ------------------------------------------------------------------------------------------------------------ */

/** The message of a refused host table names the kind (libmoert_<kind>.so), both ABI versions and table sizes. */
static void expect_refusal_message(const char *path, const moert_host_api *host) {
    char want[256], name[400];
    const char *kind = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
    if (strncmp(kind, "libmoert_", 9) == 0) kind += 9;
    snprintf(want, sizeof want, "%.*s: built for plugin ABI %d (host table of %zu bytes), host has ABI %u (%u bytes)",
             (int)strcspn(kind, "."), kind, MOERT_PLUGIN_ABI_VERSION, sizeof(moert_host_api),
             (unsigned)host->abi_version, (unsigned)host->struct_size);
    snprintf(name, sizeof name, "%s says why: %s", path, want);
    check(strcmp(last_error, want) == 0, name, "message \"%s\"", last_error);
}

/** dlopens one plugin, checks the ABI refusals, then initialises it with the full fake host. */
static void load_plugin(const char *path) {
    char name[400];
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    snprintf(name, sizeof name, "dlopen %s", path);
    check(lib != NULL, name, "%s", lib == NULL ? dlerror() : "");
    if (lib == NULL) return;
    moert_plugin_init_fn init;
    *(void **)&init = dlsym(lib, MOERT_PLUGIN_ENTRY);
    snprintf(name, sizeof name, "%s exports " MOERT_PLUGIN_ENTRY, path);
    check(init != NULL, name, "symbol not found");
    if (init == NULL) return;

    // A host of another ABI version is refused with a message; nothing is registered.
    moert_host_api host = make_host();
    host.abi_version = MOERT_PLUGIN_ABI_VERSION + 1;
    int kinds_before = kind_count;
    error_calls = 0;
    moert_status status = init(&host, &registry_token);
    snprintf(name, sizeof name, "%s refuses host ABI %d", path, MOERT_PLUGIN_ABI_VERSION + 1);
    check(status == MOERT_ERR_PLUGIN && error_calls == 1 && kind_count == kinds_before, name,
          "status %d, set_error calls %d, registered %d", (int)status, error_calls, kind_count - kinds_before);
    expect_refusal_message(path, &host);

    // A host table too short for the fields a plugin uses is refused.
    host = make_host();
    host.struct_size = (uint32_t)offsetof(moert_host_api, layer_tensor);
    error_calls = 0;
    status = init(&host, &registry_token);
    snprintf(name, sizeof name, "%s refuses a host table of %u bytes", path, (unsigned)host.struct_size);
    check(status == MOERT_ERR_PLUGIN && error_calls == 1 && kind_count == kinds_before, name,
          "status %d, set_error calls %d, registered %d", (int)status, error_calls, kind_count - kinds_before);
    expect_refusal_message(path, &host);

    host = make_host();
    status = init(&host, &registry_token);
    snprintf(name, sizeof name, "%s initialises and registers one router kind", path);
    check(status == MOERT_OK && kind_count == kinds_before + 1, name, "status %d, registered %d (%s)", (int)status,
          kind_count - kinds_before, last_error);
    if (kind_count == kinds_before + 1) {
        const moert_router_ops *ops = kinds[kind_count - 1];
        snprintf(name, sizeof name, "%s ops table is complete", path);
        check(ops->struct_size == sizeof(moert_router_ops) && ops->abi_version == MOERT_PLUGIN_ABI_VERSION &&
                  ops->name != NULL && ops->create != NULL && ops->route != NULL && ops->destroy != NULL,
              name, "struct_size %u, abi %u", (unsigned)ops->struct_size, (unsigned)ops->abi_version);
    }
    /* The library stays loaded: its ops tables are used until the process ends. */
}

/* ------------------------------------------------------------------------------------------------------------ */
/* gru (ALGORITHMS.md §2)                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct gru_case {
    const char *label;
    int32_t H, r, E, k, n, layers;
    int rnn;
    int normalize;   /* -1: parameter absent (default true) */
    int k_param;     /* pass top_k as a parameter (the layer's top_k is then E) */
    int32_t pad;     /* extra state floats per token beyond r */
    int ties;        /* weight2 rows 1 and 3 equal, row 0 equal to row 2 */
} gru_case;

static const char *gate_names[3] = {"r", "z", "n"};

/** Fills the store with a cell under `prefix` and per-layer weight1/weight2. */
static void gru_make_weights(const gru_case *gc, const char *prefix) {
    char name[200];
    const float cs = 1.0f / sqrtf((float)gc->r) * 1.5f;
    for (int g = gc->rnn ? 2 : 0; g < 3; g++) {
        for (int side = 0; side < 2; side++) {
            snprintf(name, sizeof name, "%sweight_%c%s", prefix, side == 0 ? 'i' : 'h', gate_names[g]);
            add_random(name, 2, gc->r, gc->r, 0, cs);
            snprintf(name, sizeof name, "%sbias_%c%s", prefix, side == 0 ? 'i' : 'h', gate_names[g]);
            add_random(name, 1, gc->r, 0, 0, 0.3f);
        }
    }
    for (int32_t l = 0; l < gc->layers; l++) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.weight1", (int)l);
        add_random(name, 2, gc->r, gc->H, 0, 2.0f / sqrtf((float)gc->H));
        snprintf(name, sizeof name, "model.layers.%d.mlp.weight2", (int)l);
        float *w2 = add_random(name, 2, gc->E, gc->r, 0, 3.0f / sqrtf((float)gc->r));
        if (gc->ties) {
            memcpy(w2 + 3 * gc->r, w2 + 1 * gc->r, sizeof(float) * (size_t)gc->r);
            memcpy(w2 + 2 * gc->r, w2 + 0 * gc->r, sizeof(float) * (size_t)gc->r);
        }
    }
}

static const float *tensor_data(const char *name) {
    const fake_tensor *t = find_tensor(name);
    return t != NULL ? (const float *)t->data : NULL;
}

static double sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

/**
 * Reference RMoE step for one token (ALGORITHMS.md §2): u = W1 x; GRU (or RNN) update of h; logits = W2 h';
 * softmax; top-k; renormalise. h is updated in place.
 */
static int32_t ref_gru_token(const gru_case *gc, const char *prefix, int32_t l, const float *x, double *h,
                             double *logits, int32_t *ids, double *weights) {
    char name[200];
    const int32_t H = gc->H, r = gc->r, E = gc->E, k = gc->k;
    snprintf(name, sizeof name, "model.layers.%d.mlp.weight1", (int)l);
    const float *w1 = tensor_data(name);
    snprintf(name, sizeof name, "model.layers.%d.mlp.weight2", (int)l);
    const float *w2 = tensor_data(name);
    const float *W[2][3], *B[2][3];
    for (int g = gc->rnn ? 2 : 0; g < 3; g++) {
        for (int side = 0; side < 2; side++) {
            snprintf(name, sizeof name, "%sweight_%c%s", prefix, side == 0 ? 'i' : 'h', gate_names[g]);
            W[side][g] = tensor_data(name);
            snprintf(name, sizeof name, "%sbias_%c%s", prefix, side == 0 ? 'i' : 'h', gate_names[g]);
            B[side][g] = tensor_data(name);
        }
    }
    double u[64], hn[64];
    for (int32_t i = 0; i < r; i++) {
        u[i] = 0;
        for (int32_t c = 0; c < H; c++) u[i] += (double)w1[i * H + c] * x[c];
    }
    for (int32_t i = 0; i < r; i++) {
        double pre[2][3];
        for (int g = gc->rnn ? 2 : 0; g < 3; g++) {
            double si = B[0][g][i], sh = B[1][g][i];
            for (int32_t j = 0; j < r; j++) {
                si += (double)W[0][g][i * r + j] * u[j];
                sh += (double)W[1][g][i * r + j] * h[j];
            }
            pre[0][g] = si;
            pre[1][g] = sh;
        }
        if (gc->rnn) {
            hn[i] = tanh(pre[0][2] + pre[1][2]);
        } else {
            double rg = sigmoid(pre[0][0] + pre[1][0]);
            double zg = sigmoid(pre[0][1] + pre[1][1]);
            double ng = tanh(pre[0][2] + rg * pre[1][2]);
            hn[i] = (1 - zg) * ng + zg * h[i];
        }
    }
    for (int32_t i = 0; i < r; i++) h[i] = hn[i];
    double p[64], m = -INFINITY, sum = 0;
    for (int32_t e = 0; e < E; e++) {
        logits[e] = 0;
        for (int32_t i = 0; i < r; i++) logits[e] += (double)w2[e * r + i] * h[i];
        m = logits[e] > m ? logits[e] : m;
    }
    for (int32_t e = 0; e < E; e++) sum += (p[e] = exp(logits[e] - m));
    for (int32_t e = 0; e < E; e++) p[e] /= sum;
    int32_t count = ref_select(p, E, k, -1.0, ids);
    double chosen = 0;
    for (int32_t j = 0; j < count; j++) chosen += p[ids[j]];
    for (int32_t j = 0; j < count; j++) weights[j] = gc->normalize == 0 ? p[ids[j]] : p[ids[j]] / chosen;
    return count;
}

static void test_gru_case(const moert_router_ops *ops, const gru_case *gc, const char *prefix) {
    char name[256];
    store_clear();
    gru_make_weights(gc, prefix);
    const int32_t n = gc->n, H = gc->H, r = gc->r, E = gc->E, stride = r + gc->pad;
    fake_param params[4];
    int np = 0;
    if (gc->rnn) params[np++] = STR("cell", "rnn");
    if (gc->normalize >= 0) params[np++] = BOOL("normalize", gc->normalize);
    if (gc->k_param) params[np++] = NUM("top_k", gc->k);
    if (strcmp(prefix, "model.rnn_router.") != 0) params[np++] = STR("global_prefix", prefix);

    float *state = (float *)malloc(sizeof(float) * (size_t)(n * stride));
    double *ref_h = (double *)calloc((size_t)(n * r), sizeof(double));
    for (int32_t t = 0; t < n; t++) {
        for (int32_t i = 0; i < stride; i++) state[t * stride + i] = i < r ? 0.0f : 123.0f;
    }
    int32_t tokens[64], pos[64], prev[64];
    for (int32_t t = 0; t < n; t++) {
        tokens[t] = t;
        pos[t] = t;
        prev[t] = t - 1;
    }
    int ok_caps = 1, ok_status = 1, ok_ids = 1, ok_w = 1, ok_logits = 1, ok_state = 1, ok_pad = 1;
    char why[512] = "";
    for (int32_t l = 0; l < gc->layers; l++) {
        moert_layer_info layer = make_layer(l, H, E, gc->k_param ? E : gc->k, 100);
        char lp[64];
        snprintf(lp, sizeof lp, "model.layers.%d.mlp.", (int)l);
        moert_router_caps caps;
        void *inst = NULL;
        error_calls = 0;
        moert_status status = create_router(ops, lp, params, np, &layer, &caps, &inst);
        if (status != MOERT_OK) {
            snprintf(why, sizeof why, "create of layer %d failed: %.200s", (int)l, last_error);
            ok_status = 0;
            break;
        }
        if (caps.max_experts_per_token != gc->k || caps.state_size != r) ok_caps = 0;
        float *x = (float *)malloc(sizeof(float) * (size_t)(n * H));
        for (int32_t i = 0; i < n * H; i++) x[i] = urand(-1.0f, 1.0f);
        route_out ro;
        route_out_init(&ro, n, caps.max_experts_per_token, E);
        moert_router_input in = make_input(n, H, x, tokens, pos, prev, state, stride);
        status = ops->route(inst, &in, &ro.out);
        if (status != MOERT_OK) {
            snprintf(why, sizeof why, "route of layer %d failed: %.200s", (int)l, last_error);
            ok_status = 0;
        }
        for (int32_t t = 0; t < n && status == MOERT_OK; t++) {
            double logits[64], weights[64];
            int32_t ids[64];
            int32_t count = ref_gru_token(gc, prefix, l, x + t * H, ref_h + t * r, logits, ids, weights);
            if (ro.counts[t] != count) {
                ok_ids = 0;
                snprintf(why, sizeof why, "layer %d token %d: count %d, want %d", (int)l, (int)t, (int)ro.counts[t],
                         (int)count);
                continue;
            }
            for (int32_t j = 0; j < count; j++) {
                if (ro.ids[t * ro.cap + j] != ids[j]) {
                    ok_ids = 0;
                    snprintf(why, sizeof why, "layer %d token %d rank %d: expert %d, want %d", (int)l, (int)t, (int)j,
                             (int)ro.ids[t * ro.cap + j], (int)ids[j]);
                }
                if (!close_to(ro.weights[t * ro.cap + j], weights[j], TOL)) {
                    ok_w = 0;
                    snprintf(why, sizeof why, "layer %d token %d rank %d: weight %.8g, want %.8g", (int)l, (int)t,
                             (int)j, ro.weights[t * ro.cap + j], weights[j]);
                }
            }
            for (int32_t e = 0; e < E; e++) {
                if (!close_to(ro.logits[t * E + e], logits[e], TOL)) {
                    ok_logits = 0;
                    snprintf(why, sizeof why, "layer %d token %d expert %d: logit %.8g, want %.8g", (int)l, (int)t,
                             (int)e, ro.logits[t * E + e], logits[e]);
                }
            }
            for (int32_t i = 0; i < stride; i++) {
                float v = state[t * stride + i];
                if (i < r && !close_to(v, ref_h[t * r + i], TOL)) {
                    ok_state = 0;
                    snprintf(why, sizeof why, "layer %d token %d: state[%d] %.8g, want %.8g", (int)l, (int)t, (int)i,
                             v, ref_h[t * r + i]);
                }
                if (i >= r && v != 123.0f) ok_pad = 0;
            }
            // The plugin's state continues from its own output; keep the reference on the same path.
            for (int32_t i = 0; i < r; i++) ref_h[t * r + i] = state[t * stride + i];
        }
        route_out_free(&ro);
        free(x);
        ops->destroy(inst);
    }
    snprintf(name, sizeof name, "gru %s: create and route succeed", gc->label);
    check(ok_status, name, "%s", why);
    snprintf(name, sizeof name, "gru %s: caps max_experts_per_token = top_k, state_size = r", gc->label);
    check(ok_caps, name, "caps differ");
    snprintf(name, sizeof name, "gru %s: expert ids and counts equal the reference", gc->label);
    check(ok_ids, name, "%s", why);
    snprintf(name, sizeof name, "gru %s: weights within 1e-5", gc->label);
    check(ok_w, name, "%s", why);
    snprintf(name, sizeof name, "gru %s: logits within 1e-5", gc->label);
    check(ok_logits, name, "%s", why);
    snprintf(name, sizeof name, "gru %s: state h' within 1e-5, padding untouched", gc->label);
    check(ok_state && ok_pad, name, "%s%s", why, ok_pad ? "" : " (padding overwritten)");
    free(state);
    free(ref_h);
    store_clear();
}

static void test_gru_bad_inputs(const moert_router_ops *ops) {
    const gru_case gc = {"bad", 8, 4, 6, 2, 3, 1, 0, -1, 0, 0, 0};
    const char *lp = "model.layers.0.mlp.";
    moert_layer_info layer = make_layer(0, 8, 6, 2, 100);
    fake_param none[1] = {NUM("unused", 0)};

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    remove_tensor("model.layers.0.mlp.weight2");
    expect_create_fails("gru rejects a missing weight2", ops, lp, none, 0, &layer, "weight2");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    remove_tensor("model.layers.0.mlp.weight1");
    add_random("model.layers.0.mlp.weight1", 2, 4, 7, 0, 1.0f);
    expect_create_fails("gru rejects weight1 [r, H-1]", ops, lp, none, 0, &layer, "weight1");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    remove_tensor("model.layers.0.mlp.weight2");
    add_random("model.layers.0.mlp.weight2", 2, 5, 4, 0, 1.0f);
    expect_create_fails("gru rejects weight2 [E-1, r]", ops, lp, none, 0, &layer, "weight2");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    remove_tensor("model.rnn_router.weight_hz");
    add_random("model.rnn_router.weight_hz", 2, 4, 3, 0, 1.0f);
    expect_create_fails("gru rejects weight_hz [r, r-1]", ops, lp, none, 0, &layer, "weight_hz");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    remove_tensor("model.rnn_router.bias_in");
    expect_create_fails("gru rejects a missing bias_in", ops, lp, none, 0, &layer, "bias_in");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    remove_tensor("model.layers.0.mlp.weight1");
    add_tensor("model.layers.0.mlp.weight1", MOERT_TENSOR_I32, 2, 4, 8, 0);
    expect_create_fails("gru rejects an integer weight1", ops, lp, none, 0, &layer, "weight1");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    ((float *)tensor_named("model.rnn_router.weight_ir")->data)[5] = NAN;
    expect_create_fails("gru rejects a NaN in weight_ir", ops, lp, none, 0, &layer, "weight_ir");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    fake_param lstm[1] = {STR("cell", "lstm")};
    expect_create_fails("gru rejects cell \"lstm\"", ops, lp, lstm, 1, &layer, "cell");
    fake_param cell_number[1] = {NUM("cell", 1)};
    expect_create_fails("gru rejects a numeric cell", ops, lp, cell_number, 1, &layer, "cell");
    fake_param k0[1] = {NUM("top_k", 0)};
    expect_create_fails("gru rejects top_k 0", ops, lp, k0, 1, &layer, "top_k");
    fake_param k7[1] = {NUM("top_k", 7)};
    expect_create_fails("gru rejects top_k > E", ops, lp, k7, 1, &layer, "top_k");
    fake_param kfrac[1] = {NUM("top_k", 1.5)};
    expect_create_fails("gru rejects top_k 1.5", ops, lp, kfrac, 1, &layer, "top_k");
    moert_layer_info big_k = make_layer(0, 8, 6, 9, 100);
    expect_create_fails("gru rejects a layer top_k > E", ops, lp, none, 0, &big_k, "top_k");
    fake_param prefix[1] = {STR("global_prefix", "model.other_router.")};
    expect_create_fails("gru rejects a global_prefix without tensors", ops, lp, prefix, 1, &layer, "other_router");
    moert_layer_info wrong_h = make_layer(0, 9, 6, 2, 100);
    expect_create_fails("gru rejects weights of another hidden size", ops, lp, none, 0, &wrong_h, "weight1");

    // The rnn cell needs only the _in and _hn tensors.
    store_clear();
    gru_case rnn = gc;
    rnn.rnn = 1;
    gru_make_weights(&rnn, "model.rnn_router.");
    fake_param cell_rnn[1] = {STR("cell", "rnn")};
    moert_router_caps caps;
    void *inst = NULL;
    moert_status status = create_router(ops, lp, cell_rnn, 1, &layer, &caps, &inst);
    check(status == MOERT_OK, "gru rnn cell needs only weight_in/hn and bias_in/hn", "%s", last_error);

    // route() refuses bad calls with a message instead of crashing.
    if (status == MOERT_OK) {
        float x[3 * 8] = {0};
        int32_t tokens[3] = {1, 2, 3}, pos[3] = {0, 1, 2}, prev[3] = {-1, 1, 2};
        route_out ro;
        route_out_init(&ro, 3, caps.max_experts_per_token, 6);
        moert_router_input in = make_input(3, 8, x, tokens, pos, prev, NULL, 0);
        error_calls = 0;
        status = ops->route(inst, &in, &ro.out);
        check(status != MOERT_OK && error_calls == 1, "gru route without state fails with a message", "status %d",
              (int)status);
        float state[3 * 4] = {0};
        in = make_input(3, 7, x, tokens, pos, prev, state, 4);
        error_calls = 0;
        status = ops->route(inst, &in, &ro.out);
        check(status != MOERT_OK && error_calls == 1, "gru route with the wrong hidden size fails with a message",
              "status %d", (int)status);
        in = make_input(3, 8, x, tokens, pos, prev, state, 3);
        error_calls = 0;
        status = ops->route(inst, &in, &ro.out);
        check(status != MOERT_OK && error_calls == 1, "gru route with state_stride < r fails with a message",
              "status %d", (int)status);
        x[3] = NAN;
        in = make_input(3, 8, x, tokens, pos, prev, state, 4);
        error_calls = 0;
        status = ops->route(inst, &in, &ro.out);
        check(status != MOERT_OK && error_calls == 1, "gru route with a NaN input fails with a message", "status %d",
              (int)status);
        route_out_free(&ro);
        ops->destroy(inst);
    }
    store_clear();
    check(atomic_load(&live_allocations) == 0, "gru frees everything it allocates", "%d live allocations",
          atomic_load(&live_allocations));
}

/* ------------------------------------------------------------------------------------------------------------ */
/* hash (ALGORITHMS.md §4)                                                                                      */
/* ------------------------------------------------------------------------------------------------------------ */

/** SplitMix64 (Vigna, splitmix64.c): next() of a generator whose state is `seed`. */
static uint64_t ref_splitmix64(uint64_t seed) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/**
 * Routes `n` random token ids through a fresh hash instance and compares with the table (or the fallback):
 * experts in first-occurrence order, weight = multiplicity / c.
 */
static void hash_compare(const char *label, const moert_router_ops *ops, const fake_param *params, int np,
                         int32_t vocab, int32_t E, const int32_t *table, int32_t c, int32_t want_cap) {
    char name[256], why[256] = "";
    moert_layer_info layer = make_layer(1, 16, E, 2, vocab);
    moert_router_caps caps;
    void *inst = NULL;
    moert_status status = create_router(ops, "model.layers.1.mlp.", params, np, &layer, &caps, &inst);
    snprintf(name, sizeof name, "hash %s: create succeeds, max_experts_per_token %d", label, (int)want_cap);
    check(status == MOERT_OK && caps.max_experts_per_token == want_cap && caps.state_size == 0, name,
          "status %d (%s), caps %d/%d", (int)status, last_error, (int)caps.max_experts_per_token, (int)caps.state_size);
    if (status != MOERT_OK) return;
    const int32_t n = 40;
    int32_t tokens[40], pos[40], prev[40];
    for (int32_t t = 0; t < n; t++) {
        tokens[t] = t < 2 ? (t == 0 ? 0 : vocab - 1) : irand(vocab);
        pos[t] = t;
        prev[t] = t == 0 ? -1 : tokens[t - 1];
    }
    float x[40 * 16];
    for (int i = 0; i < n * 16; i++) x[i] = urand(-1, 1);
    route_out ro;
    route_out_init(&ro, n, caps.max_experts_per_token, E);
    moert_router_input in = make_input(n, 16, x, tokens, pos, prev, NULL, 0);
    status = ops->route(inst, &in, &ro.out);
    int ok = status == MOERT_OK;
    if (!ok) snprintf(why, sizeof why, "route failed: %.200s", last_error);
    for (int32_t t = 0; t < n && ok; t++) {
        int32_t ids[64], count = 0;
        double w[64];
        if (table == NULL) {
            ids[0] = (int32_t)(ref_splitmix64((uint64_t)tokens[t]) % (uint64_t)E);
            w[0] = 1;
            count = 1;
        } else {
            for (int32_t j = 0; j < c; j++) {
                int32_t e = table[tokens[t] * c + j], i = 0;
                while (i < count && ids[i] != e) i++;
                if (i == count) {
                    ids[count] = e;
                    w[count++] = 0;
                }
                w[i] += 1.0 / c;
            }
        }
        if (ro.counts[t] != count) {
            ok = 0;
            snprintf(why, sizeof why, "token %d (id %d): count %d, want %d", (int)t, (int)tokens[t], (int)ro.counts[t],
                     (int)count);
        }
        for (int32_t j = 0; j < count && ok; j++) {
            if (ro.ids[t * ro.cap + j] != ids[j] || !close_to(ro.weights[t * ro.cap + j], w[j], 1e-6)) {
                ok = 0;
                snprintf(why, sizeof why, "token %d (id %d) entry %d: expert %d weight %.8g, want %d weight %.8g",
                         (int)t, (int)tokens[t], (int)j, (int)ro.ids[t * ro.cap + j], ro.weights[t * ro.cap + j],
                         (int)ids[j], w[j]);
            }
        }
    }
    int logits_untouched = 1;
    for (int32_t i = 0; i < n * E; i++) logits_untouched = logits_untouched && isnan(ro.logits[i]);
    snprintf(name, sizeof name, "hash %s: experts and weights equal the table", label);
    check(ok, name, "%s", why);
    snprintf(name, sizeof name, "hash %s: logits left untouched", label);
    check(logits_untouched, name, "logits were written");

    // An id outside the vocabulary is refused by route() with a message.
    tokens[0] = vocab;
    in = make_input(1, 16, x, tokens, pos, prev, NULL, 0);
    error_calls = 0;
    status = ops->route(inst, &in, &ro.out);
    snprintf(name, sizeof name, "hash %s: route refuses token id %d = vocab_size", label, (int)vocab);
    check(status != MOERT_OK && error_calls == 1, name, "status %d", (int)status);
    tokens[0] = -1;
    error_calls = 0;
    status = ops->route(inst, &in, &ro.out);
    snprintf(name, sizeof name, "hash %s: route refuses token id -1", label);
    check(status != MOERT_OK && error_calls == 1, name, "status %d", (int)status);
    route_out_free(&ro);
    ops->destroy(inst);
}

static void test_hash(const moert_router_ops *ops) {
    const int32_t vocab = 50;
    fake_param none[1] = {NUM("unused", 0)};

    // The reference hash is SplitMix64: its first output from seed 0 is 0xE220A8397B1DCDAF.
    check(ref_splitmix64(0) == 0xE220A8397B1DCDAFull, "hash reference splitmix64(0) = 0xE220A8397B1DCDAF", "got %llx",
          (unsigned long long)ref_splitmix64(0));

    // [vocab] table, one expert with weight 1.
    store_clear();
    int32_t *t1 = (int32_t *)add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 1, vocab, 0, 0);
    for (int32_t i = 0; i < vocab; i++) t1[i] = irand(8);
    hash_compare("[vocab] table", ops, none, 0, vocab, 8, t1, 1, 1);

    // [vocab, 3] table with repeated experts in some rows.
    store_clear();
    int32_t *t3 = (int32_t *)add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 2, vocab, 3, 0);
    for (int32_t i = 0; i < vocab * 3; i++) t3[i] = irand(6);
    t3[0] = t3[1] = t3[2] = 4;                         // id 0: one expert, weight 1
    t3[3 * 5 + 0] = 2, t3[3 * 5 + 1] = 5, t3[3 * 5 + 2] = 2;  // id 5: expert 2 twice
    hash_compare("[vocab, 3] table", ops, none, 0, vocab, 6, t3, 3, 3);

    // [vocab, 4] table over 3 experts: at most 3 distinct per row, so the capacity is min(c, E) = 3.
    store_clear();
    int32_t *t4 = (int32_t *)add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 2, vocab, 4, 0);
    for (int32_t i = 0; i < vocab * 4; i++) t4[i] = irand(3);
    hash_compare("[vocab, 4] table over 3 experts", ops, none, 0, vocab, 3, t4, 4, 3);

    // A table under another name, chosen by the `table` parameter.
    store_clear();
    int32_t *tn = (int32_t *)add_tensor("model.layers.1.mlp.my_table", MOERT_TENSOR_I32, 1, vocab, 0, 0);
    for (int32_t i = 0; i < vocab; i++) tn[i] = irand(5);
    fake_param named[1] = {STR("table", "my_table")};
    hash_compare("table parameter", ops, named, 1, vocab, 5, tn, 1, 1);

    // The fallback hash when no table exists; a table, when present, wins over the fallback.
    store_clear();
    fake_param fallback[1] = {STR("fallback", "splitmix64")};
    hash_compare("splitmix64 fallback", ops, fallback, 1, vocab, 7, NULL, 1, 1);
    int32_t *tf = (int32_t *)add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 1, vocab, 0, 0);
    for (int32_t i = 0; i < vocab; i++) tf[i] = irand(7);
    hash_compare("table wins over fallback", ops, fallback, 1, vocab, 7, tf, 1, 1);

    // Bad inputs.
    moert_layer_info layer = make_layer(1, 16, 8, 2, vocab);
    const char *lp = "model.layers.1.mlp.";
    store_clear();
    expect_create_fails("hash rejects a missing table without fallback", ops, lp, none, 0, &layer, "hash_table");
    int32_t *bad = (int32_t *)add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 1, vocab, 0, 0);
    bad[17] = 8;
    expect_create_fails("hash rejects a table entry = E", ops, lp, none, 0, &layer, "[17]");
    bad[17] = -1;
    expect_create_fails("hash rejects a table entry -1", ops, lp, none, 0, &layer, "[17]");
    store_clear();
    int32_t *bad2 = (int32_t *)add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 2, vocab, 2, 0);
    bad2[2 * 9 + 1] = 100;
    expect_create_fails("hash rejects a [vocab, c] entry out of range", ops, lp, none, 0, &layer, "[9, 1]");
    store_clear();
    add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 1, vocab + 1, 0, 0);
    expect_create_fails("hash rejects a table of vocab_size + 1 rows", ops, lp, none, 0, &layer, "hash_table");
    store_clear();
    add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 3, vocab, 2, 2);
    expect_create_fails("hash rejects a 3-D table", ops, lp, none, 0, &layer, "hash_table");
    store_clear();
    add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_F32, 1, vocab, 0, 0);
    expect_create_fails("hash rejects a float table", ops, lp, none, 0, &layer, "I32");
    store_clear();
    add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 1, vocab, 0, 0);
    fake_param murmur[1] = {STR("fallback", "murmur3")};
    expect_create_fails("hash rejects fallback \"murmur3\"", ops, lp, murmur, 1, &layer, "fallback");
    fake_param table_number[1] = {NUM("table", 3)};
    expect_create_fails("hash rejects a numeric table parameter", ops, lp, table_number, 1, &layer, "table");
    store_clear();
    check(atomic_load(&live_allocations) == 0, "hash frees everything it allocates", "%d live allocations",
          atomic_load(&live_allocations));
}

/* ------------------------------------------------------------------------------------------------------------ */
/* comet (ALGORITHMS.md §3.1)                                                                                   */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct comet_case {
    const char *label;
    int32_t H, E, k, n;
    double gamma;
    int pytorch;     /* variant "pytorch" (else "keras", passed explicitly when explicit_variant) */
    int node_bias;
    int permutation;
    int32_t max_experts;  /* 0: parameter absent */
    float node_scale;     /* scale of the node weights relative to gamma */
} comet_case;

/** Leaves of the subtree at `node` in the gate's order: [leaves of the left child, leaves of the right child]. */
static void ref_leaves(int32_t node, int32_t E, int32_t *out, int32_t *count) {
    if (node >= E - 1) {
        out[(*count)++] = node;
        return;
    }
    ref_leaves(2 * node + 1, E, out, count);
    ref_leaves(2 * node + 2, E, out, count);
}

static double ref_smooth_step(double u, double gamma) {
    if (u <= -gamma / 2) return 0;
    if (u >= gamma / 2) return 1;
    return -2 / (gamma * gamma * gamma) * u * u * u + 3 / (2 * gamma) * u + 0.5;
}

typedef struct comet_weights {
    const float *node_w, *node_b, *leaf_w, *leaf_b, *perm;
} comet_weights;

/** The recursion of COMETGate.call: a node passes P·q to its left child and P·(1-q) to its right child. */
static void ref_comet_walk(const comet_case *cc, const comet_weights *w, const float *x, int32_t node,
                           const double *P, double *leafP, int32_t *leaf) {
    const int32_t E = cc->E, k = cc->k, H = cc->H;
    if (node >= E - 1) {
        for (int32_t t = 0; t < k; t++) leafP[*leaf * k + t] = P[t];
        (*leaf)++;
        return;
    }
    double left[16], right[16];
    for (int32_t t = 0; t < k; t++) {
        double u = w->node_b != NULL ? w->node_b[node * k + t] : 0.0;
        for (int32_t c = 0; c < H; c++) u += (double)w->node_w[((size_t)node * k + t) * H + c] * x[c];
        double q = ref_smooth_step(u, cc->gamma);
        left[t] = P[t] * q;
        right[t] = P[t] * (1 - q);
    }
    ref_comet_walk(cc, w, x, 2 * node + 1, left, leafP, leaf);
    ref_comet_walk(cc, w, x, 2 * node + 2, right, leafP, leaf);
}

/** Reference COMET gate for one token; returns the count and fills ids/weights (largest first, capped). */
static int32_t ref_comet_token(const comet_case *cc, const comet_weights *w, const float *x, int32_t *ids,
                               double *weights) {
    const int32_t E = cc->E, k = cc->k, H = cc->H;
    double leafP[64 * 16], s[16][64], P[16], g[64];
    int masked[16][64];
    for (int32_t t = 0; t < 16; t++) P[t] = 1;  // the root: probability 1 in every tree
    int32_t leaf = 0;
    ref_comet_walk(cc, w, x, 0, P, leafP, &leaf);
    double m = -INFINITY;
    for (int32_t t = 0; t < k; t++) {
        for (int32_t j = 0; j < E; j++) {
            double p = leafP[j * k + t];
            masked[t][j] = cc->pytorch ? p < 1e-5 : p <= 0;
            double a = w->leaf_b[j * k + t];
            for (int32_t c = 0; c < H; c++) a += (double)w->leaf_w[((size_t)j * k + t) * H + c] * x[c];
            s[t][j] = a + log(p + (cc->pytorch ? 1e-6 : 1e-8));
            if (!masked[t][j] && s[t][j] > m) m = s[t][j];
        }
    }
    double sum = 0;
    for (int32_t t = 0; t < k; t++) {
        for (int32_t j = 0; j < E; j++) sum += masked[t][j] ? 0 : exp(s[t][j] - m);
    }
    for (int32_t e = 0; e < E; e++) g[e] = 0;
    for (int32_t t = 0; t < k; t++) {
        for (int32_t j = 0; j < E; j++) {
            double gtj = masked[t][j] ? 0 : exp(s[t][j] - m) / sum;
            for (int32_t e = 0; e < E; e++) {
                double pi = w->perm != NULL ? w->perm[((size_t)t * E + j) * E + e] : (j == e);
                g[e] += gtj * pi;
            }
        }
    }
    double total = 0;
    for (int32_t e = 0; e < E; e++) total += g[e];
    for (int32_t e = 0; e < E; e++) g[e] /= total;
    int32_t nonzero = 0;
    for (int32_t e = 0; e < E; e++) nonzero += g[e] > 0;
    int32_t cap = cc->max_experts > 0 && cc->max_experts < E ? cc->max_experts : E;
    int32_t count = ref_select(g, E, cap, 0.0, ids);
    double kept = 0;
    for (int32_t j = 0; j < count; j++) kept += g[ids[j]];
    for (int32_t j = 0; j < count; j++) weights[j] = nonzero > count ? g[ids[j]] / kept : g[ids[j]];
    return count;
}

/** Adds the COMET tensors of layer 2 to the store (k trees over E experts, hidden H). */
static comet_weights comet_make_weights(const comet_case *cc) {
    comet_weights w = {NULL, NULL, NULL, NULL, NULL};
    const int32_t E = cc->E, k = cc->k, H = cc->H;
    const float ns = (float)cc->gamma * cc->node_scale;
    if (E > 1) w.node_w = add_random("model.layers.2.mlp.router.node_weight", 3, E - 1, k, H, ns);
    if (E > 1 && cc->node_bias) w.node_b = add_random("model.layers.2.mlp.router.node_bias", 2, E - 1, k, 0, ns);
    w.leaf_w = add_random("model.layers.2.mlp.router.leaf_weight", 3, E, k, H, 1.0f);
    w.leaf_b = add_random("model.layers.2.mlp.router.leaf_bias", 2, E, k, 0, 0.5f);
    if (cc->permutation) {
        float *pi = (float *)add_tensor("model.layers.2.mlp.router.permutation", MOERT_TENSOR_F32, 3, k, E, E);
        for (int32_t t = 0; t < k; t++) {
            int32_t order[64];
            for (int32_t j = 0; j < E; j++) order[j] = j;
            for (int32_t j = E - 1; j > 0; j--) {  // Fisher-Yates
                int32_t o = irand(j + 1), tmp = order[j];
                order[j] = order[o];
                order[o] = tmp;
            }
            for (int32_t j = 0; j < E; j++) pi[((size_t)t * E + j) * E + order[j]] = 1.0f;
        }
        w.perm = pi;
    }
    return w;
}

static int comet_params(const comet_case *cc, fake_param *params) {
    int np = 0;
    params[np++] = NUM("gamma", cc->gamma);
    if (cc->pytorch) params[np++] = STR("variant", "pytorch");
    else if (cc->node_bias) params[np++] = STR("variant", "keras");  // explicit in some cases, default in others
    if (cc->max_experts > 0) params[np++] = NUM("max_experts", cc->max_experts);
    return np;
}

static void test_comet_case(const moert_router_ops *ops, const comet_case *cc) {
    char name[256], why[512] = "", why_w[512] = "";
    store_clear();
    comet_weights w = comet_make_weights(cc);
    const int32_t n = cc->n, H = cc->H, E = cc->E;
    fake_param params[4];
    int np = comet_params(cc, params);
    moert_layer_info layer = make_layer(2, H, E, cc->k, 100);
    moert_router_caps caps;
    void *inst = NULL;
    moert_status status = create_router(ops, "model.layers.2.mlp.", params, np, &layer, &caps, &inst);
    int32_t want_cap = cc->max_experts > 0 && cc->max_experts < E ? cc->max_experts : E;
    snprintf(name, sizeof name, "comet %s: create succeeds, max_experts_per_token %d", cc->label, (int)want_cap);
    check(status == MOERT_OK && caps.max_experts_per_token == want_cap && caps.state_size == 0, name,
          "status %d (%s), caps %d", (int)status, last_error, (int)caps.max_experts_per_token);
    if (status != MOERT_OK) return;
    float *x = (float *)malloc(sizeof(float) * (size_t)(n * H));
    for (int32_t i = 0; i < n * H; i++) x[i] = urand(-1.0f, 1.0f);
    int32_t tokens[64] = {0}, pos[64] = {0}, prev[64] = {0};
    route_out ro;
    route_out_init(&ro, n, caps.max_experts_per_token, E);
    moert_router_input in = make_input(n, H, x, tokens, pos, prev, NULL, 0);
    status = ops->route(inst, &in, &ro.out);
    int ok_ids = status == MOERT_OK, ok_w = ok_ids, sparse_seen = 0, capped_seen = 0;
    if (!ok_ids) snprintf(why, sizeof why, "route failed: %.200s", last_error);
    for (int32_t t = 0; t < n && status == MOERT_OK; t++) {
        int32_t ids[64];
        double weights[64];
        int32_t count = ref_comet_token(cc, &w, x + t * H, ids, weights);
        sparse_seen |= count < E;
        capped_seen |= count == want_cap && want_cap < E;
        if (ro.counts[t] != count) {
            ok_ids = 0;
            snprintf(why, sizeof why, "token %d: count %d, want %d", (int)t, (int)ro.counts[t], (int)count);
            continue;
        }
        for (int32_t j = 0; j < count; j++) {
            if (ro.ids[t * ro.cap + j] != ids[j]) {
                ok_ids = 0;
                snprintf(why, sizeof why, "token %d rank %d: expert %d, want %d", (int)t, (int)j,
                         (int)ro.ids[t * ro.cap + j], (int)ids[j]);
            }
            if (!close_to(ro.weights[t * ro.cap + j], weights[j], TOL)) {
                ok_w = 0;
                snprintf(why_w, sizeof why_w, "token %d rank %d: weight %.8g, want %.8g", (int)t, (int)j,
                         ro.weights[t * ro.cap + j], weights[j]);
            }
        }
    }
    snprintf(name, sizeof name, "comet %s: expert ids and counts equal the reference%s", cc->label,
             sparse_seen ? " (some tokens sparse)" : "");
    check(ok_ids, name, "%s", why);
    snprintf(name, sizeof name, "comet %s: weights within 1e-5%s", cc->label, capped_seen ? " (cap reached)" : "");
    check(ok_w, name, "%s", ok_ids || why_w[0] != 0 ? why_w : why);
    int logits_untouched = 1;
    for (int32_t i = 0; i < n * E; i++) logits_untouched = logits_untouched && isnan(ro.logits[i]);
    snprintf(name, sizeof name, "comet %s: logits left untouched", cc->label);
    check(logits_untouched, name, "logits were written");
    route_out_free(&ro);
    free(x);
    ops->destroy(inst);
    store_clear();
}

/**
 * Hard paths through E = 6 (one tree, saturated nodes): the expert reached must be the leaf's position in
 * left-first depth-first order, 7, 8, 9, 10, 5, 6 for experts 0..5 (ALGORITHMS.md §3.1).
 */
static void test_comet_leaf_order(const moert_router_ops *ops) {
    static const int32_t doc_order[6] = {7, 8, 9, 10, 5, 6};
    int32_t order[6], count = 0;
    ref_leaves(0, 6, order, &count);
    check(count == 6 && memcmp(order, doc_order, sizeof order) == 0, "comet reference leaf order for E = 6",
          "got %d %d %d %d %d %d", (int)order[0], (int)order[1], (int)order[2], (int)order[3], (int)order[4],
          (int)order[5]);
    for (int32_t expert = 0; expert < 6; expert++) {
        store_clear();
        add_tensor("model.layers.2.mlp.router.node_weight", MOERT_TENSOR_F32, 3, 5, 1, 4);
        float *nb = (float *)add_tensor("model.layers.2.mlp.router.node_bias", MOERT_TENSOR_F32, 2, 5, 1, 0);
        add_random("model.layers.2.mlp.router.leaf_weight", 3, 6, 1, 4, 1.0f);
        add_random("model.layers.2.mlp.router.leaf_bias", 2, 6, 1, 0, 1.0f);
        // Walk up from the leaf, steering every ancestor towards it (q = 1 goes left).
        for (int32_t node = doc_order[expert]; node > 0; node = (node - 1) / 2) {
            int32_t parent = (node - 1) / 2;
            nb[parent] = node == 2 * parent + 1 ? 10.0f : -10.0f;
        }
        fake_param params[1] = {NUM("gamma", 1.0)};
        moert_layer_info layer = make_layer(2, 4, 6, 1, 100);
        moert_router_caps caps;
        void *inst = NULL;
        moert_status status = create_router(ops, "model.layers.2.mlp.", params, 1, &layer, &caps, &inst);
        int32_t got = -1;
        float weight = 0;
        int32_t got_count = -1;
        if (status == MOERT_OK) {
            float x[4] = {0.3f, -0.2f, 0.9f, 0.1f};
            int32_t tok[1] = {0};
            route_out ro;
            route_out_init(&ro, 1, caps.max_experts_per_token, 6);
            moert_router_input in = make_input(1, 4, x, tok, tok, tok, NULL, 0);
            if (ops->route(inst, &in, &ro.out) == MOERT_OK) {
                got_count = ro.counts[0];
                got = ro.ids[0];
                weight = ro.weights[0];
            }
            route_out_free(&ro);
            ops->destroy(inst);
        }
        char name[128];
        snprintf(name, sizeof name, "comet E = 6: the path to heap node %d gives expert %d alone", (int)doc_order[expert],
                 (int)expert);
        check(got_count == 1 && got == expert && weight == 1.0f, name, "count %d, expert %d, weight %g (%s)",
              (int)got_count, (int)got, weight, status == MOERT_OK ? "" : last_error);
    }
    store_clear();
}

/**
 * The variants differ on a leaf whose path probability is in (0, 1e-5). E = 8, one tree, γ = 1: nodes 0, 1 and 3
 * have S(u) ≈ 0.01 (u = -0.4415), the other nodes are saturated to the left, so expert 0 (node 7) gets P ≈ 1e-6,
 * expert 1 ≈ 1e-4, expert 2 ≈ 0.0099 and expert 4 ≈ 0.99. Expert 0's leaf bias 12 gives it a sizeable weight
 * under keras (kept: P > 0); pytorch masks it (P < 1e-5). Expert 1's bias 9 makes its weight depend visibly on
 * the log epsilon (1e-8 or 1e-6 next to P ≈ 1e-4). (A single q of 1e-6 would not do: the cubic cancels to
 * about 6e-8 absolute in float32, the precision of both references.)
 */
static void test_comet_variants(const moert_router_ops *ops) {
    for (int pytorch = 0; pytorch < 2; pytorch++) {
        store_clear();
        const comet_case cc = {pytorch ? "pytorch" : "keras", 3, 8, 1, 1, 1.0, pytorch, 1, 0, 0, 1.0f};
        comet_weights w = {NULL, NULL, NULL, NULL, NULL};
        w.node_w = (const float *)add_tensor("model.layers.2.mlp.router.node_weight", MOERT_TENSOR_F32, 3, 7, 1, 3);
        float *nb = (float *)add_tensor("model.layers.2.mlp.router.node_bias", MOERT_TENSOR_F32, 2, 7, 1, 0);
        w.node_b = nb;
        w.leaf_w = (const float *)add_tensor("model.layers.2.mlp.router.leaf_weight", MOERT_TENSOR_F32, 3, 8, 1, 3);
        float *lb = (float *)add_tensor("model.layers.2.mlp.router.leaf_bias", MOERT_TENSOR_F32, 2, 8, 1, 0);
        w.leaf_b = lb;
        for (int node = 0; node < 7; node++) nb[node] = node == 0 || node == 1 || node == 3 ? -0.4415f : 10.0f;
        lb[0] = 12.0f;
        lb[1] = 9.0f;  // expert 1 (P ≈ 1e-4) gets a large weight, so the log epsilon of the variant shows
        fake_param params[2] = {NUM("gamma", 1.0), STR("variant", pytorch ? "pytorch" : "keras")};
        moert_layer_info layer = make_layer(2, 3, 8, 1, 100);
        moert_router_caps caps;
        void *inst = NULL;
        moert_status status = create_router(ops, "model.layers.2.mlp.", params, 2, &layer, &caps, &inst);
        float x[3] = {0.1f, 0.2f, 0.3f};
        int32_t ids[8], got_count = -1, got_ids[8];
        double weights[8];
        float got_w[8];
        int32_t count = ref_comet_token(&cc, &w, x, ids, weights);
        if (status == MOERT_OK) {
            int32_t tok[1] = {0};
            route_out ro;
            route_out_init(&ro, 1, caps.max_experts_per_token, 8);
            moert_router_input in = make_input(1, 3, x, tok, tok, tok, NULL, 0);
            if (ops->route(inst, &in, &ro.out) == MOERT_OK) {
                got_count = ro.counts[0];
                for (int32_t j = 0; j < got_count && j < 8; j++) {
                    got_ids[j] = ro.ids[j];
                    got_w[j] = ro.weights[j];
                }
            }
            route_out_free(&ro);
            ops->destroy(inst);
        }
        int ok = got_count == count && count == (pytorch ? 3 : 4);
        char why[256] = "";
        for (int32_t j = 0; ok && j < count; j++) {
            ok = got_ids[j] == ids[j] && close_to(got_w[j], weights[j], TOL);
            if (!ok) {
                snprintf(why, sizeof why, "rank %d: expert %d weight %.8g, want %d weight %.8g", (int)j,
                         (int)got_ids[j], got_w[j], (int)ids[j], weights[j]);
            }
        }
        char name[160];
        snprintf(name, sizeof name, "comet %s variant: a leaf with 0 < P < 1e-5 is %s", cc.label,
                 pytorch ? "masked" : "kept");
        check(ok, name, "count %d (want %d and %d) %s", (int)got_count, (int)count, pytorch ? 3 : 4, why);
    }
    store_clear();
}

static void test_comet_bad_inputs(const moert_router_ops *ops) {
    const comet_case cc = {"bad", 6, 4, 2, 1, 1.0, 0, 1, 1, 0, 1.0f};
    const char *lp = "model.layers.2.mlp.";
    moert_layer_info layer = make_layer(2, 6, 4, 2, 100);
    fake_param gamma[1] = {NUM("gamma", 1.0)};

    store_clear();
    comet_make_weights(&cc);
    fake_param none[1] = {NUM("unused", 0)};
    expect_create_fails("comet rejects a missing gamma", ops, lp, none, 0, &layer, "gamma");
    fake_param g0[1] = {NUM("gamma", 0)};
    expect_create_fails("comet rejects gamma 0", ops, lp, g0, 1, &layer, "gamma");
    fake_param gneg[1] = {NUM("gamma", -1)};
    expect_create_fails("comet rejects gamma -1", ops, lp, gneg, 1, &layer, "gamma");
    fake_param gnan[1] = {NUM("gamma", NAN)};
    expect_create_fails("comet rejects gamma NaN", ops, lp, gnan, 1, &layer, "gamma");
    fake_param gstr[1] = {STR("gamma", "1.0")};
    expect_create_fails("comet rejects a string gamma", ops, lp, gstr, 1, &layer, "gamma");
    fake_param jax[2] = {NUM("gamma", 1.0), STR("variant", "jax")};
    expect_create_fails("comet rejects variant \"jax\"", ops, lp, jax, 2, &layer, "variant");
    fake_param m0[2] = {NUM("gamma", 1.0), NUM("max_experts", 0)};
    expect_create_fails("comet rejects max_experts 0", ops, lp, m0, 2, &layer, "max_experts");
    fake_param mfrac[2] = {NUM("gamma", 1.0), NUM("max_experts", 2.5)};
    expect_create_fails("comet rejects max_experts 2.5", ops, lp, mfrac, 2, &layer, "max_experts");
    moert_layer_info wrong_h = make_layer(2, 7, 4, 2, 100);
    expect_create_fails("comet rejects weights of another hidden size", ops, lp, gamma, 1, &wrong_h, "leaf_weight");
    moert_layer_info wrong_e = make_layer(2, 6, 5, 2, 100);
    expect_create_fails("comet rejects weights of another expert count", ops, lp, gamma, 1, &wrong_e, "leaf_weight");

    // One malformed tensor at a time.
    static const char *names[5] = {"router.node_weight", "router.node_bias", "router.leaf_weight", "router.leaf_bias",
                                   "router.permutation"};
    static const int32_t bad_dims[5][4] = {{3, 3, 3, 6}, {2, 3, 3, 0}, {3, 4, 2, 5}, {2, 4, 1, 0}, {3, 2, 4, 3}};
    for (int i = 0; i < 5; i++) {
        store_clear();
        comet_make_weights(&cc);
        char full[128], name[160];
        snprintf(full, sizeof full, "%s%s", lp, names[i]);
        remove_tensor(full);
        add_random(full, bad_dims[i][0], bad_dims[i][1], bad_dims[i][2], bad_dims[i][3], 1.0f);
        snprintf(name, sizeof name, "comet rejects %s of a wrong shape", names[i]);
        expect_create_fails(name, ops, lp, gamma, 1, &layer, names[i]);
        if (i == 1 || i == 4) continue;  // optional tensors: their absence is fine
        remove_tensor(full);
        snprintf(name, sizeof name, "comet rejects a missing %s", names[i]);
        expect_create_fails(name, ops, lp, gamma, 1, &layer, names[i]);
    }
    store_clear();
    comet_make_weights(&cc);
    fake_tensor *leaf = tensor_named("model.layers.2.mlp.router.leaf_weight");
    leaf->dtype = MOERT_TENSOR_I32;
    expect_create_fails("comet rejects an integer leaf_weight", ops, lp, gamma, 1, &layer, "leaf_weight");
    leaf->dtype = MOERT_TENSOR_F32;
    ((float *)leaf->data)[3] = INFINITY;
    expect_create_fails("comet rejects an infinite leaf_weight element", ops, lp, gamma, 1, &layer, "leaf_weight");
    ((float *)leaf->data)[3] = 0.5f;
    float *pi = (float *)tensor_named("model.layers.2.mlp.router.permutation")->data;
    float saved[4];
    memcpy(saved, pi + 4, sizeof saved);  // tree 0, row 1
    memcpy(pi + 4, pi, sizeof saved);     // row 1 = row 0: a column gets two ones
    expect_create_fails("comet rejects a permutation with a repeated column", ops, lp, gamma, 1, &layer, "permutation");
    memcpy(pi + 4, saved, sizeof saved);
    for (int e = 0; e < 4; e++) pi[4 + e] = pi[4 + e] == 1.0f ? 0.5f : pi[4 + e];
    expect_create_fails("comet rejects a permutation entry 0.5", ops, lp, gamma, 1, &layer, "permutation");
    memcpy(pi + 4, saved, sizeof saved);
    void *inst = NULL;
    moert_router_caps caps;
    moert_status status = create_router(ops, lp, gamma, 1, &layer, &caps, &inst);
    check(status == MOERT_OK, "comet accepts the repaired tensors", "%s", last_error);
    if (status == MOERT_OK) {
        float x[2 * 6] = {0};
        int32_t tok[2] = {0, 1};
        route_out ro;
        route_out_init(&ro, 2, caps.max_experts_per_token, 4);
        moert_router_input in = make_input(2, 5, x, tok, tok, tok, NULL, 0);
        error_calls = 0;
        status = ops->route(inst, &in, &ro.out);
        check(status != MOERT_OK && error_calls == 1, "comet route with the wrong hidden size fails with a message",
              "status %d", (int)status);
        x[7] = NAN;
        in = make_input(2, 6, x, tok, tok, tok, NULL, 0);
        error_calls = 0;
        status = ops->route(inst, &in, &ro.out);
        check(status != MOERT_OK && error_calls == 1, "comet route with a NaN input fails with a message", "status %d",
              (int)status);
        route_out_free(&ro);
        ops->destroy(inst);
    }
    store_clear();
    check(atomic_load(&live_allocations) == 0, "comet frees everything it allocates", "%d live allocations",
          atomic_load(&live_allocations));
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Concurrent route() on one instance                                                                           */
/* ------------------------------------------------------------------------------------------------------------ */

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

/** Routes one batch on one thread, then the same batch from 4 threads at once: every result must be identical. */
static void race(const char *label, const moert_router_ops *ops, void *inst, int32_t n, int32_t H, int32_t E,
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

static void test_concurrency(const moert_router_ops *gru, const moert_router_ops *comet) {
    if (gru != NULL) {
        store_clear();
        const gru_case gc = {"race", 12, 8, 8, 2, 24, 1, 0, -1, 0, 0, 0};
        gru_make_weights(&gc, "model.rnn_router.");
        moert_layer_info layer = make_layer(0, 12, 8, 2, 100);
        moert_router_caps caps;
        void *inst = NULL;
        fake_param none[1] = {NUM("unused", 0)};
        if (create_router(gru, "model.layers.0.mlp.", none, 0, &layer, &caps, &inst) == MOERT_OK) {
            race("gru", gru, inst, 24, 12, 8, caps.max_experts_per_token, 8);
            gru->destroy(inst);
        } else {
            check(0, "gru: concurrent route() on one instance gives identical results", "create failed: %s", last_error);
        }
    }
    if (comet != NULL) {
        store_clear();
        const comet_case cc = {"race", 10, 6, 2, 24, 1.0, 0, 1, 1, 0, 1.0f};
        comet_make_weights(&cc);
        moert_layer_info layer = make_layer(2, 10, 6, 2, 100);
        moert_router_caps caps;
        void *inst = NULL;
        fake_param gamma[1] = {NUM("gamma", 1.0)};
        if (create_router(comet, "model.layers.2.mlp.", gamma, 1, &layer, &caps, &inst) == MOERT_OK) {
            race("comet", comet, inst, 24, 10, 6, caps.max_experts_per_token, 0);
            comet->destroy(inst);
        } else {
            check(0, "comet: concurrent route() on one instance gives identical results", "create failed: %s",
                  last_error);
        }
    }
    store_clear();
}

/* ------------------------------------------------------------------------------------------------------------ */
/* main                                                                                                         */
/* ------------------------------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PLUGIN.so...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) load_plugin(argv[i]);
    const moert_router_ops *gru = kind_named("gru"), *hash = kind_named("hash"), *comet = kind_named("comet");
    check(gru != NULL && hash != NULL && comet != NULL, "kinds gru, hash and comet are registered",
          "gru %s, hash %s, comet %s", gru ? "yes" : "no", hash ? "yes" : "no", comet ? "yes" : "no");

    if (gru != NULL) {
        static const gru_case cases[] = {
            /* label                   H   r   E  k  n  L  rnn norm kp pad ties */
            {"gru cell, 3 layers",     8,  4,  4, 2, 5, 3, 0, -1, 0, 0, 0},
            {"gru cell, no renorm",   16,  8,  8, 2, 7, 3, 0,  0, 0, 0, 0},
            {"rnn cell",              12,  6,  6, 3, 3, 3, 1,  1, 0, 0, 0},
            {"top-1, one token",       5,  3,  3, 1, 1, 2, 0, -1, 0, 0, 0},
            {"top_k param, padded",   32, 16, 16, 4, 9, 4, 1, -1, 1, 3, 0},
            {"equal expert rows",     10,  5,  6, 3, 8, 2, 0,  1, 0, 1, 1},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_gru_case(gru, &cases[i], "model.rnn_router.");
        test_gru_case(gru, &cases[0], "model.shared_cell.");  // global_prefix
        test_gru_bad_inputs(gru);
    }
    if (hash != NULL) test_hash(hash);
    if (comet != NULL) {
        static const comet_case cases[] = {
            /* label                        H   E  k  n  gamma  pt  nb perm max  scale */
            {"E=4 k=2 keras",               8,  4, 2, 12, 1.0,  0, 1, 0, 0, 1.0f},
            {"E=6 k=2 keras permuted",      8,  6, 2, 12, 1.0,  0, 1, 1, 0, 1.0f},
            {"E=5 k=3 pytorch permuted cap 2", 10, 5, 3, 12, 2.0, 1, 0, 1, 2, 1.0f},
            {"E=8 k=1 pytorch cap 3",       6,  8, 1, 12, 0.5,  1, 0, 0, 3, 1.0f},
            {"E=3 k=2 wide gamma",          7,  3, 2,  6, 10.0, 0, 0, 0, 0, 0.05f},
            {"E=2 k=1 saturated cap 1",     9,  2, 1,  6, 0.01, 0, 1, 0, 1, 1.0f},
            {"E=7 k=2 saturated keras",     8,  7, 2, 12, 0.1,  0, 1, 1, 9, 10.0f},
            {"E=1",                         4,  1, 2,  3, 1.0,  0, 0, 0, 0, 1.0f},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_comet_case(comet, &cases[i]);
        test_comet_leaf_order(comet);
        test_comet_variants(comet);
        test_comet_bad_inputs(comet);
    }
    test_concurrency(gru, comet);
    check(atomic_load(&live_allocations) == 0, "no plugin allocation outlives its instance", "%d live allocations",
          atomic_load(&live_allocations));

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
