/* test_plugin_abi.c: plugin loading, registration, fault handling, router overrides, traces and counters through
** the C API. Usage: test_plugin_abi FIXTURES_DIR TEST_PLUGIN_DIR (the directory holding the compiled test plugins
** libmoert_test_{faulty,topk_c,bad_abi,no_entry,init_fails}.so and a copy libmoert_test_faulty_copy.so). */
#define _XOPEN_SOURCE 700  /* mkdtemp, symlink, realpath */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <moert_plugin.h>

#include "check.h"


static char plugin_dir[4096];

static moert_status load_test_plugin(const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s/libmoert_test_%s.so", plugin_dir, name);
    return moert_plugin_load(path);
}

static int kind_listed(int32_t kind, const char *name) {
    for (int32_t i = 0; i < moert_kind_count(kind); i++)
        if (strcmp(moert_kind_name(kind, i), name) == 0) return 1;
    return 0;
}

/* ---- A router registered in process: every token goes to expert 0 with weight 1. ---- */

static int host_router_instances;

static moert_status first_create(const moert_host_api *host, const moert_create_context *ctx, const moert_layer_info *layer,
                                 moert_router_caps *caps, void **out) {
    (void)host; (void)ctx; (void)layer;
    caps->max_experts_per_token = 1;
    host_router_instances++;
    *out = &host_router_instances;
    return MOERT_OK;
}

static moert_status first_route(void *instance, const moert_router_input *in, moert_router_output *out) {
    (void)instance;
    for (int32_t t = 0; t < in->n_tokens; t++) {
        out->expert_ids[t] = 0;
        out->weights[t] = 1.0f;
        out->counts[t] = 1;
    }
    return MOERT_OK;
}

static void first_destroy(void *instance) {
    (void)instance;
    host_router_instances--;
}

static const moert_router_ops first_ops = {
    sizeof(moert_router_ops), MOERT_PLUGIN_ABI_VERSION, "host_first", first_create, first_route, first_destroy,
};

static const int32_t prompt[] = {5, 17, 42, 99, 3, 250, 8};
enum { N_PROMPT = 7, VOCAB = 256 };

static moert_status eval_all(moert_session *s, float *logits) {
    moert_session_reset(s);
    return moert_session_eval(s, prompt, N_PROMPT, MOERT_LOGITS_ALL, logits, N_PROMPT * VOCAB);
}

static void test_loading_faults(void) {
    group_begin("loading faults");
    CHECK(load_test_plugin("no_entry") == MOERT_ERR_PLUGIN && strstr(moert_last_error(), "moert_plugin_init"),
          "a library without the entry symbol is refused");
    CHECK(load_test_plugin("bad_abi") == MOERT_ERR_PLUGIN && strstr(moert_last_error(), "99"),
          "a table with another ABI version is refused, naming the version");
    CHECK(!kind_listed(MOERT_KIND_ROUTER, "future"), "nothing of the refused library stays registered");
    CHECK(load_test_plugin("init_fails") == MOERT_ERR_PLUGIN && strstr(moert_last_error(), "refuses to load"),
          "a failing entry point is reported with its message");
    CHECK(!kind_listed(MOERT_KIND_ROUTER, "rolled_back"), "kinds registered before a failing init are rolled back");
    CHECK(moert_plugin_load("/nonexistent/libmoert_x.so") == MOERT_ERR_IO, "a missing file is an I/O error");
    CHECK(moert_plugin_load("no_such_plugin_name") == MOERT_ERR_IO && strstr(moert_last_error(), "tried"),
          "a bare name that is not found lists the paths tried");
    CHECK(moert_plugin_load(NULL) == MOERT_ERR_INVALID_ARGUMENT, "NULL path");

    CHECK(load_test_plugin("faulty") == MOERT_OK, "faulty loads");
    CHECK(load_test_plugin("faulty") == MOERT_OK, "loading the same library twice is a no-op");
    CHECK(load_test_plugin("faulty_copy") == MOERT_ERR_PLUGIN && strstr(moert_last_error(), "already registered"),
          "a second library registering the same kind is refused");
    CHECK(load_test_plugin("topk_c") == MOERT_OK, "topk_c loads");
    CHECK(kind_listed(MOERT_KIND_ROUTER, "topk") && kind_listed(MOERT_KIND_ROUTER, "faulty") &&
              kind_listed(MOERT_KIND_ROUTER, "topk_c") && kind_listed(MOERT_KIND_EXPERT, "ffn"),
          "kinds are listed");
    CHECK(moert_kind_name(MOERT_KIND_ROUTER, -1) == NULL && moert_kind_name(MOERT_KIND_ROUTER, 1000) == NULL &&
              moert_kind_name(7, 0) == NULL && moert_kind_count(7) == 0,
          "out-of-range kind queries");

    CHECK(moert_register_router(&first_ops) == MOERT_OK, "in-process registration");
    CHECK(moert_register_router(&first_ops) == MOERT_ERR_PLUGIN, "registering a kind twice is refused");
    moert_router_ops topk_clash = first_ops;
    topk_clash.name = "topk";
    CHECK(moert_register_router(&topk_clash) == MOERT_ERR_PLUGIN, "a built-in name cannot be taken");
    moert_router_ops bad = first_ops;
    bad.name = "bad_version";
    bad.abi_version = 2;
    CHECK(moert_register_router(&bad) == MOERT_ERR_PLUGIN, "in-process table with a wrong ABI version");
    bad.abi_version = MOERT_PLUGIN_ABI_VERSION;
    bad.name = "Bad Name";
    CHECK(moert_register_router(&bad) == MOERT_ERR_PLUGIN, "kind names are restricted");
    bad.name = "no_route";
    bad.route = NULL;
    CHECK(moert_register_router(&bad) == MOERT_ERR_PLUGIN, "a table without route is refused");
    CHECK(moert_register_router(NULL) == MOERT_ERR_INVALID_ARGUMENT && moert_register_expert(NULL) == MOERT_ERR_INVALID_ARGUMENT,
          "NULL tables");
    group_end();
}

static void test_misbehaving_router(moert_session *s, const float *reference) {
    group_begin("misbehaving routers");
    static float logits[N_PROMPT * VOCAB];
    const char *modes[] = {"bad_id", "nan", "negative", "too_many", "route_fails"};
    const char *expect[] = {"outside", "nan", "-1", "count", "on purpose"};
    for (int i = 0; i < 5; i++) {
        char params[64];
        snprintf(params, sizeof params, "{\"mode\": \"%s\"}", modes[i]);
        CHECK(moert_session_set_router(s, "faulty", params) == MOERT_OK, "set faulty router (%s)", modes[i]);
        moert_status st = eval_all(s, logits);
        const char *msg = moert_last_error();
        CHECK(st == MOERT_ERR_PLUGIN && strstr(msg, "faulty") && strstr(msg, "layer 0") && strstr(msg, expect[i]),
              "%s: clear error naming the plugin and layer, got %d", modes[i], st);
    }
    CHECK(moert_session_set_router(s, "faulty", "{\"mode\": \"create_fails\"}") == MOERT_ERR_PLUGIN &&
              strstr(moert_last_error(), "on purpose"),
          "a failing create is reported");
    CHECK(moert_session_set_router(s, "nonexistent_kind", NULL) == MOERT_ERR_INVALID_ARGUMENT, "unknown kind");
    CHECK(moert_session_set_router(s, "topk", "[1, 2]") == MOERT_ERR_INVALID_ARGUMENT, "params must be an object");
    CHECK(moert_session_set_router(s, "topk", "{\"top_k\": 0}") == MOERT_ERR_INVALID_ARGUMENT, "top_k 0 refused");
    CHECK(moert_session_set_router(s, NULL, NULL) == MOERT_OK, "restore the model's routers");
    CHECK(eval_all(s, logits) == MOERT_OK && memcmp(logits, reference, sizeof logits) == 0,
          "the session is usable after every failure and gives the same logits");
    group_end();
}

static void test_overrides(moert_model *model, moert_session *s, const float *reference) {
    group_begin("router overrides");
    static float logits[N_PROMPT * VOCAB], k1[N_PROMPT * VOCAB];
    CHECK(moert_session_set_router(s, "topk_c", NULL) == MOERT_OK, "topk_c router");
    CHECK(eval_all(s, logits) == MOERT_OK && memcmp(logits, reference, sizeof logits) == 0,
          "a plugin re-implementing top-k gives bit-identical logits");
    CHECK(moert_session_set_top_k(s, 1) == MOERT_OK && eval_all(s, k1) == MOERT_OK, "top_k 1");
    CHECK(memcmp(k1, reference, sizeof k1) != 0, "top_k 1 changes the logits");
    CHECK(moert_session_set_router(s, "topk_c", "{\"top_k\": 1}") == MOERT_OK && eval_all(s, logits) == MOERT_OK &&
              memcmp(logits, k1, sizeof logits) == 0,
          "topk_c with top_k 1 equals the built-in with top_k 1");
    CHECK(moert_session_set_top_k(s, 5) == MOERT_ERR_INVALID_ARGUMENT && moert_session_set_top_k(s, -1) == MOERT_ERR_INVALID_ARGUMENT,
          "top_k out of range");
    CHECK(moert_session_set_top_k(s, 0) == MOERT_OK && eval_all(s, logits) == MOERT_OK && memcmp(logits, reference, sizeof logits) == 0,
          "top_k 0 restores the model's routers");

    CHECK(moert_session_set_router(s, "host_first", NULL) == MOERT_OK && host_router_instances == 2,
          "an in-process router is created for each MoE layer");
    CHECK(eval_all(s, logits) == MOERT_OK, "an in-process router runs");
    moert_session_set_trace(s, 1);
    moert_session_clear_trace(s);
    eval_all(s, logits);
    moert_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.struct_size = sizeof tr;
    int all_first = moert_session_get_trace(s, &tr) == MOERT_OK && tr.n_records == 2 * N_PROMPT;
    for (int64_t r = 0; all_first && r < tr.n_records; r++)
        all_first = tr.offsets[r + 1] - tr.offsets[r] == 1 && tr.expert_ids[tr.offsets[r]] == 0 && tr.weights[tr.offsets[r]] == 1.0f;
    CHECK(all_first, "the trace shows the in-process router's choices");
    moert_session_set_trace(s, 0);
    CHECK(moert_session_set_router(s, NULL, NULL) == MOERT_OK && host_router_instances == 0,
          "replaced router instances are destroyed");
    CHECK(strcmp(moert_model_router_kind(model, 0), "topk") == 0 && strcmp(moert_model_expert_kind(model, 1, 3), "ffn") == 0,
          "model kinds");
    CHECK(moert_model_router_kind(model, 2) == NULL && moert_model_expert_kind(model, 0, 4) == NULL &&
              moert_model_expert_kind(NULL, 0, 0) == NULL && moert_model_router_kind(NULL, 0) == NULL,
          "kind queries out of range");
    group_end();
}

static void test_trace_and_counters(moert_session *s) {
    group_begin("trace and counters");
    static float logits[N_PROMPT * VOCAB];
    CHECK(moert_session_reset_counters(s) == MOERT_OK && moert_session_set_trace(s, 1) == MOERT_OK &&
              moert_session_clear_trace(s) == MOERT_OK,
          "trace on");
    eval_all(s, logits);
    moert_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.struct_size = sizeof tr;
    CHECK(moert_session_get_trace(s, &tr) == MOERT_OK && tr.n_records == 2 * N_PROMPT, "one record per token and MoE layer");
    int ok = 1;
    for (int64_t r = 0; r < tr.n_records; r++) {
        int64_t lo = tr.offsets[r], hi = tr.offsets[r + 1];
        float sum = 0;
        for (int64_t j = lo; j < hi; j++) sum += tr.weights[j];
        ok &= hi - lo == 2 && fabsf(sum - 1) < 1e-5f && tr.tokens[r] == prompt[tr.positions[r]] &&
              (tr.layers[r] == 0 || tr.layers[r] == 1) && tr.expert_ids[lo] != tr.expert_ids[lo + 1];
    }
    CHECK(ok, "records hold two distinct experts with renormalised weights, the right token and position");
    int32_t layers = 0, experts = 0;
    CHECK(moert_session_get_expert_counts(s, NULL, 0, &layers, &experts) == MOERT_OK && layers == 2 && experts == 4,
          "counter sizes");
    int64_t counts[8], total = 0;
    CHECK(moert_session_get_expert_counts(s, counts, 7, NULL, NULL) == MOERT_ERR_BUFFER_TOO_SMALL, "small counts buffer");
    CHECK(moert_session_get_expert_counts(s, counts, 8, NULL, NULL) == MOERT_OK, "counts");
    for (int i = 0; i < 8; i++) total += counts[i];
    int64_t from_trace[8] = {0};
    for (int64_t r = 0; r < tr.n_records; r++)
        for (int64_t j = tr.offsets[r]; j < tr.offsets[r + 1]; j++) from_trace[tr.layers[r] * 4 + tr.expert_ids[j]]++;
    CHECK(total == 2 * 2 * N_PROMPT && memcmp(from_trace, counts, sizeof counts) == 0, "counters agree with the trace");
    moert_session_reset_counters(s);
    moert_session_get_expert_counts(s, counts, 8, NULL, NULL);
    total = 0;
    for (int i = 0; i < 8; i++) total += counts[i];
    CHECK(total == 0, "reset counters");
    moert_session_clear_trace(s);
    CHECK(moert_session_get_trace(s, &tr) == MOERT_OK && tr.n_records == 0, "cleared trace");
    CHECK(moert_session_set_trace(NULL, 1) == MOERT_ERR_INVALID_ARGUMENT && moert_session_get_trace(s, NULL) == MOERT_ERR_INVALID_ARGUMENT,
          "NULL arguments");
    group_end();
}

/* Makes a copy of fixture `src` in a new temporary directory `dir` (at least 64 bytes): model.safetensors as a
** symbolic link, config.json with `section` added as its "moert" object. Returns 0 on success. */
static int model_with_section(const char *src, const char *section, char *dir) {
    char path[4200], *text = NULL;
    snprintf(dir, 64, "/tmp/moert-abi-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(path, sizeof path, "%s/config.json", src);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = malloc((size_t)n + 1);
    size_t got = text ? fread(text, 1, (size_t)n, f) : 0;
    fclose(f);
    if (got != (size_t)n) { free(text); return -1; }
    text[n] = 0;
    char *close = strrchr(text, '}');
    if (!close) { free(text); return -1; }
    *close = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "wb");
    if (!f) { free(text); return -1; }
    fprintf(f, "%s, \"moert\": %s}\n", text, section);
    fclose(f);
    free(text);
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    char *target = realpath(path, NULL);  /* the link must not depend on the current directory */
    if (!target) return -1;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int status = symlink(target, path);
    free(target);
    return status;
}

static void remove_model_dir(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

/* A plugin whose create fails while a model is being built: the load is refused with a message naming the plugin,
** routers already created for earlier layers are destroyed, and no model stays counted as alive. */
static void test_model_load_faults(const char *fixtures) {
    group_begin("model load faults");
    char src[4200], dir[64];
    snprintf(src, sizeof src, "%s/mixtral", fixtures);
    const char *section =
        "{\"layers\": {\"0\": {\"router\": {\"kind\": \"host_first\"}},"
        " \"1\": {\"router\": {\"kind\": \"faulty\", \"params\": {\"mode\": \"create_fails\"}}}}}";
    if (model_with_section(src, section, dir) != 0) {
        CHECK(0, "cannot make a model directory in /tmp");
        group_end();
        return;
    }
    int before = host_router_instances;
    moert_model *model = (moert_model *)&before;
    moert_status st = moert_model_load(dir, NULL, &model);
    CHECK(st == MOERT_ERR_PLUGIN && strstr(moert_last_error(), "faulty") && strstr(moert_last_error(), "on purpose"),
          "a router failing in create refuses the model load with its message, got %d", st);
    CHECK(model == NULL, "the out-pointer is NULL after the failed load");
    CHECK(host_router_instances == before, "the router already created for layer 0 is destroyed (%d alive, %d before)",
          host_router_instances, before);
    remove_model_dir(dir);
    group_end();
}

/* ---- moert_plugin_check_host(), the check a plugin's entry point starts with, on tables moert never hands out. ---- */

static char check_message[512];
static int check_messages;

static void record_error(const char *message) {
    snprintf(check_message, sizeof check_message, "%s", message);
    check_messages++;
}

/* Runs MOERT_PLUGIN_CHECK_HOST(host, name, sgemm) with the message recorder reset. */
static moert_status check_host_needing_sgemm(const moert_host_api *host, const char *name) {
    check_message[0] = 0;
    check_messages = 0;
    return MOERT_PLUGIN_CHECK_HOST(host, name, sgemm);
}

static void test_check_host(void) {
    group_begin("moert_plugin_check_host");
    moert_host_api host;
    char want[256];
    memset(&host, 0, sizeof host);
    host.struct_size = sizeof host;
    host.abi_version = MOERT_PLUGIN_ABI_VERSION;
    host.set_error = record_error;
    CHECK(check_host_needing_sgemm(&host, "t") == MOERT_OK && check_messages == 0, "a current host table is accepted");
    CHECK(check_host_needing_sgemm(NULL, "t") == MOERT_ERR_PLUGIN && check_messages == 0, "a NULL table is refused");

    host.abi_version = MOERT_PLUGIN_ABI_VERSION + 1;
    snprintf(want, sizeof want, "t: built for plugin ABI %d (host table of %zu bytes), host has ABI %u (%u bytes)",
             MOERT_PLUGIN_ABI_VERSION, sizeof(moert_host_api), (unsigned)host.abi_version, (unsigned)host.struct_size);
    CHECK(check_host_needing_sgemm(&host, "t") == MOERT_ERR_PLUGIN && check_messages == 1 &&
              strcmp(check_message, want) == 0,
          "another ABI version is refused with \"%s\", got \"%s\"", want, check_message);

    /* A table from an older moert that ends before sgemm: refused for a plugin that calls sgemm, fine for one that
       calls nothing past register_expert. */
    host.abi_version = MOERT_PLUGIN_ABI_VERSION;
    host.struct_size = (uint32_t)offsetof(moert_host_api, layer_tensor);
    snprintf(want, sizeof want, "t: built for plugin ABI %d (host table of %zu bytes), host has ABI %u (%u bytes)",
             MOERT_PLUGIN_ABI_VERSION, sizeof(moert_host_api), (unsigned)host.abi_version, (unsigned)host.struct_size);
    CHECK(check_host_needing_sgemm(&host, "t") == MOERT_ERR_PLUGIN && check_messages == 1 &&
              strcmp(check_message, want) == 0,
          "a table too short is refused with \"%s\", got \"%s\"", want, check_message);
    CHECK(MOERT_PLUGIN_CHECK_HOST(&host, "t", register_expert) == MOERT_OK, "a short table holding what is used is accepted");
    CHECK(!MOERT_HOST_HAS(&host, layer_tensor) && MOERT_HOST_HAS(&host, register_expert), "MOERT_HOST_HAS on a short table");

    /* Without set_error there is no one to tell: refused quietly. */
    host.struct_size = (uint32_t)offsetof(moert_host_api, set_error);
    CHECK(check_host_needing_sgemm(&host, "t") == MOERT_ERR_PLUGIN && check_messages == 0,
          "a table ending before set_error is refused without a message");
    host.struct_size = sizeof host;
    host.abi_version = MOERT_PLUGIN_ABI_VERSION + 1;
    host.set_error = NULL;
    CHECK(check_host_needing_sgemm(&host, "t") == MOERT_ERR_PLUGIN, "a NULL set_error is not called");

    /* The message is cut to fit its 256-byte buffer. */
    char long_name[400];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    host.set_error = record_error;
    CHECK(check_host_needing_sgemm(&host, long_name) == MOERT_ERR_PLUGIN && strlen(check_message) == 255 &&
              strncmp(check_message, long_name, 255) == 0,
          "a long plugin name is cut at 255 bytes, got %zu", strlen(check_message));

    moert_layer_info layer;
    memset(&layer, 0, sizeof layer);
    layer.struct_size = (uint32_t)offsetof(moert_layer_info, expert_index);
    CHECK(!MOERT_STRUCT_HAS(&layer, moert_layer_info, expert_index) && MOERT_STRUCT_HAS(&layer, moert_layer_info, vocab_size),
          "MOERT_STRUCT_HAS on a layer info from an older moert");
    group_end();
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s FIXTURES_DIR TEST_PLUGIN_DIR\n", argv[0]);
        return 2;
    }
    snprintf(plugin_dir, sizeof plugin_dir, "%s", argv[2]);
    check_note_failures("last error", moert_last_error);
    test_check_host();
    test_loading_faults();

    char path[4200];
    snprintf(path, sizeof path, "%s/mixtral", argv[1]);
    moert_model *model = NULL;
    moert_session *s = NULL;
    if (moert_model_load(path, NULL, &model) != MOERT_OK || moert_session_create(model, NULL, &s) != MOERT_OK) {
        printf("cannot load %s: %s\n", path, moert_last_error());
        return 1;
    }
    static float reference[N_PROMPT * VOCAB];
    group_begin("built-in evaluation");
    CHECK(eval_all(s, reference) == MOERT_OK, "built-in evaluation");
    group_end();
    test_misbehaving_router(s, reference);
    test_overrides(model, s, reference);
    test_trace_and_counters(s);
    test_model_load_faults(argv[1]);

    group_begin("shutdown");
    CHECK(moert_shutdown() == MOERT_ERR_INVALID_ARGUMENT, "shutdown refuses while a model is alive");
    moert_session_free(s);
    moert_model_free(model);
    CHECK(moert_shutdown() == MOERT_OK, "shutdown");
    /* The built-in router kinds: the architecture's own, then deepseek_v2, deepseek_v3, gpt_oss. */
    CHECK(moert_kind_count(MOERT_KIND_ROUTER) == 4 && moert_kind_count(MOERT_KIND_EXPERT) == 1 &&
              strcmp(moert_kind_name(MOERT_KIND_ROUTER, 0), "topk") == 0 &&
              strcmp(moert_kind_name(MOERT_KIND_ROUTER, 3), "gpt_oss") == 0,
          "only built-ins remain");
    CHECK(load_test_plugin("faulty") == MOERT_OK, "a plugin loads again after shutdown");
    CHECK(moert_shutdown() == MOERT_OK, "second shutdown");
    group_end();
    return check_summary();
}
