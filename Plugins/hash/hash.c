/*
** hash.c — the `hash` router kind: Hash Layers, where the experts of a token depend only on its token id.
**
** Math, per token with id v (the id of the position being computed):
**   table [vocab]     -> expert table[v], weight 1
**   table [vocab, c]  -> experts table[v, 0..c-1], weight 1/c each (a moert extension: the paper's MultiHash
**                        concatenates expert segments instead); an expert listed m times in a row is returned
**                        once with weight m/c, which gives the same mixture
**   no table and fallback "splitmix64" -> expert splitmix64(v) mod E, weight 1, where splitmix64 is the output
**                        function of Vigna's SplitMix64 generator applied to the state v + 0x9e3779b97f4a7c15:
**                          z = v + 0x9e3779b97f4a7c15
**                          z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
**                          z = (z ^ (z >> 27)) * 0x94d049bb133111eb
**                          z ^ (z >> 31)
**                        (64-bit unsigned arithmetic; v >= 0). Deterministic, but compatible with no trained model.
** Experts are listed in table order (first occurrence). No logits (the method has none).
**
** Source: S. Roller, S. Sukhbaatar, A. Szlam, J. Weston, "Hash Layers For Large Sparse Models" (NeurIPS 2021).
** Reference code facebookresearch/ParlAI projects/params_vs_compute/hash_ladder/hash_ladder.py (HashLayerFFN:
** one expert per token id, weight 1); balanced tables: mazumder-lab/COMET-BERT hash_balance.py, and
** src/transformers/cometbert/moe_layer.py (_forward_hash). The table itself is built offline and shipped.
**
** Params (moert section, router "params"):
**   table     tensor name relative to the block prefix P, default "router.hash_table"
**   fallback  "splitmix64" to route by the hash above when the checkpoint has no table; default none (the
**             table is then required)
** Tensors: P router.hash_table, I32, [vocab] or [vocab, c] with vocab = the model's vocab_size, c >= 1, every
**   entry in [0, E) (checked at create).
** Declares max_experts_per_token = min(c, E) (1 for a [vocab] table or the fallback).
**
** Threads: an instance is read-only after create and route() uses no scratch, so it may run concurrently on one
** instance. The host table is copied at create (the pointer passed to create is borrowed for that call only).
**
** Expert kind `hash.relu_ffn` — the experts of Hash Layers (ParlAI HashLayerFFN's linears1[i] / linears2[i]): a
** ReLU FFN with biases, F(x) = W2 relu(W1 x + b1) + b2, its output replacing the FFN's with the router's weight.
** Tensors (under the expert's prefix P experts.<e>.): linear1.weight W1 [I, H], linear1.bias b1 [I],
** linear2.weight W2 [H, I], linear2.bias b2 [H]; the width I is read from linear1.weight. No params.
** forward() keeps its scratch on the stack (I is walked in slices), so it may run concurrently on one instance.
*/
#include <moert_plugin.h>

#include "plugin_support.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define KIND "hash"

/** One instance. `table` is borrowed from the model (valid until destroy); NULL in fallback mode. */
typedef struct hash_router {
    void (*free)(void *pointer);
    void (*set_error)(const char *message);
    const int32_t *table;  /* [vocab, columns] */
    int64_t vocab;         /* rows of the table; the model's vocab_size in fallback mode (0: unknown) */
    int32_t columns;       /* c */
    int32_t experts;       /* E */
    int32_t max_per_token; /* min(c, E) */
} hash_router;

/** SplitMix64's output for state v + golden gamma (Steele, Lea, Flood 2014; Vigna's splitmix64.c constants). */
static uint64_t splitmix64(uint64_t v) {
    uint64_t z = v + UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void hash_destroy(void *instance) {
    if (instance == NULL) return;
    hash_router *h = (hash_router *)instance;
    h->free(h);
}

static moert_status hash_create(const moert_host_api *host, const moert_create_context *ctx,
                                const moert_layer_info *layer, moert_router_caps *caps, void **out_instance) {
    if (host == NULL || !MOERT_HOST_HAS(host, set_error)) return MOERT_ERR_PLUGIN;
    if (out_instance == NULL || layer == NULL || caps == NULL) {
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT, KIND ": create called with a NULL argument");
    }
    *out_instance = NULL;
    if (!MOERT_HOST_HAS(host, param_string) || !MOERT_STRUCT_HAS(layer, moert_layer_info, vocab_size) ||
        !MOERT_STRUCT_HAS(caps, moert_router_caps, max_experts_per_token)) {
        return plugin_fail(host->set_error, MOERT_ERR_PLUGIN,
                           KIND ": host tables are older than this plugin (struct_size too small)");
    }
    const int32_t E = layer->n_experts;
    if (E < 1) {
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT, KIND ": layer %d has %d experts",
                           (int)layer->layer, (int)E);
    }

    const plugin_create_env env = {host, ctx, KIND};
    const char *table_name = NULL, *fallback = NULL;
    moert_status status;
    if ((status = plugin_string_param(&env, "table", "router.hash_table", &table_name)) != MOERT_OK) return status;
    if ((status = plugin_string_param(&env, "fallback", NULL, &fallback)) != MOERT_OK) return status;
    if (fallback != NULL && strcmp(fallback, "splitmix64") != 0) {
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                           KIND ": parameter fallback = \"%s\": the only fallback is \"splitmix64\"", fallback);
    }

    moert_tensor t;
    memset(&t, 0, sizeof t);
    t.struct_size = (uint32_t)sizeof t;
    status = host->layer_tensor(ctx, table_name, &t);
    if (status != MOERT_OK && fallback == NULL) return status;  // the host named the missing or unreadable tensor

    hash_router *h = (hash_router *)host->alloc(sizeof *h, 0);
    if (h == NULL) return plugin_fail(host->set_error, MOERT_ERR_OUT_OF_MEMORY, KIND ": out of memory");
    memset(h, 0, sizeof *h);
    h->free = host->free;
    h->set_error = host->set_error;
    h->experts = E;

    if (status != MOERT_OK) {
        // No readable table: the fallback hash. (A table present in an unreadable dtype stays unused, and the model
        // load then fails naming it.)
        h->vocab = layer->vocab_size > 0 ? layer->vocab_size : 0;
        h->columns = 1;
        h->max_per_token = 1;
        status = MOERT_OK;
    } else {
        const int64_t vocab = t.shape[0];
        const int64_t c = t.ndim == 2 ? t.shape[1] : 1;
        char got[96];
        plugin_shape_text(&t, got, sizeof got);
        if (t.dtype != MOERT_TENSOR_I32) {
            status = plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                                 KIND ": tensor %s: expected an I32 table, got a float tensor %s", table_name, got);
        } else if ((t.ndim != 1 && t.ndim != 2) || vocab != layer->vocab_size || c < 1 || c > INT32_MAX ||
                   t.data == NULL) {
            status = plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                                 KIND ": tensor %s: expected shape [%d] or [%d, c] (vocab_size, c >= 1), got %s",
                                 table_name, (int)layer->vocab_size, (int)layer->vocab_size, got);
        } else {
            const int32_t *table = (const int32_t *)t.data;
            for (int64_t i = 0; i < vocab * c && status == MOERT_OK; i++) {
                if (table[i] < 0 || table[i] >= E) {
                    if (t.ndim == 1) {
                        status = plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                                             KIND ": tensor %s: entry [%lld] = %d is outside [0, %d)", table_name,
                                             (long long)i, (int)table[i], (int)E);
                    } else {
                        status = plugin_fail(host->set_error, MOERT_ERR_FORMAT,
                                             KIND ": tensor %s: entry [%lld, %lld] = %d is outside [0, %d)", table_name,
                                             (long long)(i / c), (long long)(i % c), (int)table[i], (int)E);
                    }
                }
            }
            h->table = table;
            h->vocab = vocab;
            h->columns = (int32_t)c;
            h->max_per_token = c < E ? (int32_t)c : E;
        }
    }
    if (status != MOERT_OK) {
        hash_destroy(h);
        return status;
    }
    caps->max_experts_per_token = h->max_per_token;
    *out_instance = h;
    return MOERT_OK;
}

static moert_status hash_route(void *instance, const moert_router_input *input, moert_router_output *output) {
    const hash_router *h = (const hash_router *)instance;
    if (h == NULL || input == NULL || output == NULL) return MOERT_ERR_INVALID_ARGUMENT;
    char message[256];
    if (!MOERT_STRUCT_HAS(input, moert_router_input, token_ids) ||
        !MOERT_STRUCT_HAS(output, moert_router_output, counts)) {
        h->set_error(KIND ": router input/output structs are older than this plugin");
        return MOERT_ERR_PLUGIN;
    }
    const int32_t n = input->n_tokens;
    if (n <= 0) return MOERT_OK;
    if (input->token_ids == NULL || output->expert_ids == NULL || output->weights == NULL || output->counts == NULL ||
        output->max_per_token < h->max_per_token) {
        snprintf(message, sizeof message, KIND ": missing token ids or output rows (capacity %d, need %d)",
                 (int)output->max_per_token, (int)h->max_per_token);
        h->set_error(message);
        return MOERT_ERR_PLUGIN;
    }
    const int32_t c = h->columns;
    for (int32_t t = 0; t < n; t++) {
        const int32_t v = input->token_ids[t];
        if (v < 0 || (h->vocab > 0 && v >= h->vocab)) {
            snprintf(message, sizeof message, KIND ": token %d has id %d, outside [0, %lld)", (int)t, (int)v,
                     (long long)h->vocab);
            h->set_error(message);
            return MOERT_ERR_PLUGIN;
        }
        int32_t *ids = output->expert_ids + (size_t)t * (size_t)output->max_per_token;
        float *w = output->weights + (size_t)t * (size_t)output->max_per_token;
        if (h->table == NULL) {
            ids[0] = (int32_t)(splitmix64((uint64_t)v) % (uint64_t)h->experts);
            w[0] = 1.0f;
            output->counts[t] = 1;
            continue;
        }
        // A row of c ids; repeated ids are merged (their multiplicity m gives weight m/c).
        const int32_t *row = h->table + (size_t)v * (size_t)c;
        int32_t count = 0;
        for (int32_t j = 0; j < c; j++) {
            int32_t i = 0;
            while (i < count && ids[i] != row[j]) i++;
            if (i == count) {
                ids[count] = row[j];
                w[count] = 0.0f;
                count++;
            }
            w[i] += 1.0f;
        }
        for (int32_t i = 0; i < count; i++) w[i] /= (float)c;  // m/c, correctly rounded (exactly 1 when c = 1)
        output->counts[t] = count;
    }
    return MOERT_OK;
}

static const moert_router_ops hash_ops = {
    .struct_size = sizeof(moert_router_ops),
    .abi_version = MOERT_PLUGIN_ABI_VERSION,
    .name = KIND,
    .create = hash_create,
    .route = hash_route,
    .destroy = hash_destroy,
};

/* ------------------------------------------------------------------------------------------------------------ */
/* Expert `hash.relu_ffn`                                                                                        */
/* ------------------------------------------------------------------------------------------------------------ */

#define RELU_KIND "hash.relu_ffn"
#define RELU_SLICE 256 /* intermediate units computed per pass of forward() */

/** One expert: borrowed float32 weights (valid until destroy). */
typedef struct relu_ffn {
    void (*free)(void *pointer);
    void (*set_error)(const char *message);
    int32_t hidden, width;                   /* H, I */
    const float *w1, *b1, *w2, *b2;          /* [I, H], [I], [H, I], [H] */
} relu_ffn;

static void relu_ffn_destroy(void *instance) {
    if (instance == NULL) return;
    relu_ffn *f = (relu_ffn *)instance;
    f->free(f);
}

static moert_status relu_ffn_create(const moert_host_api *host, const moert_create_context *ctx,
                                    const moert_layer_info *layer, void **out_instance) {
    if (host == NULL || !MOERT_HOST_HAS(host, set_error)) return MOERT_ERR_PLUGIN;
    if (out_instance == NULL || layer == NULL) {
        return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT, RELU_KIND ": create called with a NULL argument");
    }
    *out_instance = NULL;
    const int64_t h = layer->hidden_size;
    if (h < 1) return plugin_fail(host->set_error, MOERT_ERR_INVALID_ARGUMENT, RELU_KIND ": hidden size %lld", (long long)h);

    // The width comes from linear1.weight; plugin_float_tensor then checks every shape against it.
    moert_tensor t;
    memset(&t, 0, sizeof t);
    t.struct_size = (uint32_t)sizeof t;
    moert_status status = host->layer_tensor(ctx, "linear1.weight", &t);
    if (status != MOERT_OK) return status;  // the host named the missing tensor
    if (t.ndim != 2 || t.shape[0] < 1 || t.shape[0] > INT32_MAX) {
        char got[96];
        return plugin_fail(host->set_error, MOERT_ERR_FORMAT, RELU_KIND ": tensor linear1.weight: expected [I, %lld], got %s",
                           (long long)h, plugin_shape_text(&t, got, sizeof got));
    }
    const int64_t width = t.shape[0];
    relu_ffn f = {host->free, host->set_error, (int32_t)h, (int32_t)width, NULL, NULL, NULL, NULL};
    const plugin_create_env env = {host, ctx, RELU_KIND};
    const int64_t w1[2] = {width, h}, b1[1] = {width}, w2[2] = {h, width}, b2[1] = {h};
    if ((status = plugin_float_tensor(&env, host->layer_tensor, "linear1.weight", 2, w1, "[I, H]", &f.w1)) != MOERT_OK ||
        (status = plugin_float_tensor(&env, host->layer_tensor, "linear1.bias", 1, b1, "[I]", &f.b1)) != MOERT_OK ||
        (status = plugin_float_tensor(&env, host->layer_tensor, "linear2.weight", 2, w2, "[H, I]", &f.w2)) != MOERT_OK ||
        (status = plugin_float_tensor(&env, host->layer_tensor, "linear2.bias", 1, b2, "[H]", &f.b2)) != MOERT_OK) {
        return status;
    }
    relu_ffn *instance = (relu_ffn *)host->alloc(sizeof *instance, 0);
    if (instance == NULL) return plugin_fail(host->set_error, MOERT_ERR_OUT_OF_MEMORY, RELU_KIND ": out of memory");
    *instance = f;
    *out_instance = instance;
    return MOERT_OK;
}

/* y = W2 relu(W1 x + b1) + b2 per token, RELU_SLICE intermediate units at a time. */
static moert_status relu_ffn_forward(void *instance, const float *x, int32_t n_tokens, int32_t hidden_size, float *y) {
    const relu_ffn *f = (const relu_ffn *)instance;
    if (f == NULL) return MOERT_ERR_PLUGIN;
    if (n_tokens < 0 || hidden_size != f->hidden || (n_tokens > 0 && (x == NULL || y == NULL))) {
        return plugin_fail(f->set_error, MOERT_ERR_INVALID_ARGUMENT,
                           RELU_KIND ": called with %d tokens of width %d (hidden size %d)", (int)n_tokens,
                           (int)hidden_size, (int)f->hidden);
    }
    const size_t h = (size_t)f->hidden, width = (size_t)f->width;
    float a[RELU_SLICE];
    for (int32_t t = 0; t < n_tokens; t++) {
        const float *xt = x + (size_t)t * h;
        float *yt = y + (size_t)t * h;
        memcpy(yt, f->b2, h * sizeof *yt);
        for (size_t j0 = 0; j0 < width; j0 += RELU_SLICE) {
            const size_t m = width - j0 < RELU_SLICE ? width - j0 : RELU_SLICE;
            for (size_t j = 0; j < m; j++) {
                const float *row = f->w1 + (j0 + j) * h;
                float s = f->b1[j0 + j];
                for (size_t i = 0; i < h; i++) s += row[i] * xt[i];
                a[j] = s > 0.0f ? s : 0.0f;
            }
            for (size_t i = 0; i < h; i++) {
                const float *row = f->w2 + i * width + j0;
                float s = 0.0f;
                for (size_t j = 0; j < m; j++) s += row[j] * a[j];
                yt[i] += s;
            }
        }
    }
    return MOERT_OK;
}

static const moert_expert_ops relu_ffn_ops = {
    .struct_size = sizeof(moert_expert_ops),
    .abi_version = MOERT_PLUGIN_ABI_VERSION,
    .name = RELU_KIND,
    .flags = 0,
    .create = relu_ffn_create,
    .forward = relu_ffn_forward,
    .destroy = relu_ffn_destroy,
};

MOERT_PLUGIN_EXPORT moert_status moert_plugin_init(const moert_host_api *host, void *host_context) {
    moert_status status = MOERT_PLUGIN_CHECK_HOST(host, KIND, param_string);
    if (status != MOERT_OK) return status;
    if ((status = host->register_router(host_context, &hash_ops)) != MOERT_OK) return status;
    return host->register_expert(host_context, &relu_ffn_ops);
}
