/* api_test.h — what the files of the host API test share: tolerances, helpers over the API, each file's checks. */
#ifndef MOERT_TESTS_API_TEST_H
#define MOERT_TESTS_API_TEST_H

#include <moert.h>
#include <moert_plugin.h>

#include <stddef.h>
#include <stdint.h>

#include "../check.h"
#include "fixture.h"

/*
** Logits must match the reference within 1e-4 of the reference's largest |logit|. transformers and moert both
** compute in float32 from the same stored weights, but with different summation orders (BLAS blocking, expert
** accumulation order); on these tiny models that moves logits by about 1e-6 of their scale. 1e-4 leaves room for
** that while still catching any wrong routing, rope or norm, which moves them by 1e-2 or more.
*/
#define LOGITS_RTOL 1e-4

/* ------------------------------------------------------------------------------------------------------------ */
/* Helpers over the API (helpers.c)                                                                             */
/* ------------------------------------------------------------------------------------------------------------ */

/** Checks a status, naming `what` and the library's message when it differs. */
int check_status_at(moert_status got, moert_status want, const char *what, const char *file, int line);

#define CHECK_STATUS(got, want, what) check_status_at((got), (want), (what), __FILE__, __LINE__)

/**
 * max |got - ref| / max |ref| over `n` values: the error relative to the scale of the logits, since a per-element
 * relative error means nothing for logits near zero. Returns INFINITY when `got` holds a NaN.
 */
double rel_error(const float *got, const float *ref, size_t n);

/** Loads a model with default options; NULL (and a failed check) on failure. */
moert_model *load_model(const char *dir);

/** Creates a session with the given n_ctx and max_batch; NULL (and a failed check) on failure. */
moert_session *new_session(moert_model *model, int64_t n_ctx, int32_t max_batch);

/** Index of the largest value, lowest index on ties. */
int32_t argmax(const float *x, size_t n);

/** Records the tokens moert_session_generate() reports and stops after `stop_after` of them (0 = never). */
typedef struct token_log {
    int32_t tokens[MAX_TOKENS];
    size_t count;
    size_t stop_after;
} token_log;

/** moert_token_callback that appends to a token_log. */
int32_t log_token(int32_t token, void *user_data);

/** Index of the first registered kind named `name`, or -1. */
int32_t find_kind(int32_t kind, const char *name);

/** Prompt logits (ALL) of `s` after a reset, compared with the reference; returns the relative error. */
double prompt_error(const fixture *fx, moert_session *s, float *logits);

/** Reads the trace; returns 0 (and fails a check) when the call fails (routing.c). */
int get_trace(moert_session *s, moert_trace *t);

/** Checks a whole trace of `n_tokens` positions of `seq`: one record per (position, MoE layer) (routing.c). */
void check_trace(const fixture *fx, const moert_trace *t, size_t n_tokens, int32_t top_k, const int32_t *seq);

/* ------------------------------------------------------------------------------------------------------------ */
/* The checks, by file; each reports one or more groups                                                          */
/* ------------------------------------------------------------------------------------------------------------ */

/** library.c: versions, status strings, the last error, threads, options defaults, *_free(NULL). */
void test_library(void);

/** parity.c: one fixture's model info, logits, generation and cached decode against transformers. */
void test_fixture(const char *root, const char *name);

/** parity.c: a fixture whose checkpoint names plugin kinds, against the reference of make_plugin_fixtures.py. */
void test_plugin_fixture(const char *root, const char *name);

/** routing.c: the registered kinds. */
void test_kinds(void);

/** routing.c: traces and expert counters on one fixture (a group of test_fixture). */
void test_trace(const fixture *fx, moert_model *model);

/** routing.c: per-session router and top-k overrides. */
void test_router_overrides(const fixture *fx, moert_model *model);

/** sessions.c: session state, max_batch, max_context and structs from older hosts. */
void test_sessions(const fixture *fx, moert_model *model);

/* kv_cache.c */
void test_kv_types(const fixture *fx, moert_model *model);
void test_context_shift(const fixture *fx, moert_model *model);

/** errors.c: the table of malformed calls. */
void test_error_cases(const fixture *fx, moert_model *model);

/** sampling.c: samplers and sampled generation. */
void test_sampling(const fixture *fx, moert_model *model);

/** text.c: tokenizers (cases of tokenizers), detokenizers, chat templates (transformers) and stop strings. */
void test_text(const char *root, const fixture *mixtral, moert_model *model);

/** SCMoE self-contrast decoding (moert_generate_options.scmoe_*) against transformers' tokens. */
void test_scmoe(const char *root, moert_model *model);

/** host_kinds.c: router and expert kinds registered by this program. */
void test_host_kinds(const fixture *fx, moert_model *model);

/** host_kinds.c: moert_shutdown with and without live models (run last). */
void test_shutdown(const char *root);

/** parallel.c: several sessions of one model on several threads. */
void test_parallel(const fixture *fx, moert_model *model);

/** memory.c: memory statistics, resident experts and expert budgets. */
void test_memory(const fixture *fx, moert_model *model);

/** moert_model_tensor_dtype, info and memory statistics of a quantized checkpoint (Tests/fixtures/mixtral_q4_0). */
void test_quantized(const char *root);

/** logging.c: moert_set_log_callback and the default log on stderr. */
void test_logging(const fixture *fx);

#endif /* MOERT_TESTS_API_TEST_H */
