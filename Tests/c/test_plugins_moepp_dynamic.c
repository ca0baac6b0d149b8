/*
** test_plugins_moepp_dynamic.c — unit tests of the `moepp` (C) and `dynamic` (Swift) plugin libraries through a
** fake host table built here: no libmoert involved.
**
** Usage: test_plugins_moepp_dynamic PATH/libmoert_moepp.so PATH/libmoert_dynamic.so
**
** Each library is dlopen()ed RTLD_LOCAL and its moert_plugin_init is called with a host table whose tensors come
** from an in-memory table, parameters from per-create lists, and sgemm is a naive loop. route()/forward() outputs
** for small random inputs are compared with references written here from the formulas of ALGORITHMS.md sections
** 5 (MoE++), 6 (AdaMoE) and 7 (top-p), computed in double precision: expert ids must be equal, weights and logits
** within 1e-5 (the plugins work in float32; 1e-5 is ~100 ulp of a probability, far above float32 rounding of
** these short sums and far below any real routing difference). Malformed checkpoints and parameters come from a
** table: each case must make create() fail with host->set_error called and a message naming the culprit.
**
** The last line printed is "N passed, M failed"; the exit status is non-zero when a check failed.
*/
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moert_plugin.h"

#include "check.h"

#define TOLERANCE 1e-5
#define MAX_E 64        /* experts (plus null experts) a reference row holds */
#define MAX_TOKENS 64

/* ------------------------------------------------------------------------------------------------------------ */
/* Random numbers                                                                                                */
/* ------------------------------------------------------------------------------------------------------------ */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

/* Uniform in [-1, 1) (xorshift64*). */
static float uniform(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    uint64_t r = g_rng * 0x2545f4914f6cdd1dull;
    return (float)((double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void fill_random(float *v, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) v[i] = scale * uniform();
}

/* ------------------------------------------------------------------------------------------------------------ */
/* The fake host: tensors, parameters, errors, allocation, registration                                          */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct fake_tensor {
    char name[192];
    int32_t dtype;
    int32_t ndim;
    int64_t shape[4];
    void *data;
} fake_tensor;

static fake_tensor g_tensors[64];
static int g_n_tensors;

static void reset_tensors(void) {
    for (int i = 0; i < g_n_tensors; i++) free(g_tensors[i].data);
    g_n_tensors = 0;
}

/* Adds a zero-filled tensor (replacing one of the same name) and returns its data. */
static void *add_tensor(const char *name, int32_t dtype, int32_t ndim, int64_t d0, int64_t d1, int64_t d2) {
    int slot = g_n_tensors;
    for (int i = 0; i < g_n_tensors; i++) {
        if (strcmp(g_tensors[i].name, name) == 0) {
            free(g_tensors[i].data);
            slot = i;
        }
    }
    if (slot == g_n_tensors) {
        if (g_n_tensors == (int)(sizeof g_tensors / sizeof g_tensors[0])) {
            fprintf(stderr, "fake host: tensor table full\n");
            exit(2);
        }
        g_n_tensors++;
    }
    fake_tensor *t = &g_tensors[slot];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t dims[4] = {d0, d1, d2, 1};
    size_t count = 1;
    for (int i = 0; i < 4; i++) {
        t->shape[i] = i < ndim ? dims[i] : 1;
        if (i < ndim) count *= (size_t)dims[i];
    }
    t->data = calloc(count ? count : 1, 4);
    return t->data;
}

static float *add_f32(const char *name, int32_t ndim, int64_t d0, int64_t d1, int64_t d2) {
    return add_tensor(name, MOERT_TENSOR_F32, ndim, d0, d1, d2);
}

/* A parameter of one create() call: a number (booleans as 1/0, as moert delivers them) or a string. */
typedef struct fake_param {
    const char *key;
    const char *text;  /* non-NULL: a string parameter */
    double number;
} fake_param;

/* moert_create_context is opaque to plugins; this test host gives it its own contents. */
struct moert_create_context {
    const char *prefix;
    const fake_param *params;
    int n_params;
};

static char g_error[1024];
static atomic_int g_error_calls;
static atomic_long g_live_allocations;
static int g_host_context_marker;

static void host_set_error(const char *message) {
    snprintf(g_error, sizeof g_error, "%s", message ? message : "(null)");
    atomic_fetch_add(&g_error_calls, 1);
}

static void clear_error(void) {
    g_error[0] = 0;
    atomic_store(&g_error_calls, 0);
}

static void *host_alloc(size_t size, size_t alignment) {
    if (alignment == 0) alignment = 64;
    if (alignment & (alignment - 1)) return NULL;
    if (alignment < sizeof(void *)) alignment = sizeof(void *);
    size_t rounded = (size + alignment - 1) / alignment * alignment;
    void *p = aligned_alloc(alignment, rounded ? rounded : alignment);
    if (p) atomic_fetch_add(&g_live_allocations, 1);
    return p;
}

static void host_free(void *pointer) {
    if (!pointer) return;
    atomic_fetch_sub(&g_live_allocations, 1);
    free(pointer);
}

static void host_log(int32_t level, const char *message) {
    (void)level;
    (void)message;
}

static const moert_router_ops *g_routers[16];
static int g_n_routers;
static const moert_expert_ops *g_experts[16];
static int g_n_experts;

static int registered(const char *name) {
    for (int i = 0; i < g_n_routers; i++) if (strcmp(g_routers[i]->name, name) == 0) return 1;
    for (int i = 0; i < g_n_experts; i++) if (strcmp(g_experts[i]->name, name) == 0) return 1;
    return 0;
}

static moert_status host_register_router(void *host_context, const moert_router_ops *ops) {
    if (host_context != &g_host_context_marker) { host_set_error("register_router: wrong host_context"); return MOERT_ERR_PLUGIN; }
    if (!ops || ops->struct_size < sizeof *ops || ops->abi_version != MOERT_PLUGIN_ABI_VERSION || !ops->name ||
        !ops->create || !ops->route || !ops->destroy) {
        host_set_error("register_router: bad ops table");
        return MOERT_ERR_PLUGIN;
    }
    if (registered(ops->name)) { host_set_error("register_router: kind registered twice"); return MOERT_ERR_PLUGIN; }
    if (g_n_routers == 16) return MOERT_ERR_PLUGIN;
    g_routers[g_n_routers++] = ops;
    return MOERT_OK;
}

static moert_status host_register_expert(void *host_context, const moert_expert_ops *ops) {
    if (host_context != &g_host_context_marker) { host_set_error("register_expert: wrong host_context"); return MOERT_ERR_PLUGIN; }
    if (!ops || ops->struct_size < sizeof *ops || ops->abi_version != MOERT_PLUGIN_ABI_VERSION || !ops->name ||
        !ops->create || !ops->destroy) {
        host_set_error("register_expert: bad ops table");
        return MOERT_ERR_PLUGIN;
    }
    if (registered(ops->name)) { host_set_error("register_expert: kind registered twice"); return MOERT_ERR_PLUGIN; }
    if (g_n_experts == 16) return MOERT_ERR_PLUGIN;
    g_experts[g_n_experts++] = ops;
    return MOERT_OK;
}

static moert_status lookup_tensor(const char *full, moert_tensor *out) {
    if (!out || out->struct_size < sizeof *out) return MOERT_ERR_INVALID_ARGUMENT;
    for (int i = 0; i < g_n_tensors; i++) {
        if (strcmp(g_tensors[i].name, full) != 0) continue;
        out->dtype = g_tensors[i].dtype;
        out->data = g_tensors[i].data;
        out->ndim = g_tensors[i].ndim;
        memcpy(out->shape, g_tensors[i].shape, sizeof out->shape);
        return MOERT_OK;
    }
    char message[256];
    snprintf(message, sizeof message, "%s: no such tensor", full);
    host_set_error(message);
    return MOERT_ERR_FORMAT;
}

static moert_status host_layer_tensor(const moert_create_context *ctx, const char *name, moert_tensor *out) {
    if (!ctx || !name) return MOERT_ERR_INVALID_ARGUMENT;
    char full[256];
    snprintf(full, sizeof full, "%s%s", ctx->prefix, name);
    return lookup_tensor(full, out);
}

static moert_status host_model_tensor(const moert_create_context *ctx, const char *name, moert_tensor *out) {
    if (!ctx || !name) return MOERT_ERR_INVALID_ARGUMENT;
    return lookup_tensor(name, out);
}

static const fake_param *find_param(const moert_create_context *ctx, const char *key) {
    for (int i = 0; ctx && key && i < ctx->n_params; i++)
        if (strcmp(ctx->params[i].key, key) == 0) return &ctx->params[i];
    return NULL;
}

static moert_status host_param_number(const moert_create_context *ctx, const char *key, double *out) {
    if (!ctx || !key || !out) return MOERT_ERR_INVALID_ARGUMENT;
    const fake_param *p = find_param(ctx, key);
    if (!p) return MOERT_ERR_OUT_OF_RANGE;
    if (p->text) {
        char message[128];
        snprintf(message, sizeof message, "parameter %s is not a number", key);
        host_set_error(message);
        return MOERT_ERR_FORMAT;
    }
    *out = p->number;
    return MOERT_OK;
}

static moert_status host_param_string(const moert_create_context *ctx, const char *key, const char **out) {
    if (!ctx || !key || !out) return MOERT_ERR_INVALID_ARGUMENT;
    const fake_param *p = find_param(ctx, key);
    if (!p) return MOERT_ERR_OUT_OF_RANGE;
    if (!p->text) {
        char message[128];
        snprintf(message, sizeof message, "parameter %s is not a string", key);
        host_set_error(message);
        return MOERT_ERR_FORMAT;
    }
    *out = p->text;
    return MOERT_OK;
}

static void host_sgemm(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k, float alpha,
                       const float *a, int32_t lda, const float *b, int32_t ldb, float beta, float *c, int32_t ldc) {
    for (int32_t i = 0; i < m; i++) {
        for (int32_t j = 0; j < n; j++) {
            double acc = 0;
            for (int32_t l = 0; l < k; l++) {
                float av = trans_a ? a[(size_t)l * lda + i] : a[(size_t)i * lda + l];
                float bv = trans_b ? b[(size_t)j * ldb + l] : b[(size_t)l * ldb + j];
                acc += (double)av * bv;
            }
            float *cv = &c[(size_t)i * ldc + j];
            *cv = (float)(alpha * acc + (beta != 0 ? beta * *cv : 0));
        }
    }
}

static const moert_host_api g_host = {
    .struct_size = sizeof(moert_host_api),
    .abi_version = MOERT_PLUGIN_ABI_VERSION,
    .alloc = host_alloc,
    .free = host_free,
    .log = host_log,
    .set_error = host_set_error,
    .register_router = host_register_router,
    .register_expert = host_register_expert,
    .layer_tensor = host_layer_tensor,
    .model_tensor = host_model_tensor,
    .param_number = host_param_number,
    .param_string = host_param_string,
    .sgemm = host_sgemm,
};

static const moert_router_ops *router_kind(const char *name) {
    for (int i = 0; i < g_n_routers; i++) if (strcmp(g_routers[i]->name, name) == 0) return g_routers[i];
    return NULL;
}

static const moert_expert_ops *expert_kind(const char *name) {
    for (int i = 0; i < g_n_experts; i++) if (strcmp(g_experts[i]->name, name) == 0) return g_experts[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Creating and calling routers                                                                                  */
/* ------------------------------------------------------------------------------------------------------------ */

#define LAYER_PREFIX "model.layers.1.mlp."

static moert_layer_info layer_info(int32_t n_experts, int32_t hidden, int32_t top_k, int32_t expert_index) {
    moert_layer_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    info.layer = 1;
    info.moe_index = 1;
    info.n_moe_layers = 2;
    info.hidden_size = hidden;
    info.n_experts = n_experts;
    info.top_k = top_k;
    info.vocab_size = 100;
    info.expert_index = expert_index;
    return info;
}

typedef struct router {
    const moert_router_ops *ops;
    void *instance;
    int32_t capacity;  /* the declared max_experts_per_token */
    int32_t n_experts, hidden;
} router;

/* Creates a router of `kind` for a layer of E experts, hidden size H and configured top_k. */
static moert_status router_create(const char *kind, const fake_param *params, int n_params, int32_t e, int32_t h,
                                  int32_t top_k, router *r) {
    memset(r, 0, sizeof *r);
    r->ops = router_kind(kind);
    r->n_experts = e;
    r->hidden = h;
    if (!r->ops) return MOERT_ERR_PLUGIN;
    struct moert_create_context ctx = {LAYER_PREFIX, params, n_params};
    moert_layer_info info = layer_info(e, h, top_k, -1);
    moert_router_caps caps = {sizeof caps, top_k < e ? top_k : e, 0};
    clear_error();
    moert_status s = r->ops->create(&g_host, &ctx, &info, &caps, &r->instance);
    r->capacity = caps.max_experts_per_token;
    return s;
}

static void router_destroy(router *r) {
    if (r->ops && r->instance) r->ops->destroy(r->instance);
    r->instance = NULL;
}

/* One route() call's results. */
typedef struct routed {
    int32_t n, capacity, n_experts;
    int32_t ids[MAX_TOKENS * MAX_E];
    float weights[MAX_TOKENS * MAX_E];
    int32_t counts[MAX_TOKENS];
    float logits[MAX_TOKENS * MAX_E];
    moert_status status;
} routed;

/* Routes n tokens x [n, H] (prev: [n, prev_width] or NULL) into *out, buffers prefilled as moert does. */
static void route(const router *r, int32_t n, const float *x, const float *prev, int32_t prev_width, routed *out) {
    static const int32_t positions[MAX_TOKENS], tokens[MAX_TOKENS];
    memset(out, 0, sizeof *out);
    out->n = n;
    out->capacity = r->capacity;
    out->n_experts = r->n_experts;
    for (int i = 0; i < MAX_TOKENS * MAX_E; i++) { out->ids[i] = -1; out->weights[i] = NAN; out->logits[i] = NAN; }
    for (int i = 0; i < MAX_TOKENS; i++) out->counts[i] = -1;
    moert_router_input in = {
        .struct_size = sizeof in, .n_tokens = n, .hidden_size = r->hidden, .x = x, .token_ids = tokens,
        .positions = positions, .prev_token_ids = tokens, .state = NULL, .state_stride = 0,
        .prev_logits = prev, .prev_logits_width = prev ? prev_width : 0,
    };
    moert_router_output o = {
        .struct_size = sizeof o, .max_per_token = r->capacity, .expert_ids = out->ids, .weights = out->weights,
        .counts = out->counts, .logits = out->logits,
    };
    out->status = r->ops->route(r->instance, &in, &o);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* References, from the formulas (double precision; ties: lower index first)                                     */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct ref_row {
    int32_t count;
    int32_t ids[MAX_E];
    double weights[MAX_E];
    double logits[MAX_E];   /* what the router should write to output->logits */
    int has_logits;
} ref_row;

/* y[rows] = W[rows, cols] x[cols] */
static void ref_matvec(double *y, const float *w, const double *x, int rows, int cols) {
    for (int i = 0; i < rows; i++) {
        double acc = 0;
        for (int j = 0; j < cols; j++) acc += (double)w[(size_t)i * cols + j] * x[j];
        y[i] = acc;
    }
}

static void to_double(double *out, const float *in, int n) {
    for (int i = 0; i < n; i++) out[i] = in[i];
}

static void ref_softmax(double *v, int n) {
    double m = v[0], s = 0;
    for (int i = 1; i < n; i++) if (v[i] > m) m = v[i];
    for (int i = 0; i < n; i++) { v[i] = exp(v[i] - m); s += v[i]; }
    for (int i = 0; i < n; i++) v[i] /= s;
}

/* order = indices by value, largest first; a stable insertion sort keeps lower indices first among equals. */
static void ref_rank(const double *v, int n, int *order) {
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && v[order[j - 1]] < v[i]) { order[j] = order[j - 1]; j--; }
        order[j] = i;
    }
}

/* MoE++ router (ALGORITHMS.md section 5). */
typedef struct moepp_spec {
    int e, h, k, zero_expert, logits_norm, mixtral;
    double sigma;
    const float *wg, *wg0, *wg2, *gate_map;  /* wg0 non-NULL: two-layer gate wg2 tanh(wg0 x) */
} moepp_spec;

static void ref_moepp(const moepp_spec *s, const float *xf, const float *prevf, ref_row *out) {
    double x[256], l[MAX_E], hidden[8 * MAX_E], g[MAX_E];
    int order[MAX_E];
    to_double(x, xf, s->h);
    if (s->wg0) {
        ref_matvec(hidden, s->wg0, x, 8 * s->e, s->h);
        for (int i = 0; i < 8 * s->e; i++) hidden[i] = tanh(hidden[i]);
        ref_matvec(l, s->wg2, hidden, s->e, 8 * s->e);
    } else {
        ref_matvec(l, s->wg, x, s->e, s->h);
    }
    if (prevf) {
        double prev[MAX_E], r[MAX_E];
        to_double(prev, prevf, s->e);
        ref_matvec(r, s->gate_map, prev, s->e, s->e);
        for (int i = 0; i < s->e; i++) l[i] += r[i];
    }
    memcpy(out->logits, l, sizeof(double) * s->e);
    out->has_logits = 1;
    memcpy(g, l, sizeof(double) * s->e);
    if (s->logits_norm) {
        double mean = 0, var = 0;
        for (int i = 0; i < s->e; i++) mean += l[i] / s->e;
        for (int i = 0; i < s->e; i++) var += (l[i] - mean) * (l[i] - mean);
        double std = sqrt(var / (s->e - 1));
        if (std > 0) for (int i = 0; i < s->e; i++) g[i] = l[i] / (std / s->sigma);
    }
    out->count = s->k;
    if (s->mixtral) {
        ref_rank(g, s->e, order);
        double chosen[MAX_E];
        for (int j = 0; j < s->k; j++) { out->ids[j] = order[j]; chosen[j] = g[order[j]]; }
        ref_softmax(chosen, s->k);
        for (int j = 0; j < s->k; j++) out->weights[j] = chosen[j];
    } else {
        ref_softmax(g, s->e);
        ref_rank(g, s->e, order);
        double sum = 0;
        for (int j = 0; j < s->k; j++) {
            out->ids[j] = order[j];
            out->weights[j] = order[j] == s->zero_expert ? 0 : g[order[j]];
            sum += out->weights[j];
        }
        if (sum > 0) for (int j = 0; j < s->k; j++) out->weights[j] /= sum;
    }
}

/* Top-p (ALGORITHMS.md section 7): keep ranks up to the first cumulative sum > threshold; at most max_e. */
static void ref_topp(int e, int h, const float *gate, double threshold, int max_e, const float *xf, ref_row *out) {
    double x[256], p[MAX_E];
    int order[MAX_E];
    to_double(x, xf, h);
    ref_matvec(p, gate, x, e, h);
    memcpy(out->logits, p, sizeof(double) * e);
    out->has_logits = 1;
    ref_softmax(p, e);
    ref_rank(p, e, order);
    double c = 0;
    int keep = e;
    for (int i = 0; i < e; i++) {
        c += p[order[i]];
        if (c > threshold) { keep = i + 1; break; }
    }
    if (keep > max_e) keep = max_e;
    out->count = keep;
    for (int j = 0; j < keep; j++) { out->ids[j] = order[j]; out->weights[j] = p[order[j]]; }
}

/* AdaMoE (ALGORITHMS.md section 6): top-k over E true + m null experts, keep the true ones, renormalise them. */
static void ref_adamoe(int e, int m, int h, int k, const float *gate, const float *gate2, const float *xf, ref_row *out) {
    double x[256], l[MAX_E];
    int order[MAX_E];
    to_double(x, xf, h);
    ref_matvec(l, gate, x, e, h);
    ref_matvec(l + e, gate2, x, m, h);
    memcpy(out->logits, l, sizeof(double) * e);
    out->has_logits = 1;
    ref_softmax(l, e + m);
    ref_rank(l, e + m, order);
    double sum = 0;
    out->count = 0;
    for (int j = 0; j < k; j++) {
        if (order[j] >= e) continue;
        out->ids[out->count] = order[j];
        out->weights[out->count] = l[order[j]];
        sum += l[order[j]];
        out->count++;
    }
    for (int j = 0; j < out->count; j++) out->weights[j] /= sum > 0 ? sum : 1;
}

/* Compares a route() result with reference rows; one check. */
static int compare(const char *name, const routed *got, const ref_row *want) {
    if (got->status != MOERT_OK) return check(0, name, "route failed with status %d: %s", got->status, g_error);
    for (int t = 0; t < got->n; t++) {
        const ref_row *w = &want[t];
        if (got->counts[t] != w->count)
            return check(0, name, "token %d: count %d, expected %d", t, got->counts[t], w->count);
        for (int j = 0; j < w->count; j++) {
            int32_t id = got->ids[t * got->capacity + j];
            float wt = got->weights[t * got->capacity + j];
            if (id != w->ids[j]) return check(0, name, "token %d rank %d: expert %d, expected %d", t, j, id, w->ids[j]);
            if (!(fabs(wt - w->weights[j]) <= TOLERANCE))
                return check(0, name, "token %d expert %d: weight %.9g, expected %.9g", t, id, wt, w->weights[j]);
        }
        if (w->has_logits) {
            for (int i = 0; i < got->n_experts; i++) {
                float v = got->logits[t * got->n_experts + i];
                double ref = w->logits[i];
                if (!(fabs(v - ref) <= TOLERANCE * (fabs(ref) > 1 ? fabs(ref) : 1)))
                    return check(0, name, "token %d: logit %d = %.9g, expected %.9g", t, i, v, ref);
            }
        }
    }
    return check(1, name, NULL);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Loading                                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

static moert_plugin_init_fn load_plugin(const char *path) {
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!check(handle != NULL, "dlopen plugin library", "%s: %s", path, dlerror())) return NULL;
    void *symbol = dlsym(handle, MOERT_PLUGIN_ENTRY);
    if (!check(symbol != NULL, "plugin library exports " MOERT_PLUGIN_ENTRY, "%s", path)) return NULL;
    moert_plugin_init_fn init;
    memcpy(&init, &symbol, sizeof init);
    return init;
}

/* The plugin refuses a host of another ABI version, a table too small and a NULL table, without crashing. */
static void test_host_refused(const char *lib, moert_plugin_init_fn init) {
    char name[160];
    moert_host_api bad = g_host;
    bad.abi_version = MOERT_PLUGIN_ABI_VERSION + 1;
    clear_error();
    moert_status s = init(&bad, &g_host_context_marker);
    snprintf(name, sizeof name, "%s: refuses host ABI version %d", lib, MOERT_PLUGIN_ABI_VERSION + 1);
    check(s == MOERT_ERR_PLUGIN && g_error_calls > 0 && g_n_routers == 0 && g_n_experts == 0, name,
          "status %d, set_error calls %d, message '%s'", s, (int)g_error_calls, g_error);

    bad = g_host;
    bad.struct_size = (uint32_t)offsetof(moert_host_api, layer_tensor);
    clear_error();
    s = init(&bad, &g_host_context_marker);
    snprintf(name, sizeof name, "%s: refuses a host table without layer_tensor/param_number", lib);
    check(s == MOERT_ERR_PLUGIN && g_error_calls > 0 && g_n_routers == 0 && g_n_experts == 0, name,
          "status %d, set_error calls %d, message '%s'", s, (int)g_error_calls, g_error);
    if (strcmp(lib, "moepp") == 0) {
        char want[256];
        snprintf(want, sizeof want, "moepp: built for plugin ABI %d (host table of %zu bytes), host has ABI %u (%u bytes)",
                 MOERT_PLUGIN_ABI_VERSION, sizeof(moert_host_api), (unsigned)bad.abi_version, (unsigned)bad.struct_size);
        check(strcmp(g_error, want) == 0, "moepp: the refusal names both ABI versions and table sizes",
              "message '%s', want '%s'", g_error, want);
    }

    clear_error();
    s = init(NULL, &g_host_context_marker);
    snprintf(name, sizeof name, "%s: refuses a NULL host table", lib);
    check(s != MOERT_OK, name, "status %d", s);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* moepp                                                                                                         */
/* ------------------------------------------------------------------------------------------------------------ */

/* Registers a random MoE++ router (E experts, width H) in the tensor table; the zero expert's row is scaled up so
   that it lands in many tokens' top-k. */
static void moepp_tensors(moepp_spec *s, int e, int h, int two_layer) {
    reset_tensors();
    memset(s, 0, sizeof *s);
    s->e = e;
    s->h = h;
    s->k = 2;
    s->zero_expert = e - 1;
    s->sigma = 1.0;
    if (two_layer) {
        float *w0 = add_f32(LAYER_PREFIX "router.wg.0.weight", 2, 8 * e, h, 1);
        float *w2 = add_f32(LAYER_PREFIX "router.wg.2.weight", 2, e, 8 * e, 1);
        fill_random(w0, (size_t)8 * e * h, 0.5f);
        fill_random(w2, (size_t)e * 8 * e, 0.5f);
        for (int j = 0; j < 8 * e; j++) w2[(size_t)(e - 1) * 8 * e + j] *= 1.5f;
        s->wg0 = w0;
        s->wg2 = w2;
    } else {
        float *wg = add_f32(LAYER_PREFIX "router.wg.weight", 2, e, h, 1);
        fill_random(wg, (size_t)e * h, 0.5f);
        for (int j = 0; j < h; j++) wg[(size_t)(e - 1) * h + j] *= 2.0f;
        s->wg = wg;
    }
    float *gm = add_f32(LAYER_PREFIX "router.gate_map.weight", 2, e, e, 1);
    fill_random(gm, (size_t)e * e, 0.5f);
    s->gate_map = gm;
}

/* Creates the moepp router for spec s with params, routes n random tokens (prev logits when with_prev), and
   compares with the reference. Returns how many tokens had the zero expert in their row (for test sanity). */
static int moepp_case(const char *name, moepp_spec *s, const fake_param *params, int n_params, int n, int with_prev) {
    float x[MAX_TOKENS * 256], prev[MAX_TOKENS * MAX_E];
    ref_row want[MAX_TOKENS];
    fill_random(x, (size_t)n * s->h, 1.0f);
    fill_random(prev, (size_t)n * s->e, 2.0f);
    router r;
    moert_status st = router_create("moepp", params, n_params, s->e, s->h, 2, &r);
    if (!require(st == MOERT_OK && r.capacity == s->k, name, "create: status %d (%s), capacity %d, expected %d", st,
               g_error, r.capacity, s->k)) {
        router_destroy(&r);
        return 0;
    }
    static routed got;
    route(&r, n, x, with_prev ? prev : NULL, s->e, &got);
    int zero_hits = 0;
    for (int t = 0; t < n; t++) {
        ref_moepp(s, x + (size_t)t * s->h, with_prev ? prev + (size_t)t * s->e : NULL, &want[t]);
        for (int j = 0; j < want[t].count; j++) if (want[t].ids[j] == s->zero_expert) zero_hits++;
    }
    compare(name, &got, want);
    router_destroy(&r);
    return zero_hits;
}

static void test_moepp_registration(void) {
    const moert_router_ops *r = router_kind("moepp");
    const moert_expert_ops *zero = expert_kind("moepp.zero"), *copy = expert_kind("moepp.copy"),
                           *constant = expert_kind("moepp.constant");
    check(r && r->struct_size == sizeof *r && r->abi_version == MOERT_PLUGIN_ABI_VERSION, "moepp: router kind moepp registered", NULL);
    check(zero && zero->flags == (MOERT_EXPERT_ZERO_COMPUTE | MOERT_EXPERT_OUTPUT_ZERO),
          "moepp: moepp.zero registered with ZERO_COMPUTE | OUTPUT_ZERO", "flags %u", zero ? zero->flags : 0u);
    check(copy && copy->flags == (MOERT_EXPERT_ZERO_COMPUTE | MOERT_EXPERT_OUTPUT_IDENTITY),
          "moepp: moepp.copy registered with ZERO_COMPUTE | OUTPUT_IDENTITY", "flags %u", copy ? copy->flags : 0u);
    check(constant && constant->flags == MOERT_EXPERT_ZERO_COMPUTE && constant->forward,
          "moepp: moepp.constant registered with ZERO_COMPUTE and a forward", "flags %u", constant ? constant->flags : 0u);
}

static void test_moepp_routing(void) {
    moepp_spec s;
    const int e = 8, h = 16, n = 40;

    moepp_tensors(&s, e, h, 0);
    int zero = moepp_case("moepp: first layer, defaults (softmax, top-2, zero expert E-1, no norm)", &s, NULL, 0, n, 0);
    check(zero > 0, "moepp: test data puts the zero expert in some tokens' top-2", "no token picked it");

    moepp_tensors(&s, e, h, 0);
    s.logits_norm = 1;
    s.sigma = 0.5;
    fake_param norm[] = {{"use_logits_norm", NULL, 1}, {"gate_norm_std", NULL, 0.5}};
    moepp_case("moepp: gating residual (prev_logits) + logits-std normalisation", &s, norm, 2, n, 1);

    moepp_tensors(&s, e, h, 0);
    s.mixtral = 1;
    s.logits_norm = 1;
    s.sigma = 1.3;
    fake_param mixtral[] = {{"mixtral_gating", NULL, 1}, {"use_logits_norm", NULL, 1}, {"gate_norm_std", NULL, 1.3}};
    zero = moepp_case("moepp: mixtral_gating + norm + residual (zero expert keeps its weight)", &s, mixtral, 3, n, 1);
    check(zero > 0, "moepp: mixtral test data picks the zero expert", "no token picked it");

    moepp_tensors(&s, e, h, 1);
    s.k = 3;
    s.logits_norm = 1;
    fake_param two[] = {{"top_k", NULL, 3}, {"use_logits_norm", NULL, 1}};
    moepp_case("moepp: two-layer gate (wg.0, tanh, wg.2), top_k 3, residual", &s, two, 2, n, 1);

    moepp_tensors(&s, e, h, 0);
    s.zero_expert = -1;
    fake_param none[] = {{"zero_expert", NULL, -1}};
    moepp_case("moepp: zero_expert -1 (plain renormalised top-k)", &s, none, 1, n, 1);

    moepp_tensors(&s, e, h, 0);
    s.zero_expert = 2;
    fake_param other[] = {{"zero_expert", NULL, 2}, {"use_logits_norm", NULL, 0}};
    moepp_case("moepp: zero_expert 2", &s, other, 2, n, 0);

    /* top-1 with the zero expert chosen: its weight stays 0 (the k weights sum to 0) */
    moepp_tensors(&s, e, h, 0);
    s.k = 1;
    fake_param top1[] = {{"top_k", NULL, 1}};
    zero = moepp_case("moepp: top_k 1 (zero expert alone keeps weight 0)", &s, top1, 1, n, 0);
    check(zero > 0, "moepp: top-1 test data picks the zero expert", "no token picked it");

    /* std = 0: all logits equal -> no change; uniform p; ties -> experts 0 and 1 */
    moepp_tensors(&s, e, h, 0);
    {
        float x[4 * 16];
        memset(x, 0, sizeof x);
        router r;
        fake_param p[] = {{"use_logits_norm", NULL, 1}};
        moert_status st = router_create("moepp", p, 1, e, h, 2, &r);
        static routed got;
        if (st == MOERT_OK) route(&r, 4, x, NULL, 0, &got);
        int ok = st == MOERT_OK && got.status == MOERT_OK;
        for (int t = 0; ok && t < 4; t++)
            ok = got.counts[t] == 2 && got.ids[t * 2] == 0 && got.ids[t * 2 + 1] == 1 &&
                 fabsf(got.weights[t * 2] - 0.5f) <= 1e-6f && fabsf(got.weights[t * 2 + 1] - 0.5f) <= 1e-6f &&
                 got.logits[t * e] == 0.0f;
        check(ok, "moepp: std 0 leaves the logits unchanged; ties go to the lower index", "status %d/%d ids %d %d weights %g %g",
              st, got.status, got.ids[0], got.ids[1], got.weights[0], got.weights[1]);
        router_destroy(&r);
    }
}

/* Route errors: the call fails with a message, nothing crashes. */
static void test_moepp_route_errors(void) {
    moepp_spec s;
    const int e = 4, h = 8;
    moepp_tensors(&s, e, h, 0);
    router r;
    if (router_create("moepp", NULL, 0, e, h, 2, &r) != MOERT_OK) {
        check(0, "moepp: route errors (create)", "%s", g_error);
        return;
    }
    float x[2 * 8], prev[2 * 8];
    fill_random(x, sizeof x / sizeof x[0], 1);
    fill_random(prev, sizeof prev / sizeof prev[0], 1);
    static routed got;

    clear_error();
    route(&r, 2, x, prev, e - 1, &got);
    check(got.status != MOERT_OK && g_error_calls > 0 && strstr(g_error, "prev_logits"),
          "moepp: route rejects prev_logits of another width", "status %d, message '%s'", got.status, g_error);

    prev[3] = NAN;
    clear_error();
    route(&r, 2, x, prev, e, &got);
    check(got.status != MOERT_OK && g_error_calls > 0 && strstr(g_error, "prev_logits"),
          "moepp: route rejects non-finite prev_logits", "status %d, message '%s'", got.status, g_error);

    x[5] = INFINITY;
    clear_error();
    route(&r, 2, x, NULL, 0, &got);
    check(got.status != MOERT_OK && g_error_calls > 0, "moepp: route rejects non-finite x", "status %d, message '%s'",
          got.status, g_error);

    router wrong = r;
    wrong.hidden = h + 1;
    clear_error();
    route(&wrong, 2, x, NULL, 0, &got);
    check(got.status != MOERT_OK && g_error_calls > 0 && strstr(g_error, "hidden"),
          "moepp: route rejects a hidden_size other than the layer's", "status %d, message '%s'", got.status, g_error);

    route(&r, 0, x, NULL, 0, &got);
    check(got.status == MOERT_OK, "moepp: route accepts an empty batch", "status %d", got.status);
    router_destroy(&r);
}

static void test_moepp_experts(void) {
    const int h = 12, n = 7;
    const moert_expert_ops *ops = expert_kind("moepp.constant");
    if (!ops) return;
    reset_tensors();
    float *v = add_f32(LAYER_PREFIX "experts.9.constant", 1, h, 1, 1);
    float *wc = add_f32(LAYER_PREFIX "experts.9.wg.weight", 2, 2, h, 1);
    fill_random(v, (size_t)h, 1);
    fill_random(wc, (size_t)2 * h, 1);
    struct moert_create_context ctx = {LAYER_PREFIX "experts.9.", NULL, 0};
    moert_layer_info info = layer_info(12, h, 2, 9);
    void *instance = NULL;
    clear_error();
    moert_status s = ops->create(&g_host, &ctx, &info, &instance);
    if (!require(s == MOERT_OK, "moepp.constant: create", "status %d: %s", s, g_error)) return;
    float x[7 * 12], y[7 * 12];
    fill_random(x, sizeof x / sizeof x[0], 2);
    s = ops->forward(instance, x, n, h, y);
    double worst = 0;
    for (int t = 0; t < n; t++) {
        double xd[12], a[2];
        to_double(xd, x + t * h, h);
        ref_matvec(a, wc, xd, 2, h);
        ref_softmax(a, 2);
        for (int i = 0; i < h; i++) {
            double want = a[0] * xd[i] + a[1] * v[i];
            double d = fabs(y[t * h + i] - want);
            if (!(d <= worst)) worst = d;
        }
    }
    check(s == MOERT_OK && worst <= TOLERANCE, "moepp.constant: forward = a0 x + a1 v, a = softmax(Wc x)",
          "status %d, max abs diff %g", s, worst);
    clear_error();
    s = ops->forward(instance, x, n, h - 1, y);
    check(s != MOERT_OK && g_error_calls > 0, "moepp.constant: forward rejects a hidden_size other than the layer's",
          "status %d", s);
    ops->destroy(instance);

    for (int i = 0; i < 2; i++) {
        const moert_expert_ops *k = expert_kind(i ? "moepp.copy" : "moepp.zero");
        if (!k) continue;
        void *inst = (void *)1;
        struct moert_create_context none = {LAYER_PREFIX "experts.10.", NULL, 0};
        s = k->create(&g_host, &none, &info, &inst);
        char name[96];
        snprintf(name, sizeof name, "%s: create and destroy (no tensors)", k->name);
        check(s == MOERT_OK, name, "status %d: %s", s, g_error);
        if (s == MOERT_OK) k->destroy(inst);
    }
}

/* A malformed layer for moepp or moepp.constant: tensors (E = 4, H = 8) and params; create must fail with a
   message containing `culprit`. */
typedef struct tensor_spec {
    const char *name;  /* relative to the create prefix */
    int32_t ndim;
    int64_t d0, d1, d2;
    int32_t dtype;
} tensor_spec;

typedef struct bad_case {
    const char *what;
    const char *kind;         /* router or expert kind */
    tensor_spec tensors[4];
    fake_param params[3];
    const char *culprit;      /* substring of the expected message */
} bad_case;

#define WG(d0, d1) {"router.wg.weight", 2, d0, d1, 1, MOERT_TENSOR_F32}
#define GM(d0, d1) {"router.gate_map.weight", 2, d0, d1, 1, MOERT_TENSOR_F32}
#define GATE(d0, d1) {"gate.weight", 2, d0, d1, 1, MOERT_TENSOR_F32}
#define GATE2(d0, d1) {"gate2.weight", 2, d0, d1, 1, MOERT_TENSOR_F32}
#define NUM(key, value) {key, NULL, value}

/* E = 4, H = 8 throughout; adamoe has m = 2 null experts (top_k up to 6). */
static const bad_case bad_cases[] = {
    {"moepp: good layer (control)", "moepp", {WG(4, 8), GM(4, 4)}, {{0}}, NULL},
    {"moepp: router.wg.weight missing", "moepp", {GM(4, 4)}, {{0}}, "router.wg.weight"},
    {"moepp: router.wg.weight [4, 9]", "moepp", {WG(4, 9), GM(4, 4)}, {{0}}, "router.wg.weight"},
    {"moepp: router.wg.weight [5, 8]", "moepp", {WG(5, 8), GM(4, 4)}, {{0}}, "router.wg.weight"},
    {"moepp: router.wg.weight 3-D", "moepp", {{"router.wg.weight", 3, 4, 8, 1, MOERT_TENSOR_F32}, GM(4, 4)}, {{0}}, "router.wg.weight"},
    {"moepp: router.wg.weight I32", "moepp", {{"router.wg.weight", 2, 4, 8, 1, MOERT_TENSOR_I32}, GM(4, 4)}, {{0}}, "router.wg.weight"},
    {"moepp: router.gate_map.weight missing", "moepp", {WG(4, 8)}, {{0}}, "router.gate_map.weight"},
    {"moepp: router.gate_map.weight [4, 5]", "moepp", {WG(4, 8), GM(4, 5)}, {{0}}, "router.gate_map.weight"},
    {"moepp: two-layer gate without router.wg.2.weight", "moepp",
     {{"router.wg.0.weight", 2, 32, 8, 1, MOERT_TENSOR_F32}, GM(4, 4)}, {{0}}, "router.wg.2.weight"},
    {"moepp: router.wg.0.weight [28, 8] (not 8E)", "moepp",
     {{"router.wg.0.weight", 2, 28, 8, 1, MOERT_TENSOR_F32}, {"router.wg.2.weight", 2, 4, 28, 1, MOERT_TENSOR_F32}, GM(4, 4)},
     {{0}}, "router.wg.0.weight"},
    {"moepp: router.wg.2.weight [4, 31]", "moepp",
     {{"router.wg.0.weight", 2, 32, 8, 1, MOERT_TENSOR_F32}, {"router.wg.2.weight", 2, 4, 31, 1, MOERT_TENSOR_F32}, GM(4, 4)},
     {{0}}, "router.wg.2.weight"},
    {"moepp: both one- and two-layer gates", "moepp",
     {WG(4, 8), {"router.wg.0.weight", 2, 32, 8, 1, MOERT_TENSOR_F32}, {"router.wg.2.weight", 2, 4, 32, 1, MOERT_TENSOR_F32}, GM(4, 4)},
     {{0}}, "router.wg"},
    {"moepp: top_k 0", "moepp", {WG(4, 8), GM(4, 4)}, {NUM("top_k", 0)}, "top_k"},
    {"moepp: top_k E + 1", "moepp", {WG(4, 8), GM(4, 4)}, {NUM("top_k", 5)}, "top_k"},
    {"moepp: top_k 1.5", "moepp", {WG(4, 8), GM(4, 4)}, {NUM("top_k", 1.5)}, "top_k"},
    {"moepp: zero_expert E", "moepp", {WG(4, 8), GM(4, 4)}, {NUM("zero_expert", 4)}, "zero_expert"},
    {"moepp: zero_expert -2", "moepp", {WG(4, 8), GM(4, 4)}, {NUM("zero_expert", -2)}, "zero_expert"},
    {"moepp: gate_norm_std 0", "moepp", {WG(4, 8), GM(4, 4)}, {NUM("gate_norm_std", 0)}, "gate_norm_std"},
    {"moepp: gate_norm_std -1", "moepp", {WG(4, 8), GM(4, 4)}, {NUM("gate_norm_std", -1)}, "gate_norm_std"},
    {"moepp: gate_norm_std inf", "moepp", {WG(4, 8), GM(4, 4)}, {NUM("gate_norm_std", INFINITY)}, "gate_norm_std"},
    {"moepp: use_logits_norm 2", "moepp", {WG(4, 8), GM(4, 4)}, {NUM("use_logits_norm", 2)}, "use_logits_norm"},
    {"moepp: mixtral_gating as text", "moepp", {WG(4, 8), GM(4, 4)}, {{"mixtral_gating", "yes", 0}}, "mixtral_gating"},
    {"moepp.constant: good expert (control)", "moepp.constant",
     {{"constant", 1, 8, 1, 1, MOERT_TENSOR_F32}, {"wg.weight", 2, 2, 8, 1, MOERT_TENSOR_F32}}, {{0}}, NULL},
    {"moepp.constant: constant missing", "moepp.constant", {{"wg.weight", 2, 2, 8, 1, MOERT_TENSOR_F32}}, {{0}}, "tensor constant"},
    {"moepp.constant: constant [9]", "moepp.constant",
     {{"constant", 1, 9, 1, 1, MOERT_TENSOR_F32}, {"wg.weight", 2, 2, 8, 1, MOERT_TENSOR_F32}}, {{0}}, "tensor constant"},
    {"moepp.constant: constant [1, 8]", "moepp.constant",
     {{"constant", 2, 1, 8, 1, MOERT_TENSOR_F32}, {"wg.weight", 2, 2, 8, 1, MOERT_TENSOR_F32}}, {{0}}, "tensor constant"},
    {"moepp.constant: wg.weight [3, 8]", "moepp.constant",
     {{"constant", 1, 8, 1, 1, MOERT_TENSOR_F32}, {"wg.weight", 2, 3, 8, 1, MOERT_TENSOR_F32}}, {{0}}, "tensor wg.weight"},
    {"moepp.constant: wg.weight missing", "moepp.constant", {{"constant", 1, 8, 1, 1, MOERT_TENSOR_F32}}, {{0}}, "tensor wg.weight"},
    {"topp: good layer (control)", "topp", {GATE(4, 8)}, {NUM("threshold", 0.5), NUM("max_experts", 2)}, NULL},
    {"topp: gate.weight missing", "topp", {{0}}, {{0}}, "gate.weight"},
    {"topp: gate.weight [4, 7]", "topp", {GATE(4, 7)}, {{0}}, "gate.weight"},
    {"topp: gate.weight [3, 8]", "topp", {GATE(3, 8)}, {{0}}, "gate.weight"},
    {"topp: gate.weight I32", "topp", {{"gate.weight", 2, 4, 8, 1, MOERT_TENSOR_I32}}, {{0}}, "gate.weight"},
    {"topp: threshold -0.1", "topp", {GATE(4, 8)}, {NUM("threshold", -0.1)}, "threshold"},
    {"topp: threshold 1.5", "topp", {GATE(4, 8)}, {NUM("threshold", 1.5)}, "threshold"},
    {"topp: threshold NaN", "topp", {GATE(4, 8)}, {NUM("threshold", NAN)}, "threshold"},
    {"topp: threshold as text", "topp", {GATE(4, 8)}, {{"threshold", "0.4", 0}}, "threshold"},
    {"topp: max_experts 0", "topp", {GATE(4, 8)}, {NUM("max_experts", 0)}, "max_experts"},
    {"topp: max_experts E + 1", "topp", {GATE(4, 8)}, {NUM("max_experts", 5)}, "max_experts"},
    {"topp: max_experts 2.5", "topp", {GATE(4, 8)}, {NUM("max_experts", 2.5)}, "max_experts"},
    {"topp: max_experts 1e300", "topp", {GATE(4, 8)}, {NUM("max_experts", 1e300)}, "max_experts"},
    {"adamoe: good layer (control)", "adamoe", {GATE(4, 8), GATE2(2, 8)}, {NUM("top_k", 6)}, NULL},
    {"adamoe: gate.weight missing", "adamoe", {GATE2(2, 8)}, {{0}}, "gate.weight"},
    {"adamoe: gate.weight [5, 8]", "adamoe", {GATE(5, 8), GATE2(2, 8)}, {{0}}, "gate.weight"},
    {"adamoe: gate2.weight missing", "adamoe", {GATE(4, 8)}, {{0}}, "gate2.weight"},
    {"adamoe: gate2.weight [2, 9]", "adamoe", {GATE(4, 8), GATE2(2, 9)}, {{0}}, "gate2.weight"},
    {"adamoe: gate2.weight 1-D [8]", "adamoe", {GATE(4, 8), {"gate2.weight", 1, 8, 1, 1, MOERT_TENSOR_F32}}, {{0}}, "gate2.weight"},
    {"adamoe: gate2.weight [0, 8]", "adamoe", {GATE(4, 8), GATE2(0, 8)}, {{0}}, "gate2.weight"},
    {"adamoe: top_k 0", "adamoe", {GATE(4, 8), GATE2(2, 8)}, {NUM("top_k", 0)}, "top_k"},
    {"adamoe: top_k E + m + 1", "adamoe", {GATE(4, 8), GATE2(2, 8)}, {NUM("top_k", 7)}, "top_k"},
    {"adamoe: top_k -3", "adamoe", {GATE(4, 8), GATE2(2, 8)}, {NUM("top_k", -3)}, "top_k"},
};

static void test_bad_cases(const char *library_kinds) {
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        if (!strstr(library_kinds, c->kind)) continue;
        reset_tensors();
        int is_expert = strchr(c->kind, '.') != NULL;
        const char *prefix = is_expert ? LAYER_PREFIX "experts.6." : LAYER_PREFIX;
        for (int j = 0; j < 4 && c->tensors[j].name; j++) {
            char full[192];
            snprintf(full, sizeof full, "%s%s", prefix, c->tensors[j].name);
            void *data = add_tensor(full, c->tensors[j].dtype, c->tensors[j].ndim, c->tensors[j].d0, c->tensors[j].d1,
                                    c->tensors[j].d2);
            size_t count = (size_t)(c->tensors[j].d0 * c->tensors[j].d1 * c->tensors[j].d2);
            if (c->tensors[j].dtype == MOERT_TENSOR_F32) fill_random(data, count, 1);
        }
        int n_params = 0;
        while (n_params < 3 && c->params[n_params].key) n_params++;
        struct moert_create_context ctx = {prefix, c->params, n_params};
        moert_layer_info info = layer_info(4, 8, 2, is_expert ? 6 : -1);
        void *instance = NULL;
        clear_error();
        moert_status s;
        if (is_expert) {
            const moert_expert_ops *ops = expert_kind(c->kind);
            if (!require(ops != NULL, c->what, "kind %s not registered", c->kind)) continue;
            s = ops->create(&g_host, &ctx, &info, &instance);
            if (s == MOERT_OK) ops->destroy(instance);
        } else {
            const moert_router_ops *ops = router_kind(c->kind);
            if (!require(ops != NULL, c->what, "kind %s not registered", c->kind)) continue;
            moert_router_caps caps = {sizeof caps, 2, 0};
            s = ops->create(&g_host, &ctx, &info, &caps, &instance);
            if (s == MOERT_OK) ops->destroy(instance);
        }
        if (!c->culprit) {
            check(s == MOERT_OK, c->what, "create failed with status %d: %s", s, g_error);
        } else {
            check(s != MOERT_OK && g_error_calls > 0 && strstr(g_error, c->culprit) && instance == NULL, c->what,
                  "status %d, set_error calls %d, message '%s' (expected it to name %s)", s, (int)g_error_calls,
                  g_error, c->culprit);
        }
    }
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Concurrency: route() from several threads on one instance gives the single-threaded result                    */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct thread_job {
    const router *r;
    int32_t n;
    const float *x, *prev;
    int32_t prev_width;
    const routed *expected;
    int ok;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *job = arg;
    routed *got = malloc(sizeof *got);
    job->ok = got != NULL;
    for (int i = 0; job->ok && i < 25; i++) {
        route(job->r, job->n, job->x, job->prev, job->prev_width, got);
        job->ok = got->status == MOERT_OK && memcmp(got->counts, job->expected->counts, sizeof got->counts) == 0 &&
                  memcmp(got->ids, job->expected->ids, sizeof got->ids) == 0 &&
                  memcmp(got->weights, job->expected->weights, sizeof got->weights) == 0;
    }
    free(got);
    return NULL;
}

static void test_concurrent(const char *name, const router *r, int32_t n, const float *x, const float *prev) {
    static routed expected;
    route(r, n, x, prev, r->n_experts, &expected);
    thread_job jobs[4];
    pthread_t threads[4];
    int started = 0;
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){r, n, x, prev, r->n_experts, &expected, 0};
        if (pthread_create(&threads[i], NULL, thread_main, &jobs[i]) == 0) started++;
        else break;
    }
    int ok = expected.status == MOERT_OK && started == 4;
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
        ok = ok && jobs[i].ok;
    }
    check(ok, name, "threads started %d, single-threaded status %d", started, expected.status);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* topp                                                                                                          */
/* ------------------------------------------------------------------------------------------------------------ */

static void topp_case(const char *name, int e, int h, int n, double threshold, int max_e, const fake_param *params,
                      int n_params, float x_scale) {
    reset_tensors();
    float *gate = add_f32(LAYER_PREFIX "gate.weight", 2, e, h, 1);
    fill_random(gate, (size_t)e * h, 0.6f);
    float x[MAX_TOKENS * 256];
    fill_random(x, (size_t)n * h, x_scale);
    router r;
    moert_status s = router_create("topp", params, n_params, e, h, 2, &r);
    if (!require(s == MOERT_OK && r.capacity == max_e, name, "create: status %d (%s), capacity %d, expected %d", s, g_error,
               r.capacity, max_e)) {
        router_destroy(&r);
        return;
    }
    static routed got;
    ref_row want[MAX_TOKENS];
    route(&r, n, x, NULL, 0, &got);
    int min_count = e, max_count = 0;
    for (int t = 0; t < n; t++) {
        ref_topp(e, h, gate, threshold, max_e, x + (size_t)t * h, &want[t]);
        if (want[t].count < min_count) min_count = want[t].count;
        if (want[t].count > max_count) max_count = want[t].count;
    }
    compare(name, &got, want);
    router_destroy(&r);
    char sanity[256];
    snprintf(sanity, sizeof sanity, "%s: test data gives varying expert counts", name);
    check(min_count < max_count, sanity, "all tokens kept %d", min_count);
}

/* With x = 0 every logit is 0 and p = 1/E exactly, so cumulative sums are exact: strictness is observable. */
static void topp_uniform(const char *name, double threshold, int max_e, int expected_count) {
    const int e = 8, h = 4;
    reset_tensors();
    float *gate = add_f32(LAYER_PREFIX "gate.weight", 2, e, h, 1);
    fill_random(gate, (size_t)e * h, 1);
    fake_param params[] = {NUM("threshold", threshold), NUM("max_experts", max_e)};
    router r;
    moert_status s = router_create("topp", params, 2, e, h, 2, &r);
    float x[2 * 4] = {0};
    static routed got;
    if (s == MOERT_OK) route(&r, 2, x, NULL, 0, &got);
    int ok = s == MOERT_OK && got.status == MOERT_OK;
    for (int t = 0; ok && t < 2; t++) {
        ok = got.counts[t] == expected_count;
        for (int j = 0; ok && j < expected_count; j++)
            ok = got.ids[t * r.capacity + j] == j && got.weights[t * r.capacity + j] == 0.125f;
    }
    check(ok, name, "status %d/%d, count %d (expected %d), first ids %d %d", s, got.status, got.counts[0],
          expected_count, got.ids[0], got.ids[1]);
    router_destroy(&r);
}

static void test_topp(void) {
    const int e = 8, h = 16, n = 48;
    topp_case("topp: defaults (threshold 0.4, max_experts E), weights not renormalised", e, h, n, 0.4, e, NULL, 0, 1.0f);
    fake_param p1[] = {NUM("threshold", 0.7), NUM("max_experts", 3)};
    topp_case("topp: threshold 0.7 capped at 3 experts", e, h, n, 0.7, 3, p1, 2, 1.0f);
    fake_param p2[] = {NUM("threshold", 0.9)};
    topp_case("topp: threshold 0.9", e, h, n, 0.9, e, p2, 1, 2.0f);

    topp_uniform("topp: cumulative sum equal to the threshold is not enough (0.375 -> 4 experts)", 0.375, 8, 4);
    topp_uniform("topp: just below (0.37 -> 3 experts)", 0.37, 8, 3);
    topp_uniform("topp: threshold 0.5 -> 5 experts", 0.5, 8, 5);
    topp_uniform("topp: threshold 0 -> top-1", 0.0, 8, 1);
    topp_uniform("topp: threshold 1 -> all E (no cumulative sum exceeds it)", 1.0, 8, 8);
    topp_uniform("topp: max_experts caps the kept experts", 0.375, 2, 2);

    /* route errors and concurrency */
    reset_tensors();
    float *gate = add_f32(LAYER_PREFIX "gate.weight", 2, e, h, 1);
    fill_random(gate, (size_t)e * h, 0.6f);
    router r;
    if (router_create("topp", NULL, 0, e, h, 2, &r) == MOERT_OK) {
        float x[MAX_TOKENS * 16];
        fill_random(x, sizeof x / sizeof x[0], 1);
        test_concurrent("topp: concurrent route() on one instance", &r, MAX_TOKENS, x, NULL);
        static routed got;
        x[3] = NAN;
        clear_error();
        route(&r, 2, x, NULL, 0, &got);
        check(got.status != MOERT_OK && g_error_calls > 0, "topp: route rejects non-finite x", "status %d", got.status);
        router wrong = r;
        wrong.hidden = h - 1;
        clear_error();
        route(&wrong, 2, x, NULL, 0, &got);
        check(got.status != MOERT_OK && g_error_calls > 0 && strstr(g_error, "hidden"),
              "topp: route rejects a hidden_size other than the layer's", "status %d, '%s'", got.status, g_error);
        route(&r, 0, x, NULL, 0, &got);
        check(got.status == MOERT_OK, "topp: route accepts an empty batch", "status %d", got.status);
        router_destroy(&r);
    } else {
        check(0, "topp: create for route errors", "%s", g_error);
    }
}

/* ------------------------------------------------------------------------------------------------------------ */
/* adamoe                                                                                                        */
/* ------------------------------------------------------------------------------------------------------------ */

static void adamoe_case(const char *name, int e, int m, int h, int n, int k, int layer_k, const fake_param *params,
                        int n_params, int all_null_tokens) {
    reset_tensors();
    float *gate = add_f32(LAYER_PREFIX "gate.weight", 2, e, h, 1);
    float *gate2 = add_f32(LAYER_PREFIX "gate2.weight", 2, m, h, 1);
    fill_random(gate, (size_t)e * h, 0.6f);
    fill_random(gate2, (size_t)m * h, 0.6f);
    float x[MAX_TOKENS * 256];
    fill_random(x, (size_t)n * h, 1.0f);
    if (all_null_tokens) {
        /* column 0: 0 for the true experts, +4 for the null ones; tokens 0..all_null_tokens-1 are 4·e_0, so their
           null logits are 16 and the true ones 0: the top-k (k <= m) holds only null experts */
        for (int i = 0; i < e; i++) gate[(size_t)i * h] = 0;
        for (int i = 0; i < m; i++) gate2[(size_t)i * h] = 4;
        for (int t = 0; t < all_null_tokens; t++) {
            memset(x + (size_t)t * h, 0, sizeof(float) * h);
            x[(size_t)t * h] = 4;
        }
    }
    router r;
    int cap = k < e ? k : e;
    moert_status s = router_create("adamoe", params, n_params, e, h, layer_k, &r);
    if (!require(s == MOERT_OK && r.capacity == cap, name, "create: status %d (%s), capacity %d, expected %d", s, g_error,
               r.capacity, cap)) {
        router_destroy(&r);
        return;
    }
    static routed got;
    ref_row want[MAX_TOKENS];
    route(&r, n, x, NULL, 0, &got);
    int zero_rows = 0, min_count = k, max_count = 0;
    for (int t = 0; t < n; t++) {
        ref_adamoe(e, m, h, k, gate, gate2, x + (size_t)t * h, &want[t]);
        if (want[t].count == 0) zero_rows++;
        if (want[t].count < min_count) min_count = want[t].count;
        if (want[t].count > max_count) max_count = want[t].count;
    }
    compare(name, &got, want);
    char sanity[256];
    if (all_null_tokens) {
        int ok = 1;
        for (int t = 0; t < all_null_tokens; t++) ok = ok && got.counts[t] == 0;
        snprintf(sanity, sizeof sanity, "%s: tokens that picked only null experts get count 0", name);
        check(ok && zero_rows >= all_null_tokens, sanity, "counts %d %d", got.counts[0], got.counts[1]);
    } else {
        snprintf(sanity, sizeof sanity, "%s: test data gives varying true-expert counts", name);
        check(min_count < max_count, sanity, "all tokens kept %d", min_count);
    }
    router_destroy(&r);
}

static void test_adamoe(void) {
    fake_param k4[] = {NUM("top_k", 4)};
    adamoe_case("adamoe: E 6, m 3, top_k 4", 6, 3, 16, 48, 4, 2, k4, 1, 0);
    adamoe_case("adamoe: top_k from the layer (2)", 6, 3, 16, 48, 2, 2, NULL, 0, 0);
    fake_param k2[] = {NUM("top_k", 2)};
    adamoe_case("adamoe: only null experts picked -> count 0", 4, 3, 8, 16, 2, 2, k2, 1, 3);
    fake_param k6[] = {NUM("top_k", 6)};
    adamoe_case("adamoe: top_k 6 > E 3 (capacity min(k, E))", 3, 4, 8, 32, 6, 2, k6, 1, 0);

    reset_tensors();
    float *gate = add_f32(LAYER_PREFIX "gate.weight", 2, 6, 16, 1);
    float *gate2 = add_f32(LAYER_PREFIX "gate2.weight", 2, 3, 16, 1);
    fill_random(gate, 6 * 16, 0.6f);
    fill_random(gate2, 3 * 16, 0.6f);
    router r;
    if (router_create("adamoe", k4, 1, 6, 16, 2, &r) == MOERT_OK) {
        float x[MAX_TOKENS * 16];
        fill_random(x, sizeof x / sizeof x[0], 1);
        test_concurrent("adamoe: concurrent route() on one instance", &r, MAX_TOKENS, x, NULL);
        router_destroy(&r);
    } else {
        check(0, "adamoe: create for concurrency", "%s", g_error);
    }
}

/* ------------------------------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s PATH/libmoert_moepp.so PATH/libmoert_dynamic.so\n", argv[0]);
        return 2;
    }

    /* moepp (C) */
    moert_plugin_init_fn init = load_plugin(argv[1]);
    if (init) {
        test_host_refused("moepp", init);
        clear_error();
        moert_status s = init(&g_host, &g_host_context_marker);
        check(s == MOERT_OK && g_n_routers == 1 && g_n_experts == 3, "moepp: init registers 1 router and 3 experts",
              "status %d (%s), %d routers, %d experts", s, g_error, g_n_routers, g_n_experts);
        test_moepp_registration();
        long live = atomic_load(&g_live_allocations);
        test_moepp_routing();
        test_moepp_route_errors();
        test_moepp_experts();
        test_bad_cases("moepp moepp.constant");
        {
            moepp_spec spec;
            moepp_tensors(&spec, 8, 16, 1);
            router r;
            fake_param p[] = {{"use_logits_norm", NULL, 1}};
            if (router_create("moepp", p, 1, 8, 16, 2, &r) == MOERT_OK) {
                float x[MAX_TOKENS * 16], prev[MAX_TOKENS * 8];
                fill_random(x, sizeof x / sizeof x[0], 1);
                fill_random(prev, sizeof prev / sizeof prev[0], 1);
                test_concurrent("moepp: concurrent route() on one instance", &r, MAX_TOKENS, x, prev);
                router_destroy(&r);
            }
        }
        check(atomic_load(&g_live_allocations) == live, "moepp: every host->alloc is freed (instances and scratch)",
              "%ld allocations live", atomic_load(&g_live_allocations) - live);
        clear_error();
        s = init(&g_host, &g_host_context_marker);
        check(s != MOERT_OK, "moepp: a second init reports the host's duplicate-kind failure", "status %d", s);
    }

    /* dynamic (Swift) */
    int routers_before = g_n_routers, experts_before = g_n_experts;
    init = load_plugin(argv[2]);
    if (init) {
        int saved_routers = g_n_routers, saved_experts = g_n_experts;
        g_n_routers = 0;
        g_n_experts = 0;
        test_host_refused("dynamic", init);
        g_n_routers = saved_routers;
        g_n_experts = saved_experts;
        clear_error();
        moert_status s = init(&g_host, &g_host_context_marker);
        check(s == MOERT_OK && g_n_routers == routers_before + 2 && g_n_experts == experts_before &&
              router_kind("topp") && router_kind("adamoe"),
              "dynamic: init registers the routers topp and adamoe", "status %d (%s), %d routers", s, g_error, g_n_routers);
        const moert_router_ops *ops = router_kind("topp");
        check(ops && ops->struct_size == sizeof *ops && ops->abi_version == MOERT_PLUGIN_ABI_VERSION,
              "dynamic: ops tables carry struct_size and abi_version", "struct_size %u, abi_version %u",
              ops ? (unsigned)ops->struct_size : 0u, ops ? (unsigned)ops->abi_version : 0u);
        test_topp();
        test_adamoe();
        test_bad_cases("topp adamoe");
        clear_error();
        s = init(&g_host, &g_host_context_marker);
        check(s != MOERT_OK, "dynamic: a second init reports the host's duplicate-kind failure", "status %d", s);
    }

    reset_tensors();
    return check_summary();
}
