/* moepp: moert plugin (placeholder until implemented). */
#include <moert_plugin.h>

moert_status moert_plugin_init(const moert_host_api *host, void *host_context) {
    (void)host; (void)host_context;
    return MOERT_OK;
}
