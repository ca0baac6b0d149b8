/* sessions.c — session state, prompt chunking, the model's max_context, and option structs from older hosts. */
#include "api_test.h"

#include <stdlib.h>
#include <string.h>

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

/** moert_session_last_logits gives the last position's logits, computing them after an evaluation that made none,
 *  and generation with no prompt continues from there as transformers' greedy run does. */
static void test_last_logits(const fixture *fx, moert_model *model) {
    group_begin("last logits");
    moert_session *s = new_session(model, 0, 0);
    float *row = calloc(fx->vocab, sizeof *row);
    int32_t *out = calloc(fx->n_greedy, sizeof *out);
    if (s && row && out) {
        CHECK_STATUS(moert_session_last_logits(s, row, fx->vocab), MOERT_ERR_INVALID_ARGUMENT, "an empty session");
        CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_NONE, NULL, 0), MOERT_OK, "eval NONE");
        CHECK_STATUS(moert_session_last_logits(s, row, fx->vocab - 1), MOERT_ERR_BUFFER_TOO_SMALL, "a short buffer");
        CHECK_STATUS(moert_session_last_logits(s, row, fx->vocab), MOERT_OK, "after eval NONE");
        CHECK(rel_error(row, fx->logits + (fx->n_prompt - 1) * fx->vocab, fx->vocab) <= LOGITS_RTOL,
              "the last prompt position's logits should match transformers'");
        CHECK(moert_session_n_past(s) == (int64_t)fx->n_prompt, "n_past %lld, the prompt's %zu",
              (long long)moert_session_n_past(s), fx->n_prompt);
        moert_session_reset(s);
        CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_NONE, NULL, 0), MOERT_OK, "eval NONE");
        moert_generate_options g;
        moert_generate_options_init(&g);
        g.max_new_tokens = (int32_t)fx->n_greedy;
        g.ignore_eos = 1;
        size_t made = 0;
        CHECK_STATUS(moert_session_generate(s, NULL, 0, &g, NULL, NULL, out, fx->n_greedy, &made), MOERT_OK,
                     "generate with no prompt after eval NONE");
        CHECK(made == fx->n_greedy && memcmp(out, fx->greedy, fx->n_greedy * sizeof *out) == 0,
              "the continuation should be transformers' greedy one");
    }
    moert_session_free(s);
    free(row);
    free(out);
    group_end();
}

void test_sessions(const fixture *fx, moert_model *model) {
    test_session_state(fx, model);
    test_max_batch(fx, model);
    test_max_context(fx);
    test_older_host(fx, model);
    test_last_logits(fx, model);
}
