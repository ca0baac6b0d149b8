/* main.c — the C11 host test of every function in moert.h: runs the checks of the files of Tests/c/api in order. */
/*
** Usage: test_api FIXTURES_DIR   (e.g. Tests/fixtures)
**
** Every function declared in include/moert.h, and every host-side function of include/moert_plugin.h, is called
** by this program, so a declared but unexported symbol fails at link time. Expected values come from outside moert:
** each fixture's config.json, the headers of its safetensors files and its reference.safetensors (written by
** transformers, see tools/make_fixtures.py), and a router written here from modeling_mixtral.py.
** One line is printed per check group, and the last line is "N passed, M failed".
*/
#include "api_test.h"

#include <stdio.h>

/** The checks that need one model but no particular architecture, run on the plain Mixtral fixture. */
static void test_on_mixtral(const char *root) {
    fixture fx;
    group_begin("mixtral: setup for API checks");
    int loaded = CHECK(fixture_load(&fx, root, "mixtral"), "cannot read fixture %s/mixtral", root);
    moert_model *model = loaded ? load_model(fx.dir) : NULL;
    group_end();
    if (model) {
        test_sessions(&fx, model);
        test_error_cases(&fx, model);
        test_sampling(&fx, model);
        test_router_overrides(&fx, model);
        test_host_kinds(&fx, model);
        test_parallel(&fx, model);
        test_memory(&fx, model);
        test_logging(&fx);
        test_text(root, &fx, model);
        test_scmoe(root, model);
    }
    moert_model_free(model);
    fixture_free(&fx);
}

int main(int argc, char **argv) {
    static const char *const fixtures[] = {"mixtral", "mixtral_bf16", "mixtral_sharded", "mixtral_hd64", "qwen2_moe", "qwen3_moe",
                                                   "olmoe", "qwen3_moe_fp8", "deepseek_v2", "deepseek_v2_lite",
                                                   "deepseek_v2_group", "deepseek_v3", "deepseek_v3_dense", "glm4_moe",
                                                   "gpt_oss", "gpt_oss_mxfp4", "mixtral_window", "qwen2_moe_window"};
    static const char *const plugin_fixtures[] = {
        "plugins/gru", "plugins/gru_rnn", "plugins/hash", "plugins/hash_multi", "plugins/comet",
        "plugins/comet_e6", "plugins/moepp", "plugins/moepp_mixtral_gating", "plugins/topp", "plugins/adamoe",
        "plugins/gru_shared", "plugins/hash_relu", "plugins/dense_layer",
    };
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    test_library();
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) test_fixture(argv[1], fixtures[i]);
    for (size_t i = 0; i < sizeof plugin_fixtures / sizeof *plugin_fixtures; i++) {
        test_plugin_fixture(argv[1], plugin_fixtures[i]);
    }
    test_kinds();
    test_on_mixtral(argv[1]);
    test_quantized(argv[1]);
    test_shutdown(argv[1]);
    return check_summary();
}
