/* c_api_overhead.c: the cost of crossing the C API, per call, for calls that do no work of their own.
** Build and run: cc -O2 benchmarks/c_api_overhead.c $(pkg-config --cflags --libs moert) -o /tmp/overhead
**                /tmp/overhead Tests/fixtures/mixtral */
#include <moert.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    moert_model *model;
    moert_session *session;
    if (argc != 2 || moert_model_load(argv[1], NULL, &model) != MOERT_OK || moert_session_create(model, NULL, &session) != MOERT_OK) {
        fprintf(stderr, "usage: %s MODEL_DIR (%s)\n", argv[0], moert_last_error());
        return 1;
    }
    enum { N = 10000000 };
    int64_t sink = 0;
    double t = now();
    for (int i = 0; i < N; i++) sink += moert_session_n_past(session);
    double getter = (now() - t) / N;
    moert_model_info info = {.struct_size = sizeof info};
    t = now();
    for (int i = 0; i < N / 10; i++) sink += moert_model_get_info(model, &info);
    double info_call = (now() - t) / (N / 10);
    t = now();
    for (int i = 0; i < N / 10; i++) sink += moert_session_eval(session, NULL, 0, MOERT_LOGITS_NONE, NULL, 0);  /* fails fast */
    double failing = (now() - t) / (N / 10);
    printf("moert_session_n_past:                 %.1f ns/call\n", getter * 1e9);
    printf("moert_model_get_info:                 %.1f ns/call\n", info_call * 1e9);
    printf("moert_session_eval (argument error):  %.1f ns/call (includes setting the thread's error message)\n", failing * 1e9);
    moert_session_free(session);
    moert_model_free(model);
    return sink == 42;
}
