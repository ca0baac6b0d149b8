/* loading.c — dlopen()ing a router plugin: its one entry point, its refusals of foreign host tables, its kinds. */
#define _POSIX_C_SOURCE 200809L

#include "router_test.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/** The message of a refused host table names the kind (libmoert_<kind>.so), both ABI versions and table sizes. */
static void expect_refusal_message(const char *path, const moert_host_api *host) {
    char want[256], name[400];
    const char *kind = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
    if (strncmp(kind, "libmoert_", 9) == 0) kind += 9;
    snprintf(want, sizeof want, "%.*s: built for plugin ABI %d (host table of %zu bytes), host has ABI %u (%u bytes)",
             (int)strcspn(kind, "."), kind, MOERT_PLUGIN_ABI_VERSION, sizeof(moert_host_api),
             (unsigned)host->abi_version, (unsigned)host->struct_size);
    snprintf(name, sizeof name, "%s says why: %s", path, want);
    check(strcmp(last_error, want) == 0, name, "message \"%s\"", last_error);
}

void load_plugin(const char *path) {
    char name[400];
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    snprintf(name, sizeof name, "dlopen %s", path);
    check(lib != NULL, name, "%s", lib == NULL ? dlerror() : "");
    if (lib == NULL) return;
    moert_plugin_init_fn init;
    *(void **)&init = dlsym(lib, MOERT_PLUGIN_ENTRY);
    snprintf(name, sizeof name, "%s exports " MOERT_PLUGIN_ENTRY, path);
    check(init != NULL, name, "symbol not found");
    if (init == NULL) return;

    // A host of another ABI version is refused with a message; nothing is registered.
    moert_host_api host = make_host();
    host.abi_version = MOERT_PLUGIN_ABI_VERSION + 1;
    int kinds_before = kind_count, experts_before = expert_kind_count;
    error_calls = 0;
    moert_status status = init(&host, &registry_token);
    snprintf(name, sizeof name, "%s refuses host ABI %d", path, MOERT_PLUGIN_ABI_VERSION + 1);
    check(status == MOERT_ERR_PLUGIN && error_calls == 1 && kind_count == kinds_before, name,
          "status %d, set_error calls %d, registered %d", (int)status, error_calls, kind_count - kinds_before);
    expect_refusal_message(path, &host);

    // A host table too short for the fields a plugin uses is refused.
    host = make_host();
    host.struct_size = (uint32_t)offsetof(moert_host_api, layer_tensor);
    error_calls = 0;
    status = init(&host, &registry_token);
    snprintf(name, sizeof name, "%s refuses a host table of %u bytes", path, (unsigned)host.struct_size);
    check(status == MOERT_ERR_PLUGIN && error_calls == 1 && kind_count == kinds_before, name,
          "status %d, set_error calls %d, registered %d", (int)status, error_calls, kind_count - kinds_before);
    expect_refusal_message(path, &host);

    host = make_host();
    status = init(&host, &registry_token);
    snprintf(name, sizeof name, "%s initialises and registers one router kind (and its expert kinds, if any)", path);
    check(status == MOERT_OK && kind_count == kinds_before + 1, name, "status %d, registered %d (%s)", (int)status,
          kind_count - kinds_before, last_error);
    if (kind_count == kinds_before + 1) {
        const moert_router_ops *ops = kinds[kind_count - 1];
        snprintf(name, sizeof name, "%s ops table is complete", path);
        check(ops->struct_size == sizeof(moert_router_ops) && ops->abi_version == MOERT_PLUGIN_ABI_VERSION &&
                  ops->name != NULL && ops->create != NULL && ops->route != NULL && ops->destroy != NULL,
              name, "struct_size %u, abi %u", (unsigned)ops->struct_size, (unsigned)ops->abi_version);
    }
    for (int i = experts_before; i < expert_kind_count; i++) {
        const moert_expert_ops *ops = expert_kinds[i];
        snprintf(name, sizeof name, "%s expert kind %s: ops table is complete", path, ops->name ? ops->name : "(null)");
        check(ops->struct_size == sizeof(moert_expert_ops) && ops->abi_version == MOERT_PLUGIN_ABI_VERSION &&
                  ops->name != NULL && ops->create != NULL && ops->forward != NULL && ops->destroy != NULL,
              name, "struct_size %u, abi %u", (unsigned)ops->struct_size, (unsigned)ops->abi_version);
    }
    /* The library stays loaded: its ops tables are used until the process ends. */
}
