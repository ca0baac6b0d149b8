/* helpers.c — small helpers over the API that the files of the host API test share (declared in api_test.h). */
#include "api_test.h"

#include <math.h>
#include <string.h>

int check_status_at(moert_status got, moert_status want, const char *what, const char *file, int line) {
    return check_at(got == want, file, line, "%s: expected %s (%d), got %s (%d): %s", what, moert_status_string(want),
                    (int)want, moert_status_string(got), (int)got, moert_last_error());
}

double rel_error(const float *got, const float *ref, size_t n) {
    double scale = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
        double d = fabs((double)got[i] - ref[i]);
        if (isnan(d)) return INFINITY;
        if (d > worst) worst = d;
    }
    return scale > 0 ? worst / scale : worst;
}

moert_model *load_model(const char *dir) {
    moert_model *model = NULL;
    CHECK_STATUS(moert_model_load(dir, NULL, &model), MOERT_OK, dir);
    return model;
}

moert_session *new_session(moert_model *model, int64_t n_ctx, int32_t max_batch) {
    moert_session_options o;
    moert_session *s = NULL;
    moert_session_options_init(&o);
    o.n_ctx = n_ctx;
    o.max_batch = max_batch;
    CHECK_STATUS(moert_session_create(model, &o, &s), MOERT_OK, "moert_session_create");
    return s;
}

int32_t argmax(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++) {
        if (x[i] > x[best]) best = i;
    }
    return (int32_t)best;
}

int32_t log_token(int32_t token, void *user_data) {
    token_log *log = user_data;
    if (log->count < MAX_TOKENS) log->tokens[log->count] = token;
    log->count++;
    return log->stop_after != 0 && log->count >= log->stop_after;
}

int32_t find_kind(int32_t kind, const char *name) {
    for (int32_t i = 0; i < moert_kind_count(kind); i++) {
        const char *n = moert_kind_name(kind, i);
        if (n && strcmp(n, name) == 0) return i;
    }
    return -1;
}

double prompt_error(const fixture *fx, moert_session *s, float *logits) {
    size_t n = fx->n_prompt * fx->vocab;
    if (!CHECK_STATUS(moert_session_reset(s), MOERT_OK, "reset") ||
        !CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_ALL, logits, n), MOERT_OK, "eval")) {
        return INFINITY;
    }
    return rel_error(logits, fx->logits, n);
}
