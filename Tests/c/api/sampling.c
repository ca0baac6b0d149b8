/* sampling.c — samplers (greedy, seeded, top-k, top-p) and sampled generation. */
#include "api_test.h"

#include <math.h>
#include <string.h>

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

void test_sampling(const fixture *fx, moert_model *model) {
    test_sampler_greedy(fx);
    test_sampler_seeded();
    test_generate_sampled(fx, model);
}
