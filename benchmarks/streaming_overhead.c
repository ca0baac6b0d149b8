/* streaming_overhead.c: what streaming text adds to generation time.
**
** Generates the same greedy tokens from the same prompt three ways, in interleaved rounds (the order rotating from
** round to round):
**   ids     moert_session_generate with a callback that only counts (what `moert generate --tokens` costs)
**   text    the callback also pushes each id through a moert_detokenizer and writes the text to a file, as
**           `moert generate --prompt` and the bindings stream it
**   stops   text, plus the tokenizer's stop ids and two stop strings that never occur (the stop-string watch runs
**           on every token)
** and prints the median time of each, the overheads of text and stops over ids (differences of medians, within the
** machine's noise), and the share of the text way's time spent inside the detokenizer and the write (timed on
** every call: the direct measure).
**
** Build and run (MODEL_DIR must hold a tokenizer.json whose vocabulary fits the model's):
**   cc -O2 benchmarks/streaming_overhead.c $(pkg-config --cflags --libs moert) -o /tmp/streaming_overhead
**   /tmp/streaming_overhead MODEL_DIR [NEW_TOKENS (default 128)] [ROUNDS (default 7)]
*/
#include <moert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int n) {
    qsort(values, n, sizeof *values, compare_doubles);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/** What a streaming callback needs: the detokenizer (NULL: count only) and where the text goes. */
typedef struct stream {
    moert_detokenizer *detokenizer;
    FILE *out;
    size_t n_tokens, n_bytes;
    double seconds;  /* spent pushing and writing text */
} stream;

static int32_t on_token(int32_t token, void *user_data) {
    stream *s = user_data;
    s->n_tokens++;
    if (s->detokenizer) {
        const char *text;
        size_t n;
        double start = now();
        if (moert_detokenizer_push(s->detokenizer, token, &text, &n) != MOERT_OK) return 1;
        s->n_bytes += fwrite(text, 1, n, s->out);
        s->seconds += now() - start;
    }
    return 0;
}

static void die(const char *what) {
    fprintf(stderr, "streaming_overhead: %s: %s\n", what, moert_last_error());
    exit(1);
}

enum { WAY_IDS, WAY_TEXT, WAY_STOPS, N_WAYS };

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL_DIR [NEW_TOKENS] [ROUNDS]\n", argv[0]);
        return 2;
    }
    int new_tokens = argc > 2 ? atoi(argv[2]) : 128, rounds = argc > 3 ? atoi(argv[3]) : 7;
    if (new_tokens < 1 || rounds < 1 || rounds > 99) {
        fprintf(stderr, "NEW_TOKENS must be >= 1 and ROUNDS 1..99\n");
        return 2;
    }
    moert_model *model;
    moert_session *session;
    moert_tokenizer *tokenizer;
    if (moert_model_load(argv[1], NULL, &model) != MOERT_OK) die("loading the model");
    if (moert_tokenizer_load(argv[1], &tokenizer) != MOERT_OK) die("loading the tokenizer");
    moert_session_options session_options;
    moert_session_options_init(&session_options);
    session_options.n_ctx = new_tokens + 64;
    if (moert_session_create(model, &session_options, &session) != MOERT_OK) die("creating the session");

    const char *prompt_text = "The quick brown fox jumps over the lazy dog.";
    int32_t prompt[64];
    size_t n_prompt;
    if (moert_tokenizer_encode(tokenizer, prompt_text, strlen(prompt_text),
                               MOERT_ENCODE_ADD_SPECIAL | MOERT_ENCODE_PARSE_SPECIAL, prompt, 64, &n_prompt) != MOERT_OK)
        die("encoding the prompt");
    FILE *sink = fopen("/dev/null", "w");
    if (!sink) return 1;
    static const char *never[] = {"\x01never-generated\x02", "\x03also not\x04"};

    double seconds[N_WAYS][99], streaming[99];
    size_t tokens_made[N_WAYS] = {0};
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < N_WAYS; k++) {
            int way = (k + round) % N_WAYS;  /* each way takes each place in the round in turn */
            moert_generate_options options;
            moert_generate_options_init(&options);
            options.max_new_tokens = new_tokens;
            options.ignore_eos = 1;
            if (way == WAY_STOPS) {
                options.tokenizer = tokenizer;
                options.stop_strings = never;
                options.n_stop_strings = 2;
            }
            stream s = {.out = sink};
            if (way != WAY_IDS && moert_detokenizer_create(tokenizer, MOERT_DECODE_SKIP_SPECIAL, &s.detokenizer) != MOERT_OK)
                die("creating the detokenizer");
            if (moert_session_reset(session) != MOERT_OK) die("resetting the session");
            double start = now();
            if (moert_session_generate(session, prompt, n_prompt, &options, on_token, &s, NULL, 0, NULL) != MOERT_OK)
                die("generating");
            if (s.detokenizer) {
                const char *text;
                size_t n;
                if (moert_detokenizer_flush(s.detokenizer, &text, &n) != MOERT_OK) die("flushing");
                fwrite(text, 1, n, sink);
            }
            seconds[way][round] = now() - start;
            if (way == WAY_TEXT) streaming[round] = s.seconds / seconds[way][round];
            tokens_made[way] = s.n_tokens;
            moert_detokenizer_free(s.detokenizer);
        }
    }
    static const char *names[N_WAYS] = {"ids", "text", "text + stop strings"};
    double medians[N_WAYS];
    printf("%s: prompt of %zu tokens, %d new tokens (ignore_eos), medians of %d interleaved rounds\n", argv[1],
           n_prompt, new_tokens, rounds);
    for (int way = 0; way < N_WAYS; way++) {
        medians[way] = median(seconds[way], rounds);
        printf("  %-20s %8.4f s  (%zu tokens)\n", names[way], medians[way], tokens_made[way]);
    }
    printf("  overhead of text:                %+.2f%%\n", 100 * (medians[WAY_TEXT] / medians[WAY_IDS] - 1));
    printf("  overhead of text + stop strings: %+.2f%%\n", 100 * (medians[WAY_STOPS] / medians[WAY_IDS] - 1));
    printf("  detokenizer and write, timed inside the callback: %.3f%% of the text way's time\n",
           100 * median(streaming, rounds));
    fclose(sink);
    moert_session_free(session);
    moert_tokenizer_free(tokenizer);
    moert_model_free(model);
    return 0;
}
