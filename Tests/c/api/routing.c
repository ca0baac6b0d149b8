/* routing.c — routing as a host sees it: registered kinds, traces, expert counters and per-session overrides. */
#include "api_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/** The built-in kinds are listed; unknown kinds and indices give 0 / NULL. */
void test_kinds(void) {
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

int get_trace(moert_session *s, moert_trace *t) {
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
    /* Softmax weights of a subset of experts sum to at most 1 (sigmoid scores: at most 1 each), exactly 1 (to float
       rounding) when renormalised; then times routed_scaling_factor. */
    double scale = fx->want.weight_scale, most = (fx->want.sigmoid_scores ? top_k : 1) * scale;
    CHECK(sum <= most * (1 + 1e-5) && (!fx->want.renormalizes || fabs(sum - scale) <= 1e-5 * scale),
          "record %lld: weights sum to %.7f (routed_scaling_factor %g)", (long long)r, sum, scale);
}

void check_trace(const fixture *fx, const moert_trace *t, size_t n_tokens, int32_t top_k, const int32_t *seq) {
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
    /* A model without MoE layers (deepseek_v3_dense) counts no experts. */
    int64_t want_experts = fx->want.n_moe_layers > 0 ? fx->want.n_experts : 0;
    if (!CHECK(n_moe == fx->want.n_moe_layers && n_experts == want_experts, "counter sizes %d x %d", (int)n_moe,
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
void test_trace(const fixture *fx, moert_model *model) {
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

/** set_top_k and set_router override the routers of one session only; 0 / NULL restore the model's. */
void test_router_overrides(const fixture *fx, moert_model *model) {
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
