/* scmoe.c — SCMoE self-contrast decoding through moert_generate_options, against transformers
   (Tests/fixtures/scmoe/reference.json, tools/make_scmoe_fixtures.py). */
#include "api_test.h"
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/** Reads up to `capacity` integers of array member `key` into `out`; returns how many. */
static size_t int_array(json_span object, const char *key, int32_t *out, size_t capacity) {
    json_span array, item;
    size_t n = 0;
    if (!json_object_get(object, key, &array)) return 0;
    for (; n < capacity && json_array_get(array, n, &item); n++) {
        int64_t v = 0;
        if (!json_int(item, &v)) return 0;
        out[n] = (int32_t)v;
    }
    return n;
}

/** Member `key` as a float (the reference writes beta and alpha as decimals). */
static float number(json_span object, const char *key) {
    json_span v;
    char text[64];
    if (!json_object_get(object, key, &v) || v.n >= sizeof text) return -1.0f;
    memcpy(text, v.p, v.n);
    text[v.n] = '\0';
    return strtof(text, NULL);
}

void test_scmoe(const char *root, moert_model *model) {
    group_begin("SCMoE self-contrast decoding");
    moert_generate_options g;
    moert_generate_options_init(&g);
    CHECK(g.scmoe_weak_rank == -1 && g.scmoe_beta == 0.5f && g.scmoe_alpha == 0.1f, "SCMoE option defaults");
    char path[1024];
    snprintf(path, sizeof path, "%s/scmoe/reference.json", root);
    unsigned char *text = NULL;
    size_t size = 0;
    json_span doc, cases, c;
    if (!require(read_file(path, &text, &size), "reference", "cannot read %s", path) ||
        !require(json_value((json_span){(const char *)text, size}, &doc) && json_object_get(doc, "cases", &cases),
                 "reference", "%s: no cases", path)) {
        free(text);
        group_end();
        return;
    }
    moert_session *s = new_session(model, 0, 0);
    size_t checked = 0;
    for (size_t i = 0; s && json_array_get(cases, i, &c); i++) {
        char name[64];
        json_span fixture_name;
        if (!json_object_get(c, "fixture", &fixture_name) || !json_string(fixture_name, name, sizeof name) ||
            strcmp(name, "mixtral") != 0) {
            continue;  // the cases of other models
        }
        int32_t prompt[32], want[64], greedy[64], out[64];
        size_t n_prompt = int_array(c, "prompt", prompt, 32), n_want = int_array(c, "tokens", want, 64);
        size_t n_greedy = int_array(c, "greedy", greedy, 64), made = 0;
        g.max_new_tokens = (int32_t)n_want;
        g.ignore_eos = 1;
        g.scmoe_weak_rank = (int32_t)json_get_int(c, "weak_rank", -1);
        g.scmoe_beta = number(c, "beta");
        g.scmoe_alpha = number(c, "alpha");
        moert_session_reset(s);
        CHECK_STATUS(moert_session_generate(s, prompt, n_prompt, &g, NULL, NULL, out, 64, &made), MOERT_OK, "generate");
        CHECK(made == n_want && memcmp(out, want, n_want * sizeof *out) == 0, "case %zu: transformers' SCMoE tokens", i);
        // beta 0 leaves the strong logits, whose argmax is always plausible: plain greedy decoding.
        g.scmoe_beta = 0.0f;
        moert_session_reset(s);
        CHECK_STATUS(moert_session_generate(s, prompt, n_prompt, &g, NULL, NULL, out, 64, &made), MOERT_OK, "generate, beta 0");
        CHECK(made == n_greedy && memcmp(out, greedy, n_greedy * sizeof *out) == 0, "case %zu: beta 0 is greedy", i);
        checked++;
    }
    CHECK(checked >= 1, "no mixtral case in %s", path);
    if (s) {
        static const struct { int32_t rank; float beta, alpha; } bad[] = {{-2, 0.5f, 0.1f}, {4, 0.5f, 0.1f}, {1, -1.0f, 0.1f},
                                                                           {1, 0.5f, 0.0f}, {1, 0.5f, 1.5f}};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            int32_t p[2] = {5, 6}, out[4];
            g.max_new_tokens = 2;
            g.scmoe_weak_rank = bad[i].rank;
            g.scmoe_beta = bad[i].beta;
            g.scmoe_alpha = bad[i].alpha;
            moert_session_reset(s);
            CHECK_STATUS(moert_session_generate(s, p, 2, &g, NULL, NULL, out, 4, NULL), MOERT_ERR_INVALID_ARGUMENT,
                         "bad SCMoE settings");
        }
    }
    moert_session_free(s);
    free(text);
    group_end();
}
