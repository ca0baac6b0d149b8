/*
** comet.c — the `comet` router kind: the COMET tree gate (k soft binary trees over the E experts), inference form.
**
** Trees: internal nodes in heap order 0 .. E-2 (children 2n+1 left, 2n+2 right), node n is a leaf iff n >= E-1;
** expert j is the j-th leaf in left-first depth-first order (heap node E-1+j when E is a power of two; E = 6 gives
** leaves 7, 8, 9, 10, 5, 6). All k trees share this shape and are evaluated together, one unit per tree.
** Math, per token x and tree t (all float32):
**   smooth-step S(u) = 0 if u <= -gamma/2, 1 if u >= gamma/2, else -(2/gamma^3) u^3 + (3/(2 gamma)) u + 1/2
**   P_root = 1; internal node n: q = S(Z_n x + b_n), left child P*q, right child P*(1-q)
**   leaf j: a = A_j x + c_j; s_{t,j} = a + log(P_{t,j} + eps), or masked (left out) when
**     variant "keras":   P <= 0,    eps = 1e-8     (mazumder-lab/COMET)
**     variant "pytorch": P < 1e-5,  eps = 1e-6     (mazumder-lab/COMET-BERT)
**   g = one softmax over all k*E unmasked scores (max subtracted)
**   w_e = sum_t sum_j g_{t,j} Pi_t[j, e];  w <- w / sum_e w_e
**   output: the experts with w_e > 0, largest first (ties: lower expert index first). When more than
**   max_experts are non-zero, the max_experts largest are kept and renormalised to sum to 1 (a moert cap).
** No logits are written (the gate has k*E scores, not one per expert).
**
** Source: S. Ibrahim, W. Chen, H. Hazimeh, N. Ponomareva, Z. Zhao, R. Mazumder, "COMET: Learning Cardinality
** Constrained Mixture of Experts with Trees and Local Search" (KDD 2023). Reference code mazumder-lab/COMET
** @ cf272760f4 model/gates/comet.py (COMETGate with use_routing_input, SmoothStep; Keras) and mazumder-lab/COMET-BERT
** @ a6f0cf64a2 src/transformers/cometbert/gates/comet.py (COMET), .../moe_layer.py (PyTorch port: no node bias).
**
** Params (moert section, router "params"):
**   gamma        smooth-step width, required, finite and > 0
**   variant      "keras" (default) or "pytorch": the masking rule and log epsilon above
**   max_experts  integer >= 1, default E; values above E mean E
** Tensors (F32/F16/BF16, delivered as float32; P = the layer's block prefix; k = the number of trees, read from
** the shapes):
**   P router.node_weight [E-1, k, H]  row n = internal heap node n (Z_n); not read when E = 1
**   P router.node_bias   [E-1, k]     optional (b_n; zero when absent, as in the PyTorch port)
**   P router.leaf_weight [E, k, H]    row j = expert j (A_j)
**   P router.leaf_bias   [E, k]       (c_j)
**   P router.permutation [k, E, E]    optional; each Pi_t a 0/1 permutation matrix; identity when absent
** Declares max_experts_per_token = min(max_experts, E).
**
** Threads: an instance is read-only after create; route() keeps its scratch in one host->alloc block per call,
** so it may run concurrently on one instance. The host table is copied at create (the pointer passed to create
** is borrowed for that call only).
*/
#include <moert_plugin.h>

#include "plugin_support.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define KIND "comet"

/** Largest tree count accepted (a sanity bound on a shape read from the file). */
#define MAX_TREES 4096

/** The host functions route() and destroy() need, copied at create. */
typedef struct host_fns {
    void *(*alloc)(size_t size, size_t alignment);
    void (*free)(void *pointer);
    void (*set_error)(const char *message);
    void (*sgemm)(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k, float alpha,
                  const float *a, int32_t lda, const float *b, int32_t ldb, float beta, float *c, int32_t ldc);
} host_fns;

enum { VARIANT_KERAS = 0, VARIANT_PYTORCH = 1 };

/**
 * One instance: borrowed tensor data (valid until destroy), the leaf map and permutations (owned, in the same
 * allocation as the struct), and the smooth-step constants. Read-only after create.
 */
typedef struct comet_router {
    host_fns host;
    int32_t hidden;        /* H */
    int32_t experts;       /* E */
    int32_t trees;         /* k */
    int32_t cap;           /* min(max_experts, E) */
    int32_t variant;
    float lower, upper;    /* -gamma/2, gamma/2 */
    float a3, a1;          /* -2/gamma^3, 3/(2 gamma) */
    float mask_below;      /* keras: P <= 0 masked; pytorch: P < 1e-5 masked */
    float eps;             /* 1e-8 or 1e-6 */
    const float *node_w;   /* [E-1, k, H] = [(E-1)k, H]; NULL when E = 1 */
    const float *node_b;   /* [E-1, k] or NULL */
    const float *leaf_w;   /* [E, k, H] = [Ek, H] */
    const float *leaf_b;   /* [E, k] */
    int32_t *leaf_node;    /* [E] heap node of expert j */
    int32_t *perm;         /* [k, E] expert that leaf j of tree t feeds, or NULL for the identity */
} comet_router;

/* ------------------------------------------------------------------------------------------------------------ */
/* create-time helpers                                                                                          */
/* ------------------------------------------------------------------------------------------------------------ */

/** Lists the heap nodes of the leaves under `node` in left-first depth-first order (the gate's concatenation). */
static void collect_leaves(int32_t node, int32_t experts, int32_t *leaf_node, int32_t *count) {
    if (node >= experts - 1) {
        leaf_node[(*count)++] = node;
        return;
    }
    collect_leaves(2 * node + 1, experts, leaf_node, count);
    collect_leaves(2 * node + 2, experts, leaf_node, count);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Router ops                                                                                                   */
/* ------------------------------------------------------------------------------------------------------------ */

static void comet_destroy(void *instance) {
    if (instance == NULL) return;
    comet_router *c = (comet_router *)instance;
    c->host.free(c);
}

/** Reads and checks gamma, variant and max_experts into `c`. */
static moert_status read_params(const moert_host_api *host, const moert_create_context *ctx, int32_t E,
                                comet_router *c) {
    double gamma = 0;
    moert_status status = host->param_number(ctx, "gamma", &gamma);
    if (status == MOERT_ERR_OUT_OF_RANGE) {
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                           KIND ": parameter gamma (the smooth-step width, > 0) is required");
    }
    if (status != MOERT_OK) return status;
    const double a3 = -2.0 / (gamma * gamma * gamma), a1 = 3.0 / (2.0 * gamma);
    if (!isfinite(gamma) || !(gamma > 0) || !isfinite((float)a3) || !isfinite((float)a1) || !isfinite((float)gamma)) {
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                           KIND ": parameter gamma = %g: expected a finite number > 0 (float32 smooth-step coefficients must be finite)",
                           gamma);
    }
    c->lower = (float)(-gamma / 2);
    c->upper = (float)(gamma / 2);
    c->a3 = (float)a3;
    c->a1 = (float)a1;

    const char *variant = NULL;
    status = host->param_string(ctx, "variant", &variant);
    if (status == MOERT_ERR_OUT_OF_RANGE) {
        variant = "keras";
    } else if (status != MOERT_OK) {
        return status;
    }
    if (variant != NULL && strcmp(variant, "keras") == 0) {
        c->variant = VARIANT_KERAS;
        c->eps = 1e-8f;
    } else if (variant != NULL && strcmp(variant, "pytorch") == 0) {
        c->variant = VARIANT_PYTORCH;
        c->eps = 1e-6f;
        c->mask_below = 1e-5f;
    } else {
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                           KIND ": parameter variant = \"%s\": expected \"keras\" or \"pytorch\"",
                           variant != NULL ? variant : "");
    }

    double max_experts = E;
    status = host->param_number(ctx, "max_experts", &max_experts);
    if (status != MOERT_OK && status != MOERT_ERR_OUT_OF_RANGE) return status;
    if (status == MOERT_OK && (!(max_experts >= 1 && max_experts <= INT32_MAX) || max_experts != floor(max_experts))) {
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                           KIND ": parameter max_experts = %g: expected an integer >= 1", max_experts);
    }
    c->cap = max_experts < E ? (int32_t)max_experts : E;
    return MOERT_OK;
}

/** Checks that each Pi_t is a 0/1 permutation matrix and stores it as perm[t*E + j] = e. */
static moert_status read_permutation(const moert_host_api *host, const float *pi, int32_t k, int32_t E,
                                     int32_t *perm, int32_t *column_hits) {
    for (int32_t t = 0; t < k; t++) {
        memset(column_hits, 0, sizeof(int32_t) * (size_t)E);
        for (int32_t j = 0; j < E; j++) {
            const float *row = pi + ((size_t)t * (size_t)E + (size_t)j) * (size_t)E;
            int32_t ones = 0, at = -1;
            for (int32_t e = 0; e < E; e++) {
                if (row[e] == 1.0f) {
                    ones++;
                    at = e;
                } else if (row[e] != 0.0f) {
                    ones = -1;
                    break;
                }
            }
            if (ones != 1 || column_hits[at]++ != 0) {
                return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                                   KIND ": tensor router.permutation: tree %d is not a permutation matrix at row %d (entries must be 0 or 1, one 1 per row and per column)",
                                   (int)t, (int)j);
            }
            perm[(size_t)t * (size_t)E + (size_t)j] = at;
        }
    }
    return MOERT_OK;
}

static moert_status comet_create(const moert_host_api *host, const moert_create_context *ctx,
                                 const moert_layer_info *layer, moert_router_caps *caps, void **out_instance) {
    if (host == NULL || !MOERT_HOST_HAS(host, set_error)) return MOERT_ERR_PLUGIN;
    if (out_instance == NULL || layer == NULL || caps == NULL) {
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT, KIND ": create called with a NULL argument");
    }
    *out_instance = NULL;
    if (!MOERT_HOST_HAS(host, sgemm) || !MOERT_STRUCT_HAS(layer, moert_layer_info, n_experts) ||
        !MOERT_STRUCT_HAS(caps, moert_router_caps, max_experts_per_token)) {
        return plugin_fail(host->set_error, MOERT_ERR_PLUGIN,
                           KIND ": host tables are older than this plugin (struct_size too small)");
    }
    const int32_t H = layer->hidden_size, E = layer->n_experts;
    if (H < 1 || E < 1 || E > (1 << 24)) {
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT,
                           KIND ": layer %d has hidden_size %d and n_experts %d", (int)layer->layer, (int)H, (int)E);
    }

    // k, the number of trees, comes from router.leaf_weight [E, k, H].
    moert_tensor t;
    memset(&t, 0, sizeof t);
    t.struct_size = (uint32_t)sizeof t;
    moert_status status = host->layer_tensor(ctx, "router.leaf_weight", &t);
    if (status != MOERT_OK) return status;
    if (t.ndim != 3 || t.shape[0] != E || t.shape[2] != H || t.shape[1] < 1 || t.shape[1] > MAX_TREES) {
        char got[96];
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                           KIND ": tensor router.leaf_weight: expected shape [%d, k, %d] ([E, k, H], 1 <= k <= %d), got %s",
                           (int)E, (int)H, MAX_TREES, plugin_shape_text(&t, got, sizeof got));
    }
    const int32_t k = (int32_t)t.shape[1];
    if (2 * (int64_t)E * k > INT32_MAX) {
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT, KIND ": %d trees over %d experts is too large", (int)k,
                           (int)E);
    }

    // One block: the struct, leaf_node [E], perm [k, E] and a column counter [E] used while checking perm.
    const size_t head = (sizeof(comet_router) + 63) / 64 * 64;
    const size_t bytes = head + sizeof(int32_t) * ((size_t)E + (size_t)k * (size_t)E + (size_t)E);
    comet_router *c = (comet_router *)host->alloc(bytes, 0);
    if (c == NULL) {
        return plugin_fail(host->set_error, MOERT_ERR_OUT_OF_MEMORY, KIND ": out of memory for %zu bytes", bytes);
    }
    memset(c, 0, bytes);
    c->host.alloc = host->alloc;
    c->host.free = host->free;
    c->host.set_error = host->set_error;
    c->host.sgemm = host->sgemm;
    c->hidden = H;
    c->experts = E;
    c->trees = k;
    c->leaf_node = (int32_t *)((char *)c + head);
    int32_t *perm = c->leaf_node + E;
    int32_t *column_hits = perm + (size_t)k * (size_t)E;

    const int64_t leaf_w[3] = {E, k, H}, leaf_b[2] = {E, k}, node_w[3] = {E - 1, k, H}, node_b[2] = {E - 1, k};
    const int64_t pi_shape[3] = {k, E, E};
    const float *pi = NULL;
    const plugin_create_env env = {host, ctx, KIND};
    const plugin_tensor_lookup layer_tensor = host->layer_tensor;
    status = read_params(host, ctx, E, c);
    if (status == MOERT_OK) {
        status = plugin_float_tensor(&env, layer_tensor, "router.leaf_weight", 3, leaf_w, NULL, &c->leaf_w);
    }
    if (status == MOERT_OK) {
        status = plugin_float_tensor(&env, layer_tensor, "router.leaf_bias", 2, leaf_b, NULL, &c->leaf_b);
    }
    if (status == MOERT_OK && E > 1) {
        status = plugin_float_tensor(&env, layer_tensor, "router.node_weight", 3, node_w, NULL, &c->node_w);
        if (status == MOERT_OK) {
            status = plugin_optional_float_tensor(&env, layer_tensor, "router.node_bias", 2, node_b, NULL, &c->node_b);
        }
    }
    if (status == MOERT_OK) {
        status = plugin_optional_float_tensor(&env, layer_tensor, "router.permutation", 3, pi_shape, NULL, &pi);
    }
    if (status == MOERT_OK && pi != NULL) {
        status = read_permutation(host, pi, k, E, perm, column_hits);
        c->perm = perm;
    }
    if (status != MOERT_OK) {
        comet_destroy(c);
        return status;
    }
    int32_t leaves = 0;
    collect_leaves(0, E, c->leaf_node, &leaves);

    caps->max_experts_per_token = c->cap;
    *out_instance = c;
    return MOERT_OK;
}

/** The smooth-step S(u) (COMET's SmoothStep: 0 below -gamma/2, 1 above gamma/2, a cubic between). */
static float smooth_step(const comet_router *c, float u) {
    if (u <= c->lower) return 0.0f;
    if (u >= c->upper) return 1.0f;
    return c->a3 * (u * u * u) + c->a1 * u + 0.5f;
}

static moert_status comet_route(void *instance, const moert_router_input *input, moert_router_output *output) {
    const comet_router *c = (const comet_router *)instance;
    if (c == NULL || input == NULL || output == NULL) return MOERT_ERR_INVALID_ARGUMENT;
    char message[256];
    if (!MOERT_STRUCT_HAS(input, moert_router_input, x) || !MOERT_STRUCT_HAS(output, moert_router_output, counts)) {
        c->host.set_error(KIND ": router input/output structs are older than this plugin");
        return MOERT_ERR_PLUGIN;
    }
    const int32_t n = input->n_tokens, H = c->hidden, E = c->experts, k = c->trees, N = E - 1;
    if (n <= 0) return MOERT_OK;
    if (input->hidden_size != H || input->x == NULL) {
        snprintf(message, sizeof message, KIND ": input hidden_size %d, expected %d", (int)input->hidden_size, (int)H);
        c->host.set_error(message);
        return MOERT_ERR_PLUGIN;
    }
    if (output->max_per_token < c->cap || output->expert_ids == NULL || output->weights == NULL ||
        output->counts == NULL) {
        snprintf(message, sizeof message, KIND ": output rows hold %d experts, need %d", (int)output->max_per_token,
                 (int)c->cap);
        c->host.set_error(message);
        return MOERT_ERR_PLUGIN;
    }

    // Scratch: node pre-activations Z [n, (E-1)k], leaf scores A [n, Ek], then per token the path
    // probabilities P [2E-1, k], the scores s [k, E] and the expert weights w [E].
    const size_t nk = (size_t)N * (size_t)k, ek = (size_t)E * (size_t)k;
    const size_t floats = (size_t)n * (nk + ek) + (nk + ek) + ek + (size_t)E;
    float *scratch = (float *)c->host.alloc(floats * sizeof(float), 0);
    if (scratch == NULL) {
        snprintf(message, sizeof message, KIND ": out of memory for %zu bytes of scratch", floats * sizeof(float));
        c->host.set_error(message);
        return MOERT_ERR_OUT_OF_MEMORY;
    }
    float *zall = scratch;                   /* [n, (E-1)k] */
    float *aall = zall + (size_t)n * nk;     /* [n, Ek] */
    float *prob = aall + (size_t)n * ek;     /* [2E-1, k] */
    float *s = prob + nk + ek;               /* [k, E] */
    float *w = s + ek;                       /* [E] */

    // Z = X Z^T: [n, H] x [(E-1)k, H]^T -> [n, (E-1)k];  A = X A^T: [n, H] x [Ek, H]^T -> [n, Ek]
    if (N > 0) c->host.sgemm(0, 1, n, (int32_t)nk, H, 1.0f, input->x, H, c->node_w, H, 0.0f, zall, (int32_t)nk);
    c->host.sgemm(0, 1, n, (int32_t)ek, H, 1.0f, input->x, H, c->leaf_w, H, 0.0f, aall, (int32_t)ek);

    moert_status status = MOERT_OK;
    for (int32_t tok = 0; tok < n; tok++) {
        const float *z = zall + (size_t)tok * nk, *a = aall + (size_t)tok * ek;
        // routing probabilities, root to leaves (a parent's index is below its children's)
        for (int32_t t = 0; t < k; t++) prob[t] = 1.0f;
        for (int32_t node = 0; node < N; node++) {
            for (int32_t t = 0; t < k; t++) {
                const size_t i = (size_t)node * (size_t)k + (size_t)t;
                const float q = smooth_step(c, z[i] + (c->node_b != NULL ? c->node_b[i] : 0.0f));
                const float p = prob[i];
                prob[(size_t)(2 * node + 1) * (size_t)k + (size_t)t] = q * p;
                prob[(size_t)(2 * node + 2) * (size_t)k + (size_t)t] = (1.0f - q) * p;
            }
        }
        // leaf scores s[t, j] = a + log(P + eps); masked leaves are -inf (exp gives exactly 0)
        float m = -INFINITY;
        int finite = 1;
        for (int32_t t = 0; t < k; t++) {
            for (int32_t j = 0; j < E; j++) {
                const float p = prob[(size_t)c->leaf_node[j] * (size_t)k + (size_t)t];
                const size_t i = (size_t)j * (size_t)k + (size_t)t;
                const int masked = c->variant == VARIANT_KERAS ? p <= 0.0f : p < c->mask_below;
                float v = -INFINITY;
                if (!masked) {
                    v = a[i] + c->leaf_b[i] + logf(p + c->eps);
                    finite = finite && isfinite(v);
                    m = v > m ? v : m;
                }
                s[(size_t)t * (size_t)E + (size_t)j] = v;
            }
        }
        if (!finite) {
            snprintf(message, sizeof message, KIND ": token %d has non-finite router scores", (int)tok);
            c->host.set_error(message);
            status = MOERT_ERR_PLUGIN;
            break;
        }
        int32_t *ids = output->expert_ids + (size_t)tok * (size_t)output->max_per_token;
        float *weights = output->weights + (size_t)tok * (size_t)output->max_per_token;
        output->counts[tok] = 0;
        if (m == -INFINITY) continue;  // every leaf masked (only possible for E > 1e5 with "pytorch")
        // one softmax over all k*E scores
        float sum = 0.0f;
        for (size_t i = 0; i < ek; i++) {
            s[i] = expf(s[i] - m);
            sum += s[i];
        }
        // w_e = sum_t sum_j g[t, j] Pi_t[j, e], then normalised
        for (int32_t e = 0; e < E; e++) w[e] = 0.0f;
        for (int32_t t = 0; t < k; t++) {
            const int32_t *pt = c->perm != NULL ? c->perm + (size_t)t * (size_t)E : NULL;
            for (int32_t j = 0; j < E; j++) w[pt != NULL ? pt[j] : j] += s[(size_t)t * (size_t)E + (size_t)j] / sum;
        }
        float total = 0.0f;
        for (int32_t e = 0; e < E; e++) total += w[e];
        if (!(total > 0.0f) || !isfinite(total)) continue;
        // the non-zero experts, largest first, at most cap; renormalised when some were dropped
        int32_t count = 0, nonzero = 0;
        for (int32_t e = 0; e < E; e++) {
            const float v = w[e] / total;
            if (v > 0.0f) {
                nonzero++;
                plugin_topk_insert(ids, weights, &count, c->cap, e, v);
            }
        }
        if (nonzero > count) {
            float kept = 0.0f;
            for (int32_t i = 0; i < count; i++) kept += weights[i];
            for (int32_t i = 0; i < count; i++) weights[i] /= kept;
        }
        output->counts[tok] = count;
    }
    c->host.free(scratch);
    return status;
}

static const moert_router_ops comet_ops = {
    .struct_size = sizeof(moert_router_ops),
    .abi_version = MOERT_PLUGIN_ABI_VERSION,
    .name = KIND,
    .create = comet_create,
    .route = comet_route,
    .destroy = comet_destroy,
};

MOERT_PLUGIN_EXPORT moert_status moert_plugin_init(const moert_host_api *host, void *host_context) {
    moert_status status = MOERT_PLUGIN_CHECK_HOST(host, KIND, sgemm);
    if (status != MOERT_OK) return status;
    return host->register_router(host_context, &comet_ops);
}
