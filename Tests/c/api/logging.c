/* logging.c — moert_set_log_callback: moert's warnings reach the host's callback, or stderr when none is set. */
#define _POSIX_C_SOURCE 200809L

#include "api_test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The warning a model with a 1-byte expert budget gives on its first evaluation (once per model). */
#define BUDGET_WARNING "expert budget of 1 bytes is smaller than the experts one step needs; running over it"

/** What the callback saw. It may run on any thread that runs moert code, hence the lock. */
typedef struct log_record {
    pthread_mutex_t lock;
    int calls;             /* messages of any level */
    int budget_warnings;   /* messages holding BUDGET_WARNING */
    int32_t budget_level;  /* the level of the last of them */
    int foreign_user_data; /* calls whose user_data was not this record */
} log_record;

static log_record record = {PTHREAD_MUTEX_INITIALIZER, 0, 0, -1, 0};

/** The moert_log_callback under test: counts into `record`. */
static void record_log(int32_t level, const char *message, void *user_data) {
    pthread_mutex_lock(&record.lock);
    record.calls++;
    if (user_data != &record) record.foreign_user_data++;
    if (message != NULL && strstr(message, BUDGET_WARNING) != NULL) {
        record.budget_warnings++;
        record.budget_level = level;
    }
    pthread_mutex_unlock(&record.lock);
}

/** A copy of `record`, read under its lock. */
static log_record record_now(void) {
    pthread_mutex_lock(&record.lock);
    log_record copy = record;
    pthread_mutex_unlock(&record.lock);
    return copy;
}

/** Where stderr went while it was captured. */
typedef struct stderr_capture {
    FILE *file;  /* a temporary file standing in for descriptor 2 */
    int saved;   /* a duplicate of the real stderr */
} stderr_capture;

/** Points descriptor 2 (where moert's default log writes) at a temporary file. Returns 0 (checked) on failure. */
static int capture_stderr(stderr_capture *c) {
    fflush(stderr);
    c->file = tmpfile();
    c->saved = c->file != NULL ? dup(2) : -1;
    if (!CHECK(c->saved >= 0 && dup2(fileno(c->file), 2) >= 0, "cannot redirect stderr")) {
        if (c->saved >= 0) close(c->saved);
        if (c->file != NULL) fclose(c->file);
        return 0;
    }
    return 1;
}

/** Puts stderr back and reads what was written to it meanwhile into `text` (NUL-terminated, cut to `size`). */
static void release_stderr(stderr_capture *c, char *text, size_t size) {
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    rewind(c->file);
    size_t n = fread(text, 1, size - 1, c->file);
    text[n] = 0;
    fclose(c->file);
}

/** Loads the fixture with a 1-byte expert budget and evaluates its prompt twice, which logs BUDGET_WARNING once. */
static void run_over_budget(const fixture *fx) {
    moert_model_options o;
    moert_model *model = NULL;
    moert_session *s = NULL;
    moert_model_options_init(&o);
    o.expert_budget_bytes = 1;
    if (CHECK_STATUS(moert_model_load(fx->dir, &o, &model), MOERT_OK, "load with an expert budget of 1 byte")) {
        s = new_session(model, 0, 0);
    }
    for (int pass = 0; s != NULL && pass < 2; pass++) {
        CHECK_STATUS(moert_session_reset(s), MOERT_OK, "reset");
        CHECK_STATUS(moert_session_eval(s, fx->prompt, fx->n_prompt, MOERT_LOGITS_NONE, NULL, 0), MOERT_OK,
                     "eval over the budget");
    }
    moert_session_free(s);
    moert_model_free(model);
}

/** The highest level the default log writes to stderr: MOERT_LOG when it is an integer, else MOERT_LOG_WARN. */
static long default_threshold(void) {
    const char *text = getenv("MOERT_LOG");
    char *end = NULL;
    long level = text != NULL ? strtol(text, &end, 10) : MOERT_LOG_WARN;
    return text != NULL && (end == text || *end != 0) ? MOERT_LOG_WARN : level;
}

void test_logging(const fixture *fx) {
    group_begin("log callback");
    char text[4096];
    stderr_capture c;

    moert_set_log_callback(record_log, &record);
    if (capture_stderr(&c)) {
        run_over_budget(fx);
        release_stderr(&c, text, sizeof text);
        log_record seen = record_now();
        CHECK(seen.budget_warnings == 1, "the callback got the budget warning %d times, want once (per model)",
              seen.budget_warnings);
        CHECK(seen.budget_level == MOERT_LOG_WARN, "the budget warning came at level %d, want MOERT_LOG_WARN (%d)",
              (int)seen.budget_level, MOERT_LOG_WARN);
        CHECK(seen.foreign_user_data == 0, "%d of %d calls passed another user_data", seen.foreign_user_data,
              seen.calls);
        CHECK(strstr(text, BUDGET_WARNING) == NULL && strstr(text, "moert:") == NULL,
              "with a callback set, stderr still got: %s", text);
    }

    moert_set_log_callback(NULL, NULL);
    int calls = record_now().calls;
    if (capture_stderr(&c)) {
        run_over_budget(fx);
        release_stderr(&c, text, sizeof text);
        CHECK(record_now().calls == calls, "the callback was called after moert_set_log_callback(NULL, NULL)");
        const char *line = "moert: warning: " BUDGET_WARNING "\n";
        if (default_threshold() >= MOERT_LOG_WARN) {
            CHECK(strstr(text, line) != NULL, "the default log should print \"%s\" on stderr, got: %s", line, text);
        } else {
            CHECK(strstr(text, BUDGET_WARNING) == NULL, "MOERT_LOG below warnings, yet stderr got: %s", text);
        }
    }
    group_end();
}
