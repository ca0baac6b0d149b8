/* init_fails: a test plugin whose entry point refuses to load after registering a kind (which must be rolled back). */
#include <moert_plugin.h>

static moert_status x_create(const moert_host_api *h, const moert_create_context *c, const moert_layer_info *l,
                             moert_router_caps *caps, void **out) {
    (void)h; (void)c; (void)l; (void)caps; (void)out;
    return MOERT_ERR_INTERNAL;
}
static moert_status x_route(void *i, const moert_router_input *in, moert_router_output *out) {
    (void)i; (void)in; (void)out;
    return MOERT_ERR_INTERNAL;
}
static void x_destroy(void *i) { (void)i; }

static const moert_router_ops rolled_back_ops = {sizeof(moert_router_ops), MOERT_PLUGIN_ABI_VERSION, "rolled_back", x_create, x_route, x_destroy};

MOERT_PLUGIN_EXPORT moert_status moert_plugin_init(const moert_host_api *host, void *host_context) {
    host->register_router(host_context, &rolled_back_ops);
    host->set_error("this plugin refuses to load");
    return MOERT_ERR_PLUGIN;
}
