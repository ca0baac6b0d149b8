/* parity.c — per-fixture checks against transformers: model info, prefill logits, generation and cached decode. */
#include "api_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
       float32 weights may be used in place (also beside MXFP4 experts, decoded when first used: dtype mixed). Either
       way the bytes never exceed a float32 copy of every weight. */
    int64_t f32_bytes = 4 * w->n_params;
    int in_place = w->dtype == MOERT_DTYPE_F32 || w->dtype == MOERT_DTYPE_MIXED;
    CHECK(in_place ? info.weight_bytes >= 0 && info.weight_bytes <= f32_bytes
                                      : info.weight_bytes > 0 && info.weight_bytes <= f32_bytes,
          "weight_bytes %lld for %lld parameters of dtype %d", (long long)info.weight_bytes, (long long)w->n_params,
          (int)w->dtype);
    CHECK(info.bos_token_id == w->bos_token_id, "bos_token_id %d, want %lld", (int)info.bos_token_id,
          (long long)w->bos_token_id);
    CHECK(info.eos_token_id == w->eos_token_id, "eos_token_id %d, want %lld", (int)info.eos_token_id,
          (long long)w->eos_token_id);
    int32_t n_eos = moert_model_eos_token_count(model);
    CHECK(n_eos == w->n_eos_token_ids, "%d EOS token ids, config.json names %d", (int)n_eos, (int)w->n_eos_token_ids);
    for (int32_t i = 0; i < n_eos && i < w->n_eos_token_ids; i++) {
        CHECK(moert_model_eos_token(model, i) == w->eos_token_ids[i], "EOS token %d is %d, config.json says %lld",
              (int)i, (int)moert_model_eos_token(model, i), (long long)w->eos_token_ids[i]);
    }
    CHECK(moert_model_eos_token(model, n_eos) == -1 && moert_model_eos_token(model, -1) == -1,
          "EOS token index out of range");
    CHECK(moert_model_eos_token_count(NULL) == 0 && moert_model_eos_token(NULL, 0) == -1, "EOS tokens of a NULL model");
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

/* One reported group per concern; the trace group is routing.c's. */
void test_fixture(const char *root, const char *name) {
    static const fixture_group groups[] = {
        {"model info", test_info},           {"prefill logits", test_prefill},
        {"greedy generate", test_generate},  {"callback stop", test_generate_stop},
        {"generate to EOS", test_generate_eos}, {"kv-cached decode", test_kv_decode},
        {"routing trace and counters", test_trace}, {"KV cache types", test_kv_types},
        {"context shift", test_context_shift},
    };
    run_fixture_groups(root, name, groups, sizeof groups / sizeof *groups);
}

/* The plugins the checkpoint names are found next to libmoert.so. Logits, greedy generation and cached decode are
   compared with the PyTorch reference of tools/make_plugin_fixtures.py. */
void test_plugin_fixture(const char *root, const char *name) {
    static const fixture_group groups[] = {
        {"prefill logits", test_prefill}, {"greedy generate", test_generate}, {"kv-cached decode", test_kv_decode},
    };
    run_fixture_groups(root, name, groups, sizeof groups / sizeof *groups);
}
