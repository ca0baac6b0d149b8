/*
** moepp.c — the MoE++ plugin: router kind `moepp` (gating residuals) and the zero-computation expert kinds
** `moepp.zero`, `moepp.copy` and `moepp.constant`.
**
** Source: Jin, Zhu, Yuan, Yan, "MoE++: Accelerating Mixture-of-Experts Methods with Zero-Computation Experts"
** (ICLR 2025); reference code SkyworkAI/MoE-plus-plus @ 7f439675dd, `MoE++/moe_plus_plus_layer.py` (`Router`,
** `gating`, `ConstantExpert`, `CopyExpert`, `ZeroExpert`), as restated in ALGORITHMS.md section 5.
**
** Math, per token x in R^H, E experts in the layer (all kinds together):
**   L = Wg x                        single-layer gate, or  L = W2 tanh(W0 x)  (two-layer gate, no biases)
**   L += M L_prev                   gating residual, when a previous MoE layer exists (input->prev_logits);
**                                   L_prev is that layer's L after its own residual, before normalisation
**   output->logits <- L             handed to the next MoE layer as its prev_logits
**   L~ = L / (std(L) / sigma*)      only with use_logits_norm; unbiased std (N - 1); std = 0 or E = 1: L~ = L
**   default gating:  p = softmax(L~); top-k of p; weight of `zero_expert` set to 0; w = v / sum(v)
**                    (when the k weights sum to 0 — k = 1 and the zero expert chosen — they stay 0)
**   mixtral_gating:  top-k of L~; w = softmax over the k chosen logits; no zeroing
**   moepp.zero: F(x) = 0   moepp.copy: F(x) = x   moepp.constant: a = softmax(Wc x) over 2, F(x) = a0 x + a1 v
** Ties in a ranking go to the lower expert index. Softmax is float32 with the maximum subtracted; dot products
** accumulate in double and round to float32. The reference's xk input scaling (`moe_feature_no_mul_topk` false)
** is not supported. Each output row lists the k chosen experts in rank order, the zero expert included (with
** weight 0), so traces show how often it was picked.
**
** Router `moepp` — params (docs/model-format.md): `top_k` (integer in [1, E], default: the layer's top_k),
** `use_logits_norm` (bool, default false), `gate_norm_std` sigma* (finite, > 0, default 1.0), `zero_expert`
** (integer in [-1, E), default E - 1; -1 for none), `mixtral_gating` (bool, default false).
** Tensors, relative to the block prefix P: `router.wg.weight` [E, H] — or `router.wg.0.weight` [8E, H] and
** `router.wg.2.weight` [E, 8E] (two-layer gate) — and `router.gate_map.weight` M [E, E] (required in every MoE
** layer after the first; optional, and unused, in the first). Declares max_experts_per_token = top_k and no state.
** Expert `moepp.constant` (id e) — tensors `P experts.<e>.constant` v [H] and `P experts.<e>.wg.weight` Wc [2, H].
** `moepp.zero` and `moepp.copy` take no tensors and are never called (flags OUTPUT_ZERO / OUTPUT_IDENTITY).
**
** Threads: instances are read-only after create; route and forward keep their scratch on the stack or allocate it
** per call through host->alloc, so they may run concurrently on one instance.
*/
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <moert_plugin.h>

#include "plugin_support.h"

/* ------------------------------------------------------------------------------------------------------------ */
/* Host access                                                                                                   */
/* ------------------------------------------------------------------------------------------------------------ */

/* The host functions an instance keeps: the host table is only guaranteed during create(). */
typedef struct host_fns {
    void *(*alloc)(size_t size, size_t alignment);
    void (*free)(void *pointer);
    void (*set_error)(const char *message);
} host_fns;

/* Checks the host table covers every function this plugin calls (through param_number) and copies the ones an
   instance keeps. Fails with MOERT_ERR_PLUGIN. */
static moert_status check_host(const moert_host_api *host, host_fns *keep) {
    moert_status s = MOERT_PLUGIN_CHECK_HOST(host, "moepp", param_number);
    if (s != MOERT_OK) return s;
    if (!host->alloc || !host->free || !host->set_error || !host->register_router || !host->register_expert ||
        !host->layer_tensor || !host->param_number)
        return plugin_fail(host->set_error, MOERT_ERR_PLUGIN,
                           "moepp: host API table lacks a function this plugin needs");
    if (keep) {
        keep->alloc = host->alloc;
        keep->free = host->free;
        keep->set_error = host->set_error;
    }
    return MOERT_OK;
}

/* Checks the layer info covers the fields create() reads and that its sizes are usable. */
static moert_status check_layer(const moert_host_api *host, const char *kind, const moert_layer_info *layer) {
    if (!layer || !MOERT_STRUCT_HAS(layer, moert_layer_info, expert_index))
        return plugin_fail(host->set_error, MOERT_ERR_PLUGIN, "%s: layer info missing or too small", kind);
    if (layer->hidden_size < 1 || layer->n_experts < 1)
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT, "%s: layer has hidden_size %d and n_experts %d",
                           kind, (int)layer->hidden_size, (int)layer->n_experts);
    return MOERT_OK;
}

/* Reads an optional numeric (or boolean: 1/0) parameter; *present says whether it was given. */
static moert_status param(const moert_host_api *host, const moert_create_context *ctx, const char *kind,
                          const char *key, double *value, int *present) {
    *present = 0;
    moert_status s = host->param_number(ctx, key, value);
    if (s == MOERT_ERR_OUT_OF_RANGE) return MOERT_OK;
    if (s != MOERT_OK)
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT, "%s: parameter %s must be a number", kind, key);
    *present = 1;
    return MOERT_OK;
}

/* An integer parameter in [lo, hi], `fallback` when absent. */
static moert_status param_int(const moert_host_api *host, const moert_create_context *ctx, const char *kind,
                              const char *key, int32_t fallback, int32_t lo, int32_t hi, int32_t *out) {
    double v;
    int present;
    moert_status s = param(host, ctx, kind, key, &v, &present);
    if (s != MOERT_OK) return s;
    if (!present) v = fallback;
    if (!(v >= lo && v <= hi) || v != floor(v))
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT,
                           "%s: parameter %s = %g: expected an integer in [%d, %d]", kind, key, v, (int)lo, (int)hi);
    *out = (int32_t)v;
    return MOERT_OK;
}

/* A boolean parameter (JSON true/false, or 1/0), `fallback` when absent. */
static moert_status param_bool(const moert_host_api *host, const moert_create_context *ctx, const char *kind,
                               const char *key, int32_t fallback, int32_t *out) {
    double v;
    int present;
    moert_status s = param(host, ctx, kind, key, &v, &present);
    if (s != MOERT_OK) return s;
    if (!present) { *out = fallback; return MOERT_OK; }
    if (v != 0 && v != 1)
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT, "%s: parameter %s = %g: expected true or false",
                           kind, key, v);
    *out = v == 1;
    return MOERT_OK;
}

/* Whether the layer has a tensor called `name` (relative to its prefix). A failed lookup leaves a message in the
   host's error slot; it is replaced by the next error or ignored after a successful create. */
static int has_tensor(const moert_host_api *host, const moert_create_context *ctx, const char *name) {
    moert_tensor t;
    memset(&t, 0, sizeof t);
    t.struct_size = sizeof t;
    return host->layer_tensor(ctx, name, &t) == MOERT_OK;
}

/* Fetches a float32 tensor of the layer with exactly the shape [rows] (cols < 0) or [rows, cols]. */
static moert_status get_tensor(const moert_host_api *host, const moert_create_context *ctx, const char *kind,
                               const char *name, int64_t rows, int64_t cols, const float **out) {
    moert_tensor t;
    memset(&t, 0, sizeof t);
    t.struct_size = sizeof t;
    moert_status s = host->layer_tensor(ctx, name, &t);
    if (s != MOERT_OK) return plugin_fail(host->set_error, s, "%s: tensor %s is missing or unreadable", kind, name);
    int want_ndim = cols < 0 ? 1 : 2;
    char want[64], got[96];
    if (cols < 0) snprintf(want, sizeof want, "[%lld]", (long long)rows);
    else snprintf(want, sizeof want, "[%lld, %lld]", (long long)rows, (long long)cols);
    if (t.ndim == 1) snprintf(got, sizeof got, "[%lld]", (long long)t.shape[0]);
    else if (t.ndim == 2) snprintf(got, sizeof got, "[%lld, %lld]", (long long)t.shape[0], (long long)t.shape[1]);
    else snprintf(got, sizeof got, "%d dimensions", (int)t.ndim);
    if (t.dtype != MOERT_TENSOR_F32)
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT, "%s: tensor %s: expected %s float, got an integer tensor",
                           kind, name, want);
    if (t.ndim != want_ndim || t.shape[0] != rows || (cols >= 0 && t.shape[1] != cols))
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT, "%s: tensor %s: expected %s, got %s", kind, name, want,
                           got);
    if (!t.data) return plugin_fail(host->set_error, MOERT_ERR_FORMAT, "%s: tensor %s has no data", kind, name);
    *out = (const float *)t.data;
    return MOERT_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Kernels                                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

/* y[d] = W[d, n] x[n], accumulated in double (router logits decide rankings; keep their rounding small). */
static void matvec(float *y, const float *w, const float *x, int32_t d, int32_t n) {
    for (int32_t i = 0; i < d; i++) {
        const float *row = w + (size_t)i * (size_t)n;
        double acc = 0;
        for (int32_t j = 0; j < n; j++) acc += (double)row[j] * (double)x[j];
        y[i] = (float)acc;
    }
}

/* In-place float32 softmax with the maximum subtracted. */
static void softmax(float *v, int32_t n) {
    float max = v[0];
    for (int32_t i = 1; i < n; i++) if (v[i] > max) max = v[i];
    float sum = 0;
    for (int32_t i = 0; i < n; i++) { v[i] = expf(v[i] - max); sum += v[i]; }
    for (int32_t i = 0; i < n; i++) v[i] /= sum;
}

/* The k largest of v[n], largest first, into ids/vals; among equal values the lower index comes first. */
static void top_k(const float *v, int32_t n, int32_t k, int32_t *ids, float *vals) {
    int32_t filled = 0;
    for (int32_t i = 0; i < n; i++) plugin_topk_insert(ids, vals, &filled, k, i, v[i]);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Router `moepp`                                                                                                */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct moepp_router {
    host_fns host;
    int32_t n_experts;        /* E */
    int32_t hidden;           /* H */
    int32_t top_k;            /* k */
    int32_t zero_expert;      /* id whose weight is zeroed before renormalising, -1 for none */
    int32_t use_logits_norm;  /* divide L by std(L)/sigma* before gating */
    int32_t mixtral_gating;   /* top-k of logits, softmax over the k */
    float gate_norm_std;      /* sigma* */
    int32_t gate_width;       /* 8E for the two-layer gate, 0 for the single-layer one */
    const float *wg;          /* [E, H] single-layer gate, or [E, 8E] second layer of the two-layer gate */
    const float *wg0;         /* [8E, H] first layer of the two-layer gate, NULL for the single-layer one */
    const float *gate_map;    /* [E, E] M of the gating residual */
} moepp_router;

static moert_status router_create(const moert_host_api *host, const moert_create_context *ctx,
                                  const moert_layer_info *layer, moert_router_caps *caps, void **out_instance) {
    host_fns fns;
    moert_status s = check_host(host, &fns);
    if (s != MOERT_OK) return s;
    if (!out_instance) return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT, "moepp: out_instance is NULL");
    *out_instance = NULL;
    if ((s = check_layer(host, "moepp", layer)) != MOERT_OK) return s;
    if (!caps || !MOERT_STRUCT_HAS(caps, moert_router_caps, max_experts_per_token))
        return plugin_fail(host->set_error, MOERT_ERR_PLUGIN, "moepp: router caps missing or too small");

    moepp_router r;
    memset(&r, 0, sizeof r);
    r.host = fns;
    r.n_experts = layer->n_experts;
    r.hidden = layer->hidden_size;
    const int32_t e = r.n_experts, h = r.hidden;

    /* params */
    int32_t default_k = layer->top_k >= 1 && layer->top_k <= e ? layer->top_k : 0;
    double sigma = 1.0;
    int present;
    if ((s = param_int(host, ctx, "moepp", "top_k", default_k, 1, e, &r.top_k)) != MOERT_OK) return s;
    if ((s = param_bool(host, ctx, "moepp", "use_logits_norm", 0, &r.use_logits_norm)) != MOERT_OK) return s;
    if ((s = param(host, ctx, "moepp", "gate_norm_std", &sigma, &present)) != MOERT_OK) return s;
    if (!present) sigma = 1.0;
    if (!(sigma > 0 && sigma <= 3.4e38))
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT,
                           "moepp: parameter gate_norm_std = %g: expected a finite number > 0", sigma);
    r.gate_norm_std = (float)sigma;
    if ((s = param_int(host, ctx, "moepp", "zero_expert", e - 1, -1, e - 1, &r.zero_expert)) != MOERT_OK) return s;
    if ((s = param_bool(host, ctx, "moepp", "mixtral_gating", 0, &r.mixtral_gating)) != MOERT_OK) return s;

    /* tensors: a single-layer gate or a two-layer one, never both */
    int one = has_tensor(host, ctx, "router.wg.weight");
    int two = has_tensor(host, ctx, "router.wg.0.weight") || has_tensor(host, ctx, "router.wg.2.weight");
    if (one && two)
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                           "moepp: both router.wg.weight and router.wg.0.weight/router.wg.2.weight are present; "
                           "expected one gate");
    if (!one && !two)
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                           "moepp: tensor router.wg.weight [%d, %d] is missing "
                           "(nor is there a two-layer gate router.wg.0.weight, router.wg.2.weight)",
                           (int)e, (int)h);
    if (one) {
        if ((s = get_tensor(host, ctx, "moepp", "router.wg.weight", e, h, &r.wg)) != MOERT_OK) return s;
    } else {
        r.gate_width = 8 * e;
        if ((s = get_tensor(host, ctx, "moepp", "router.wg.0.weight", r.gate_width, h, &r.wg0)) != MOERT_OK) return s;
        if ((s = get_tensor(host, ctx, "moepp", "router.wg.2.weight", e, r.gate_width, &r.wg)) != MOERT_OK) return s;
    }
    /* The gating residual adds M L_prev; the first MoE layer has no previous one, so there M may be left out. */
    moert_tensor probe;
    memset(&probe, 0, sizeof probe);
    probe.struct_size = sizeof probe;
    if (layer->moe_index > 0 || host->layer_tensor(ctx, "router.gate_map.weight", &probe) == MOERT_OK) {
        if ((s = get_tensor(host, ctx, "moepp", "router.gate_map.weight", e, e, &r.gate_map)) != MOERT_OK) return s;
    }

    moepp_router *instance = fns.alloc(sizeof *instance, 0);
    if (!instance) return plugin_fail(host->set_error, MOERT_ERR_OUT_OF_MEMORY, "moepp: out of memory");
    *instance = r;
    caps->max_experts_per_token = r.top_k;
    *out_instance = instance;
    return MOERT_OK;
}

static void router_destroy(void *instance) {
    moepp_router *r = instance;
    if (r) r->host.free(r);
}

static moert_status router_route(void *instance, const moert_router_input *in, moert_router_output *out) {
    const moepp_router *r = instance;
    if (!r) return MOERT_ERR_PLUGIN;
    void (*set_error)(const char *) = r->host.set_error;
    const int32_t e = r->n_experts, h = r->hidden, k = r->top_k;
    if (!in || !MOERT_STRUCT_HAS(in, moert_router_input, prev_logits_width))
        return plugin_fail(set_error, MOERT_ERR_INVALID_ARGUMENT, "moepp: router input missing or too small");
    if (!out || !MOERT_STRUCT_HAS(out, moert_router_output, counts))
        return plugin_fail(set_error, MOERT_ERR_INVALID_ARGUMENT, "moepp: router output missing or too small");
    const int32_t n = in->n_tokens;
    if (n < 0) return plugin_fail(set_error, MOERT_ERR_INVALID_ARGUMENT, "moepp: n_tokens = %d", (int)n);
    if (n == 0) return MOERT_OK;
    if (in->hidden_size != h)
        return plugin_fail(set_error, MOERT_ERR_INVALID_ARGUMENT, "moepp: input hidden_size %d, the layer has %d",
                           (int)in->hidden_size, (int)h);
    if (!in->x || !out->expert_ids || !out->weights || !out->counts)
        return plugin_fail(set_error, MOERT_ERR_INVALID_ARGUMENT, "moepp: a router input or output buffer is NULL");
    if (out->max_per_token < k)
        return plugin_fail(set_error, MOERT_ERR_INVALID_ARGUMENT, "moepp: output rows hold %d experts, top_k is %d",
                           (int)out->max_per_token, (int)k);
    const float *prev = in->prev_logits;
    if (prev && in->prev_logits_width != e)
        return plugin_fail(set_error, MOERT_ERR_INVALID_ARGUMENT,
                           "moepp: prev_logits rows have %d entries; the gating residual needs the previous MoE layer "
                           "to have %d experts",
                           (int)in->prev_logits_width, (int)e);
    float *logits_out = MOERT_STRUCT_HAS(out, moert_router_output, logits) ? out->logits : NULL;

    /* per-call scratch: L [E], gating values [E], the two-layer gate's hidden layer [8E], top-k ids [k] */
    size_t floats = 2 * (size_t)e + (size_t)r->gate_width;
    char *scratch = r->host.alloc(floats * sizeof(float) + (size_t)k * sizeof(int32_t), 0);
    if (!scratch) return plugin_fail(set_error, MOERT_ERR_OUT_OF_MEMORY, "moepp: out of memory for router scratch");
    float *logits = (float *)scratch;     /* [E] */
    float *g = logits + e;                /* [E] */
    float *hidden = g + e;                /* [8E] */
    int32_t *ids = (int32_t *)(scratch + floats * sizeof(float));
    moert_status status = MOERT_OK;

    for (int32_t t = 0; t < n; t++) {
        const float *x = in->x + (size_t)t * (size_t)h;
        int32_t *row_ids = out->expert_ids + (size_t)t * (size_t)out->max_per_token;
        float *row_w = out->weights + (size_t)t * (size_t)out->max_per_token;

        /* L = Wg x: [E, H] x [H] -> [E], or W2 tanh(W0 x): [8E, H] x [H] -> [8E], [E, 8E] x [8E] -> [E] */
        if (r->wg0) {
            matvec(hidden, r->wg0, x, r->gate_width, h);
            for (int32_t i = 0; i < r->gate_width; i++) hidden[i] = tanhf(hidden[i]);
            matvec(logits, r->wg, hidden, e, r->gate_width);
        } else {
            matvec(logits, r->wg, x, e, h);
        }
        /* gating residual: L += M L_prev, [E, E] x [E] -> [E] (`Router.forward`, `logits += gate_residual`) */
        if (prev && r->gate_map) {
            const float *lp = prev + (size_t)t * (size_t)e;
            for (int32_t i = 0; i < e; i++) {
                if (!isfinite(lp[i])) {
                    status = plugin_fail(set_error, MOERT_ERR_INVALID_ARGUMENT,
                                         "moepp: prev_logits of token %d are not finite "
                                         "(did the previous MoE layer's router write its logits?)",
                                         (int)t);
                    goto done;
                }
            }
            matvec(g, r->gate_map, lp, e, e);
            for (int32_t i = 0; i < e; i++) logits[i] += g[i];
        }
        for (int32_t i = 0; i < e; i++) {
            if (!isfinite(logits[i])) {
                status = plugin_fail(set_error, MOERT_ERR_INVALID_ARGUMENT,
                                     "moepp: router logits of token %d are not finite", (int)t);
                goto done;
            }
        }
        /* the next layer's L_prev: after the residual, before normalisation */
        if (logits_out) memcpy(logits_out + (size_t)t * (size_t)e, logits, (size_t)e * sizeof(float));

        /* L~ = L / (std(L) / sigma*), unbiased std (`logits.std(dim=1)`); std = 0 leaves L unchanged */
        memcpy(g, logits, (size_t)e * sizeof(float));
        if (r->use_logits_norm && e > 1) {
            double mean = 0, var = 0;
            for (int32_t i = 0; i < e; i++) mean += g[i];
            mean /= e;
            for (int32_t i = 0; i < e; i++) var += ((double)g[i] - mean) * ((double)g[i] - mean);
            float std = (float)sqrt(var / (e - 1));
            if (std > 0) {
                float scale = std / r->gate_norm_std;
                for (int32_t i = 0; i < e; i++) g[i] /= scale;
            }
        }

        if (r->mixtral_gating) {
            /* top-k of L~, softmax over the k chosen logits */
            top_k(g, e, k, ids, row_w);
            softmax(row_w, k);
        } else {
            /* p = softmax(L~); top-k of p; zero expert's weight -> 0; renormalise */
            softmax(g, e);
            top_k(g, e, k, ids, row_w);
            float sum = 0;
            for (int32_t j = 0; j < k; j++) {
                if (ids[j] == r->zero_expert) row_w[j] = 0;
                sum += row_w[j];
            }
            if (sum > 0) for (int32_t j = 0; j < k; j++) row_w[j] /= sum;
        }
        memcpy(row_ids, ids, (size_t)k * sizeof(int32_t));
        out->counts[t] = k;
    }

done:
    r->host.free(scratch);
    return status;
}

static const moert_router_ops moepp_router_ops = {
    .struct_size = sizeof(moert_router_ops),
    .abi_version = MOERT_PLUGIN_ABI_VERSION,
    .name = "moepp",
    .create = router_create,
    .route = router_route,
    .destroy = router_destroy,
};

/* ------------------------------------------------------------------------------------------------------------ */
/* Experts `moepp.zero` and `moepp.copy`: never called; no instance                                               */
/* ------------------------------------------------------------------------------------------------------------ */

static moert_status parameterless_create(const moert_host_api *host, const moert_layer_info *layer,
                                         const char *kind, void **out_instance) {
    moert_status s = check_host(host, NULL);
    if (s != MOERT_OK) return s;
    if (!out_instance)
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT, "%s: out_instance is NULL", kind);
    *out_instance = NULL;
    return check_layer(host, kind, layer);
}

static moert_status zero_create(const moert_host_api *host, const moert_create_context *ctx,
                                const moert_layer_info *layer, void **out_instance) {
    (void)ctx;
    return parameterless_create(host, layer, "moepp.zero", out_instance);
}

static moert_status copy_create(const moert_host_api *host, const moert_create_context *ctx,
                                const moert_layer_info *layer, void **out_instance) {
    (void)ctx;
    return parameterless_create(host, layer, "moepp.copy", out_instance);
}

static void parameterless_destroy(void *instance) { (void)instance; }

static const moert_expert_ops moepp_zero_ops = {
    .struct_size = sizeof(moert_expert_ops),
    .abi_version = MOERT_PLUGIN_ABI_VERSION,
    .name = "moepp.zero",
    .flags = MOERT_EXPERT_ZERO_COMPUTE | MOERT_EXPERT_OUTPUT_ZERO,
    .create = zero_create,
    .forward = NULL,
    .destroy = parameterless_destroy,
};

static const moert_expert_ops moepp_copy_ops = {
    .struct_size = sizeof(moert_expert_ops),
    .abi_version = MOERT_PLUGIN_ABI_VERSION,
    .name = "moepp.copy",
    .flags = MOERT_EXPERT_ZERO_COMPUTE | MOERT_EXPERT_OUTPUT_IDENTITY,
    .create = copy_create,
    .forward = NULL,
    .destroy = parameterless_destroy,
};

/* ------------------------------------------------------------------------------------------------------------ */
/* Expert `moepp.constant`                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct moepp_constant {
    host_fns host;
    int32_t hidden;     /* H */
    const float *v;     /* [H] the constant */
    const float *wc;    /* [2, H] its 2-way gate */
} moepp_constant;

static moert_status constant_create(const moert_host_api *host, const moert_create_context *ctx,
                                    const moert_layer_info *layer, void **out_instance) {
    host_fns fns;
    moert_status s = check_host(host, &fns);
    if (s != MOERT_OK) return s;
    if (!out_instance)
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT, "moepp.constant: out_instance is NULL");
    *out_instance = NULL;
    if ((s = check_layer(host, "moepp.constant", layer)) != MOERT_OK) return s;
    moepp_constant c;
    memset(&c, 0, sizeof c);
    c.host = fns;
    c.hidden = layer->hidden_size;
    if ((s = get_tensor(host, ctx, "moepp.constant", "constant", c.hidden, -1, &c.v)) != MOERT_OK) return s;
    if ((s = get_tensor(host, ctx, "moepp.constant", "wg.weight", 2, c.hidden, &c.wc)) != MOERT_OK) return s;
    moepp_constant *instance = fns.alloc(sizeof *instance, 0);
    if (!instance) return plugin_fail(host->set_error, MOERT_ERR_OUT_OF_MEMORY, "moepp.constant: out of memory");
    *instance = c;
    *out_instance = instance;
    return MOERT_OK;
}

static void constant_destroy(void *instance) {
    moepp_constant *c = instance;
    if (c) c->host.free(c);
}

/* y = a0 x + a1 v with a = softmax(Wc x) over 2 (`ConstantExpert.forward`). */
static moert_status constant_forward(void *instance, const float *x, int32_t n_tokens, int32_t hidden_size, float *y) {
    const moepp_constant *c = instance;
    if (!c) return MOERT_ERR_PLUGIN;
    if (n_tokens < 0 || hidden_size != c->hidden)
        return plugin_fail(c->host.set_error, MOERT_ERR_INVALID_ARGUMENT,
                           "moepp.constant: called with %d tokens of width %d; the layer's hidden size is %d",
                           (int)n_tokens, (int)hidden_size, (int)c->hidden);
    if (n_tokens > 0 && (!x || !y))
        return plugin_fail(c->host.set_error, MOERT_ERR_INVALID_ARGUMENT, "moepp.constant: x or y is NULL");
    const int32_t h = c->hidden;
    for (int32_t t = 0; t < n_tokens; t++) {
        const float *xt = x + (size_t)t * (size_t)h;
        float *yt = y + (size_t)t * (size_t)h;
        float a[2];
        matvec(a, c->wc, xt, 2, h);  /* [2, H] x [H] -> [2] */
        softmax(a, 2);
        for (int32_t i = 0; i < h; i++) yt[i] = a[0] * xt[i] + a[1] * c->v[i];
    }
    return MOERT_OK;
}

static const moert_expert_ops moepp_constant_ops = {
    .struct_size = sizeof(moert_expert_ops),
    .abi_version = MOERT_PLUGIN_ABI_VERSION,
    .name = "moepp.constant",
    .flags = MOERT_EXPERT_ZERO_COMPUTE,
    .create = constant_create,
    .forward = constant_forward,
    .destroy = constant_destroy,
};

/* ------------------------------------------------------------------------------------------------------------ */
/* Entry point                                                                                                   */
/* ------------------------------------------------------------------------------------------------------------ */

MOERT_PLUGIN_EXPORT moert_status moert_plugin_init(const moert_host_api *host, void *host_context) {
    moert_status s = check_host(host, NULL);
    if (s != MOERT_OK) return s;
    if ((s = host->register_router(host_context, &moepp_router_ops)) != MOERT_OK) return s;
    if ((s = host->register_expert(host_context, &moepp_zero_ops)) != MOERT_OK) return s;
    if ((s = host->register_expert(host_context, &moepp_copy_ops)) != MOERT_OK) return s;
    return host->register_expert(host_context, &moepp_constant_ops);
}
