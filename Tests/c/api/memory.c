/* memory.c — memory statistics, resident experts per MoE layer, and expert budgets that change memory only. */
#include "api_test.h"

#include <stdlib.h>
#include <string.h>

/** The model's memory statistics; zeroed (and a failed check) when the call fails. */
static moert_memory_stats memory_stats(moert_model *model) {
    moert_memory_stats m;
    memset(&m, 0, sizeof m);
    m.struct_size = sizeof m;
    CHECK_STATUS(moert_model_get_memory_stats(model, &m), MOERT_OK, "moert_model_get_memory_stats");
    return m;
}

/** Resident experts summed over the MoE layers, checking one count per layer within [0, n_experts]; -1 on failure. */
static int64_t resident_experts(const fixture *fx, moert_model *model) {
    int32_t counts[64], n_moe = -1;
    int64_t total = 0;
    CHECK_STATUS(moert_model_get_resident_experts(model, NULL, 0, &n_moe), MOERT_OK, "resident experts: layer count");
    if (!CHECK(n_moe == fx->want.n_moe_layers && n_moe <= 64, "%d MoE layers, config.json says %lld", (int)n_moe,
               (long long)fx->want.n_moe_layers)) {
        return -1;
    }
    if (!CHECK_STATUS(moert_model_get_resident_experts(model, counts, (size_t)n_moe, NULL), MOERT_OK,
                      "resident experts")) {
        return -1;
    }
    for (int32_t m = 0; m < n_moe; m++) {
        CHECK(counts[m] >= 0 && counts[m] <= fx->want.n_experts, "MoE layer %d has %d resident experts", (int)m,
              (int)counts[m]);
        total += counts[m];
    }
    return total;
}

/** The fixture loaded with an expert budget (in bytes, or as a share); NULL (and a failed check) on failure. */
static moert_model *load_budgeted(const fixture *fx, int64_t bytes, float percent) {
    moert_model_options o;
    moert_model *model = NULL;
    moert_model_options_init(&o);
    o.expert_budget_bytes = bytes;
    o.expert_budget_percent = percent;
    CHECK_STATUS(moert_model_load(fx->dir, &o, &model), MOERT_OK, "load with an expert budget");
    return model;
}

/** Prompt logits (ALL) of a new session of `model`, then greedy generation; returns 0 when either fails. */
static int prompt_and_generate(const fixture *fx, moert_model *model, float *logits) {
    moert_session *s = new_session(model, 0, 0);
    moert_generate_options o;
    int32_t out[MAX_TOKENS];
    size_t n_generated = 0;
    int ok = s != NULL;
    moert_generate_options_init(&o);
    o.max_new_tokens = (int32_t)fx->n_greedy;
    o.ignore_eos = 1;
    ok = ok && CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_ALL, logits,
                                               fx->n_prompt * fx->vocab),
                            MOERT_OK, "eval ALL");
    ok = ok && CHECK_STATUS(moert_session_reset(s), MOERT_OK, "reset");
    ok = ok && CHECK_STATUS(moert_session_generate(s, fx->prompt, fx->n_prompt, &o, NULL, NULL, out, MAX_TOKENS,
                                                   &n_generated),
                            MOERT_OK, "generate");
    ok = ok && CHECK(n_generated == fx->n_greedy && memcmp(out, fx->greedy, n_generated * sizeof *out) == 0,
                     "greedy generation differs from transformers");
    moert_session_free(s);
    return ok;
}

/* Statistics of a model without a budget: the allocator, the byte counts, and resident experts matching them. */
static void check_unbudgeted(const fixture *fx, moert_model *model, const moert_memory_stats *plain,
                             int64_t expert_bytes) {
    CHECK(plain->allocator != NULL && plain->allocator[0] != 0, "the allocator is named");
    CHECK(plain->expert_budget_bytes == 0 && plain->evictions == 0, "no budget, yet %lld bytes and %lld evictions",
          (long long)plain->expert_budget_bytes, (long long)plain->evictions);
    CHECK(plain->expert_bytes_total > 0 && plain->mapped_bytes == fx->want.file_bytes,
          "%lld expert bytes, %lld mapped bytes for weight files of %lld bytes", (long long)plain->expert_bytes_total,
          (long long)plain->mapped_bytes, (long long)fx->want.file_bytes);
    CHECK(plain->expert_bytes_resident >= 0 && plain->expert_bytes_resident <= plain->expert_bytes_total,
          "%lld of %lld expert bytes resident", (long long)plain->expert_bytes_resident,
          (long long)plain->expert_bytes_total);
    CHECK(resident_experts(fx, model) * expert_bytes == plain->expert_bytes_resident,
          "resident experts times %lld bytes should be the %lld resident bytes", (long long)expert_bytes,
          (long long)plain->expert_bytes_resident);

    /* An older moert_memory_stats: only the covered fields are written. */
    moert_memory_stats older;
    memset(&older, 0x5a, sizeof older);
    older.struct_size = (uint32_t)offsetof(moert_memory_stats, expert_bytes_total);
    CHECK_STATUS(moert_model_get_memory_stats(model, &older), MOERT_OK, "short moert_memory_stats");
    CHECK(older.allocator != NULL && older.expert_bytes_total == 0x5a5a5a5a5a5a5a5a &&
              older.evictions == 0x5a5a5a5a5a5a5a5a,
          "fields beyond struct_size were written");
}

/* A quarter of the expert bytes: experts are evicted and loaded again, and the counters add up. */
static void check_quarter_budget(const fixture *fx, const float *want, float *got, int64_t expert_bytes) {
    moert_model *model = load_budgeted(fx, 0, 25.0f);
    if (model && prompt_and_generate(fx, model, got)) {
        CHECK(memcmp(got, want, fx->n_prompt * fx->vocab * sizeof *got) == 0,
              "a 25%% expert budget changed the prompt logits");
        moert_memory_stats m = memory_stats(model);
        CHECK(m.expert_budget_bytes > 0 && llabs(4 * m.expert_budget_bytes - m.expert_bytes_total) < 4,
              "a budget of %lld bytes is not a quarter of %lld", (long long)m.expert_budget_bytes,
              (long long)m.expert_bytes_total);
        CHECK(m.evictions > 0, "a 25%% budget evicted nothing");
        CHECK(m.misses > 0 && m.hits >= 0 && m.misses * expert_bytes == m.bytes_loaded,
              "%lld misses loaded %lld bytes", (long long)m.misses, (long long)m.bytes_loaded);
        CHECK(m.bytes_loaded == m.expert_bytes_resident + m.evictions * expert_bytes,
              "loaded bytes %lld are not the resident ones (%lld) plus %lld evicted experts", (long long)m.bytes_loaded,
              (long long)m.expert_bytes_resident, (long long)m.evictions);
        CHECK(resident_experts(fx, model) * expert_bytes == m.expert_bytes_resident,
              "resident experts disagree with the resident bytes under a budget");
    }
    moert_model_free(model);
}

/* Half of the expert bytes, given in bytes: reported as given, and never exceeded. */
static void check_half_budget(const fixture *fx, const float *want, float *got, int64_t total_bytes) {
    moert_model *model = load_budgeted(fx, total_bytes / 2, 0.0f);
    if (model && prompt_and_generate(fx, model, got)) {
        CHECK(memcmp(got, want, fx->n_prompt * fx->vocab * sizeof *got) == 0,
              "a budget in bytes changed the prompt logits");
        moert_memory_stats m = memory_stats(model);
        CHECK(m.expert_budget_bytes == total_bytes / 2, "budget of %lld bytes reported, %lld set",
              (long long)m.expert_budget_bytes, (long long)(total_bytes / 2));
        CHECK(m.expert_bytes_resident <= m.expert_budget_bytes, "%lld resident bytes over a budget of %lld",
              (long long)m.expert_bytes_resident, (long long)m.expert_budget_bytes);
    }
    moert_model_free(model);
}

/*
** Every routed expert of the fixtures has the same shape, so resident bytes are resident experts times one expert's
** bytes, and every miss loads exactly one expert. A budget may only change memory use: logits must stay bit-identical
** to the unbudgeted model's, since the same weights are multiplied in the same order.
*/
void test_memory(const fixture *fx, moert_model *model) {
    group_begin("memory and expert budgets");
    size_t n = fx->n_prompt * fx->vocab;
    float *want = calloc(n, sizeof *want), *got = calloc(n, sizeof *got);
    if (CHECK(want && got, "out of memory") && prompt_and_generate(fx, model, want)) {
        moert_memory_stats plain = memory_stats(model);
        if (fx->want.n_moe_layers == 0) {
            /* Every layer dense (deepseek_v3_dense): there is nothing to budget. */
            CHECK(plain.expert_bytes_total == 0 && plain.expert_bytes_resident == 0, "a model without MoE layers has %lld expert bytes",
                  (long long)plain.expert_bytes_total);
        } else {
            int64_t expert_bytes = plain.expert_bytes_total / (fx->want.n_moe_layers * fx->want.n_experts);
            check_unbudgeted(fx, model, &plain, expert_bytes);
            check_quarter_budget(fx, want, got, expert_bytes);
            check_half_budget(fx, want, got, plain.expert_bytes_total);
        }
    }
    free(want);
    free(got);
    group_end();
}
