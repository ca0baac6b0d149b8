/* test_no_alloc.c: once a session is warm, evaluating tokens allocates nothing, and generation allocates the same
** whether it makes 2 tokens or 40.
**
** The program defines malloc and its relatives itself, so every allocation of the process — libmoert.so with its
** Swift runtime, OpenBLAS, the kernels' worker threads — comes through them (ELF symbol interposition) and is
** counted while counting is on, then handed to glibc's own allocator.
**
** Usage: test_no_alloc FIXTURES_DIR (built with Tests/c/check.c). Ends with "N passed, M failed". */
#include "check.h"

#include <moert.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* glibc's allocator under its internal names. */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *pointer);

static atomic_int counting;
static atomic_long allocations;

static void note(void) {
    if (atomic_load_explicit(&counting, memory_order_relaxed)) atomic_fetch_add(&allocations, 1);
}

void *malloc(size_t size) { note(); return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { note(); return __libc_calloc(count, size); }
void *realloc(void *pointer, size_t size) { note(); return __libc_realloc(pointer, size); }
void *memalign(size_t alignment, size_t size) { note(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { note(); return __libc_memalign(alignment, size); }
void free(void *pointer) { __libc_free(pointer); }

int posix_memalign(void **out, size_t alignment, size_t size) {
    note();
    void *p = __libc_memalign(alignment, size);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

/* Starts counting allocations from zero. */
static void count_from_zero(void) {
    atomic_store(&allocations, 0);
    atomic_store(&counting, 1);
}

/* Stops counting; returns the allocations counted. */
static long stop_counting(void) {
    atomic_store(&counting, 0);
    return atomic_load(&allocations);
}

/* The greedy next token of a row of logits. */
static int32_t argmax(const float *row, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++) if (row[i] > row[best]) best = i;
    return best;
}

/* Evaluates tokens until every routed expert has been materialised (so that no step after it loads one). */
static int warm_up(moert_model *model, moert_session *session, float *logits, int32_t vocab) {
    int32_t token = 1;
    for (int step = 0; step < 200; step++) {
        if (moert_session_eval(session, &token, 1, MOERT_LOGITS_LAST, logits, (size_t)vocab) != MOERT_OK) return 0;
        token = (int32_t)((step * 37 + 11) % vocab);
        moert_memory_stats stats;
        memset(&stats, 0, sizeof stats);
        stats.struct_size = sizeof stats;
        if (moert_model_get_memory_stats(model, &stats) != MOERT_OK) return 0;
        if (step >= 8 && stats.expert_bytes_resident == stats.expert_bytes_total) return 1;
    }
    return 0;
}

/* Allocations of one moert_session_generate() call making `n` tokens with a temperature and top-k sampler. */
static long generate_allocations(moert_session *session, int32_t n) {
    moert_sampler_options sampling;
    moert_sampler_options_init(&sampling);
    sampling.temperature = 0.8f;
    sampling.top_k = 5;
    sampling.seed = 7;
    moert_generate_options options;
    moert_generate_options_init(&options);
    options.max_new_tokens = n;
    options.ignore_eos = 1;
    options.sampler = &sampling;
    const int32_t prompt[] = {3, 5};
    moert_session_reset(session);
    count_from_zero();
    size_t made = 0;
    moert_status status = moert_session_generate(session, prompt, 2, &options, NULL, NULL, NULL, 0, &made);
    long counted = stop_counting();
    return status == MOERT_OK && made == (size_t)n ? counted : -1;
}

static void run_fixture(const char *fixtures, const char *fixture, int32_t kv_type) {
    char path[4096], what[256], name[128];
    snprintf(path, sizeof path, "%s/%s", fixtures, fixture);
    if (kv_type == MOERT_KV_TYPE_F32) snprintf(name, sizeof name, "%s", fixture);
    else snprintf(name, sizeof name, "%s (kv_type %d)", fixture, (int)kv_type);
    moert_model *model = NULL;
    moert_session *session = NULL;
    moert_session_options session_options;
    moert_session_options_init(&session_options);
    session_options.n_ctx = 400;
    session_options.kv_type = kv_type;
    if (moert_model_load(path, NULL, &model) != MOERT_OK ||
        moert_session_create(model, &session_options, &session) != MOERT_OK) {
        snprintf(what, sizeof what, "%s: load and create a session", name);
        check(0, what, "%s", moert_last_error());
        moert_model_free(model);
        return;
    }
    moert_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    moert_model_get_info(model, &info);
    float *logits = malloc(sizeof(float) * (size_t)info.vocab_size * 8);
    snprintf(what, sizeof what, "%s: warm-up materialises every expert", name);
    check(logits && warm_up(model, session, logits, info.vocab_size), what, "%s", moert_last_error());

    /* Decode: 24 steps of one token. */
    int32_t token = argmax(logits, info.vocab_size);
    moert_status status = MOERT_OK;
    count_from_zero();
    for (int step = 0; step < 24 && status == MOERT_OK; step++) {
        status = moert_session_eval(session, &token, 1, MOERT_LOGITS_LAST, logits, (size_t)info.vocab_size);
        token = argmax(logits, info.vocab_size);
    }
    long counted = stop_counting();
    snprintf(what, sizeof what, "%s: 24 decode steps allocate nothing", name);
    check(status == MOERT_OK && counted == 0, what, "status %d, %ld allocations", status, counted);

    /* A chunk of 8 tokens with the logits of every position. */
    const int32_t chunk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    count_from_zero();
    status = moert_session_eval(session, chunk, 8, MOERT_LOGITS_ALL, logits, (size_t)info.vocab_size * 8);
    counted = stop_counting();
    snprintf(what, sizeof what, "%s: an 8-token chunk allocates nothing", name);
    check(status == MOERT_OK && counted == 0, what, "status %d, %ld allocations", status, counted);

    /* Generation: what one call allocates does not grow with the tokens it makes. The first call may set up what
    ** every later one reuses; the count covers every thread, so a worker's one-time set-up on a busy machine can
    ** still land in a later call: up to three tries, as an allocation made per token shows in each of them. */
    generate_allocations(session, 40);
    long few = -1, many = -1;
    for (int attempt = 0; attempt < 3 && (few < 0 || many != few); attempt++) {
        few = generate_allocations(session, 2);
        many = generate_allocations(session, 40);
    }
    snprintf(what, sizeof what, "%s: generating 40 tokens allocates as much as generating 2", name);
    check(few >= 0 && many == few, what, "2 tokens: %ld allocations, 40 tokens: %ld (-1: generation failed)", few, many);

    free(logits);
    moert_session_free(session);
    moert_model_free(model);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    moert_set_threads(2);  /* the worker pool runs too */
    /* qwen2_moe_window: full layers beside the ring buffers of sliding-window ones; gpt_oss: sinks, rings, expert
       biases and the clamped SwiGLU; glm4_moe: sigmoid routing with groups and the correction bias, partial rotary. */
    const char *fixtures[] = {"mixtral", "mixtral_bf16", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2_lite",
                              "qwen2_moe_window", "gpt_oss", "glm4_moe"};
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) run_fixture(argv[1], fixtures[i], MOERT_KV_TYPE_F32);
    /* The rounded cache types: their rows are stored and widened in buffers the session made. */
    run_fixture(argv[1], "mixtral", MOERT_KV_TYPE_F16);
    run_fixture(argv[1], "mixtral_hd64", MOERT_KV_TYPE_Q8_0);
    run_fixture(argv[1], "deepseek_v2_lite", MOERT_KV_TYPE_BF16);  /* the latent cache */
    run_fixture(argv[1], "deepseek_v2_lite", MOERT_KV_TYPE_Q8_0);
    run_fixture(argv[1], "mixtral_window", MOERT_KV_TYPE_F16);
    return check_summary();
}
