/*
** gru.c — the `gru` router kind: the Layerwise Recurrent Router of RMoE (one recurrent cell shared by all layers).
**
** Math, per token, at MoE layer l (x: the MoE block input, h: the cell state left by the previous MoE layer, zeros
** at the first MoE layer of a forward pass):
**   u  = W1_l x                                                   [r]      (W1_l = P weight1, [r, H])
**   cell "gru" (PyTorch GRUCell equations):
**     r  = sigmoid(W_ir u + b_ir + W_hr h + b_hr)
**     z  = sigmoid(W_iz u + b_iz + W_hz h + b_hz)
**     n  = tanh(W_in u + b_in + r * (W_hn h + b_hn))
**     h' = (1 - z) * n + z * h
**   cell "rnn":  h' = tanh(W_in u + b_in + W_hn h + b_hn)
**   logits = W2_l h'                                              [E]      (W2_l = P weight2, [E, r])
**   p = softmax(logits) in float32 (max subtracted); the top_k largest p (ties: lower expert index first);
**   weights = p / sum of the chosen p when `normalize`, else p. h' replaces h in the state for the next MoE layer.
** The logits are written to the output's logits row; the state row of each token receives h'.
**
** Source: Z. Qiu et al., "Layerwise Recurrent Router for Mixture-of-Experts" (RMoE, 2024). Reference code
** qiuzh20/RMoE @ 9913a7f712: llama_moe_rnn/rnn.py (CustomGRUCell, CustomRNNCell),
** llama_moe_rnn/llama_moe_modeling.py (MixtralSparseMoeBlock with moe_router_type gru/rnn, LlamaModel.forward:
** router_previous = router_current), llama_moe_rnn/configuration_llama_moe_rnn.py.
**
** Params (moert section, router "params"):
**   cell           "gru" (default) or "rnn"
**   top_k          experts per token, integer in [1, E]; default: the layer's top_k
**   normalize      bool, default true: renormalise the chosen probabilities to sum to 1
**   global_prefix  full-name prefix of the shared cell, default "model.rnn_router."
** Tensors (F32/F16/BF16, delivered as float32; P = the layer's block prefix, G = global_prefix):
**   G weight_ir, G weight_iz, G weight_in, G weight_hr, G weight_hz, G weight_hn   [r, r]
**   G bias_ir,   G bias_iz,   G bias_in,   G bias_hr,   G bias_hz,   G bias_hn     [r]
**     (the rnn cell reads only the _in and _hn ones)
**   P weight1 [r, H], P weight2 [E, r]
** Declares max_experts_per_token = top_k and state_size = r.
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

#define KIND "gru"

/** The host functions route() and destroy() need, copied at create. */
typedef struct host_fns {
    void *(*alloc)(size_t size, size_t alignment);
    void (*free)(void *pointer);
    void (*set_error)(const char *message);
    void (*sgemm)(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k, float alpha,
                  const float *a, int32_t lda, const float *b, int32_t ldb, float beta, float *c, int32_t ldc);
} host_fns;

enum { CELL_GRU = 0, CELL_RNN = 1 };

/** Gate order of the shared tensors: r, z, n (input side "i", state side "h"). */
enum { GATE_R = 0, GATE_Z = 1, GATE_N = 2 };

/** One instance: borrowed tensor data (valid until destroy) and the layer's dimensions. Read-only after create. */
typedef struct gru_router {
    host_fns host;
    int32_t cell;
    int32_t hidden;     /* H */
    int32_t rank;       /* r, the cell width */
    int32_t experts;    /* E */
    int32_t top_k;
    int32_t normalize;
    const float *w1;    /* [r, H] */
    const float *w2;    /* [E, r] */
    const float *wi[3]; /* W_ir, W_iz, W_in  [r, r]; only [GATE_N] for the rnn cell */
    const float *wh[3]; /* W_hr, W_hz, W_hn  [r, r] */
    const float *bi[3]; /* b_ir, b_iz, b_in  [r] */
    const float *bh[3]; /* b_hr, b_hz, b_hn  [r] */
} gru_router;

/* ------------------------------------------------------------------------------------------------------------ */
/* Router ops                                                                                                   */
/* ------------------------------------------------------------------------------------------------------------ */

static void gru_destroy(void *instance) {
    if (instance == NULL) return;
    gru_router *g = (gru_router *)instance;
    g->host.free(g);
}

/** Fetches the shared cell tensors `<prefix>weight_<s><gate>` and `<prefix>bias_<s><gate>`, s in {i, h}. */
static moert_status cell_tensors(const plugin_create_env *env, const char *prefix, gru_router *g) {
    static const char gate_letter[3] = {'r', 'z', 'n'};
    char name[320], want_text[64];
    const int64_t r = g->rank;
    const int64_t square[2] = {r, r};
    const int64_t vector[1] = {r};
    for (int gate = g->cell == CELL_RNN ? GATE_N : GATE_R; gate <= GATE_N; gate++) {
        for (int side = 0; side < 2; side++) {
            const char s = side == 0 ? 'i' : 'h';
            const float **w = side == 0 ? &g->wi[gate] : &g->wh[gate];
            const float **b = side == 0 ? &g->bi[gate] : &g->bh[gate];
            moert_status status;
            snprintf(name, sizeof name, "%sweight_%c%c", prefix, s, gate_letter[gate]);
            snprintf(want_text, sizeof want_text, "[%lld, %lld] (r = %lld from weight1)", (long long)r,
                     (long long)r, (long long)r);
            status = plugin_float_tensor(env, env->host->model_tensor, name, 2, square, want_text, w);
            if (status != MOERT_OK) return status;
            snprintf(name, sizeof name, "%sbias_%c%c", prefix, s, gate_letter[gate]);
            snprintf(want_text, sizeof want_text, "[%lld] (r from weight1)", (long long)r);
            status = plugin_float_tensor(env, env->host->model_tensor, name, 1, vector, want_text, b);
            if (status != MOERT_OK) return status;
        }
    }
    return MOERT_OK;
}

static moert_status gru_create(const moert_host_api *host, const moert_create_context *ctx,
                               const moert_layer_info *layer, moert_router_caps *caps, void **out_instance) {
    if (host == NULL || !MOERT_HOST_HAS(host, set_error)) return MOERT_ERR_PLUGIN;
    if (out_instance == NULL || layer == NULL || caps == NULL) {
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT, KIND ": create called with a NULL argument");
    }
    *out_instance = NULL;
    if (!MOERT_HOST_HAS(host, sgemm) || !MOERT_STRUCT_HAS(layer, moert_layer_info, top_k) ||
        !MOERT_STRUCT_HAS(caps, moert_router_caps, state_size)) {
        return plugin_fail(host->set_error, MOERT_ERR_PLUGIN,
                           KIND ": host tables are older than this plugin (struct_size too small)");
    }
    const int32_t H = layer->hidden_size, E = layer->n_experts;
    if (H < 1 || E < 1) {
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT,
                           KIND ": layer %d has hidden_size %d and n_experts %d", (int)layer->layer, (int)H, (int)E);
    }

    // Parameters.
    const plugin_create_env env = {host, ctx, KIND};
    const char *cell = NULL, *prefix = NULL;
    int32_t top_k = 0, normalize = 1;
    moert_status status;
    if ((status = plugin_string_param(&env, "cell", "gru", &cell)) != MOERT_OK) return status;
    int32_t cell_kind;
    if (strcmp(cell, "gru") == 0) {
        cell_kind = CELL_GRU;
    } else if (strcmp(cell, "rnn") == 0) {
        cell_kind = CELL_RNN;
    } else {
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                           KIND ": parameter cell = \"%s\": expected \"gru\" or \"rnn\"", cell);
    }
    if ((status = plugin_int_param(&env, "top_k", -1, 1, E, &top_k)) != MOERT_OK) return status;
    if (top_k == -1) {
        top_k = layer->top_k;
        if (top_k < 1 || top_k > E) {
            return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                               KIND ": the layer's top_k %d is outside [1, %d] (its expert count)", (int)top_k, (int)E);
        }
    }
    if ((status = plugin_bool_param(&env, "normalize", 1, &normalize)) != MOERT_OK) return status;
    status = plugin_string_param(&env, "global_prefix", "model.rnn_router.", &prefix);
    if (status != MOERT_OK) return status;
    if (strlen(prefix) > 256) {
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                           KIND ": parameter global_prefix is longer than 256 characters");
    }

    // weight1 [r, H] fixes r; its first dimension is free.
    moert_tensor t1;
    memset(&t1, 0, sizeof t1);
    t1.struct_size = (uint32_t)sizeof t1;
    if ((status = host->layer_tensor(ctx, "weight1", &t1)) != MOERT_OK) return status;
    if (t1.ndim != 2 || t1.shape[0] < 1 || t1.shape[0] > (1 << 20)) {
        char got[96];
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                           KIND ": tensor weight1: expected shape [r, %d] with 1 <= r <= 1048576, got %s", (int)H,
                           plugin_shape_text(&t1, got, sizeof got));
    }
    const int32_t r = (int32_t)t1.shape[0];

    gru_router *g = (gru_router *)host->alloc(sizeof *g, 0);
    if (g == NULL) return plugin_fail(host->set_error, MOERT_ERR_OUT_OF_MEMORY, KIND ": out of memory");
    memset(g, 0, sizeof *g);
    g->host.alloc = host->alloc;
    g->host.free = host->free;
    g->host.set_error = host->set_error;
    g->host.sgemm = host->sgemm;
    g->cell = cell_kind;
    g->hidden = H;
    g->rank = r;
    g->experts = E;
    g->top_k = top_k;
    g->normalize = normalize;

    char want_text[64];
    const int64_t w1_shape[2] = {r, H}, w2_shape[2] = {E, r};
    snprintf(want_text, sizeof want_text, "[r, %d]", (int)H);
    status = plugin_float_tensor(&env, host->layer_tensor, "weight1", 2, w1_shape, want_text, &g->w1);
    if (status == MOERT_OK) {
        snprintf(want_text, sizeof want_text, "[%d, %d] ([E, r])", (int)E, (int)r);
        status = plugin_float_tensor(&env, host->layer_tensor, "weight2", 2, w2_shape, want_text, &g->w2);
    }
    if (status == MOERT_OK) status = cell_tensors(&env, prefix, g);
    if (status != MOERT_OK) {
        gru_destroy(g);
        return status;
    }

    caps->max_experts_per_token = top_k;
    caps->state_size = r;
    *out_instance = g;
    return MOERT_OK;
}

static float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

static moert_status gru_route(void *instance, const moert_router_input *input, moert_router_output *output) {
    const gru_router *g = (const gru_router *)instance;
    if (g == NULL || input == NULL || output == NULL) return MOERT_ERR_INVALID_ARGUMENT;
    char message[256];
    if (!MOERT_STRUCT_HAS(input, moert_router_input, state_stride) ||
        !MOERT_STRUCT_HAS(output, moert_router_output, logits)) {
        g->host.set_error(KIND ": router input/output structs are older than this plugin");
        return MOERT_ERR_PLUGIN;
    }
    const int32_t n = input->n_tokens, H = g->hidden, r = g->rank, E = g->experts, k = g->top_k;
    if (n <= 0) return MOERT_OK;
    if (input->hidden_size != H || input->x == NULL) {
        snprintf(message, sizeof message, KIND ": input hidden_size %d, expected %d", (int)input->hidden_size, (int)H);
        g->host.set_error(message);
        return MOERT_ERR_PLUGIN;
    }
    if (input->state == NULL || input->state_stride < r) {
        snprintf(message, sizeof message, KIND ": needs a state of %d floats per token, got %s with stride %d", (int)r,
                 input->state == NULL ? "none" : "one", (int)input->state_stride);
        g->host.set_error(message);
        return MOERT_ERR_PLUGIN;
    }
    if (output->max_per_token < k || output->expert_ids == NULL || output->weights == NULL || output->counts == NULL) {
        snprintf(message, sizeof message, KIND ": output rows hold %d experts, top_k is %d", (int)output->max_per_token,
                 (int)k);
        g->host.set_error(message);
        return MOERT_ERR_PLUGIN;
    }

    // Scratch: U, the input-side and state-side gate pre-activations, the softmax row, and the logits when the
    // caller gave no buffer for them.
    const size_t nr = (size_t)n * (size_t)r;
    const int gates = g->cell == CELL_RNN ? 1 : 3;
    const size_t floats = nr * (size_t)(1 + 2 * gates) + (size_t)E + (output->logits == NULL ? (size_t)n * E : 0);
    float *scratch = (float *)g->host.alloc(floats * sizeof(float), 0);
    if (scratch == NULL) {
        snprintf(message, sizeof message, KIND ": out of memory for %zu bytes of scratch", floats * sizeof(float));
        g->host.set_error(message);
        return MOERT_ERR_OUT_OF_MEMORY;
    }
    float *u = scratch;                                 /* [n, r] */
    float *gi[3] = {NULL, NULL, NULL}, *gh[3] = {NULL, NULL, NULL};
    for (int i = 0; i < gates; i++) {
        int gate = g->cell == CELL_RNN ? GATE_N : i;
        gi[gate] = u + nr * (size_t)(1 + i);            /* [n, r] */
        gh[gate] = u + nr * (size_t)(1 + gates + i);    /* [n, r] */
    }
    float *p = u + nr * (size_t)(1 + 2 * gates);        /* [E] */
    float *logits = output->logits != NULL ? output->logits : p + E;  /* [n, E] */
    float *h = input->state;                            /* [n, stride], h in, h' out */
    const int32_t ld = input->state_stride;

    // u = W1 x:  [n, H] x [r, H]^T -> [n, r]
    g->host.sgemm(0, 1, n, r, H, 1.0f, input->x, H, g->w1, H, 0.0f, u, r);
    // gate pre-activations: [n, r] x [r, r]^T -> [n, r], input side from u, state side from h
    for (int gate = 0; gate < 3; gate++) {
        if (gi[gate] == NULL) continue;
        g->host.sgemm(0, 1, n, r, r, 1.0f, u, r, g->wi[gate], r, 0.0f, gi[gate], r);
        g->host.sgemm(0, 1, n, r, r, 1.0f, h, ld, g->wh[gate], r, 0.0f, gh[gate], r);
    }
    // h' (written over h once every read of h is done)
    for (int32_t t = 0; t < n; t++) {
        float *ht = h + (size_t)t * (size_t)ld;
        const size_t row = (size_t)t * (size_t)r;
        for (int32_t i = 0; i < r; i++) {
            const float an = gi[GATE_N][row + i] + g->bi[GATE_N][i];
            const float hn = gh[GATE_N][row + i] + g->bh[GATE_N][i];
            if (g->cell == CELL_RNN) {
                ht[i] = tanhf(an + hn);
            } else {
                const float rg = sigmoidf(gi[GATE_R][row + i] + g->bi[GATE_R][i] + gh[GATE_R][row + i] + g->bh[GATE_R][i]);
                const float zg = sigmoidf(gi[GATE_Z][row + i] + g->bi[GATE_Z][i] + gh[GATE_Z][row + i] + g->bh[GATE_Z][i]);
                const float ng = tanhf(an + rg * hn);
                ht[i] = (1.0f - zg) * ng + zg * ht[i];
            }
        }
    }
    // logits = W2 h':  [n, r] x [E, r]^T -> [n, E]
    g->host.sgemm(0, 1, n, E, r, 1.0f, h, ld, g->w2, r, 0.0f, logits, E);

    // softmax (float32, max subtracted), top-k, optional renormalisation
    moert_status status = MOERT_OK;
    for (int32_t t = 0; t < n && status == MOERT_OK; t++) {
        const float *l = logits + (size_t)t * (size_t)E;
        float m = l[0];
        for (int32_t e = 1; e < E; e++) m = l[e] > m ? l[e] : m;
        float sum = 0.0f;
        for (int32_t e = 0; e < E; e++) {
            p[e] = expf(l[e] - m);
            sum += p[e];
        }
        if (!isfinite(m) || !isfinite(sum) || !(sum > 0.0f)) {
            snprintf(message, sizeof message, KIND ": token %d has non-finite router logits", (int)t);
            g->host.set_error(message);
            status = MOERT_ERR_PLUGIN;
            break;
        }
        int32_t *ids = output->expert_ids + (size_t)t * (size_t)output->max_per_token;
        float *w = output->weights + (size_t)t * (size_t)output->max_per_token;
        int32_t count = 0;
        for (int32_t e = 0; e < E; e++) plugin_topk_insert(ids, w, &count, k, e, p[e] / sum);
        if (g->normalize) {
            float chosen = 0.0f;
            for (int32_t j = 0; j < count; j++) chosen += w[j];
            for (int32_t j = 0; j < count; j++) w[j] /= chosen;
        }
        output->counts[t] = count;
    }
    g->host.free(scratch);
    return status;
}

static const moert_router_ops gru_ops = {
    .struct_size = sizeof(moert_router_ops),
    .abi_version = MOERT_PLUGIN_ABI_VERSION,
    .name = KIND,
    .create = gru_create,
    .route = gru_route,
    .destroy = gru_destroy,
};

MOERT_PLUGIN_EXPORT moert_status moert_plugin_init(const moert_host_api *host, void *host_context) {
    moert_status status = MOERT_PLUGIN_CHECK_HOST(host, KIND, sgemm);
    if (status != MOERT_OK) return status;
    return host->register_router(host_context, &gru_ops);
}
