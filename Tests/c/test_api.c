/* test_api.c — C11 host test of every function in moert.h, checked against the transformers fixtures. */
/*
** Usage: test_api FIXTURES_DIR   (e.g. Tests/fixtures)
**
** Every function declared in include/moert.h, and every host-side function of include/moert_plugin.h, is called
** from here, so a declared but unexported symbol fails at link time. Expected values come from outside moert: each
** fixture's config.json, the headers of its safetensors files and its reference.safetensors (written by
** transformers, see tools/make_fixtures.py), and a router written here from modeling_mixtral.py.
** One line is printed per check group, and the last line is "N passed, M failed".
*/
#define _POSIX_C_SOURCE 200809L

#include <moert.h>
#include <moert_plugin.h>

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
** Logits must match the reference within 1e-4 of the reference's largest |logit|. transformers and moert both
** compute in float32 from the same stored weights, but with different summation orders (BLAS blocking, expert
** accumulation order); on these tiny models that moves logits by about 1e-6 of their scale. 1e-4 leaves room for
** that while still catching any wrong routing, rope or norm, which moves them by 1e-2 or more.
*/
#define LOGITS_RTOL 1e-4

/*
** Concurrent sessions must reproduce the sequential logits. The work per session is identical, but BLAS may
** split a product differently when several callers run at once, so a last-bit difference is allowed.
*/
#define PARALLEL_RTOL 1e-6

#define MAX_TOKENS 64
#define N_WORKERS 4

/* ------------------------------------------------------------------------------------------------------------ */
/* Check bookkeeping                                                                                            */
/* ------------------------------------------------------------------------------------------------------------ */

static int n_passed, n_failed;           /* over the whole run */
static int group_checks, group_failures; /* within the current group */
static const char *group_name;

/** Starts a group of checks; group_end() prints its one-line result. */
static void group_begin(const char *name) {
    group_name = name;
    group_checks = 0;
    group_failures = 0;
}

/** Prints the current group's result line. */
static void group_end(void) {
    if (group_failures == 0) {
        printf("ok    %s (%d checks)\n", group_name, group_checks);
    } else {
        printf("FAIL  %s (%d of %d checks failed)\n", group_name, group_failures, group_checks);
    }
    fflush(stdout);
}

/** Records one check; on failure prints the formatted reason (indented, before the group's line). */
static int check_at(int ok, int line, const char *format, ...) {
    group_checks++;
    if (ok) {
        n_passed++;
        return 1;
    }
    n_failed++;
    group_failures++;
    va_list args;
    va_start(args, format);
    printf("      line %d: ", line);
    vprintf(format, args);
    printf("\n");
    va_end(args);
    return 0;
}

#define CHECK(cond, ...) check_at((cond) ? 1 : 0, __LINE__, __VA_ARGS__)

/** Checks a status, naming `what` and the library's message when it differs. */
static int check_status_at(moert_status got, moert_status want, const char *what, int line) {
    return check_at(got == want, line, "%s: expected %s (%d), got %s (%d): %s", what, moert_status_string(want),
                    (int)want, moert_status_string(got), (int)got, moert_last_error());
}

#define CHECK_STATUS(got, want, what) check_status_at((got), (want), (what), __LINE__)

/* ------------------------------------------------------------------------------------------------------------ */
/* Files and a minimal JSON reader                                                                              */
/* ------------------------------------------------------------------------------------------------------------ */

/** Reads a whole file into a malloc'd buffer (NUL-terminated for convenience). Returns 0 on failure. */
static int read_file(const char *path, unsigned char **out, size_t *out_size) {
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

/** A slice of a JSON text holding exactly one value (or one key, quotes included). */
typedef struct json_span {
    const char *p;
    size_t n;
} json_span;

/** Index of the first non-whitespace byte at or after `i`. */
static size_t json_skip_ws(json_span s, size_t i) {
    while (i < s.n && (s.p[i] == ' ' || s.p[i] == '\t' || s.p[i] == '\n' || s.p[i] == '\r')) i++;
    return i;
}

/** Moves `*i` past a string that starts at `*i`. Returns 0 when it is not a complete string. */
static int json_skip_string(json_span s, size_t *i) {
    if (*i >= s.n || s.p[*i] != '"') return 0;
    for (size_t j = *i + 1; j < s.n; j++) {
        if (s.p[j] == '\\') {
            j++;
        } else if (s.p[j] == '"') {
            *i = j + 1;
            return 1;
        }
    }
    return 0;
}

static int json_skip_value(json_span s, size_t *i, int depth);

/** Moves `*i` past an object or array (opened by `open`, closed by `close`) that starts at `*i`. */
static int json_skip_container(json_span s, size_t *i, char close, int depth) {
    size_t j = json_skip_ws(s, *i + 1);
    if (j < s.n && s.p[j] == close) {
        *i = j + 1;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            if (!json_skip_string(s, &j)) return 0;
            j = json_skip_ws(s, j);
            if (j >= s.n || s.p[j] != ':') return 0;
            j = json_skip_ws(s, j + 1);
        }
        if (!json_skip_value(s, &j, depth + 1)) return 0;
        j = json_skip_ws(s, j);
        if (j >= s.n) return 0;
        if (s.p[j] == close) {
            *i = j + 1;
            return 1;
        }
        if (s.p[j] != ',') return 0;
        j = json_skip_ws(s, j + 1);
    }
}

/** Moves `*i` past any JSON value that starts at `*i` (depth-limited). Returns 0 on malformed input. */
static int json_skip_value(json_span s, size_t *i, int depth) {
    if (depth > 64 || *i >= s.n) return 0;
    char c = s.p[*i];
    if (c == '"') return json_skip_string(s, i);
    if (c == '{') return json_skip_container(s, i, '}', depth);
    if (c == '[') return json_skip_container(s, i, ']', depth);
    size_t j = *i;
    while (j < s.n && (strchr("+-.eE", s.p[j]) || (s.p[j] >= '0' && s.p[j] <= '9') || (s.p[j] >= 'a' && s.p[j] <= 'z'))) {
        j++;
    }
    if (j == *i) return 0;
    *i = j;
    return 1;
}

/** Trims whitespace around a value span and checks that it holds exactly one value. */
static int json_value(json_span s, json_span *out) {
    size_t i = json_skip_ws(s, 0), start = i;
    if (!json_skip_value(s, &i, 0)) return 0;
    out->p = s.p + start;
    out->n = i - start;
    return json_skip_ws(s, i) == s.n;
}

/** Walks an object: calls `visit(key, value, ctx)` for each member (key without quotes). Returns 0 if malformed. */
static int json_object_each(json_span object, void (*visit)(json_span key, json_span value, void *ctx), void *ctx) {
    size_t i = 0;
    if (object.n < 2 || object.p[0] != '{') return 0;
    i = json_skip_ws(object, 1);
    if (i < object.n && object.p[i] == '}') return 1;
    for (;;) {
        size_t key_start = i;
        if (!json_skip_string(object, &i)) return 0;
        json_span key = {object.p + key_start + 1, i - key_start - 2};
        i = json_skip_ws(object, i);
        if (i >= object.n || object.p[i] != ':') return 0;
        i = json_skip_ws(object, i + 1);
        size_t value_start = i;
        if (!json_skip_value(object, &i, 1)) return 0;
        json_span value = {object.p + value_start, i - value_start};
        if (visit) visit(key, value, ctx);
        i = json_skip_ws(object, i);
        if (i < object.n && object.p[i] == '}') return 1;
        if (i >= object.n || object.p[i] != ',') return 0;
        i = json_skip_ws(object, i + 1);
    }
}

/** State of json_object_get()'s search. */
typedef struct json_lookup {
    const char *key;
    json_span value;
    int found;
} json_lookup;

/** json_object_each() visitor that remembers the member named `lookup->key`. */
static void json_lookup_visit(json_span key, json_span value, void *ctx) {
    json_lookup *lookup = ctx;
    if (!lookup->found && key.n == strlen(lookup->key) && memcmp(key.p, lookup->key, key.n) == 0) {
        lookup->value = value;
        lookup->found = 1;
    }
}

/** The value of member `key` of `object`. Returns 0 when absent or malformed. */
static int json_object_get(json_span object, const char *key, json_span *out) {
    json_lookup lookup = {key, {NULL, 0}, 0};
    if (!json_object_each(object, json_lookup_visit, &lookup) || !lookup.found) return 0;
    *out = lookup.value;
    return 1;
}

/** Element `index` of an array. Returns 0 when out of bounds or malformed. */
static int json_array_get(json_span array, size_t index, json_span *out) {
    if (array.n < 2 || array.p[0] != '[') return 0;
    size_t i = json_skip_ws(array, 1);
    for (size_t k = 0; i < array.n && array.p[i] != ']'; k++) {
        size_t start = i;
        if (!json_skip_value(array, &i, 1)) return 0;
        if (k == index) {
            out->p = array.p + start;
            out->n = i - start;
            return 1;
        }
        i = json_skip_ws(array, i);
        if (i < array.n && array.p[i] == ',') i = json_skip_ws(array, i + 1);
    }
    return 0;
}

/** Number of elements of an array (0 for anything else). */
static size_t json_array_len(json_span array) {
    json_span unused;
    size_t n = 0;
    while (json_array_get(array, n, &unused)) n++;
    return n;
}

/** Parses an integer value. Returns 0 for anything else (null, a fraction, a string). */
static int json_int(json_span v, int64_t *out) {
    size_t i = 0;
    int negative = v.n > 0 && v.p[0] == '-';
    if (negative) i++;
    if (i >= v.n || i + 18 < v.n) return 0;
    int64_t x = 0;
    for (; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') return 0;
        x = x * 10 + (v.p[i] - '0');
    }
    *out = negative ? -x : x;
    return 1;
}

/** Copies a string value without escapes into `buf`. Returns 0 if it is not such a string or does not fit. */
static int json_string(json_span v, char *buf, size_t capacity) {
    if (v.n < 2 || v.p[0] != '"' || v.p[v.n - 1] != '"' || v.n - 2 >= capacity) return 0;
    if (memchr(v.p, '\\', v.n)) return 0;
    memcpy(buf, v.p + 1, v.n - 2);
    buf[v.n - 2] = 0;
    return 1;
}

/** Member `key` of `object` as an integer, or `fallback` when absent or not an integer. */
static int64_t json_get_int(json_span object, const char *key, int64_t fallback) {
    json_span v;
    int64_t x;
    return json_object_get(object, key, &v) && json_int(v, &x) ? x : fallback;
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

/** What a fixture's config.json and model files say about the model: the expected moert_model_info. */
typedef struct expected_info {
    char architecture[64];
    int64_t vocab_size, hidden_size, n_layers, n_moe_layers, n_experts, n_experts_per_tok;
    int64_t n_heads, n_kv_heads, head_dim, context_length, bos_token_id, eos_token_id;
    uint64_t moe_layer_mask; /* bit l set when decoder layer l has a sparse MLP */
    int renormalizes;        /* top-k weights sum to 1 (Mixtral always; others with norm_topk_prob) */
    int32_t dtype;       /* from the dtypes found in the model's safetensors headers */
    int64_t n_params;    /* elements of the stored weights (rotary buffers excluded) */
    int64_t file_bytes;  /* sizes of the model's safetensors files */
} expected_info;

/** One fixture directory with its reference outputs. */
typedef struct fixture {
    char name[64];
    char dir[1024];
    int32_t *prompt;     /* [n_prompt] */
    int32_t *greedy;     /* [n_greedy] */
    float *logits;       /* [n_prompt, vocab] */
    float *full_logits;  /* [n_prompt + n_greedy, vocab] */
    size_t n_prompt, n_greedy, vocab;
    expected_info want;
} fixture;

/** A token id from a config value that is an integer, an array of them (the first) or null (-1). */
static int64_t config_token_id(json_span config, const char *key) {
    json_span v, first;
    int64_t id;
    if (!json_object_get(config, key, &v)) return -1;
    if (json_array_get(v, 0, &first)) v = first;
    return json_int(v, &id) ? id : -1;
}

/** The decoder layers with a sparse MLP, as a bit set: every `decoder_sparse_step`-th one not in `mlp_only_layers`. */
static uint64_t config_moe_layers(json_span config, int64_t n_layers) {
    json_span only, v;
    int64_t step = json_get_int(config, "decoder_sparse_step", 1), layer;
    uint64_t mask = 0;
    int has_only = json_object_get(config, "mlp_only_layers", &only);
    for (int64_t l = 0; l < n_layers && l < 64; l++) {
        int dense = step > 1 && (l + 1) % step != 0;
        for (size_t i = 0; has_only && json_array_get(only, i, &v); i++) {
            if (json_int(v, &layer) && layer == l) dense = 1;
        }
        if (!dense) mask |= UINT64_C(1) << l;
    }
    return mask;
}

/** Number of bits set. */
static int64_t bit_count(uint64_t x) {
    int64_t n = 0;
    for (; x; x &= x - 1) n++;
    return n;
}

/** True when member `key` of `object` is the literal true. */
static int json_get_true(json_span object, const char *key) {
    json_span v;
    return json_object_get(object, key, &v) && v.n == 4 && memcmp(v.p, "true", 4) == 0;
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
        want->n_experts = json_get_int(config, "num_local_experts", json_get_int(config, "num_experts", -1));
        want->n_experts_per_tok = json_get_int(config, "num_experts_per_tok", -1);
        want->n_heads = json_get_int(config, "num_attention_heads", -1);
        want->n_kv_heads = json_get_int(config, "num_key_value_heads", want->n_heads);
        want->head_dim = json_get_int(config, "head_dim", want->n_heads > 0 ? want->hidden_size / want->n_heads : -1);
        /* No fixture has a sliding window shorter than max_position_embeddings. */
        want->context_length = json_get_int(config, "max_position_embeddings", -1);
        want->bos_token_id = config_token_id(config, "bos_token_id");
        want->eos_token_id = config_token_id(config, "eos_token_id");
        /* MixtralSparseMoeBlock always renormalises; the others do when norm_topk_prob is true. */
        want->renormalizes = strcmp(want->architecture, "MixtralForCausalLM") == 0 ||
                             json_get_true(config, "norm_topk_prob");
    } else {
        printf("      %s: no architectures[0]\n", path);
    }
    free(text);
    return ok;
}

/** Accumulator for the tensors of a model's safetensors files. */
typedef struct weight_census {
    const st_file *file;
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
    c->n_params += (int64_t)t.count;
    if (!strcmp(t.dtype, "F32")) c->dtypes |= 1 << MOERT_DTYPE_F32;
    else if (!strcmp(t.dtype, "F16")) c->dtypes |= 1 << MOERT_DTYPE_F16;
    else if (!strcmp(t.dtype, "BF16")) c->dtypes |= 1 << MOERT_DTYPE_BF16;
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
    weight_census census = {NULL, 0, 0, 0};
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

/** Loads everything the checks need about fixture `name` under `root`. Returns 0 (and prints why) on failure. */
static int fixture_load(fixture *fx, const char *root, const char *name) {
    memset(fx, 0, sizeof *fx);
    snprintf(fx->name, sizeof fx->name, "%s", name);
    snprintf(fx->dir, sizeof fx->dir, "%s/%s", root, name);
    return read_config(fx->dir, &fx->want) && read_weight_files(fx->dir, &fx->want) && read_reference(fx);
}

/** Releases a fixture's buffers. */
static void fixture_free(fixture *fx) {
    free(fx->prompt);
    free(fx->greedy);
    free(fx->logits);
    free(fx->full_logits);
    memset(fx, 0, sizeof *fx);
}

/** The prompt followed by the greedy continuation: the sequence `full_logits` was computed on. */
static size_t fixture_sequence(const fixture *fx, int32_t *out) {
    memcpy(out, fx->prompt, fx->n_prompt * sizeof *out);
    memcpy(out + fx->n_prompt, fx->greedy, fx->n_greedy * sizeof *out);
    return fx->n_prompt + fx->n_greedy;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Small helpers over the API                                                                                   */
/* ------------------------------------------------------------------------------------------------------------ */

/**
 * max |got - ref| / max |ref| over `n` values: the error relative to the scale of the logits, since a per-element
 * relative error means nothing for logits near zero. Returns INFINITY when `got` holds a NaN.
 */
static double rel_error(const float *got, const float *ref, size_t n) {
    double scale = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
        double d = fabs((double)got[i] - ref[i]);
        if (isnan(d)) return INFINITY;
        if (d > worst) worst = d;
    }
    return scale > 0 ? worst / scale : worst;
}

/** Loads a model with default options; NULL (and a failed check) on failure. */
static moert_model *load_model(const char *dir) {
    moert_model *model = NULL;
    CHECK_STATUS(moert_model_load(dir, NULL, &model), MOERT_OK, dir);
    return model;
}

/** Creates a session with the given n_ctx and max_batch; NULL (and a failed check) on failure. */
static moert_session *new_session(moert_model *model, int64_t n_ctx, int32_t max_batch) {
    moert_session_options o;
    moert_session *s = NULL;
    moert_session_options_init(&o);
    o.n_ctx = n_ctx;
    o.max_batch = max_batch;
    CHECK_STATUS(moert_session_create(model, &o, &s), MOERT_OK, "moert_session_create");
    return s;
}

/** Index of the largest value, lowest index on ties. */
static int32_t argmax(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++) {
        if (x[i] > x[best]) best = i;
    }
    return (int32_t)best;
}

/** Records the tokens moert_session_generate() reports and stops after `stop_after` of them (0 = never). */
typedef struct token_log {
    int32_t tokens[MAX_TOKENS];
    size_t count;
    size_t stop_after;
} token_log;

/** moert_token_callback that appends to a token_log. */
static int32_t log_token(int32_t token, void *user_data) {
    token_log *log = user_data;
    if (log->count < MAX_TOKENS) log->tokens[log->count] = token;
    log->count++;
    return log->stop_after != 0 && log->count >= log->stop_after;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Library-wide checks                                                                                          */
/* ------------------------------------------------------------------------------------------------------------ */

/** Version text, number and ABI agree with the header's macros. */
static void test_version(void) {
    group_begin("version");
    const char *v = moert_version();
    CHECK(v != NULL && strcmp(v, MOERT_VERSION) == 0, "moert_version() = %s, header says %s", v ? v : "(null)",
          MOERT_VERSION);
    CHECK(moert_version_number() == MOERT_VERSION_NUMBER, "moert_version_number() = %u, header says %d",
          (unsigned)moert_version_number(), MOERT_VERSION_NUMBER);
    CHECK(moert_abi_version() == MOERT_ABI_VERSION, "moert_abi_version() = %u, header says %d",
          (unsigned)moert_abi_version(), MOERT_ABI_VERSION);
    unsigned major = 0, minor = 0, patch = 0;
    CHECK(sscanf(MOERT_VERSION, "%u.%u.%u", &major, &minor, &patch) == 3 &&
              major * 1000000u + minor * 1000u + patch == (unsigned)MOERT_VERSION_NUMBER,
          "MOERT_VERSION_NUMBER %d does not encode MOERT_VERSION %s", MOERT_VERSION_NUMBER, MOERT_VERSION);
    group_end();
}

/** Every status code has its own static text; unknown numbers say so. */
static void test_status_strings(void) {
    group_begin("status strings");
    for (moert_status s = MOERT_OK; s <= MOERT_ERR_INTERNAL; s++) {
        const char *text = moert_status_string(s);
        CHECK(text != NULL && text[0] != 0 && strcmp(text, "unknown status") != 0, "status %d has no text", (int)s);
        for (moert_status t = MOERT_OK; t < s && text; t++) {
            CHECK(strcmp(text, moert_status_string(t)) != 0, "statuses %d and %d share the text %s", (int)t, (int)s, text);
        }
    }
    const moert_status unknown[] = {-1, MOERT_ERR_INTERNAL + 1, 9999, INT32_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        const char *text = moert_status_string(unknown[i]);
        CHECK(text != NULL && strcmp(text, "unknown status") == 0, "status %d: expected \"unknown status\", got %s",
              (int)unknown[i], text ? text : "(null)");
    }
    group_end();
}

/** Thread body for test_last_error: reads this new thread's last error. */
static void *read_fresh_last_error(void *out) {
    const char *message = moert_last_error();
    *(int *)out = message != NULL && message[0] == 0;
    return NULL;
}

/** moert_last_error() is set by failures and is per thread. */
static void test_last_error(void) {
    group_begin("last error");
    moert_model *model = NULL;
    CHECK(moert_last_error() != NULL, "moert_last_error() returned NULL");
    CHECK_STATUS(moert_model_load("/nonexistent/moert-model", NULL, &model), MOERT_ERR_IO, "load of a missing dir");
    const char *message = moert_last_error();
    CHECK(message != NULL && strstr(message, "/nonexistent/moert-model") != NULL,
          "message should name the missing directory, got: %s", message ? message : "(null)");
    CHECK_STATUS(moert_set_threads(-3), MOERT_ERR_INVALID_ARGUMENT, "moert_set_threads(-3)");
    message = moert_last_error();
    CHECK(message != NULL && strstr(message, "-3") != NULL, "message should name the bad count, got: %s",
          message ? message : "(null)");
    pthread_t thread;
    int fresh_is_empty = 0;
    CHECK(pthread_create(&thread, NULL, read_fresh_last_error, &fresh_is_empty) == 0, "pthread_create failed");
    pthread_join(thread, NULL);
    CHECK(fresh_is_empty, "a new thread must see an empty last error (the message is thread-local)");
    group_end();
}

/** Thread count: set, read back, 0 restores the default, negative is refused. */
static void test_threads(void) {
    group_begin("threads");
    int32_t initial = moert_get_threads();
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK(initial == (cpus > 0 ? cpus : 1), "before any moert_set_threads, get_threads() = %d, expected the %ld online CPUs",
          (int)initial, cpus);
    CHECK_STATUS(moert_set_threads(1), MOERT_OK, "moert_set_threads(1)");
    CHECK(moert_get_threads() == 1, "after set_threads(1), get_threads() = %d", (int)moert_get_threads());
    CHECK_STATUS(moert_set_threads(2), MOERT_OK, "moert_set_threads(2)");
    CHECK(moert_get_threads() == 2, "after set_threads(2), get_threads() = %d", (int)moert_get_threads());
    CHECK_STATUS(moert_set_threads(-1), MOERT_ERR_INVALID_ARGUMENT, "moert_set_threads(-1)");
    CHECK(moert_get_threads() == 2, "a refused count must not change the setting (got %d)", (int)moert_get_threads());
    CHECK_STATUS(moert_set_threads(0), MOERT_OK, "moert_set_threads(0)");
    CHECK(moert_get_threads() == (cpus > 0 ? cpus : 1), "set_threads(0) should restore %ld (online CPUs), got %d",
          cpus, (int)moert_get_threads());
    group_end();
}

/** Every *_init sets struct_size and the defaults documented in the header. */
static void test_options_init(void) {
    group_begin("options init");
    moert_model_options mo;
    memset(&mo, 0x5a, sizeof mo);
    moert_model_options_init(&mo);
    CHECK(mo.struct_size == sizeof mo && mo.flags == 0 && mo.max_context == 0, "moert_model_options defaults");
    moert_session_options so;
    memset(&so, 0x5a, sizeof so);
    moert_session_options_init(&so);
    CHECK(so.struct_size == sizeof so && so.flags == 0 && so.n_ctx == 0 && so.max_batch == 0,
          "moert_session_options defaults");
    moert_sampler_options sa;
    memset(&sa, 0x5a, sizeof sa);
    moert_sampler_options_init(&sa);
    CHECK(sa.struct_size == sizeof sa && sa.temperature == 0.0f && sa.top_k == 0 && sa.top_p == 1.0f && sa.seed == 0,
          "moert_sampler_options defaults (greedy)");
    moert_generate_options go;
    memset(&go, 0x5a, sizeof go);
    moert_generate_options_init(&go);
    CHECK(go.struct_size == sizeof go && go.max_new_tokens == 16 && go.ignore_eos == 0 && go.sampler == NULL,
          "moert_generate_options defaults");
    group_end();
}

/** *_free(NULL) does nothing, and the NULL-tolerant getters return 0. */
static void test_free_null(void) {
    group_begin("free NULL");
    moert_model_free(NULL);
    moert_session_free(NULL);
    moert_sampler_free(NULL);
    CHECK(moert_session_n_past(NULL) == 0, "moert_session_n_past(NULL) should be 0");
    CHECK(moert_session_n_ctx(NULL) == 0, "moert_session_n_ctx(NULL) should be 0");
    group_end();
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Per-fixture parity checks                                                                                    */
/* ------------------------------------------------------------------------------------------------------------ */

/** moert_model_get_info agrees with config.json and the weight files. */
static void test_info(const fixture *fx, moert_model *model) {
    const expected_info *w = &fx->want;
    moert_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (!CHECK_STATUS(moert_model_get_info(model, &info), MOERT_OK, "moert_model_get_info")) return;
    CHECK(info.struct_size == sizeof info, "struct_size must stay as the caller set it");
    CHECK(info.architecture && strcmp(info.architecture, w->architecture) == 0, "architecture %s, config says %s",
          info.architecture ? info.architecture : "(null)", w->architecture);
    CHECK(info.vocab_size == 256 && info.vocab_size == w->vocab_size, "vocab_size %d", (int)info.vocab_size);
    CHECK(info.vocab_size == (int32_t)fx->vocab, "vocab_size %d, reference logits have %zu columns",
          (int)info.vocab_size, fx->vocab);
    CHECK(info.hidden_size == w->hidden_size, "hidden_size %d, want %lld", (int)info.hidden_size, (long long)w->hidden_size);
    CHECK(info.n_layers == w->n_layers, "n_layers %d, want %lld", (int)info.n_layers, (long long)w->n_layers);
    CHECK(info.n_moe_layers == w->n_moe_layers, "n_moe_layers %d, want %lld", (int)info.n_moe_layers,
          (long long)w->n_moe_layers);
    CHECK(info.n_experts == w->n_experts, "n_experts %d, want %lld", (int)info.n_experts, (long long)w->n_experts);
    CHECK(info.n_experts_per_tok == w->n_experts_per_tok, "n_experts_per_tok %d, want %lld",
          (int)info.n_experts_per_tok, (long long)w->n_experts_per_tok);
    CHECK(info.n_heads == w->n_heads, "n_heads %d, want %lld", (int)info.n_heads, (long long)w->n_heads);
    CHECK(info.n_kv_heads == w->n_kv_heads, "n_kv_heads %d, want %lld", (int)info.n_kv_heads, (long long)w->n_kv_heads);
    CHECK(info.head_dim == w->head_dim, "head_dim %d, want %lld", (int)info.head_dim, (long long)w->head_dim);
    CHECK(info.dtype == w->dtype, "dtype %d, weight files hold %d", (int)info.dtype, (int)w->dtype);
    CHECK(info.context_length == w->context_length, "context_length %lld, want %lld", (long long)info.context_length,
          (long long)w->context_length);
    CHECK(info.n_params == w->n_params, "n_params %lld, weight files hold %lld", (long long)info.n_params,
          (long long)w->n_params);
    CHECK(info.file_bytes == w->file_bytes, "file_bytes %lld, weight files are %lld bytes", (long long)info.file_bytes,
          (long long)w->file_bytes);
    /* Computation is float32: half-precision dense weights are converted at load, routed experts when first used;
       float32 weights may be used in place. Either way the bytes never exceed a float32 copy of every weight. */
    int64_t f32_bytes = 4 * w->n_params;
    CHECK(w->dtype == MOERT_DTYPE_F32 ? info.weight_bytes >= 0 && info.weight_bytes <= f32_bytes
                                      : info.weight_bytes > 0 && info.weight_bytes <= f32_bytes,
          "weight_bytes %lld for %lld parameters of dtype %d", (long long)info.weight_bytes, (long long)w->n_params,
          (int)w->dtype);
    CHECK(info.bos_token_id == w->bos_token_id, "bos_token_id %d, want %lld", (int)info.bos_token_id,
          (long long)w->bos_token_id);
    CHECK(info.eos_token_id == w->eos_token_id, "eos_token_id %d, want %lld", (int)info.eos_token_id,
          (long long)w->eos_token_id);
}

/** Prefill with MOERT_LOGITS_ALL reproduces transformers' logits of every prompt position. */
static void test_prefill(const fixture *fx, moert_model *model) {
    size_t n = fx->n_prompt * fx->vocab;
    float *logits = calloc(n, sizeof *logits);
    moert_session *s = new_session(model, 0, 0);
    if (s && logits) {
        CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_ALL, logits, n), MOERT_OK, "eval ALL");
        double err = rel_error(logits, fx->logits, n);
        CHECK(err <= LOGITS_RTOL, "prompt logits differ from transformers by %.3g (relative), limit %g", err, LOGITS_RTOL);
        CHECK(moert_session_n_past(s) == (int64_t)fx->n_prompt, "n_past %lld after the prompt",
              (long long)moert_session_n_past(s));
    }
    moert_session_free(s);
    free(logits);
}

/** Greedy generation equals transformers' continuation, through out_tokens and the callback alike. */
static void test_generate(const fixture *fx, moert_model *model) {
    moert_session *s = new_session(model, 0, 0);
    moert_generate_options o;
    token_log log = {{0}, 0, 0};
    int32_t out[MAX_TOKENS];
    size_t n_generated = 0;
    if (!s) return;
    moert_generate_options_init(&o);
    o.max_new_tokens = (int32_t)fx->n_greedy;
    o.ignore_eos = 1;
    CHECK_STATUS(moert_session_generate(s, fx->prompt, fx->n_prompt, &o, log_token, &log, out, MAX_TOKENS, &n_generated),
                 MOERT_OK, "generate");
    CHECK(n_generated == fx->n_greedy && log.count == fx->n_greedy, "generated %zu tokens (callback saw %zu), want %zu",
          n_generated, log.count, fx->n_greedy);
    for (size_t i = 0; i < fx->n_greedy && i < n_generated && i < log.count; i++) {
        CHECK(out[i] == fx->greedy[i], "token %zu: generated %d, transformers %d", i, (int)out[i], (int)fx->greedy[i]);
        CHECK(log.tokens[i] == out[i], "token %zu: callback saw %d, out_tokens has %d", i, (int)log.tokens[i], (int)out[i]);
    }
    moert_session_free(s);
}

/** A callback returning non-zero stops generation after that token; a small out buffer is filled while room lasts. */
static void test_generate_stop(const fixture *fx, moert_model *model) {
    moert_session *s = new_session(model, 0, 0);
    moert_generate_options o;
    token_log log = {{0}, 0, 3};
    int32_t out[2] = {-1, -1};
    size_t n_generated = 0;
    if (!s) return;
    moert_generate_options_init(&o);
    o.max_new_tokens = (int32_t)fx->n_greedy;
    o.ignore_eos = 1;
    CHECK_STATUS(moert_session_generate(s, fx->prompt, fx->n_prompt, &o, log_token, &log, out, 2, &n_generated),
                 MOERT_OK, "generate with a stopping callback");
    CHECK(n_generated == 3 && log.count == 3, "stopped after %zu tokens (callback saw %zu), want 3", n_generated, log.count);
    CHECK(out[0] == fx->greedy[0] && out[1] == fx->greedy[1], "out_tokens holds the first two greedy tokens");
    CHECK(log.tokens[2] == fx->greedy[2], "third token %d, want %d", (int)log.tokens[2], (int)fx->greedy[2]);
    moert_session_free(s);
}

/** Without ignore_eos, generation ends right after the model's EOS token (which is reported). */
static void test_generate_eos(const fixture *fx, moert_model *model) {
    moert_session *s = new_session(model, 0, 0);
    moert_generate_options o;
    int32_t out[MAX_TOKENS];
    size_t n_generated = 0, want = fx->n_greedy;
    if (!s) return;
    for (size_t i = 0; i < fx->n_greedy; i++) {
        if (fx->greedy[i] == fx->want.eos_token_id) {
            want = i + 1;
            break;
        }
    }
    moert_generate_options_init(&o);
    o.max_new_tokens = (int32_t)fx->n_greedy;
    CHECK_STATUS(moert_session_generate(s, fx->prompt, fx->n_prompt, &o, NULL, NULL, out, MAX_TOKENS, &n_generated),
                 MOERT_OK, "generate (stop at EOS)");
    CHECK(n_generated == want, "generated %zu tokens, want %zu (EOS %lld)", n_generated, want,
          (long long)fx->want.eos_token_id);
    moert_session_free(s);
}

/** Prompt then one token at a time with MOERT_LOGITS_LAST reproduces the rows of full_logits. */
static void test_kv_decode(const fixture *fx, moert_model *model) {
    moert_session *s = new_session(model, 0, 0);
    float *row = calloc(fx->vocab, sizeof *row);
    const float *ref = fx->full_logits;
    size_t v = fx->vocab, p = fx->n_prompt;
    if (s && row) {
        CHECK_STATUS(moert_session_eval(s, fx->prompt, p, MOERT_LOGITS_LAST, row, v), MOERT_OK, "eval prompt LAST");
        double err = rel_error(row, ref + (p - 1) * v, v), worst = err;
        for (size_t i = 0; i < fx->n_greedy; i++) {
            CHECK_STATUS(moert_session_eval(s, &fx->greedy[i], 1, MOERT_LOGITS_LAST, row, v), MOERT_OK, "eval one token");
            err = rel_error(row, ref + (p + i) * v, v);
            CHECK(err <= LOGITS_RTOL, "decode step %zu: logits differ from full_logits row %zu by %.3g", i, p + i, err);
            CHECK(moert_session_n_past(s) == (int64_t)(p + i + 1), "n_past %lld after decode step %zu",
                  (long long)moert_session_n_past(s), i);
            if (err > worst) worst = err;
        }
        CHECK(worst <= LOGITS_RTOL, "worst decode error %.3g", worst);
    }
    moert_session_free(s);
    free(row);
}

static void test_trace(const fixture *fx, moert_model *model);

/** One group of checks run on a loaded fixture. */
typedef struct fixture_group {
    const char *what;
    void (*run)(const fixture *, moert_model *);
} fixture_group;

/** Loads fixture `name` and runs `groups` on it, one reported group each. */
static void run_fixture_groups(const char *root, const char *name, const fixture_group *groups, size_t n_groups) {
    char title[160];
    fixture fx;
    snprintf(title, sizeof title, "%s: reference", name);
    group_begin(title);
    int loaded = CHECK(fixture_load(&fx, root, name), "cannot read fixture %s/%s", root, name);
    moert_model *model = loaded ? load_model(fx.dir) : NULL;
    group_end();
    if (!model) {
        fixture_free(&fx);
        return;
    }
    for (size_t i = 0; i < n_groups; i++) {
        snprintf(title, sizeof title, "%s: %s", name, groups[i].what);
        group_begin(title);
        groups[i].run(&fx, model);
        group_end();
    }
    moert_model_free(model);
    fixture_free(&fx);
}

/** Runs the parity checks of one fixture, one group per concern. */
static void test_fixture(const char *root, const char *name) {
    static const fixture_group groups[] = {
        {"model info", test_info},           {"prefill logits", test_prefill},
        {"greedy generate", test_generate},  {"callback stop", test_generate_stop},
        {"generate to EOS", test_generate_eos}, {"kv-cached decode", test_kv_decode},
        {"routing trace and counters", test_trace},
    };
    run_fixture_groups(root, name, groups, sizeof groups / sizeof *groups);
}

/** A model whose checkpoint names router/expert plugins (found next to libmoert.so): logits, greedy generation
    and cached decode against the PyTorch reference of tools/make_plugin_fixtures.py. */
static void test_plugin_fixture(const char *root, const char *name) {
    static const fixture_group groups[] = {
        {"prefill logits", test_prefill}, {"greedy generate", test_generate}, {"kv-cached decode", test_kv_decode},
    };
    run_fixture_groups(root, name, groups, sizeof groups / sizeof *groups);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Sessions: state, options and older hosts                                                                     */
/* ------------------------------------------------------------------------------------------------------------ */

/** n_past, n_ctx and reset behave as documented; reset gives the same logits again. */
static void test_session_state(const fixture *fx, moert_model *model) {
    group_begin("session state");
    moert_session *s = new_session(model, 32, 0), *d = new_session(model, 0, 0);
    float *a = calloc(fx->vocab, sizeof *a), *b = calloc(fx->vocab, sizeof *b);
    if (s && d && a && b) {
        CHECK(moert_session_n_ctx(s) == 32, "n_ctx %lld, asked for 32", (long long)moert_session_n_ctx(s));
        CHECK(moert_session_n_ctx(d) == (fx->want.context_length < 4096 ? fx->want.context_length : 4096),
              "default n_ctx %lld should be min(context length, 4096)", (long long)moert_session_n_ctx(d));
        CHECK(moert_session_n_past(s) == 0, "a new session is empty");
        CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_NONE, NULL, 0), MOERT_OK, "eval NONE");
        CHECK(moert_session_n_past(s) == (int64_t)fx->n_prompt, "n_past %lld after the prompt",
              (long long)moert_session_n_past(s));
        CHECK_STATUS(moert_session_eval(s, fx->greedy, 1, MOERT_LOGITS_LAST, a, fx->vocab), MOERT_OK, "eval after NONE");
        CHECK_STATUS(moert_session_reset(s), MOERT_OK, "moert_session_reset");
        CHECK(moert_session_n_past(s) == 0, "n_past %lld after reset", (long long)moert_session_n_past(s));
        CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_NONE, NULL, 0), MOERT_OK, "eval again");
        CHECK_STATUS(moert_session_eval(s, fx->greedy, 1, MOERT_LOGITS_LAST, b, fx->vocab), MOERT_OK, "eval again");
        CHECK(memcmp(a, b, fx->vocab * sizeof *a) == 0, "logits after reset differ from the first run");
        CHECK(rel_error(a, fx->full_logits + fx->n_prompt * fx->vocab, fx->vocab) <= LOGITS_RTOL,
              "MOERT_LOGITS_NONE prefill then a token should match full_logits");
    }
    moert_session_free(s);
    moert_session_free(d);
    free(a);
    free(b);
    group_end();
}

/** A prompt larger than max_batch is split internally and gives the same logits. */
static void test_max_batch(const fixture *fx, moert_model *model) {
    group_begin("max_batch chunking");
    size_t n = fx->n_prompt * fx->vocab;
    float *logits = calloc(n, sizeof *logits);
    moert_session *s = new_session(model, 0, 2);
    if (s && logits) {
        CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_ALL, logits, n), MOERT_OK, "eval ALL");
        double err = rel_error(logits, fx->logits, n);
        CHECK(err <= LOGITS_RTOL, "chunked prompt logits differ by %.3g", err);
    }
    moert_session_free(s);
    free(logits);
    group_end();
}

/** max_context caps the model's context length and the sessions' n_ctx. */
static void test_max_context(const fixture *fx) {
    group_begin("model max_context");
    moert_model_options o;
    moert_model *model = NULL;
    moert_session *s = NULL;
    moert_session_options so;
    moert_model_info info;
    moert_model_options_init(&o);
    o.max_context = 16;
    if (CHECK_STATUS(moert_model_load(fx->dir, &o, &model), MOERT_OK, "load with max_context 16")) {
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        CHECK_STATUS(moert_model_get_info(model, &info), MOERT_OK, "get_info");
        CHECK(info.context_length == 16, "context_length %lld, want 16", (long long)info.context_length);
        s = new_session(model, 0, 0);
        CHECK(moert_session_n_ctx(s) == 16, "default n_ctx %lld, want 16", (long long)moert_session_n_ctx(s));
        moert_session_free(s);
        s = (moert_session *)(void *)&o;
        moert_session_options_init(&so);
        so.n_ctx = 17;
        CHECK_STATUS(moert_session_create(model, &so, &s), MOERT_ERR_INVALID_ARGUMENT, "n_ctx beyond max_context");
        CHECK(s == NULL, "out_session must be NULL after a failure");
    }
    moert_model_free(model);
    group_end();
}

/** Options structs from an "older host" (a smaller struct_size) are accepted; missing fields take defaults. */
static void test_older_host(const fixture *fx, moert_model *model) {
    group_begin("older host structs");
    moert_session_options so;
    moert_session *s = NULL;
    moert_session_options_init(&so);
    so.struct_size = (uint32_t)offsetof(moert_session_options, max_batch);
    so.n_ctx = 24;
    if (CHECK_STATUS(moert_session_create(model, &so, &s), MOERT_OK, "short moert_session_options")) {
        CHECK(moert_session_n_ctx(s) == 24, "n_ctx %lld, the covered field asked for 24", (long long)moert_session_n_ctx(s));
    }

    moert_model_options mo;
    moert_model *m = NULL;
    moert_model_info info;
    moert_model_options_init(&mo);
    mo.struct_size = (uint32_t)offsetof(moert_model_options, max_context);
    mo.max_context = 8; /* not covered by struct_size: must be ignored */
    if (CHECK_STATUS(moert_model_load(fx->dir, &mo, &m), MOERT_OK, "short moert_model_options")) {
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        CHECK_STATUS(moert_model_get_info(m, &info), MOERT_OK, "get_info");
        CHECK(info.context_length == fx->want.context_length, "max_context beyond struct_size was read (%lld)",
              (long long)info.context_length);
    }
    moert_model_free(m);

    /* An older moert_model_info: only the covered fields are written. */
    memset(&info, 0x5a, sizeof info);
    info.struct_size = (uint32_t)offsetof(moert_model_info, hidden_size);
    CHECK_STATUS(moert_model_get_info(model, &info), MOERT_OK, "short moert_model_info");
    CHECK(info.vocab_size == 256, "covered field vocab_size %d", (int)info.vocab_size);
    CHECK(info.hidden_size == 0x5a5a5a5a && info.eos_token_id == 0x5a5a5a5a, "fields beyond struct_size were written");

    /* An older moert_generate_options without `sampler`: an invalid sampler there must not be read. */
    moert_sampler_options bad;
    moert_generate_options go;
    int32_t out[MAX_TOKENS];
    size_t n_generated = 0;
    moert_sampler_options_init(&bad);
    bad.temperature = -1.0f;
    moert_generate_options_init(&go);
    go.struct_size = (uint32_t)offsetof(moert_generate_options, sampler);
    go.max_new_tokens = (int32_t)fx->n_greedy;
    go.ignore_eos = 1;
    go.sampler = &bad;
    if (s && CHECK_STATUS(moert_session_reset(s), MOERT_OK, "reset")) {
        CHECK_STATUS(moert_session_generate(s, fx->prompt, fx->n_prompt, &go, NULL, NULL, out, MAX_TOKENS, &n_generated),
                     MOERT_OK, "short moert_generate_options");
        CHECK(n_generated == fx->n_greedy && memcmp(out, fx->greedy, fx->n_greedy * sizeof *out) == 0,
              "short generate options should generate greedily");
    }
    moert_session_free(s);
    group_end();
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Error cases, from a table                                                                                    */
/* ------------------------------------------------------------------------------------------------------------ */

/** What the error cases run against. */
typedef struct error_env {
    const fixture *fx;
    moert_model *model;
    moert_session *session;  /* n_ctx 8, holds nothing */
    moert_sampler *sampler;  /* greedy */
    char tmpdir[64];         /* a scratch directory for malformed checkpoints */
    int out_not_cleared;     /* set by a case whose out-pointer was not set to NULL (or 0) */
} error_env;

/** One failing call: what is wrong, the call, the status it must return and a substring of the message. */
typedef struct error_case {
    const char *name;
    moert_status (*run)(error_env *env);
    moert_status expected;
    const char *message; /* NULL: only checked to be non-empty */
} error_case;

/** Notes whether a failed call left its out-pointer set; returns `status` unchanged. */
static moert_status cleared(error_env *env, moert_status status, const void *out) {
    if (out != NULL) env->out_not_cleared = 1;
    return status;
}

/** A non-NULL pointer of no meaning, put in out-pointers to see that failures clear them. */
#define STALE(type) ((type *)(void *)&stale_target)
static int stale_target;

/** Writes `text` into `name` inside the scratch directory. */
static void write_scratch(error_env *env, const char *name, const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", env->tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/*
** The failing calls of the error table, one function per case; error_cases[] below names each one and gives the
** status and message it must produce.
*/
static moert_status load_null_path(error_env *e) {
    moert_model *m = STALE(moert_model);
    moert_status status = moert_model_load(NULL, NULL, &m);
    return cleared(e, status, m);
}
static moert_status load_null_out(error_env *e) { return moert_model_load(e->fx->dir, NULL, NULL); }
static moert_status load_missing_dir(error_env *e) {
    moert_model *m = STALE(moert_model);
    moert_status status = moert_model_load("/nonexistent/moert-model", NULL, &m);
    return cleared(e, status, m);
}
static moert_status load_no_config(error_env *e) {
    moert_model *m = STALE(moert_model);
    moert_status status = moert_model_load(e->tmpdir, NULL, &m);
    return cleared(e, status, m);
}
static moert_status load_bad_json(error_env *e) {
    moert_model *m = STALE(moert_model);
    write_scratch(e, "config.json", "{\"architectures\": [\"MixtralForCausalLM\"");
    moert_status status = moert_model_load(e->tmpdir, NULL, &m);
    return cleared(e, status, m);
}
static moert_status load_unsupported_arch(error_env *e) {
    moert_model *m = STALE(moert_model);
    write_scratch(e, "config.json", "{\"architectures\": [\"GPT2LMHeadModel\"], \"vocab_size\": 256}");
    moert_status status = moert_model_load(e->tmpdir, NULL, &m);
    return cleared(e, status, m);
}
static moert_status load_flags(error_env *e) {
    moert_model *m = STALE(moert_model);
    moert_model_options o;
    moert_model_options_init(&o);
    o.flags = 1;
    moert_status status = moert_model_load(e->fx->dir, &o, &m);
    return cleared(e, status, m);
}
static moert_status load_zero_struct_size(error_env *e) {
    moert_model *m = STALE(moert_model);
    moert_model_options o;
    moert_model_options_init(&o);
    o.struct_size = 0;
    moert_status status = moert_model_load(e->fx->dir, &o, &m);
    return cleared(e, status, m);
}
static moert_status info_null_model(error_env *e) {
    moert_model_info info;
    info.struct_size = sizeof info;
    (void)e;
    return moert_model_get_info(NULL, &info);
}
static moert_status info_null_info(error_env *e) { return moert_model_get_info(e->model, NULL); }
static moert_status session_null_model(error_env *e) {
    moert_session *s = STALE(moert_session);
    moert_status status = moert_session_create(NULL, NULL, &s);
    return cleared(e, status, s);
}
static moert_status session_null_out(error_env *e) { return moert_session_create(e->model, NULL, NULL); }
static moert_status session_n_ctx_too_big(error_env *e) {
    moert_session *s = STALE(moert_session);
    moert_session_options o;
    moert_session_options_init(&o);
    o.n_ctx = e->fx->want.context_length + 1;
    moert_status status = moert_session_create(e->model, &o, &s);
    return cleared(e, status, s);
}
static moert_status session_negative_n_ctx(error_env *e) {
    moert_session *s = STALE(moert_session);
    moert_session_options o;
    moert_session_options_init(&o);
    o.n_ctx = -1;
    moert_status status = moert_session_create(e->model, &o, &s);
    return cleared(e, status, s);
}
static moert_status session_flags(error_env *e) {
    moert_session *s = STALE(moert_session);
    moert_session_options o;
    moert_session_options_init(&o);
    o.flags = 2;
    moert_status status = moert_session_create(e->model, &o, &s);
    return cleared(e, status, s);
}
static moert_status reset_null(error_env *e) {
    (void)e;
    return moert_session_reset(NULL);
}
static moert_status eval_null_session(error_env *e) {
    float row[256];
    return moert_session_eval(NULL, e->fx->prompt, 1, MOERT_LOGITS_LAST, row, 256);
}
static moert_status eval_null_tokens(error_env *e) {
    float row[256];
    return moert_session_eval(e->session, NULL, 1, MOERT_LOGITS_LAST, row, 256);
}
static moert_status eval_no_tokens(error_env *e) {
    float row[256];
    return moert_session_eval(e->session, e->fx->prompt, 0, MOERT_LOGITS_LAST, row, 256);
}
static moert_status eval_count_past_int_max(error_env *e) {
    float row[256];
    return moert_session_eval(e->session, e->fx->prompt, SIZE_MAX, MOERT_LOGITS_LAST, row, 256);
}
static moert_status eval_bad_mode(error_env *e) {
    float row[256];
    return moert_session_eval(e->session, e->fx->prompt, 1, 3, row, 256);
}
static moert_status eval_null_logits(error_env *e) {
    return moert_session_eval(e->session, e->fx->prompt, 1, MOERT_LOGITS_LAST, NULL, 256);
}
static moert_status eval_token_too_big(error_env *e) {
    const int32_t tokens[] = {3, 256, 4};
    float row[256];
    return moert_session_eval(e->session, tokens, 3, MOERT_LOGITS_LAST, row, 256);
}
static moert_status eval_token_negative(error_env *e) {
    const int32_t tokens[] = {-1};
    float row[256];
    return moert_session_eval(e->session, tokens, 1, MOERT_LOGITS_LAST, row, 256);
}
static moert_status eval_context_full(error_env *e) {
    int32_t tokens[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    return moert_session_eval(e->session, tokens, 9, MOERT_LOGITS_NONE, NULL, 0);
}
static moert_status eval_last_too_small(error_env *e) {
    float row[256];
    return moert_session_eval(e->session, e->fx->prompt, 2, MOERT_LOGITS_LAST, row, 255);
}
static moert_status eval_all_too_small(error_env *e) {
    float rows[2 * 256];
    return moert_session_eval(e->session, e->fx->prompt, 2, MOERT_LOGITS_ALL, rows, 2 * 256 - 1);
}
/** Sampler creation with one bad option; `which` picks it. */
static moert_status sampler_with(error_env *e, float temperature, int32_t top_k, float top_p) {
    moert_sampler *s = STALE(moert_sampler);
    moert_sampler_options o;
    moert_sampler_options_init(&o);
    o.temperature = temperature;
    o.top_k = top_k;
    o.top_p = top_p;
    moert_status status = moert_sampler_create(&o, &s);
    return cleared(e, status, s);
}
static moert_status sampler_negative_temperature(error_env *e) { return sampler_with(e, -0.5f, 0, 1.0f); }
static moert_status sampler_nan_temperature(error_env *e) { return sampler_with(e, NAN, 0, 1.0f); }
static moert_status sampler_top_p_zero(error_env *e) { return sampler_with(e, 1.0f, 0, 0.0f); }
static moert_status sampler_top_p_above_one(error_env *e) { return sampler_with(e, 1.0f, 0, 1.5f); }
static moert_status sampler_negative_top_k(error_env *e) { return sampler_with(e, 1.0f, -1, 1.0f); }
static moert_status sampler_null_out(error_env *e) {
    (void)e;
    return moert_sampler_create(NULL, NULL);
}
static moert_status sample_null_sampler(error_env *e) {
    const float row[2] = {0, 1};
    int32_t t;
    (void)e;
    return moert_sampler_sample(NULL, row, 2, &t);
}
static moert_status sample_null_logits(error_env *e) {
    int32_t t;
    return moert_sampler_sample(e->sampler, NULL, 2, &t);
}
static moert_status sample_null_out(error_env *e) {
    const float row[2] = {0, 1};
    return moert_sampler_sample(e->sampler, row, 2, NULL);
}
static moert_status sample_empty(error_env *e) {
    const float row[2] = {0, 1};
    int32_t t;
    return moert_sampler_sample(e->sampler, row, 0, &t);
}
static moert_status sample_all_nan(error_env *e) {
    const float row[3] = {NAN, NAN, NAN};
    int32_t t;
    return moert_sampler_sample(e->sampler, row, 3, &t);
}
/** moert_session_generate on the shared 8-token session with `options`; checks out_n_generated is cleared. */
static moert_status generate_with(error_env *e, const int32_t *prompt, size_t n, const moert_generate_options *o) {
    size_t n_generated = 77;
    moert_status status = moert_session_generate(e->session, prompt, n, o, NULL, NULL, NULL, 0, &n_generated);
    return cleared(e, status, n_generated == 0 ? NULL : &n_generated);
}
static moert_status generate_null_session(error_env *e) {
    return moert_session_generate(NULL, e->fx->prompt, 1, NULL, NULL, NULL, NULL, 0, NULL);
}
static moert_status generate_null_prompt(error_env *e) { return generate_with(e, NULL, 3, NULL); }
static moert_status generate_nothing_to_continue(error_env *e) { return generate_with(e, NULL, 0, NULL); }
static moert_status generate_count_past_int_max(error_env *e) { return generate_with(e, e->fx->prompt, SIZE_MAX, NULL); }
static moert_status generate_bad_token(error_env *e) {
    const int32_t prompt[] = {1, 1000};
    return generate_with(e, prompt, 2, NULL);
}
static moert_status generate_prompt_too_long(error_env *e) {
    const int32_t prompt[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    return generate_with(e, prompt, 9, NULL);
}
static moert_status generate_negative_count(error_env *e) {
    moert_generate_options o;
    moert_generate_options_init(&o);
    o.max_new_tokens = -1;
    return generate_with(e, e->fx->prompt, 1, &o);
}
static moert_status generate_bad_sampler(error_env *e) {
    moert_sampler_options so;
    moert_generate_options o;
    moert_sampler_options_init(&so);
    so.top_p = 0.0f;
    moert_generate_options_init(&o);
    o.sampler = &so;
    return generate_with(e, e->fx->prompt, 1, &o);
}
static moert_status threads_negative(error_env *e) {
    (void)e;
    return moert_set_threads(-2);
}

static const error_case error_cases[] = {
    {"load: NULL path", load_null_path, MOERT_ERR_INVALID_ARGUMENT, "path"},
    {"load: NULL out_model", load_null_out, MOERT_ERR_INVALID_ARGUMENT, "out_model"},
    {"load: missing directory", load_missing_dir, MOERT_ERR_IO, "/nonexistent/moert-model"},
    {"load: directory without config.json", load_no_config, MOERT_ERR_IO, "config.json"},
    {"load: truncated config.json", load_bad_json, MOERT_ERR_FORMAT, "config.json"},
    {"load: unsupported architecture", load_unsupported_arch, MOERT_ERR_UNSUPPORTED, "GPT2LMHeadModel"},
    {"load: flags not 0", load_flags, MOERT_ERR_INVALID_ARGUMENT, "flags"},
    {"load: struct_size 0", load_zero_struct_size, MOERT_ERR_INVALID_ARGUMENT, "struct_size"},
    {"get_info: NULL model", info_null_model, MOERT_ERR_INVALID_ARGUMENT, "model"},
    {"get_info: NULL info", info_null_info, MOERT_ERR_INVALID_ARGUMENT, "info"},
    {"session_create: NULL model", session_null_model, MOERT_ERR_INVALID_ARGUMENT, "model"},
    {"session_create: NULL out_session", session_null_out, MOERT_ERR_INVALID_ARGUMENT, "out_session"},
    {"session_create: n_ctx beyond the model", session_n_ctx_too_big, MOERT_ERR_INVALID_ARGUMENT, "n_ctx"},
    {"session_create: negative n_ctx", session_negative_n_ctx, MOERT_ERR_INVALID_ARGUMENT, "n_ctx"},
    {"session_create: flags not 0", session_flags, MOERT_ERR_INVALID_ARGUMENT, "flags"},
    {"session_reset: NULL session", reset_null, MOERT_ERR_INVALID_ARGUMENT, "session"},
    {"eval: NULL session", eval_null_session, MOERT_ERR_INVALID_ARGUMENT, "session"},
    {"eval: NULL tokens", eval_null_tokens, MOERT_ERR_INVALID_ARGUMENT, "tokens"},
    {"eval: no tokens", eval_no_tokens, MOERT_ERR_INVALID_ARGUMENT, NULL},
    {"eval: n_tokens SIZE_MAX", eval_count_past_int_max, MOERT_ERR_INVALID_ARGUMENT, "n_tokens"},
    {"eval: unknown logits_mode", eval_bad_mode, MOERT_ERR_INVALID_ARGUMENT, "logits_mode"},
    {"eval: NULL logits with LAST", eval_null_logits, MOERT_ERR_INVALID_ARGUMENT, "logits"},
    {"eval: token id = vocab_size", eval_token_too_big, MOERT_ERR_OUT_OF_RANGE, "256"},
    {"eval: negative token id", eval_token_negative, MOERT_ERR_OUT_OF_RANGE, "-1"},
    {"eval: more tokens than n_ctx", eval_context_full, MOERT_ERR_CONTEXT_FULL, NULL},
    {"eval: LAST buffer of vocab-1", eval_last_too_small, MOERT_ERR_BUFFER_TOO_SMALL, "255"},
    {"eval: ALL buffer one short", eval_all_too_small, MOERT_ERR_BUFFER_TOO_SMALL, "511"},
    {"sampler: negative temperature", sampler_negative_temperature, MOERT_ERR_INVALID_ARGUMENT, "temperature"},
    {"sampler: NaN temperature", sampler_nan_temperature, MOERT_ERR_INVALID_ARGUMENT, "temperature"},
    {"sampler: top_p 0", sampler_top_p_zero, MOERT_ERR_INVALID_ARGUMENT, "top_p"},
    {"sampler: top_p 1.5", sampler_top_p_above_one, MOERT_ERR_INVALID_ARGUMENT, "top_p"},
    {"sampler: negative top_k", sampler_negative_top_k, MOERT_ERR_INVALID_ARGUMENT, "top_k"},
    {"sampler: NULL out_sampler", sampler_null_out, MOERT_ERR_INVALID_ARGUMENT, "out_sampler"},
    {"sample: NULL sampler", sample_null_sampler, MOERT_ERR_INVALID_ARGUMENT, "sampler"},
    {"sample: NULL logits", sample_null_logits, MOERT_ERR_INVALID_ARGUMENT, "logits"},
    {"sample: NULL out_token", sample_null_out, MOERT_ERR_INVALID_ARGUMENT, "out_token"},
    {"sample: n_vocab 0", sample_empty, MOERT_ERR_INVALID_ARGUMENT, NULL},
    {"sample: all NaN", sample_all_nan, MOERT_ERR_INVALID_ARGUMENT, "NaN"},
    {"generate: NULL session", generate_null_session, MOERT_ERR_INVALID_ARGUMENT, "session"},
    {"generate: NULL prompt with n_prompt 3", generate_null_prompt, MOERT_ERR_INVALID_ARGUMENT, "prompt"},
    {"generate: empty prompt on an empty session", generate_nothing_to_continue, MOERT_ERR_INVALID_ARGUMENT, NULL},
    {"generate: n_prompt SIZE_MAX", generate_count_past_int_max, MOERT_ERR_INVALID_ARGUMENT, "n_prompt"},
    {"generate: token id out of range", generate_bad_token, MOERT_ERR_OUT_OF_RANGE, "1000"},
    {"generate: prompt longer than n_ctx", generate_prompt_too_long, MOERT_ERR_CONTEXT_FULL, NULL},
    {"generate: negative max_new_tokens", generate_negative_count, MOERT_ERR_INVALID_ARGUMENT, "max_new_tokens"},
    {"generate: invalid sampler options", generate_bad_sampler, MOERT_ERR_INVALID_ARGUMENT, "top_p"},
    {"set_threads: negative", threads_negative, MOERT_ERR_INVALID_ARGUMENT, "-2"},
};

/** Runs one error case: status, message, cleared out-pointers, and an untouched session. */
static void run_error_case(error_env *env, const error_case *c) {
    env->out_not_cleared = 0;
    moert_status got = c->run(env);
    const char *message = moert_last_error();
    check_at(got == c->expected, __LINE__, "%s: expected %s (%d), got %s (%d): %s", c->name,
             moert_status_string(c->expected), (int)c->expected, moert_status_string(got), (int)got, message);
    CHECK(message != NULL && message[0] != 0, "%s: moert_last_error() is empty", c->name);
    if (c->message) {
        CHECK(message != NULL && strstr(message, c->message) != NULL, "%s: message should mention \"%s\", got: %s",
              c->name, c->message, message ? message : "(null)");
    }
    CHECK(!env->out_not_cleared, "%s: the out-pointer was not cleared on failure", c->name);
    if (c->expected == MOERT_ERR_OUT_OF_RANGE || c->expected == MOERT_ERR_CONTEXT_FULL) {
        CHECK(moert_session_n_past(env->session) == 0, "%s: documented to evaluate nothing, but n_past is %lld",
              c->name, (long long)moert_session_n_past(env->session));
    }
    moert_session_reset(env->session);
}

/** Every malformed call fails with its documented status, a message, and NULL out-pointers. */
static void test_error_cases(const fixture *fx, moert_model *model) {
    group_begin("error cases");
    error_env env;
    memset(&env, 0, sizeof env);
    env.fx = fx;
    env.model = model;
    env.session = new_session(model, 8, 0);
    CHECK_STATUS(moert_sampler_create(NULL, &env.sampler), MOERT_OK, "moert_sampler_create(NULL options)");
    snprintf(env.tmpdir, sizeof env.tmpdir, "/tmp/moert-test-XXXXXX");
    int have_tmp = CHECK(mkdtemp(env.tmpdir) != NULL, "mkdtemp failed");
    for (size_t i = 0; env.session && env.sampler && have_tmp && i < sizeof error_cases / sizeof *error_cases; i++) {
        run_error_case(&env, &error_cases[i]);
    }
    char config[128];
    snprintf(config, sizeof config, "%s/config.json", env.tmpdir);
    remove(config);
    if (have_tmp) rmdir(env.tmpdir);
    moert_sampler_free(env.sampler);
    moert_session_free(env.session);
    CHECK_STATUS(moert_set_threads(0), MOERT_OK, "restore threads");
    group_end();
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Samplers and sampled generation                                                                              */
/* ------------------------------------------------------------------------------------------------------------ */

/** Creates a sampler with the given options; NULL (and a failed check) on failure. */
static moert_sampler *new_sampler(float temperature, int32_t top_k, float top_p, uint64_t seed) {
    moert_sampler_options o;
    moert_sampler *s = NULL;
    moert_sampler_options_init(&o);
    o.temperature = temperature;
    o.top_k = top_k;
    o.top_p = top_p;
    o.seed = seed;
    CHECK_STATUS(moert_sampler_create(&o, &s), MOERT_OK, "moert_sampler_create");
    return s;
}

/** Draws `n` tokens from `logits` into `out`. Returns 0 when a draw fails. */
static int draw(moert_sampler *s, const float *logits, size_t n_vocab, int32_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!CHECK_STATUS(moert_sampler_sample(s, logits, n_vocab, &out[i]), MOERT_OK, "moert_sampler_sample")) return 0;
    }
    return 1;
}

/** Greedy sampling is argmax with the lowest id on ties, for NULL options and default options alike. */
static void test_sampler_greedy(const fixture *fx) {
    group_begin("sampler greedy");
    static const float ties[] = {0.5f, 2.0f, -1.0f, 2.0f, NAN, 1.0f};
    moert_sampler *from_null = NULL, *from_defaults = new_sampler(0.0f, 0, 1.0f, 0);
    int32_t t = -1;
    CHECK_STATUS(moert_sampler_create(NULL, &from_null), MOERT_OK, "create with NULL options");
    moert_sampler *samplers[2] = {from_null, from_defaults};
    for (size_t k = 0; k < 2; k++) {
        if (!samplers[k]) continue;
        CHECK_STATUS(moert_sampler_sample(samplers[k], ties, 6, &t), MOERT_OK, "sample");
        CHECK(t == 1, "tie between ids 1 and 3 should give 1, got %d", (int)t);
        for (size_t row = 0; row < fx->n_prompt; row++) {
            const float *logits = fx->logits + row * fx->vocab;
            CHECK_STATUS(moert_sampler_sample(samplers[k], logits, fx->vocab, &t), MOERT_OK, "sample");
            CHECK(t == argmax(logits, fx->vocab), "row %zu: greedy %d, argmax %d", row, (int)t, (int)argmax(logits, fx->vocab));
        }
    }
    moert_sampler_free(from_null);
    moert_sampler_free(from_defaults);
    group_end();
}

/** Seeded sampling is reproducible, stays in range, and the top_k / top_p limits hold. */
static void test_sampler_seeded(void) {
    group_begin("sampler seeded");
    float flat[16];
    int32_t a[64], b[64], c[64];
    for (int i = 0; i < 16; i++) flat[i] = (float)(i % 4) * 0.25f;  /* ids 3, 7, 11, 15 are the top four */
    moert_sampler *s1 = new_sampler(1.0f, 0, 1.0f, 42), *s2 = new_sampler(1.0f, 0, 1.0f, 42);
    moert_sampler *s3 = new_sampler(1.0f, 0, 1.0f, 43);
    if (s1 && s2 && s3 && draw(s1, flat, 16, a, 64) && draw(s2, flat, 16, b, 64) && draw(s3, flat, 16, c, 64)) {
        CHECK(memcmp(a, b, sizeof a) == 0, "equal seeds must give equal draws");
        CHECK(memcmp(a, c, sizeof a) != 0, "seeds 42 and 43 gave the same 64 draws over 16 near-equal tokens");
        int in_range = 1, distinct = 0, seen[16] = {0};
        for (int i = 0; i < 64; i++) {
            in_range &= a[i] >= 0 && a[i] < 16;
            if (in_range && !seen[a[i]]++) distinct++;
        }
        CHECK(in_range, "a draw is outside [0, 16)");
        CHECK(distinct > 1, "temperature 1 over near-equal logits drew only one token in 64 draws");
    }
    moert_sampler_free(s1);
    moert_sampler_free(s2);
    moert_sampler_free(s3);

    moert_sampler *top1 = new_sampler(1.5f, 1, 1.0f, 7), *top4 = new_sampler(2.0f, 4, 1.0f, 7);
    moert_sampler *nucleus = new_sampler(1.0f, 0, 0.01f, 7);
    if (top1 && top4 && nucleus && draw(top1, flat, 16, a, 64) && draw(top4, flat, 16, b, 64) &&
        draw(nucleus, flat, 16, c, 64)) {
        for (int i = 0; i < 64; i++) {
            CHECK(a[i] == 3, "top_k 1 must give the argmax (3), got %d", (int)a[i]);
            CHECK(b[i] % 4 == 3, "top_k 4 drew %d, not one of the four most likely", (int)b[i]);
            CHECK(c[i] == 3, "top_p 0.01 must keep only the most likely token (3), got %d", (int)c[i]);
        }
    }
    moert_sampler_free(top1);
    moert_sampler_free(top4);
    moert_sampler_free(nucleus);
    group_end();
}

/** Sampled generation through moert_generate_options is reproducible with a seed; top_k 1 is greedy. */
static void test_generate_sampled(const fixture *fx, moert_model *model) {
    group_begin("sampled generate");
    moert_sampler_options so;
    moert_generate_options go;
    int32_t a[MAX_TOKENS], b[MAX_TOKENS];
    size_t na = 0, nb = 0;
    moert_session *s = new_session(model, 0, 0);
    moert_sampler_options_init(&so);
    so.temperature = 1.0f;
    so.seed = 1234;
    moert_generate_options_init(&go);
    go.max_new_tokens = 12;
    go.ignore_eos = 1;
    go.sampler = &so;
    if (s) {
        CHECK_STATUS(moert_session_generate(s, fx->prompt, fx->n_prompt, &go, NULL, NULL, a, MAX_TOKENS, &na), MOERT_OK, "gen");
        CHECK_STATUS(moert_session_reset(s), MOERT_OK, "reset");
        CHECK_STATUS(moert_session_generate(s, fx->prompt, fx->n_prompt, &go, NULL, NULL, b, MAX_TOKENS, &nb), MOERT_OK, "gen");
        CHECK(na == 12 && nb == 12 && memcmp(a, b, 12 * sizeof *a) == 0, "equal seeds must generate equal tokens");
        so.top_k = 1;
        go.max_new_tokens = (int32_t)fx->n_greedy;
        CHECK_STATUS(moert_session_reset(s), MOERT_OK, "reset");
        CHECK_STATUS(moert_session_generate(s, fx->prompt, fx->n_prompt, &go, NULL, NULL, a, MAX_TOKENS, &na), MOERT_OK, "gen");
        CHECK(na == fx->n_greedy && memcmp(a, fx->greedy, na * sizeof *a) == 0, "top_k 1 must generate greedily");
    }
    moert_session_free(s);
    group_end();
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Routing: kinds, traces, counters and per-session overrides                                                   */
/* ------------------------------------------------------------------------------------------------------------ */

/** Index of the first registered kind named `name`, or -1. */
static int32_t find_kind(int32_t kind, const char *name) {
    for (int32_t i = 0; i < moert_kind_count(kind); i++) {
        const char *n = moert_kind_name(kind, i);
        if (n && strcmp(n, name) == 0) return i;
    }
    return -1;
}

/** The built-in kinds are listed; unknown kinds and indices give 0 / NULL. */
static void test_kinds(void) {
    group_begin("registered kinds");
    int32_t routers = moert_kind_count(MOERT_KIND_ROUTER), experts = moert_kind_count(MOERT_KIND_EXPERT);
    CHECK(routers >= 1 && experts >= 1, "kind counts %d routers, %d experts", (int)routers, (int)experts);
    CHECK(find_kind(MOERT_KIND_ROUTER, "topk") >= 0, "the built-in router kind \"topk\" is not listed");
    CHECK(find_kind(MOERT_KIND_EXPERT, "ffn") >= 0, "the built-in expert kind \"ffn\" is not listed");
    CHECK(moert_kind_name(MOERT_KIND_ROUTER, routers) == NULL, "kind_name past the end should be NULL");
    CHECK(moert_kind_name(MOERT_KIND_EXPERT, -1) == NULL, "kind_name(-1) should be NULL");
    CHECK(moert_kind_count(7) == 0 && moert_kind_name(7, 0) == NULL, "an unknown kind has no entries");
    group_end();
}

/** The model's per-layer kinds are the built-in ones; out-of-range queries give NULL. */
static void check_model_kinds(const fixture *fx, moert_model *model) {
    int32_t n_moe = (int32_t)fx->want.n_moe_layers, n_experts = (int32_t)fx->want.n_experts;
    for (int32_t m = 0; m < n_moe; m++) {
        const char *router = moert_model_router_kind(model, m);
        CHECK(router && strcmp(router, "topk") == 0, "MoE layer %d router kind %s", (int)m, router ? router : "(null)");
        for (int32_t e = 0; e < n_experts; e++) {
            const char *expert = moert_model_expert_kind(model, m, e);
            CHECK(expert && strcmp(expert, "ffn") == 0, "MoE layer %d expert %d kind %s", (int)m, (int)e,
                  expert ? expert : "(null)");
        }
        CHECK(moert_model_expert_kind(model, m, n_experts) == NULL, "expert kind past the last expert");
    }
    CHECK(moert_model_router_kind(model, n_moe) == NULL && moert_model_router_kind(model, -1) == NULL,
          "router kind of a MoE layer out of range");
    CHECK(moert_model_router_kind(NULL, 0) == NULL && moert_model_expert_kind(NULL, 0, 0) == NULL,
          "kinds of a NULL model");
}

/** Reads the trace; returns 0 (and fails a check) when the call fails. */
static int get_trace(moert_session *s, moert_trace *t) {
    memset(t, 0, sizeof *t);
    t->struct_size = sizeof *t;
    return CHECK_STATUS(moert_session_get_trace(s, t), MOERT_OK, "moert_session_get_trace");
}

/** Checks one trace record against the fixture: token, layer, and a valid top-k choice of experts. */
static void check_trace_record(const fixture *fx, const moert_trace *t, int64_t r, int32_t top_k, const int32_t *seq) {
    int64_t lo = t->offsets[r], hi = t->offsets[r + 1];
    int32_t pos = t->positions[r], layer = t->layers[r];
    CHECK(pos >= 0 && pos < MAX_TOKENS && t->tokens[r] == seq[pos], "record %lld: token %d at position %d", (long long)r,
          (int)t->tokens[r], (int)pos);
    CHECK(layer >= 0 && layer < 64 && (fx->want.moe_layer_mask >> layer & 1), "record %lld: layer %d is not a MoE layer",
          (long long)r, (int)layer);
    if (!CHECK(hi - lo == top_k, "record %lld routes to %lld experts, want %d", (long long)r, (long long)(hi - lo), (int)top_k)) {
        return;
    }
    double sum = 0;
    for (int64_t i = lo; i < hi; i++) {
        int32_t e = t->expert_ids[i];
        CHECK(e >= 0 && e < fx->want.n_experts, "record %lld: expert id %d out of range", (long long)r, (int)e);
        for (int64_t j = lo; j < i; j++) CHECK(t->expert_ids[j] != e, "record %lld: expert %d twice", (long long)r, (int)e);
        CHECK(isfinite(t->weights[i]) && t->weights[i] >= 0, "record %lld: weight %g", (long long)r, (double)t->weights[i]);
        sum += t->weights[i];
    }
    /* Softmax weights of a subset of experts: at most 1, exactly 1 (to float rounding) when renormalised. */
    CHECK(sum <= 1 + 1e-5 && (!fx->want.renormalizes || fabs(sum - 1) <= 1e-5), "record %lld: weights sum to %.7f",
          (long long)r, sum);
}

/** Checks a whole trace of `n_tokens` positions of `seq`: one record per (position, MoE layer). */
static void check_trace(const fixture *fx, const moert_trace *t, size_t n_tokens, int32_t top_k, const int32_t *seq) {
    int64_t n_moe = fx->want.n_moe_layers;
    if (!CHECK(t->n_records == (int64_t)n_tokens * n_moe, "trace has %lld records, want %zu tokens x %lld MoE layers",
               (long long)t->n_records, n_tokens, (long long)n_moe)) {
        return;
    }
    CHECK(t->offsets[0] == 0, "offsets[0] is %lld", (long long)t->offsets[0]);
    unsigned char seen[MAX_TOKENS][64] = {{0}};
    for (int64_t r = 0; r < t->n_records; r++) {
        check_trace_record(fx, t, r, top_k, seq);
        if (t->positions[r] >= 0 && t->positions[r] < MAX_TOKENS && t->layers[r] >= 0 && t->layers[r] < 64) {
            CHECK(!seen[t->positions[r]][t->layers[r]]++, "two records for position %d, layer %d", (int)t->positions[r],
                  (int)t->layers[r]);
        }
    }
}

/** The expert counters agree with the trace: counts[m * n_experts + e] = records of MoE layer m choosing e. */
static void check_counts_match_trace(const fixture *fx, moert_session *s, const moert_trace *t) {
    int32_t n_moe = -1, n_experts = -1;
    int64_t counts[64 * 64], expected[64 * 64] = {0};
    int32_t moe_index[64];
    CHECK_STATUS(moert_session_get_expert_counts(s, NULL, 0, &n_moe, &n_experts), MOERT_OK, "count sizes");
    if (!CHECK(n_moe == fx->want.n_moe_layers && n_experts == fx->want.n_experts, "counter sizes %d x %d", (int)n_moe,
               (int)n_experts)) {
        return;
    }
    for (int l = 0, m = 0; l < 64; l++) moe_index[l] = (fx->want.moe_layer_mask >> l & 1) ? m++ : -1;
    for (int64_t r = 0; r < t->n_records; r++) {
        for (int64_t i = t->offsets[r]; i < t->offsets[r + 1]; i++) {
            expected[moe_index[t->layers[r]] * n_experts + t->expert_ids[i]]++;
        }
    }
    size_t n = (size_t)n_moe * (size_t)n_experts;
    CHECK_STATUS(moert_session_get_expert_counts(s, counts, n - 1, NULL, NULL), MOERT_ERR_BUFFER_TOO_SMALL, "counts n-1");
    CHECK_STATUS(moert_session_get_expert_counts(s, counts, n, NULL, NULL), MOERT_OK, "get_expert_counts");
    CHECK(memcmp(counts, expected, n * sizeof *counts) == 0, "expert counters disagree with the trace");
}

/** Tracing records every (token, MoE layer) routing; counters follow; clearing and resetting empty them. */
static void test_trace(const fixture *fx, moert_model *model) {
    moert_session *s = new_session(model, 0, 0);
    moert_trace t;
    int64_t counts[64 * 64];
    int32_t n_moe = 0, n_experts = 0;
    check_model_kinds(fx, model);
    if (!s) return;
    CHECK(get_trace(s, &t) && t.n_records == 0, "a new session's trace is empty");
    CHECK_STATUS(moert_session_set_trace(s, 1), MOERT_OK, "set_trace(1)");
    CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_NONE, NULL, 0), MOERT_OK, "eval");
    if (get_trace(s, &t)) {
        check_trace(fx, &t, fx->n_prompt, (int32_t)fx->want.n_experts_per_tok, fx->prompt);
        check_counts_match_trace(fx, s, &t);
    }
    CHECK_STATUS(moert_session_clear_trace(s), MOERT_OK, "clear_trace");
    CHECK(get_trace(s, &t) && t.n_records == 0, "clear_trace left %lld records", (long long)t.n_records);
    CHECK_STATUS(moert_session_set_trace(s, 0), MOERT_OK, "set_trace(0)");
    CHECK_STATUS(moert_session_eval(s, fx->greedy, 1, MOERT_LOGITS_NONE, NULL, 0), MOERT_OK, "eval untraced");
    CHECK(get_trace(s, &t) && t.n_records == 0, "tracing off recorded %lld records", (long long)t.n_records);
    CHECK_STATUS(moert_session_get_expert_counts(s, counts, sizeof counts / sizeof *counts, &n_moe, &n_experts), MOERT_OK,
                 "counts");
    int64_t total = 0;
    for (int32_t i = 0; i < n_moe * n_experts; i++) total += counts[i];
    CHECK(total == (int64_t)(fx->n_prompt + 1) * n_moe * fx->want.n_experts_per_tok,
          "counters hold %lld routings, want (prompt + 1 token) x MoE layers x top-k", (long long)total);
    CHECK_STATUS(moert_session_reset_counters(s), MOERT_OK, "reset_counters");
    CHECK_STATUS(moert_session_get_expert_counts(s, counts, sizeof counts / sizeof *counts, NULL, NULL), MOERT_OK, "counts");
    total = 0;
    for (int32_t i = 0; i < n_moe * n_experts; i++) total += counts[i];
    CHECK(total == 0, "reset_counters left %lld routings", (long long)total);
    moert_session_free(s);
}

/** Prompt logits (ALL) of `s` after a reset, compared with the reference; returns the relative error. */
static double prompt_error(const fixture *fx, moert_session *s, float *logits) {
    size_t n = fx->n_prompt * fx->vocab;
    if (!CHECK_STATUS(moert_session_reset(s), MOERT_OK, "reset") ||
        !CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_ALL, logits, n), MOERT_OK, "eval")) {
        return INFINITY;
    }
    return rel_error(logits, fx->logits, n);
}

/** set_top_k and set_router override the routers of one session only; 0 / NULL restore the model's. */
static void test_router_overrides(const fixture *fx, moert_model *model) {
    group_begin("router overrides");
    moert_session *s = new_session(model, 0, 0), *other = new_session(model, 0, 0);
    float *logits = calloc(fx->n_prompt * fx->vocab, sizeof *logits);
    int32_t k = (int32_t)fx->want.n_experts_per_tok, n_experts = (int32_t)fx->want.n_experts;
    moert_trace t;
    if (s && other && logits) {
        CHECK_STATUS(moert_session_set_top_k(s, k), MOERT_OK, "set_top_k(num_experts_per_tok)");
        CHECK(prompt_error(fx, s, logits) <= LOGITS_RTOL, "top_k = num_experts_per_tok should not change the logits");
        CHECK_STATUS(moert_session_set_top_k(s, 1), MOERT_OK, "set_top_k(1)");
        CHECK_STATUS(moert_session_set_trace(s, 1), MOERT_OK, "set_trace");
        CHECK(prompt_error(fx, s, logits) > 100 * LOGITS_RTOL, "top_k 1 should change the logits");
        if (get_trace(s, &t)) check_trace(fx, &t, fx->n_prompt, 1, fx->prompt);
        CHECK(prompt_error(fx, other, logits) <= LOGITS_RTOL, "an override must not reach other sessions");
        CHECK_STATUS(moert_session_set_top_k(s, 0), MOERT_OK, "set_top_k(0)");
        CHECK(prompt_error(fx, s, logits) <= LOGITS_RTOL, "set_top_k(0) should restore the model's routers");
        CHECK_STATUS(moert_session_set_top_k(s, n_experts), MOERT_OK, "set_top_k(n_experts)");
        CHECK_STATUS(moert_session_set_top_k(s, n_experts + 1), MOERT_ERR_INVALID_ARGUMENT, "set_top_k(n_experts + 1)");
        CHECK_STATUS(moert_session_set_top_k(s, -1), MOERT_ERR_INVALID_ARGUMENT, "set_top_k(-1)");
        CHECK_STATUS(moert_session_set_top_k(NULL, 1), MOERT_ERR_INVALID_ARGUMENT, "set_top_k(NULL)");

        CHECK_STATUS(moert_session_set_router(s, "no-such-router", NULL), MOERT_ERR_INVALID_ARGUMENT, "unknown kind");
        CHECK(strstr(moert_last_error(), "no-such-router") != NULL, "message should name the kind: %s", moert_last_error());
        CHECK_STATUS(moert_session_set_router(s, "topk", "{\"top_k\": "), MOERT_ERR_INVALID_ARGUMENT, "truncated JSON");
        CHECK_STATUS(moert_session_set_router(s, "topk", "[1]"), MOERT_ERR_INVALID_ARGUMENT, "params not an object");
        CHECK_STATUS(moert_session_set_router(NULL, "topk", NULL), MOERT_ERR_INVALID_ARGUMENT, "set_router(NULL session)");
        CHECK_STATUS(moert_session_set_router(s, NULL, NULL), MOERT_OK, "set_router(NULL kind)");
        CHECK(prompt_error(fx, s, logits) <= LOGITS_RTOL, "set_router(NULL) should restore the model's routers");
        CHECK_STATUS(moert_session_set_router(s, "topk", "{\"top_k\": 1}"), MOERT_OK, "set_router topk, top_k 1");
        CHECK(prompt_error(fx, s, logits) > 100 * LOGITS_RTOL, "topk with top_k 1 should change the logits");
        CHECK_STATUS(moert_session_set_router(s, NULL, NULL), MOERT_OK, "restore");
    }
    CHECK_STATUS(moert_session_set_trace(NULL, 1), MOERT_ERR_INVALID_ARGUMENT, "set_trace(NULL)");
    CHECK_STATUS(moert_session_get_trace(s, NULL), MOERT_ERR_INVALID_ARGUMENT, "get_trace(NULL trace)");
    CHECK_STATUS(moert_session_clear_trace(NULL), MOERT_ERR_INVALID_ARGUMENT, "clear_trace(NULL)");
    CHECK_STATUS(moert_session_reset_counters(NULL), MOERT_ERR_INVALID_ARGUMENT, "reset_counters(NULL)");
    CHECK_STATUS(moert_session_get_expert_counts(NULL, NULL, 0, NULL, NULL), MOERT_ERR_INVALID_ARGUMENT, "counts(NULL)");
    moert_session_free(s);
    moert_session_free(other);
    free(logits);
    group_end();
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Kinds registered by the host                                                                                 */
/* ------------------------------------------------------------------------------------------------------------ */

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

/** moert_shutdown refuses while models live, then unregisters host kinds once none does. */
static void test_shutdown(const char *root) {
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

/* ------------------------------------------------------------------------------------------------------------ */
/* Parallel sessions                                                                                            */
/* ------------------------------------------------------------------------------------------------------------ */

/** One worker: evaluates the fixture's whole sequence on its own session of the shared model. */
typedef struct worker {
    const fixture *fx;
    moert_model *model;
    float *logits;        /* [n_prompt + n_greedy, vocab]: ALL logits of the sequence, then the decode rows */
    moert_status status;
} worker;

/** Evaluates the sequence with ALL logits, then re-evaluates it prompt-then-decode, overwriting the rows. */
static moert_status run_sequence(moert_session *s, const fixture *fx, float *logits) {
    int32_t seq[MAX_TOKENS];
    size_t n = fixture_sequence(fx, seq), v = fx->vocab;
    moert_status st = moert_session_eval(s, seq, n, MOERT_LOGITS_ALL, logits, n * v);
    if (st == MOERT_OK) st = moert_session_reset(s);
    if (st == MOERT_OK) st = moert_session_eval(s, seq, fx->n_prompt, MOERT_LOGITS_LAST, logits + (fx->n_prompt - 1) * v, v);
    for (size_t i = fx->n_prompt; st == MOERT_OK && i < n; i++) {
        st = moert_session_eval(s, &seq[i], 1, MOERT_LOGITS_LAST, logits + i * v, v);
    }
    return st;
}

/** Thread body: a session of its own, three passes over the sequence. */
static void *worker_main(void *arg) {
    worker *w = arg;
    moert_session *s = NULL;
    w->status = moert_session_create(w->model, NULL, &s);
    for (int pass = 0; pass < 3 && w->status == MOERT_OK; pass++) {
        w->status = moert_session_reset(s);
        if (w->status == MOERT_OK) w->status = run_sequence(s, w->fx, w->logits);
    }
    moert_session_free(s);
    return NULL;
}

/** Several sessions of one model on several threads give the logits of a sequential run. */
static void test_parallel(const fixture *fx, moert_model *model) {
    group_begin("parallel sessions");
    size_t n = (fx->n_prompt + fx->n_greedy) * fx->vocab;
    float *sequential = calloc(n, sizeof *sequential);
    moert_session *s = new_session(model, 0, 0);
    worker workers[N_WORKERS];
    pthread_t threads[N_WORKERS];
    int started[N_WORKERS] = {0};
    if (!s || !sequential || !CHECK_STATUS(run_sequence(s, fx, sequential), MOERT_OK, "sequential run")) {
        moert_session_free(s);
        free(sequential);
        group_end();
        return;
    }
    CHECK(rel_error(sequential, fx->full_logits, n) <= LOGITS_RTOL, "sequential decode differs from full_logits");
    for (int i = 0; i < N_WORKERS; i++) {
        workers[i] = (worker){fx, model, calloc(n, sizeof(float)), MOERT_ERR_INTERNAL};
        started[i] = workers[i].logits && pthread_create(&threads[i], NULL, worker_main, &workers[i]) == 0;
        CHECK(started[i], "cannot start worker %d", i);
    }
    for (int i = 0; i < N_WORKERS; i++) {
        if (!started[i]) continue;
        pthread_join(threads[i], NULL);
        CHECK_STATUS(workers[i].status, MOERT_OK, "worker");
        double err = rel_error(workers[i].logits, sequential, n);
        CHECK(err <= PARALLEL_RTOL, "worker %d: logits differ from the sequential run by %.3g", i, err);
    }
    for (int i = 0; i < N_WORKERS; i++) free(workers[i].logits);
    moert_session_free(s);
    free(sequential);
    group_end();
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Main                                                                                                         */
/* ------------------------------------------------------------------------------------------------------------ */

/** The checks that need one model but no particular architecture, run on the plain Mixtral fixture. */
static void test_on_mixtral(const char *root) {
    fixture fx;
    group_begin("mixtral: setup for API checks");
    int loaded = CHECK(fixture_load(&fx, root, "mixtral"), "cannot read fixture %s/mixtral", root);
    moert_model *model = loaded ? load_model(fx.dir) : NULL;
    group_end();
    if (model) {
        test_session_state(&fx, model);
        test_max_batch(&fx, model);
        test_max_context(&fx);
        test_older_host(&fx, model);
        test_error_cases(&fx, model);
        test_sampler_greedy(&fx);
        test_sampler_seeded();
        test_generate_sampled(&fx, model);
        test_router_overrides(&fx, model);
        test_register();
        test_host_router(&fx, model);
        test_parallel(&fx, model);
    }
    moert_model_free(model);
    fixture_free(&fx);
}

int main(int argc, char **argv) {
    static const char *const fixtures[] = {"mixtral", "mixtral_bf16", "mixtral_sharded", "qwen2_moe", "qwen3_moe", "olmoe"};
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    test_version();
    test_status_strings();
    test_last_error();
    test_threads();
    test_options_init();
    test_free_null();
    static const char *const plugin_fixtures[] = {
        "plugins/gru", "plugins/gru_rnn", "plugins/hash", "plugins/hash_multi", "plugins/comet",
        "plugins/comet_e6", "plugins/moepp", "plugins/moepp_mixtral_gating", "plugins/topp", "plugins/adamoe",
    };
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) test_fixture(argv[1], fixtures[i]);
    for (size_t i = 0; i < sizeof plugin_fixtures / sizeof *plugin_fixtures; i++) test_plugin_fixture(argv[1], plugin_fixtures[i]);
    test_kinds();
    test_on_mixtral(argv[1]);
    test_shutdown(argv[1]);
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed == 0 ? 0 : 1;
}
