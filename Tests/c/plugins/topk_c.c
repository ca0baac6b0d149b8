/* topk_c: a test plugin that re-implements moert's built-in softmax top-k router (kind "topk_c").
** It performs the same float32 operations in the same order as the built-in, so logits must be bit-identical;
** the benchmark uses it to measure the cost of routing through the plugin ABI. */
#include <math.h>
#include <string.h>
#include <moert_plugin.h>

typedef struct topk_router {
    const moert_host_api *host;
    const float *gate;   /* [E, H] */
    int32_t n_experts, hidden, top_k, normalize;
} topk_router;

static moert_status topk_create(const moert_host_api *host, const moert_create_context *ctx, const moert_layer_info *layer,
                                moert_router_caps *caps, void **out) {
    moert_tensor t;
    memset(&t, 0, sizeof t);
    t.struct_size = sizeof t;
    moert_status s = host->layer_tensor(ctx, "gate.weight", &t);
    if (s != MOERT_OK) return s;
    if (t.dtype != MOERT_TENSOR_F32 || t.ndim != 2 || t.shape[0] != layer->n_experts || t.shape[1] != layer->hidden_size) {
        host->set_error("gate.weight has the wrong shape");
        return MOERT_ERR_FORMAT;
    }
    double k = layer->top_k, normalize = 1;
    host->param_number(ctx, "top_k", &k);
    host->param_number(ctx, "normalize", &normalize);
    if (k < 1 || k > layer->n_experts) {
        host->set_error("top_k out of range");
        return MOERT_ERR_INVALID_ARGUMENT;
    }
    topk_router *r = host->alloc(sizeof *r, 0);
    if (!r) return MOERT_ERR_OUT_OF_MEMORY;
    r->host = host;
    r->gate = t.data;
    r->n_experts = layer->n_experts;
    r->hidden = layer->hidden_size;
    r->top_k = (int32_t)k;
    r->normalize = normalize != 0;
    caps->max_experts_per_token = r->top_k;
    *out = r;
    return MOERT_OK;
}

static moert_status topk_route(void *instance, const moert_router_input *in, moert_router_output *out) {
    const topk_router *r = instance;
    int32_t n = in->n_tokens, e = r->n_experts, k = r->top_k;
    /* logits [n, E] = x [n, H] · gate^T */
    r->host->sgemm(0, 1, n, e, r->hidden, 1.0f, in->x, r->hidden, r->gate, r->hidden, 0.0f, out->logits, e);
    float p[256];
    if (e > 256) return MOERT_ERR_INVALID_ARGUMENT;
    for (int32_t t = 0; t < n; t++) {
        const float *row = out->logits + (size_t)t * e;
        float m = -INFINITY, sum = 0;
        for (int32_t i = 0; i < e; i++) if (row[i] > m) m = row[i];
        for (int32_t i = 0; i < e; i++) { p[i] = expf(row[i] - m); sum += p[i]; }
        float inv = 1 / sum;
        for (int32_t i = 0; i < e; i++) p[i] *= inv;
        int32_t *ids = out->expert_ids + (size_t)t * out->max_per_token;
        float *w = out->weights + (size_t)t * out->max_per_token;
        int32_t filled = 0;
        for (int32_t i = 0; i < e; i++) {
            int32_t pos = filled;
            while (pos > 0 && p[i] > w[pos - 1]) pos--;
            if (pos >= k) continue;
            for (int32_t j = filled < k ? filled : k - 1; j > pos; j--) { w[j] = w[j - 1]; ids[j] = ids[j - 1]; }
            w[pos] = p[i];
            ids[pos] = i;
            if (filled < k) filled++;
        }
        if (r->normalize) {
            float s = 0;
            for (int32_t j = 0; j < k; j++) s += w[j];
            for (int32_t j = 0; j < k; j++) w[j] /= s;
        }
        out->counts[t] = k;
    }
    return MOERT_OK;
}

static void topk_destroy(void *instance) {
    if (instance) ((topk_router *)instance)->host->free(instance);
}

static const moert_router_ops topk_ops = {
    sizeof(moert_router_ops), MOERT_PLUGIN_ABI_VERSION, "topk_c", topk_create, topk_route, topk_destroy,
};

MOERT_PLUGIN_EXPORT moert_status moert_plugin_init(const moert_host_api *host, void *host_context) {
    moert_status s = MOERT_PLUGIN_CHECK_HOST(host, "topk_c", sgemm);
    if (s != MOERT_OK) return s;
    return host->register_router(host_context, &topk_ops);
}
