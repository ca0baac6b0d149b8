/* library.c — library-wide checks: versions, status texts, the last error, threads, options defaults, free(NULL). */
#define _POSIX_C_SOURCE 200809L

#include "api_test.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/** Version text, number and ABI agree with the header's macros. */
static void test_version(void) {
    group_begin("version");
    const char *v = moert_version();
    CHECK(v != NULL && strcmp(v, MOERT_VERSION) == 0, "moert_version() = %s, header says %s", v ? v : "(null)",
          MOERT_VERSION);
    CHECK(moert_version_number() == MOERT_VERSION_NUMBER, "moert_version_number() = %u, header says %d",
          (unsigned)moert_version_number(), MOERT_VERSION_NUMBER);
    CHECK(moert_abi_version() == MOERT_ABI_VERSION, "moert_abi_version() = %u, header says %d",
          (unsigned)moert_abi_version(), MOERT_ABI_VERSION);
    unsigned major = 0, minor = 0, patch = 0;
    CHECK(sscanf(MOERT_VERSION, "%u.%u.%u", &major, &minor, &patch) == 3 &&
              major * 1000000u + minor * 1000u + patch == (unsigned)MOERT_VERSION_NUMBER,
          "MOERT_VERSION_NUMBER %d does not encode MOERT_VERSION %s", MOERT_VERSION_NUMBER, MOERT_VERSION);
    group_end();
}

/** Every status code has its own static text; unknown numbers say so. */
static void test_status_strings(void) {
    group_begin("status strings");
    for (moert_status s = MOERT_OK; s <= MOERT_ERR_NUMERIC; s++) {
        const char *text = moert_status_string(s);
        CHECK(text != NULL && text[0] != 0 && strcmp(text, "unknown status") != 0, "status %d has no text", (int)s);
        for (moert_status t = MOERT_OK; t < s && text; t++) {
            CHECK(strcmp(text, moert_status_string(t)) != 0, "statuses %d and %d share the text %s", (int)t, (int)s, text);
        }
    }
    const moert_status unknown[] = {-1, MOERT_ERR_NUMERIC + 1, 9999, INT32_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        const char *text = moert_status_string(unknown[i]);
        CHECK(text != NULL && strcmp(text, "unknown status") == 0, "status %d: expected \"unknown status\", got %s",
              (int)unknown[i], text ? text : "(null)");
    }
    group_end();
}

/** Thread body for test_last_error: reads this new thread's last error. */
static void *read_fresh_last_error(void *out) {
    const char *message = moert_last_error();
    *(int *)out = message != NULL && message[0] == 0;
    return NULL;
}

/** moert_last_error() is set by failures and is per thread. */
static void test_last_error(void) {
    group_begin("last error");
    moert_model *model = NULL;
    CHECK(moert_last_error() != NULL, "moert_last_error() returned NULL");
    CHECK_STATUS(moert_model_load("/nonexistent/moert-model", NULL, &model), MOERT_ERR_IO, "load of a missing dir");
    const char *message = moert_last_error();
    CHECK(message != NULL && strstr(message, "/nonexistent/moert-model") != NULL,
          "message should name the missing directory, got: %s", message ? message : "(null)");
    CHECK_STATUS(moert_set_threads(-3), MOERT_ERR_INVALID_ARGUMENT, "moert_set_threads(-3)");
    message = moert_last_error();
    CHECK(message != NULL && strstr(message, "-3") != NULL, "message should name the bad count, got: %s",
          message ? message : "(null)");
    pthread_t thread;
    int fresh_is_empty = 0;
    CHECK(pthread_create(&thread, NULL, read_fresh_last_error, &fresh_is_empty) == 0, "pthread_create failed");
    pthread_join(thread, NULL);
    CHECK(fresh_is_empty, "a new thread must see an empty last error (the message is thread-local)");
    group_end();
}

/** Thread count: set, read back, 0 restores the default, negative is refused. */
static void test_threads(void) {
    group_begin("threads");
    int32_t initial = moert_get_threads();
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK(initial == (cpus > 0 ? cpus : 1), "before any moert_set_threads, get_threads() = %d, expected the %ld online CPUs",
          (int)initial, cpus);
    CHECK_STATUS(moert_set_threads(1), MOERT_OK, "moert_set_threads(1)");
    CHECK(moert_get_threads() == 1, "after set_threads(1), get_threads() = %d", (int)moert_get_threads());
    CHECK_STATUS(moert_set_threads(2), MOERT_OK, "moert_set_threads(2)");
    CHECK(moert_get_threads() == 2, "after set_threads(2), get_threads() = %d", (int)moert_get_threads());
    CHECK_STATUS(moert_set_threads(-1), MOERT_ERR_INVALID_ARGUMENT, "moert_set_threads(-1)");
    CHECK(moert_get_threads() == 2, "a refused count must not change the setting (got %d)", (int)moert_get_threads());
    CHECK_STATUS(moert_set_threads(0), MOERT_OK, "moert_set_threads(0)");
    CHECK(moert_get_threads() == (cpus > 0 ? cpus : 1), "set_threads(0) should restore %ld (online CPUs), got %d",
          cpus, (int)moert_get_threads());
    group_end();
}

/** Every *_init sets struct_size and the defaults documented in the header. */
static void test_options_init(void) {
    group_begin("options init");
    moert_model_options mo;
    memset(&mo, 0x5a, sizeof mo);
    moert_model_options_init(&mo);
    CHECK(mo.struct_size == sizeof mo && mo.flags == 0 && mo.max_context == 0, "moert_model_options defaults");
    moert_session_options so;
    memset(&so, 0x5a, sizeof so);
    moert_session_options_init(&so);
    CHECK(so.struct_size == sizeof so && so.flags == 0 && so.n_ctx == 0 && so.max_batch == 0,
          "moert_session_options defaults");
    moert_sampler_options sa;
    memset(&sa, 0x5a, sizeof sa);
    moert_sampler_options_init(&sa);
    CHECK(sa.struct_size == sizeof sa && sa.temperature == 0.0f && sa.top_k == 0 && sa.top_p == 1.0f && sa.seed == 0,
          "moert_sampler_options defaults (greedy)");
    moert_generate_options go;
    memset(&go, 0x5a, sizeof go);
    moert_generate_options_init(&go);
    CHECK(go.struct_size == sizeof go && go.max_new_tokens == 16 && go.ignore_eos == 0 && go.sampler == NULL,
          "moert_generate_options defaults");

    /* A host built against an older, smaller header: the *_init_sized calls write no further than its struct. */
    memset(&mo, 0x5a, sizeof mo);
    moert_model_options_init_sized(&mo, offsetof(moert_model_options, expert_budget_bytes));
    CHECK(mo.struct_size == offsetof(moert_model_options, expert_budget_bytes) && mo.max_context == 0 &&
              mo.expert_budget_bytes == 0x5a5a5a5a5a5a5a5a,
          "moert_model_options_init_sized with an older size");
    memset(&so, 0x5a, sizeof so);
    moert_session_options_init_sized(&so, offsetof(moert_session_options, max_batch));
    CHECK(so.struct_size == offsetof(moert_session_options, max_batch) && so.n_ctx == 0 && so.max_batch == 0x5a5a5a5a,
          "moert_session_options_init_sized with an older size");
    memset(&sa, 0x5a, sizeof sa);
    moert_sampler_options_init_sized(&sa, offsetof(moert_sampler_options, seed));
    CHECK(sa.struct_size == offsetof(moert_sampler_options, seed) && sa.top_p == 1.0f && sa.seed == 0x5a5a5a5a5a5a5a5a,
          "moert_sampler_options_init_sized with an older size");
    memset(&go, 0x5a, sizeof go);
    moert_generate_options_init_sized(&go, offsetof(moert_generate_options, sampler));
    CHECK(go.struct_size == offsetof(moert_generate_options, sampler) && go.max_new_tokens == 16 &&
              go.ignore_eos == 0,
          "moert_generate_options_init_sized with an older size");
    /* A newer, larger header: struct_size is the library's sizeof, which this header is. */
    struct {
        moert_session_options options;
        unsigned char newer_fields[16];
    } larger;
    memset(&larger, 0x5a, sizeof larger);
    moert_session_options_init_sized(&larger.options, sizeof larger);
    CHECK(larger.options.struct_size == sizeof larger.options && larger.newer_fields[0] == 0x5a,
          "moert_session_options_init_sized with a larger size sets the library's size, writes nothing past it");
    group_end();
}

/** *_free(NULL) does nothing, and the NULL-tolerant getters return 0. */
static void test_free_null(void) {
    group_begin("free NULL");
    moert_model_free(NULL);
    moert_session_free(NULL);
    moert_sampler_free(NULL);
    CHECK(moert_session_n_past(NULL) == 0, "moert_session_n_past(NULL) should be 0");
    CHECK(moert_session_n_ctx(NULL) == 0, "moert_session_n_ctx(NULL) should be 0");
    group_end();
}

void test_library(void) {
    test_version();
    test_status_strings();
    test_last_error();
    test_threads();
    test_options_init();
    test_free_null();
}
