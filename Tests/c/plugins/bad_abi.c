/* bad_abi: a test plugin built against a future plugin ABI: its router table says ABI version 99. */
#include <moert_plugin.h>

static moert_status never_create(const moert_host_api *h, const moert_create_context *c, const moert_layer_info *l,
                                 moert_router_caps *caps, void **out) {
    (void)h; (void)c; (void)l; (void)caps; (void)out;
    return MOERT_ERR_INTERNAL;
}
static moert_status never_route(void *i, const moert_router_input *in, moert_router_output *out) {
    (void)i; (void)in; (void)out;
    return MOERT_ERR_INTERNAL;
}
static void never_destroy(void *i) { (void)i; }

static const moert_router_ops future_ops = {sizeof(moert_router_ops), 99, "future", never_create, never_route, never_destroy};

MOERT_PLUGIN_EXPORT moert_status moert_plugin_init(const moert_host_api *host, void *host_context) {
    return host->register_router(host_context, &future_ops);
}
