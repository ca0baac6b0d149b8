/* errors.c — the table of malformed calls: each must fail with its documented status, a message, cleared outputs. */
#define _POSIX_C_SOURCE 200809L

#include "api_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
/** Loads the fixture with model options that differ from the defaults in the given fields. */
static moert_status load_with(error_env *e, uint32_t flags, int64_t max_context, int64_t budget_bytes,
                              float budget_percent) {
    moert_model *m = STALE(moert_model);
    moert_model_options o;
    moert_model_options_init(&o);
    o.flags = flags;
    o.max_context = max_context;
    o.expert_budget_bytes = budget_bytes;
    o.expert_budget_percent = budget_percent;
    moert_status status = moert_model_load(e->fx->dir, &o, &m);
    return cleared(e, status, m);
}
static moert_status load_flags(error_env *e) { return load_with(e, 0x80000000u, 0, 0, 0.0f); }
static moert_status load_negative_max_context(error_env *e) { return load_with(e, 0, -1, 0, 0.0f); }
static moert_status load_both_budgets(error_env *e) { return load_with(e, 0, 0, 1 << 20, 50.0f); }
static moert_status load_budget_above_100_percent(error_env *e) { return load_with(e, 0, 0, 0, 101.0f); }
static moert_status load_budget_nan_percent(error_env *e) { return load_with(e, 0, 0, 0, NAN); }
static moert_status load_negative_budget(error_env *e) { return load_with(e, 0, 0, -1, 0.0f); }
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
static moert_status memory_stats_null_model(error_env *e) {
    moert_memory_stats stats;
    stats.struct_size = sizeof stats;
    (void)e;
    return moert_model_get_memory_stats(NULL, &stats);
}
static moert_status memory_stats_null_stats(error_env *e) { return moert_model_get_memory_stats(e->model, NULL); }
static moert_status resident_null_model(error_env *e) {
    int32_t n_moe_layers;
    (void)e;
    return moert_model_get_resident_experts(NULL, NULL, 0, &n_moe_layers);
}
static moert_status resident_counts_too_small(error_env *e) {
    int32_t counts[1];
    return moert_model_get_resident_experts(e->model, counts, 1, NULL); /* the fixture has two MoE layers */
}
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
/** A row claimed longer than token ids reach: refused before any of it is read (the buffer is 2 floats). */
static moert_status sample_huge_row(error_env *e) {
    const float row[2] = {0, 1};
    int32_t t = 0;
    return moert_sampler_sample(e->sampler, row, (size_t)INT32_MAX + 16, &t);
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
    {"load: unknown flag bits", load_flags, MOERT_ERR_INVALID_ARGUMENT, "flags has unknown bits"},
    {"load: struct_size 0", load_zero_struct_size, MOERT_ERR_INVALID_ARGUMENT, "struct_size"},
    {"load: negative max_context", load_negative_max_context, MOERT_ERR_INVALID_ARGUMENT, "max_context"},
    {"load: both expert budget fields", load_both_budgets, MOERT_ERR_INVALID_ARGUMENT, "expert budget"},
    {"load: expert budget of 101%", load_budget_above_100_percent, MOERT_ERR_INVALID_ARGUMENT, "expert budget"},
    {"load: expert budget of NaN%", load_budget_nan_percent, MOERT_ERR_INVALID_ARGUMENT, "expert budget"},
    {"load: negative expert budget", load_negative_budget, MOERT_ERR_INVALID_ARGUMENT, "expert budget"},
    {"get_info: NULL model", info_null_model, MOERT_ERR_INVALID_ARGUMENT, "model"},
    {"get_info: NULL info", info_null_info, MOERT_ERR_INVALID_ARGUMENT, "info"},
    {"get_memory_stats: NULL model", memory_stats_null_model, MOERT_ERR_INVALID_ARGUMENT, "model"},
    {"get_memory_stats: NULL stats", memory_stats_null_stats, MOERT_ERR_INVALID_ARGUMENT, "stats"},
    {"get_resident_experts: NULL model", resident_null_model, MOERT_ERR_INVALID_ARGUMENT, "model"},
    {"get_resident_experts: counts of 1", resident_counts_too_small, MOERT_ERR_BUFFER_TOO_SMALL, "counts"},
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
    {"sample: n_vocab above INT32_MAX", sample_huge_row, MOERT_ERR_INVALID_ARGUMENT, "does not fit token ids"},
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
    CHECK_STATUS(got, c->expected, c->name);
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
void test_error_cases(const fixture *fx, moert_model *model) {
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
