/* quantized.c — checkpoints with q4_0/q8_0 and q4_k/q8_0 weights (written by tools/make_quant_fixtures.py with
   llama.cpp's quantizer) and q3_0/q8_0 ones: the storage type of each tensor, the model info and the expert bytes its memory
   statistics count. */
#include "api_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/** A q4_k super-block's 144 bytes hold 256 weights: 18 bytes per 32. */
#define Q4_K_BYTES_PER_32 (144 / 8)

typedef struct dtype_check {
    moert_model *model;
    int n_checked;
} dtype_check;

/** One member of the quantization entry's "tensors": the tensor's type as moert_model_tensor_dtype() reports it. */
static void check_entry(json_span key, json_span value, void *ctx) {
    dtype_check *c = ctx;
    char name[256], type[16];
    if (!CHECK(key.n < sizeof name && json_string(value, type, sizeof type), "a readable quantization entry")) return;
    memcpy(name, key.p, key.n);
    name[key.n] = 0;
    int32_t want = strcmp(type, "q8_0") == 0   ? MOERT_DTYPE_Q8_0
                   : strcmp(type, "q4_0") == 0 ? MOERT_DTYPE_Q4_0
                   : strcmp(type, "q3_0") == 0 ? MOERT_DTYPE_Q3_0
                   : strcmp(type, "q4_k") == 0 ? MOERT_DTYPE_Q4_K
                                               : -2;
    int32_t got = moert_model_tensor_dtype(c->model, name);
    CHECK(got == want, "%s: dtype %d, config.json says %s", name, (int)got, type);
    c->n_checked++;
}

/** Fixture `fixture` of `root`, whose routed experts are stored in `block_bytes` bytes per 32 weights (q4_k: 144
    per super-block of 256, 18 per 32). */
static void check_fixture(const char *root, const char *fixture, int64_t block_bytes) {
    char dir[1024], path[1100], group[128];
    snprintf(dir, sizeof dir, "%s/%s", root, fixture);
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(group, sizeof group, "quantized (%s): tensor dtypes, info and expert bytes", fixture);
    group_begin(group);
    unsigned char *text = NULL;
    size_t size = 0;
    json_span config, moert, quantization, tensors;
    moert_model *model = load_model(dir);
    if (!CHECK(model && read_file(path, &text, &size), "load %s", dir) ||
        !CHECK(json_value((json_span){(const char *)text, size}, &config) && json_object_get(config, "moert", &moert) &&
               json_object_get(moert, "quantization", &quantization) &&
               json_object_get(quantization, "tensors", &tensors),
               "config.json has moert.quantization.tensors")) {
        moert_model_free(model);
        free(text);
        group_end();
        return;
    }
    dtype_check c = {model, 0};
    CHECK(json_object_each(tensors, check_entry, &c) && c.n_checked > 0, "every quantized tensor checked");
    /* Kept as stored (F32 in the fixture's safetensors): norms and router gates. */
    CHECK(moert_model_tensor_dtype(model, "model.norm.weight") == MOERT_DTYPE_F32, "model.norm.weight is F32");
    CHECK(moert_model_tensor_dtype(model, "model.layers.0.block_sparse_moe.gate.weight") == MOERT_DTYPE_F32,
          "the router gate keeps F32");
    CHECK(moert_model_tensor_dtype(model, "model.layers.0.no_such.weight") == -1, "a missing tensor is -1");
    CHECK(moert_model_tensor_dtype(NULL, "model.norm.weight") == -1 && moert_model_tensor_dtype(model, NULL) == -1,
          "NULL arguments are -1");

    moert_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK_STATUS(moert_model_get_info(model, &info), MOERT_OK, "moert_model_get_info");
    CHECK(info.dtype == MOERT_DTYPE_MIXED, "a quantized checkpoint reports MOERT_DTYPE_MIXED, got %d", (int)info.dtype);

    /* Routed experts in their compute layout, as stored: 3 projections of intermediate x hidden weights,
       block_bytes per 32 weights (sizes from config.json). */
    int64_t hidden = json_get_int(config, "hidden_size", -1), width = json_get_int(config, "intermediate_size", -1);
    int64_t experts = json_get_int(config, "num_local_experts", -1), layers = json_get_int(config, "num_hidden_layers", -1);
    moert_memory_stats m;
    memset(&m, 0, sizeof m);
    m.struct_size = sizeof m;
    CHECK_STATUS(moert_model_get_memory_stats(model, &m), MOERT_OK, "moert_model_get_memory_stats");
    CHECK(m.expert_bytes_total == layers * experts * 3 * width * hidden / 32 * block_bytes,
          "expert bytes %lld, the layout says %lld", (long long)m.expert_bytes_total,
          (long long)(layers * experts * 3 * width * hidden / 32 * block_bytes));
    moert_model_free(model);
    free(text);
    group_end();
}

void test_quantized(const char *root) {
    check_fixture(root, "mixtral_q4_0", 18);
    check_fixture(root, "mixtral_q3_0", 14);
    check_fixture(root, "mixtral_q4_k", Q4_K_BYTES_PER_32);
}
