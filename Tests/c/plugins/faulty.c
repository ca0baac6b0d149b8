/* faulty: a test plugin whose router kind "faulty" misbehaves on purpose, chosen by the "mode" parameter:
** "bad_id" (expert id out of range), "nan" (NaN weight), "negative" (negative weight), "too_many" (count above the
** declared maximum), "create_fails" (create returns an error), "route_fails" (route returns an error), or "ok". */
#include <math.h>
#include <string.h>
#include <moert_plugin.h>

typedef struct faulty_router { const moert_host_api *host; int mode; int32_t n_experts; } faulty_router;

enum { OK, BAD_ID, NAN_WEIGHT, NEGATIVE, TOO_MANY, ROUTE_FAILS };

static moert_status faulty_create(const moert_host_api *host, const moert_create_context *ctx, const moert_layer_info *layer,
                                  moert_router_caps *caps, void **out) {
    const char *mode = "ok";
    host->param_string(ctx, "mode", &mode);
    int m;
    if (!strcmp(mode, "ok")) m = OK;
    else if (!strcmp(mode, "bad_id")) m = BAD_ID;
    else if (!strcmp(mode, "nan")) m = NAN_WEIGHT;
    else if (!strcmp(mode, "negative")) m = NEGATIVE;
    else if (!strcmp(mode, "too_many")) m = TOO_MANY;
    else if (!strcmp(mode, "route_fails")) m = ROUTE_FAILS;
    else {
        host->set_error("create failed on purpose");
        return MOERT_ERR_PLUGIN;
    }
    faulty_router *r = host->alloc(sizeof *r, 0);
    if (!r) return MOERT_ERR_OUT_OF_MEMORY;
    r->host = host;
    r->mode = m;
    r->n_experts = layer->n_experts;
    caps->max_experts_per_token = 1;
    *out = r;
    return MOERT_OK;
}

static moert_status faulty_route(void *instance, const moert_router_input *in, moert_router_output *out) {
    const faulty_router *r = instance;
    if (r->mode == ROUTE_FAILS) {
        r->host->set_error("route failed on purpose");
        return MOERT_ERR_PLUGIN;
    }
    for (int32_t t = 0; t < in->n_tokens; t++) {
        out->expert_ids[t] = r->mode == BAD_ID ? r->n_experts : 0;
        out->weights[t] = r->mode == NAN_WEIGHT ? NAN : r->mode == NEGATIVE ? -1.0f : 1.0f;
        out->counts[t] = r->mode == TOO_MANY ? 2 : 1;
    }
    return MOERT_OK;
}

static void faulty_destroy(void *instance) {
    if (instance) ((faulty_router *)instance)->host->free(instance);
}

static const moert_router_ops faulty_ops = {
    sizeof(moert_router_ops), MOERT_PLUGIN_ABI_VERSION, "faulty", faulty_create, faulty_route, faulty_destroy,
};

MOERT_PLUGIN_EXPORT moert_status moert_plugin_init(const moert_host_api *host, void *host_context) {
    moert_status s = MOERT_PLUGIN_CHECK_HOST(host, "faulty", param_string);
    if (s != MOERT_OK) return s;
    return host->register_router(host_context, &faulty_ops);
}
