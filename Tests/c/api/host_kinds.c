/* host_kinds.c — router and expert kinds the host registers in process, and moert_shutdown unregistering them. */
#include "api_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/** A host router instance: the layer's gate [n_experts, hidden] and what route() needs. */
typedef struct host_router {
    const moert_host_api *host;
    const float *gate;
    int32_t n_experts, hidden, top_k;
    int32_t mode; /* 0: softmax top-k as transformers; 1: an out-of-range expert id; 2: fail with a message */
} host_router;

/** Shared create(): reads the layer's own gate through the host table. */
static moert_status host_router_create_mode(const moert_host_api *host, const moert_create_context *ctx,
                                            const moert_layer_info *layer, void **out, int32_t mode) {
    moert_tensor gate;
    memset(&gate, 0, sizeof gate);
    gate.struct_size = sizeof gate;
    moert_status st = host->layer_tensor(ctx, "gate.weight", &gate);
    if (st != MOERT_OK) return st;
    if (gate.dtype != MOERT_TENSOR_F32 || gate.ndim != 2 || gate.shape[0] != layer->n_experts ||
        gate.shape[1] != layer->hidden_size) {
        host->set_error("c_test router: gate.weight is not [n_experts, hidden_size] float32");
        return MOERT_ERR_PLUGIN;
    }
    host_router *r = malloc(sizeof *r);
    if (!r) return MOERT_ERR_OUT_OF_MEMORY;
    *r = (host_router){host, gate.data, layer->n_experts, layer->hidden_size, layer->top_k, mode};
    *out = r;
    return MOERT_OK;
}

static moert_status host_router_create(const moert_host_api *host, const moert_create_context *ctx,
                                       const moert_layer_info *layer, moert_router_caps *caps, void **out) {
    (void)caps;
    return host_router_create_mode(host, ctx, layer, out, 0);
}
static moert_status host_router_create_bad_id(const moert_host_api *host, const moert_create_context *ctx,
                                              const moert_layer_info *layer, moert_router_caps *caps, void **out) {
    (void)caps;
    return host_router_create_mode(host, ctx, layer, out, 1);
}
static moert_status host_router_create_failing_route(const moert_host_api *host, const moert_create_context *ctx,
                                                     const moert_layer_info *layer, moert_router_caps *caps, void **out) {
    (void)caps;
    return host_router_create_mode(host, ctx, layer, out, 2);
}

/** Router logits of one token: logits[e] = gate[e] . x. */
static void router_logits(const host_router *r, const float *x, float *logits) {
    for (int32_t e = 0; e < r->n_experts; e++) {
        double acc = 0;
        for (int32_t h = 0; h < r->hidden; h++) acc += (double)r->gate[(size_t)e * (size_t)r->hidden + (size_t)h] * x[h];
        logits[e] = (float)acc;
    }
}

/**
 * route(): the Mixtral router (modeling_mixtral.py, MixtralSparseMoeBlock.forward): softmax over the router logits,
 * top-k, renormalised, i.e. a softmax over the k largest logits. Ties go to the lower expert id.
 */
static moert_status host_router_route(void *instance, const moert_router_input *in, moert_router_output *out) {
    const host_router *r = instance;
    float logits[64];
    if (r->mode == 2) {
        r->host->set_error("c_test.failing: route refused on purpose");
        return MOERT_ERR_PLUGIN;
    }
    for (int32_t t = 0; t < in->n_tokens; t++) {
        int32_t *ids = out->expert_ids + (size_t)t * (size_t)out->max_per_token;
        float *w = out->weights + (size_t)t * (size_t)out->max_per_token;
        router_logits(r, in->x + (size_t)t * (size_t)in->hidden_size, logits);
        if (out->logits) memcpy(out->logits + (size_t)t * (size_t)r->n_experts, logits, (size_t)r->n_experts * sizeof(float));
        uint64_t chosen = 0;
        double sum = 0;
        for (int32_t k = 0; k < r->top_k; k++) {
            int32_t best = -1;
            for (int32_t e = 0; e < r->n_experts; e++) {
                if (!(chosen >> e & 1) && (best < 0 || logits[e] > logits[best])) best = e;
            }
            chosen |= UINT64_C(1) << best;
            ids[k] = best;
            w[k] = expf(logits[best] - logits[ids[0]]);
            sum += w[k];
        }
        for (int32_t k = 0; k < r->top_k; k++) w[k] = (float)(w[k] / sum);
        if (r->mode == 1) ids[0] = r->n_experts;
        out->counts[t] = r->top_k;
    }
    return MOERT_OK;
}

static void host_router_destroy(void *instance) { free(instance); }

static const moert_router_ops host_topk_ops = {sizeof(moert_router_ops), MOERT_PLUGIN_ABI_VERSION, "c_test.topk",
                                               host_router_create, host_router_route, host_router_destroy};
static const moert_router_ops host_bad_id_ops = {sizeof(moert_router_ops), MOERT_PLUGIN_ABI_VERSION, "c_test.bad_id",
                                                 host_router_create_bad_id, host_router_route, host_router_destroy};
static const moert_router_ops host_failing_ops = {sizeof(moert_router_ops), MOERT_PLUGIN_ABI_VERSION, "c_test.failing",
                                                  host_router_create_failing_route, host_router_route,
                                                  host_router_destroy};
static const moert_router_ops host_wrong_abi_ops = {sizeof(moert_router_ops), MOERT_PLUGIN_ABI_VERSION + 1,
                                                    "c_test.wrong_abi", host_router_create, host_router_route,
                                                    host_router_destroy};
static const moert_router_ops host_no_route_ops = {sizeof(moert_router_ops), MOERT_PLUGIN_ABI_VERSION, "c_test.no_route",
                                                   host_router_create, NULL, host_router_destroy};

/** create() of an expert that is never called (F(x) = 0). */
static moert_status host_zero_create(const moert_host_api *host, const moert_create_context *ctx,
                                     const moert_layer_info *layer, void **out) {
    (void)host, (void)ctx, (void)layer;
    *out = NULL;
    return MOERT_OK;
}
static void host_zero_destroy(void *instance) { (void)instance; }
static const moert_expert_ops host_zero_ops = {sizeof(moert_expert_ops), MOERT_PLUGIN_ABI_VERSION, "c_test.zero",
                                               MOERT_EXPERT_ZERO_COMPUTE | MOERT_EXPERT_OUTPUT_ZERO, host_zero_create,
                                               NULL, host_zero_destroy};

/** Registration checks its tables: versions, functions, unique names. */
static void test_register(void) {
    group_begin("host kinds: registration");
    int32_t routers = moert_kind_count(MOERT_KIND_ROUTER), experts = moert_kind_count(MOERT_KIND_EXPERT);
    CHECK_STATUS(moert_register_router(&host_topk_ops), MOERT_OK, "register c_test.topk");
    CHECK_STATUS(moert_register_router(&host_bad_id_ops), MOERT_OK, "register c_test.bad_id");
    CHECK_STATUS(moert_register_router(&host_failing_ops), MOERT_OK, "register c_test.failing");
    CHECK_STATUS(moert_register_expert(&host_zero_ops), MOERT_OK, "register c_test.zero");
    CHECK(moert_kind_count(MOERT_KIND_ROUTER) == routers + 3 && find_kind(MOERT_KIND_ROUTER, "c_test.topk") >= 0,
          "registered routers are listed");
    CHECK(moert_kind_count(MOERT_KIND_EXPERT) == experts + 1 && find_kind(MOERT_KIND_EXPERT, "c_test.zero") >= 0,
          "registered experts are listed");
    CHECK_STATUS(moert_register_router(&host_topk_ops), MOERT_ERR_PLUGIN, "register c_test.topk twice");
    CHECK(strstr(moert_last_error(), "c_test.topk") != NULL, "message should name the kind: %s", moert_last_error());
    CHECK_STATUS(moert_register_router(&host_wrong_abi_ops), MOERT_ERR_PLUGIN, "register with a newer abi_version");
    CHECK_STATUS(moert_register_router(&host_no_route_ops), MOERT_ERR_PLUGIN, "register without route");
    CHECK_STATUS(moert_register_router(NULL), MOERT_ERR_INVALID_ARGUMENT, "register_router(NULL)");
    CHECK_STATUS(moert_register_expert(NULL), MOERT_ERR_INVALID_ARGUMENT, "register_expert(NULL)");
    CHECK(moert_kind_count(MOERT_KIND_ROUTER) == routers + 3, "refused registrations must not be listed");
    CHECK_STATUS(moert_plugin_load(NULL), MOERT_ERR_INVALID_ARGUMENT, "plugin_load(NULL)");
    CHECK_STATUS(moert_plugin_load("/nonexistent/libmoert_nothing.so"), MOERT_ERR_IO, "plugin_load of a missing file");
    CHECK(strstr(moert_last_error(), "/nonexistent/libmoert_nothing.so") != NULL, "message should name the path: %s",
          moert_last_error());
    group_end();
}

/** A router written here against moert_plugin.h reproduces transformers; bad output and errors are caught. */
static void test_host_router(const fixture *fx, moert_model *model) {
    group_begin("host kinds: router");
    moert_session *s = new_session(model, 0, 0), *builtin = new_session(model, 0, 0);
    float *logits = calloc(fx->n_prompt * fx->vocab, sizeof *logits);
    moert_trace mine, theirs;
    if (s && builtin && logits && CHECK_STATUS(moert_session_set_router(s, "c_test.topk", NULL), MOERT_OK, "set_router")) {
        CHECK_STATUS(moert_session_set_trace(s, 1), MOERT_OK, "trace");
        CHECK_STATUS(moert_session_set_trace(builtin, 1), MOERT_OK, "trace");
        double err = prompt_error(fx, s, logits);
        CHECK(err <= LOGITS_RTOL, "host router logits differ from transformers by %.3g", err);
        CHECK(prompt_error(fx, builtin, logits) <= LOGITS_RTOL, "built-in router logits");
        if (get_trace(s, &mine) && get_trace(builtin, &theirs) && mine.n_records == theirs.n_records) {
            size_t n = (size_t)mine.offsets[mine.n_records];
            CHECK(n == (size_t)theirs.offsets[theirs.n_records] &&
                      memcmp(mine.expert_ids, theirs.expert_ids, n * sizeof(int32_t)) == 0,
                  "host and built-in routers chose different experts");
            CHECK(rel_error(mine.weights, theirs.weights, n) <= 1e-5, "host and built-in routing weights differ");
        }
        CHECK_STATUS(moert_session_set_router(s, "c_test.bad_id", NULL), MOERT_OK, "set_router bad_id");
        CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_NONE, NULL, 0), MOERT_ERR_PLUGIN,
                     "an expert id out of range must fail the evaluation");
        CHECK_STATUS(moert_session_set_router(s, "c_test.failing", NULL), MOERT_OK, "set_router failing");
        CHECK_STATUS(moert_session_reset(s), MOERT_OK, "reset");
        CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_NONE, NULL, 0), MOERT_ERR_PLUGIN,
                     "a failing route must fail the evaluation");
        CHECK(strstr(moert_last_error(), "route refused on purpose") != NULL, "the router's message should be kept: %s",
              moert_last_error());
        CHECK_STATUS(moert_session_set_router(s, NULL, NULL), MOERT_OK, "restore");
        CHECK(prompt_error(fx, s, logits) <= LOGITS_RTOL, "the session works again after a reset");
    }
    moert_session_free(s);
    moert_session_free(builtin);
    free(logits);
    group_end();
}

void test_host_kinds(const fixture *fx, moert_model *model) {
    test_register();
    test_host_router(fx, model);
}

/** moert_shutdown refuses while models live, then unregisters host kinds once none does. */
void test_shutdown(const char *root) {
    group_begin("shutdown");
    char dir[1200];
    moert_model *model = NULL;
    snprintf(dir, sizeof dir, "%s/mixtral", root);
    CHECK_STATUS(moert_model_load(dir, NULL, &model), MOERT_OK, "load");
    CHECK_STATUS(moert_shutdown(), MOERT_ERR_INVALID_ARGUMENT, "shutdown with a model alive");
    CHECK(find_kind(MOERT_KIND_ROUTER, "c_test.topk") >= 0, "a refused shutdown must keep the kinds");
    moert_model_free(model);
    CHECK_STATUS(moert_shutdown(), MOERT_OK, "shutdown with no model alive");
    CHECK(find_kind(MOERT_KIND_ROUTER, "c_test.topk") < 0 && find_kind(MOERT_KIND_EXPERT, "c_test.zero") < 0,
          "host kinds must be unregistered by shutdown");
    CHECK(find_kind(MOERT_KIND_ROUTER, "topk") >= 0 && find_kind(MOERT_KIND_EXPERT, "ffn") >= 0,
          "built-in kinds survive shutdown");
    group_end();
}
