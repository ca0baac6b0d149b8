/* kv_cache.c — KV cache types through moert_session_options.kv_type (each within its tolerance of transformers),
   moert_session_kv_bytes, and the context shift: moert_session_shift and MOERT_SESSION_CONTEXT_SHIFT with n_keep. */
#include "api_test.h"

#include <stdlib.h>
#include <string.h>

/* Largest logit error of each cache type relative to the reference's largest logit (the Swift tests' table, where
   the measured figures are explained): f16 keeps 11 significant bits, bf16 8, q8_0 a step of max|x|/127 per block. */
static const double kv_rtol[] = {LOGITS_RTOL, 2e-3, 1.5e-2, 3e-2};

static moert_status create(moert_model *model, int32_t kv_type, uint32_t flags, int64_t n_ctx, int32_t n_keep,
                           moert_session **out) {
    moert_session_options o;
    moert_session_options_init(&o);
    o.kv_type = kv_type;
    o.flags = flags;
    o.n_ctx = n_ctx;
    o.n_keep = n_keep;
    *out = NULL;
    return moert_session_create(model, &o, out);
}

/** Every cache type: prefill logits within its tolerance, the cache's bytes in proportion to its type; q8_0 refused
    where a head does not split into blocks of 32. */
void test_kv_types(const fixture *fx, moert_model *model) {
    float *logits = calloc(fx->n_prompt * fx->vocab, sizeof *logits);
    int64_t f32_bytes = 0;
    for (int32_t type = MOERT_KV_TYPE_F32; type <= MOERT_KV_TYPE_Q8_0 && logits; type++) {
        moert_session *s = NULL;
        if (type == MOERT_KV_TYPE_Q8_0 && (fx->want.latent ? fx->want.cache_values : fx->want.head_dim) % 32 != 0) {
            CHECK_STATUS(create(model, type, 0, 32, 0, &s), MOERT_ERR_INVALID_ARGUMENT, "q8_0 with heads of no 32-blocks");
            CHECK(s == NULL && strstr(moert_last_error(), "multiple of 32") != NULL, "q8_0 refusal: %s", moert_last_error());
            continue;
        }
        if (!CHECK_STATUS(create(model, type, 0, 32, 0, &s), MOERT_OK, "session with a KV cache type")) continue;
        int64_t bytes = moert_session_kv_bytes(s);
        if (type == MOERT_KV_TYPE_F32) {
            f32_bytes = bytes;
            /* 32 positions per full layer; a sliding-window layer keeps its window (a ring buffer). */
            int64_t rows = (fx->want.n_layers - fx->want.n_windowed_layers) * 32 + fx->want.n_windowed_layers * fx->want.window;
            CHECK(bytes == rows * fx->want.cache_values * 4, "f32 cache of %lld bytes", (long long)bytes);
        } else {
            int64_t want = type == MOERT_KV_TYPE_Q8_0 ? f32_bytes * 34 / 128 : f32_bytes / 2;
            CHECK(bytes == want, "type %d cache of %lld bytes, want %lld", type, (long long)bytes, (long long)want);
        }
        CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_ALL, logits, fx->n_prompt * fx->vocab),
                     MOERT_OK, "eval with a KV cache type");
        double err = rel_error(logits, fx->logits, fx->n_prompt * fx->vocab);
        CHECK(err <= kv_rtol[type], "type %d: logits %.3g from transformers', tolerance %.3g", type, err, kv_rtol[type]);
        moert_session_free(s);
    }
    free(logits);
    CHECK(moert_session_kv_bytes(NULL) == 0, "moert_session_kv_bytes(NULL) should be 0");
}

/** Bad kv_type, flags and n_keep are refused; moert_session_shift checks its range; generation with the shift flag
    goes past n_ctx and without it stops there. */
void test_context_shift(const fixture *fx, moert_model *model) {
    moert_session *s = NULL;
    if (fx->want.latent) {
        /* The latent cache is not shifted: the flag and the call are refused, naming why. */
        CHECK_STATUS(create(model, 0, MOERT_SESSION_CONTEXT_SHIFT, 32, 0, &s), MOERT_ERR_UNSUPPORTED, "latent cache shift flag");
        CHECK(s == NULL && strstr(moert_last_error(), "kv_lora_rank") != NULL, "refusal: %s", moert_last_error());
        if (CHECK_STATUS(create(model, 0, 0, 16, 0, &s), MOERT_OK, "session of 16")) {
            CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_NONE, NULL, 0), MOERT_OK, "prompt");
            CHECK_STATUS(moert_session_shift(s, 1, 2), MOERT_ERR_UNSUPPORTED, "shift(1, 2) of a latent cache");
            moert_session_free(s);
        }
        return;
    }
    CHECK_STATUS(create(model, 4, 0, 32, 0, &s), MOERT_ERR_INVALID_ARGUMENT, "kv_type 4");
    CHECK_STATUS(create(model, -1, 0, 32, 0, &s), MOERT_ERR_INVALID_ARGUMENT, "kv_type -1");
    CHECK_STATUS(create(model, 0, 0x2, 32, 0, &s), MOERT_ERR_INVALID_ARGUMENT, "unknown flag bit");
    CHECK_STATUS(create(model, 0, MOERT_SESSION_CONTEXT_SHIFT, 32, 32, &s), MOERT_ERR_INVALID_ARGUMENT, "n_keep = n_ctx");
    CHECK_STATUS(create(model, 0, MOERT_SESSION_CONTEXT_SHIFT, 32, -1, &s), MOERT_ERR_INVALID_ARGUMENT, "n_keep < 0");
    CHECK_STATUS(moert_session_shift(NULL, 0, 1), MOERT_ERR_INVALID_ARGUMENT, "shift(NULL)");

    int32_t out[64];
    size_t made = 0;
    moert_generate_options g;
    moert_generate_options_init(&g);
    g.max_new_tokens = 40;
    g.ignore_eos = 1;
    if (CHECK_STATUS(create(model, 0, 0, 16, 0, &s), MOERT_OK, "session of 16")) {
        CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_NONE, NULL, 0), MOERT_OK, "prompt");
        if (fx->want.n_windowed_layers > 0) {
            /* Sliding-window layers keep only their window: no shift, with the reason. */
            CHECK_STATUS(moert_session_shift(s, 1, 2), MOERT_ERR_UNSUPPORTED, "shift with sliding-window layers");
            CHECK(strstr(moert_last_error(), "sliding window") != NULL, "shift refusal: %s", moert_last_error());
        } else {
            CHECK_STATUS(moert_session_shift(s, 1, (int64_t)fx->n_prompt), MOERT_ERR_INVALID_ARGUMENT, "shift past n_past");
            CHECK_STATUS(moert_session_shift(s, -1, 1), MOERT_ERR_INVALID_ARGUMENT, "negative n_keep");
            CHECK_STATUS(moert_session_shift(s, 1, 2), MOERT_OK, "shift(1, 2)");
            CHECK(moert_session_n_past(s) == (int64_t)fx->n_prompt - 2, "n_past %lld after dropping 2",
                  (long long)moert_session_n_past(s));
        }
        moert_session_reset(s);
        CHECK_STATUS(moert_session_generate(s, fx->prompt, fx->n_prompt, &g, NULL, NULL, out, 64, &made), MOERT_OK,
                     "generate without the shift");
        CHECK(made == 16 - fx->n_prompt + 1, "%zu tokens without the shift, want %zu", made, 16 - fx->n_prompt + 1);
        moert_session_free(s);
    }
    if (fx->want.n_windowed_layers > 0) {
        CHECK_STATUS(create(model, 0, MOERT_SESSION_CONTEXT_SHIFT, 16, 1, &s), MOERT_ERR_UNSUPPORTED,
                     "the shift flag with sliding-window layers");
        CHECK(s == NULL, "no session on a refusal");
    } else if (CHECK_STATUS(create(model, 0, MOERT_SESSION_CONTEXT_SHIFT, 16, 1, &s), MOERT_OK, "session with the shift")) {
        CHECK_STATUS(moert_session_generate(s, fx->prompt, fx->n_prompt, &g, NULL, NULL, out, 64, &made), MOERT_OK,
                     "generate with the shift");
        CHECK(made == 40, "%zu tokens with the shift, want 40", made);
        CHECK(moert_session_n_past(s) <= 16, "n_past %lld beyond n_ctx", (long long)moert_session_n_past(s));
        moert_session_free(s);
    }
}
