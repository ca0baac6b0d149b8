/* fixture.c — reads a fixture's expected model facts and reference outputs, from the files only (no moert call). */
#define _POSIX_C_SOURCE 200809L

#include "fixture.h"

#include <moert.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/** Reads a whole file into a malloc'd buffer (NUL-terminated for convenience). Returns 0 on failure. */
int read_file(const char *path, unsigned char **out, size_t *out_size) {
    *out = NULL;
    *out_size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        unsigned char *buf = size >= 0 ? malloc((size_t)size + 1) : NULL;
        if (buf && fseek(f, 0, SEEK_SET) == 0 && fread(buf, 1, (size_t)size, f) == (size_t)size) {
            buf[size] = 0;
            *out = buf;
            *out_size = (size_t)size;
            ok = 1;
        } else {
            free(buf);
        }
    }
    fclose(f);
    return ok;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Safetensors reader                                                                                           */
/* ------------------------------------------------------------------------------------------------------------ */

/** An opened safetensors file: its bytes, its JSON header and where the data section starts. */
typedef struct st_file {
    unsigned char *bytes;
    size_t size;
    json_span header;
    size_t data_start;
} st_file;

/** Reads and validates the framing of a safetensors file. Returns 0 (and prints why) on failure. */
static int st_open(st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    if (!read_file(path, &f->bytes, &f->size)) {
        printf("      cannot read %s\n", path);
        return 0;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0 && f->size >= 8; i--) n = (n << 8) | f->bytes[i];
    if (f->size < 8 || n > f->size - 8) {
        printf("      %s: header length %llu does not fit in %zu bytes\n", path, (unsigned long long)n, f->size);
        return 0;
    }
    json_span raw = {(const char *)f->bytes + 8, (size_t)n};
    if (!json_value(raw, &f->header) || f->header.p[0] != '{' || !json_object_each(f->header, NULL, NULL)) {
        printf("      %s: header is not a JSON object\n", path);
        return 0;
    }
    f->data_start = 8 + (size_t)n;
    return 1;
}

/** Releases an st_file. */
static void st_close(st_file *f) {
    free(f->bytes);
    memset(f, 0, sizeof *f);
}

/** Description of one tensor: dtype, shape and byte range, all checked against the file. */
typedef struct st_tensor {
    char dtype[16];
    int64_t shape[8];
    size_t rank;
    size_t count;
    const unsigned char *data;
    size_t n_bytes;
} st_tensor;

/** Size in bytes of one element of a safetensors dtype, 0 when unknown. */
static size_t st_dtype_size(const char *dtype) {
    if (!strcmp(dtype, "F32") || !strcmp(dtype, "I32")) return 4;
    if (!strcmp(dtype, "F16") || !strcmp(dtype, "BF16")) return 2;
    if (!strcmp(dtype, "F64") || !strcmp(dtype, "I64")) return 8;
    if (!strcmp(dtype, "F8_E4M3") || !strcmp(dtype, "U8")) return 1;
    return 0;
}

/** Parses a tensor entry of the header and checks its byte range and size. Returns 0 when inconsistent. */
static int st_parse_entry(const st_file *f, json_span entry, st_tensor *t) {
    json_span dtype, shape, offsets, v;
    int64_t begin, end;
    memset(t, 0, sizeof *t);
    if (!json_object_get(entry, "dtype", &dtype) || !json_string(dtype, t->dtype, sizeof t->dtype)) return 0;
    if (!json_object_get(entry, "shape", &shape) || !json_object_get(entry, "data_offsets", &offsets)) return 0;
    t->rank = json_array_len(shape);
    if (t->rank > 8 || json_array_len(offsets) != 2) return 0;
    t->count = 1;
    for (size_t i = 0; i < t->rank; i++) {
        if (!json_array_get(shape, i, &v) || !json_int(v, &t->shape[i]) || t->shape[i] < 0) return 0;
        if (t->shape[i] > 0 && t->count > SIZE_MAX / (size_t)t->shape[i]) return 0;
        t->count *= (size_t)t->shape[i];
    }
    if (!json_array_get(offsets, 0, &v) || !json_int(v, &begin)) return 0;
    if (!json_array_get(offsets, 1, &v) || !json_int(v, &end)) return 0;
    size_t data_size = f->size - f->data_start, elem = st_dtype_size(t->dtype);
    if (begin < 0 || end < begin || (uint64_t)end > data_size || elem == 0) return 0;
    if (t->count > SIZE_MAX / elem || (size_t)(end - begin) != t->count * elem) return 0;
    t->data = f->bytes + f->data_start + (size_t)begin;
    t->n_bytes = (size_t)(end - begin);
    return 1;
}

/**
 * Copies tensor `name` (dtype `dtype`, 4-byte elements) into a new malloc'd buffer (`*out`), checking that it
 * exists, that its rank is `rank` and that its bytes lie inside the file. Returns 0 (and prints why) on failure.
 */
static int st_read(const st_file *f, const char *name, const char *dtype, size_t rank, st_tensor *t, void **out) {
    json_span entry;
    *out = NULL;
    if (!json_object_get(f->header, name, &entry)) {
        printf("      reference has no tensor %s\n", name);
        return 0;
    }
    if (!st_parse_entry(f, entry, t) || strcmp(t->dtype, dtype) != 0 || t->rank != rank) {
        printf("      reference tensor %s is not a consistent %s tensor of rank %zu\n", name, dtype, rank);
        return 0;
    }
    *out = malloc(t->n_bytes ? t->n_bytes : 1);
    if (*out) memcpy(*out, t->data, t->n_bytes);
    return *out != NULL;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Fixtures                                                                                                     */
/* ------------------------------------------------------------------------------------------------------------ */

/** A token id from a config value that is an integer, an array of them (the first) or null (-1). */
static int64_t config_token_id(json_span config, const char *key) {
    json_span v, first;
    int64_t id;
    if (!json_object_get(config, key, &v)) return -1;
    if (json_array_get(v, 0, &first)) v = first;
    return json_int(v, &id) ? id : -1;
}

/** Every token id of eos_token_id (an integer, an array of them, or null / absent: none) into want->eos_token_ids. */
static void config_eos_token_ids(json_span config, expected_info *want) {
    json_span v, element;
    int64_t id;
    want->n_eos_token_ids = 0;
    if (!json_object_get(config, "eos_token_id", &v)) return;
    if (json_int(v, &id)) {
        want->eos_token_ids[want->n_eos_token_ids++] = id;
        return;
    }
    for (size_t i = 0; i < 8 && json_array_get(v, i, &element) && json_int(element, &id); i++) {
        want->eos_token_ids[want->n_eos_token_ids++] = id;
    }
}

/** The decoder layers with a sparse MLP, as a bit set: every `decoder_sparse_step`-th one not in `mlp_only_layers`. */
static uint64_t config_moe_layers(json_span config, int64_t n_layers) {
    json_span only, v;
    int64_t step = json_get_int(config, "decoder_sparse_step", 1), layer;
    int64_t first_moe = json_get_int(config, "first_k_dense_replace", 0); /* DeepSeek: dense layers first */
    uint64_t mask = 0;
    int has_only = json_object_get(config, "mlp_only_layers", &only);
    for (int64_t l = 0; l < n_layers && l < 64; l++) {
        int dense = (step > 1 && (l + 1) % step != 0) || l < first_moe;
        for (size_t i = 0; has_only && json_array_get(only, i, &v); i++) {
            if (json_int(v, &layer) && layer == l) dense = 1;
        }
        if (!dense) mask |= UINT64_C(1) << l;
    }
    return mask;
}

/** Layers with a sliding window, as the fixtures' configs name them: Mixtral's sliding_window covers every layer;
    Qwen2-MoE lists its sliding_attention layers in layer_types (with use_sliding_window); gpt-oss lists them in
    layer_types, by default the even layers. */
static int64_t config_windowed_layers(json_span config, const char *architecture, int64_t n_layers) {
    json_span types, v;
    char kind[32];
    int64_t n = 0;
    int gpt_oss = strcmp(architecture, "GptOssForCausalLM") == 0;
    if (json_object_get(config, "layer_types", &types)) {
        if (!gpt_oss && !json_get_true(config, "use_sliding_window")) return 0;
        for (size_t i = 0; json_array_get(types, i, &v); i++) {
            if (json_string(v, kind, sizeof kind) && strcmp(kind, "sliding_attention") == 0) n++;
        }
        return n;
    }
    if (gpt_oss) return (n_layers + 1) / 2;
    return strcmp(architecture, "MixtralForCausalLM") == 0 ? n_layers : 0;
}

/** Number of bits set. */
static int64_t bit_count(uint64_t x) {
    int64_t n = 0;
    for (; x; x &= x - 1) n++;
    return n;
}


/** Fills the config.json part of `want`. Returns 0 (and prints why) on failure. */
static int read_config(const char *dir, expected_info *want) {
    char path[1200];
    unsigned char *text;
    size_t size;
    json_span config, archs, arch;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!read_file(path, &text, &size)) {
        printf("      cannot read %s\n", path);
        return 0;
    }
    json_span raw = {(const char *)text, size};
    int ok = json_value(raw, &config) && json_object_get(config, "architectures", &archs) &&
             json_array_get(archs, 0, &arch) && json_string(arch, want->architecture, sizeof want->architecture);
    if (ok) {
        want->vocab_size = json_get_int(config, "vocab_size", -1);
        want->hidden_size = json_get_int(config, "hidden_size", -1);
        want->n_layers = json_get_int(config, "num_hidden_layers", -1);
        want->moe_layer_mask = config_moe_layers(config, want->n_layers);
        want->n_moe_layers = bit_count(want->moe_layer_mask);
        want->n_experts = json_get_int(config, "num_local_experts",
                                       json_get_int(config, "num_experts", json_get_int(config, "n_routed_experts", -1)));
        want->n_experts_per_tok = json_get_int(config, "num_experts_per_tok", -1);
        want->n_heads = json_get_int(config, "num_attention_heads", -1);
        want->n_kv_heads = json_get_int(config, "num_key_value_heads", want->n_heads);
        want->head_dim = json_get_int(config, "head_dim", want->n_heads > 0 ? want->hidden_size / want->n_heads : -1);
        want->cache_values = 2 * want->n_kv_heads * want->head_dim;
        want->latent = json_get_int(config, "kv_lora_rank", -1) > 0;
        if (want->latent) {
            /* DeepSeek: a query/key head is qk_nope_head_dim + qk_rope_head_dim (config.json's head_dim is the rope
               part alone); the cache holds the latent and the shared rope key. */
            int64_t rope = json_get_int(config, "qk_rope_head_dim", -1);
            want->head_dim = json_get_int(config, "qk_nope_head_dim", -1) + rope;
            want->cache_values = json_get_int(config, "kv_lora_rank", -1) + rope;
        }
        want->n_mtp_layers = json_get_int(config, "num_nextn_predict_layers", 0);
        /* A sliding window does not cap the context (windowed layers keep a ring buffer). */
        want->context_length = json_get_int(config, "max_position_embeddings", -1);
        want->window = json_get_int(config, "sliding_window", 0);
        if (want->window <= 0 || want->window >= want->context_length) want->window = 0;
        want->n_windowed_layers = want->window ? config_windowed_layers(config, want->architecture, want->n_layers) : 0;
        want->bos_token_id = config_token_id(config, "bos_token_id");
        want->eos_token_id = config_token_id(config, "eos_token_id");
        config_eos_token_ids(config, want);
        /* MixtralSparseMoeBlock always renormalises, and gpt-oss's softmax over the k selected logits sums to 1; the
           others renormalise when norm_topk_prob is true; DeepSeek and GLM-4.5 then scale by routed_scaling_factor. */
        want->renormalizes = strcmp(want->architecture, "MixtralForCausalLM") == 0 ||
                             strcmp(want->architecture, "GptOssForCausalLM") == 0 ||
                             json_get_true(config, "norm_topk_prob");
        want->weight_scale = json_get_double(config, "routed_scaling_factor", 1.0);
        want->sigmoid_scores = strcmp(want->architecture, "DeepseekV3ForCausalLM") == 0 ||
                               strcmp(want->architecture, "Glm4MoeForCausalLM") == 0;
    } else {
        printf("      %s: no architectures[0]\n", path);
    }
    free(text);
    return ok;
}

/** Accumulator for the tensors of a model's safetensors files. */
typedef struct weight_census {
    const st_file *file;
    int64_t first_mtp_layer, n_mtp_layers; /* model.layers.<first ..< first + n>.* are not the model's */
    int64_t n_params;
    int dtypes; /* bit set of MOERT_DTYPE_F32/F16/BF16 seen */
    int bad;
} weight_census;

/** json_object_each() visitor over a model file's header: counts elements and dtypes of each tensor. */
static void census_visit(json_span key, json_span value, void *ctx) {
    weight_census *c = ctx;
    st_tensor t;
    static const char rotary[] = "rotary_emb.inv_freq";
    if (key.n == strlen("__metadata__") && memcmp(key.p, "__metadata__", key.n) == 0) return;
    if (!st_parse_entry(c->file, value, &t)) {
        c->bad = 1;
        return;
    }
    if (key.n >= sizeof rotary - 1 && memcmp(key.p + key.n - (sizeof rotary - 1), rotary, sizeof rotary - 1) == 0) return;
    for (int64_t l = c->first_mtp_layer; l < c->first_mtp_layer + c->n_mtp_layers; l++) {
        char prefix[48];
        int n = snprintf(prefix, sizeof prefix, "model.layers.%lld.", (long long)l);
        if (n > 0 && key.n >= (size_t)n && memcmp(key.p, prefix, (size_t)n) == 0) return;
    }
    c->n_params += (int64_t)t.count;
    if (!strcmp(t.dtype, "F32")) c->dtypes |= 1 << MOERT_DTYPE_F32;
    else if (!strcmp(t.dtype, "F16")) c->dtypes |= 1 << MOERT_DTYPE_F16;
    else if (!strcmp(t.dtype, "BF16")) c->dtypes |= 1 << MOERT_DTYPE_BF16;
    else if (!strcmp(t.dtype, "F8_E4M3")) c->dtypes |= 1 << MOERT_DTYPE_MIXED; /* block-wise FP8: never one dtype */
    else if (!strcmp(t.dtype, "U8")) c->dtypes |= 1 << MOERT_DTYPE_MIXED;      /* MXFP4 blocks and scales: idem */
    else if (strcmp(t.dtype, "I32") != 0) c->bad = 1; /* I32: plugin tables (hash routing), not a storage dtype */
}

/** True for the model's weight files: `model*.safetensors` (reference.safetensors is not one). */
static int is_weight_file(const char *name) {
    size_t n = strlen(name), suffix = strlen(".safetensors");
    return strncmp(name, "model", 5) == 0 && n > suffix && strcmp(name + n - suffix, ".safetensors") == 0;
}

/** Fills the weight-file part of `want` from the headers of the directory's model*.safetensors files. */
static int read_weight_files(const char *dir, expected_info *want) {
    DIR *d = opendir(dir);
    weight_census census = {NULL, want->n_layers, want->n_mtp_layers, 0, 0, 0};
    struct dirent *e;
    if (!d) return 0;
    want->file_bytes = 0;
    while ((e = readdir(d)) != NULL) {
        char path[1400];
        st_file f;
        if (!is_weight_file(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!st_open(&f, path)) {
            census.bad = 1;
            continue;
        }
        census.file = &f;
        census.bad |= !json_object_each(f.header, census_visit, &census);
        want->file_bytes += (int64_t)f.size;
        st_close(&f);
    }
    closedir(d);
    want->n_params = census.n_params;
    switch (census.dtypes) {
    case 1 << MOERT_DTYPE_F32: want->dtype = MOERT_DTYPE_F32; break;
    case 1 << MOERT_DTYPE_F16: want->dtype = MOERT_DTYPE_F16; break;
    case 1 << MOERT_DTYPE_BF16: want->dtype = MOERT_DTYPE_BF16; break;
    default: want->dtype = MOERT_DTYPE_MIXED; break;
    }
    return !census.bad && census.n_params > 0;
}

/** Reads reference.safetensors and checks that its shapes agree with each other. */
static int read_reference(fixture *fx) {
    char path[1200];
    st_file f;
    st_tensor prompt, greedy, logits, full;
    snprintf(path, sizeof path, "%s/reference.safetensors", fx->dir);
    if (!st_open(&f, path)) return 0;
    int ok = st_read(&f, "prompt", "I32", 1, &prompt, (void **)&fx->prompt) &&
             st_read(&f, "greedy", "I32", 1, &greedy, (void **)&fx->greedy) &&
             st_read(&f, "logits", "F32", 2, &logits, (void **)&fx->logits) &&
             st_read(&f, "full_logits", "F32", 2, &full, (void **)&fx->full_logits);
    st_close(&f);
    if (!ok) return 0;
    fx->n_prompt = prompt.count;
    fx->n_greedy = greedy.count;
    fx->vocab = (size_t)logits.shape[1];
    ok = logits.shape[0] == (int64_t)fx->n_prompt && full.shape[0] == (int64_t)(fx->n_prompt + fx->n_greedy) &&
         full.shape[1] == logits.shape[1] && fx->n_prompt + fx->n_greedy <= MAX_TOKENS && fx->n_prompt > 0;
    if (!ok) printf("      %s: reference shapes disagree\n", path);
    return ok;
}

int fixture_load(fixture *fx, const char *root, const char *name) {
    memset(fx, 0, sizeof *fx);
    snprintf(fx->name, sizeof fx->name, "%s", name);
    snprintf(fx->dir, sizeof fx->dir, "%s/%s", root, name);
    return read_config(fx->dir, &fx->want) && read_weight_files(fx->dir, &fx->want) && read_reference(fx);
}

void fixture_free(fixture *fx) {
    free(fx->prompt);
    free(fx->greedy);
    free(fx->logits);
    free(fx->full_logits);
    memset(fx, 0, sizeof *fx);
}

size_t fixture_sequence(const fixture *fx, int32_t *out) {
    memcpy(out, fx->prompt, fx->n_prompt * sizeof *out);
    memcpy(out + fx->n_prompt, fx->greedy, fx->n_greedy * sizeof *out);
    return fx->n_prompt + fx->n_greedy;
}
