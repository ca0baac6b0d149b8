/* text.c — tokenizers, streaming detokenizers, chat templates and stop strings, against tokenizers' and
** transformers' own results (Tests/fixtures/tokenizers/<name>/cases.jsonl and chat_cases.jsonl, see
** tools/make_tokenizer_fixtures.py). */
#include "api_test.h"
#include "json.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TEXT_CAPACITY = 1 << 16, MAX_IDS = 8192 };

/** Reads a whole file into a NUL-terminated buffer (free it); NULL when it cannot be read. */
static char *slurp(const char *path, size_t *out_size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (data && fread(data, 1, (size_t)size, f) != (size_t)size) {
        free(data);
        data = NULL;
    }
    fclose(f);
    if (data) {
        data[size] = 0;
        if (out_size) *out_size = (size_t)size;
    }
    return data;
}

/** The ids of JSON array `v` into `ids`; returns the count, or -1 when it is not an array of ints that fits. */
static long read_ids(json_span v, int32_t *ids, size_t capacity) {
    size_t n = json_array_len(v);
    if (n > capacity) return -1;
    for (size_t i = 0; i < n; i++) {
        json_span item;
        int64_t x;
        if (!json_array_get(v, i, &item) || !json_int(item, &x)) return -1;
        ids[i] = (int32_t)x;
    }
    return (long)n;
}

/** State shared by the checks of one case. */
typedef struct text_case {
    const moert_tokenizer *tokenizer;
    char *text, *expected, *got;
    int32_t *ids, *want, *got_ids;
    size_t text_n;
    long line;
} text_case;

/** encode with `flags` equals member `key` of the case (when it has one). */
static void check_encode(text_case *c, json_span object, const char *key, uint32_t flags) {
    json_span v;
    if (!json_object_get(object, key, &v)) return;
    long n = read_ids(v, c->want, MAX_IDS);
    size_t got = 0;
    moert_status status = moert_tokenizer_encode(c->tokenizer, c->text, c->text_n, flags, c->got_ids, MAX_IDS, &got);
    CHECK(n >= 0 && status == MOERT_OK && got == (size_t)n && memcmp(c->got_ids, c->want, got * sizeof *c->want) == 0,
          "line %ld: %s: status %d, %zu ids, %ld expected", c->line, key, status, got, n);
}

/** One line of cases.jsonl: encode three ways, decode, and stream piece by piece as tokenizers' DecodeStream. */
static void check_case(text_case *c, json_span line) {
    json_span object, v;
    if (!json_value(line, &object)) return;
    if (json_get_true(object, "decode_only")) return;
    if (!CHECK(json_object_get(object, "text", &v) && json_string_decoded(v, c->text, TEXT_CAPACITY, &c->text_n),
               "line %ld: unreadable text", c->line)) return;
    check_encode(c, object, "ids", MOERT_ENCODE_PARSE_SPECIAL);
    check_encode(c, object, "ids_special", MOERT_ENCODE_ADD_SPECIAL | MOERT_ENCODE_PARSE_SPECIAL);
    check_encode(c, object, "ids_plain", 0);

    long n = json_object_get(object, "ids", &v) ? read_ids(v, c->ids, MAX_IDS) : -1;
    size_t expected_n = 0, got_n = 0;
    if (n < 0 || !json_object_get(object, "decoded", &v) || !json_string_decoded(v, c->expected, TEXT_CAPACITY, &expected_n)) {
        CHECK(0, "line %ld: unreadable ids or decoded", c->line);
        return;
    }
    moert_status status = moert_tokenizer_decode(c->tokenizer, c->ids, (size_t)n, 0, c->got, TEXT_CAPACITY, &got_n);
    CHECK(status == MOERT_OK && got_n == expected_n && memcmp(c->got, c->expected, got_n) == 0 && c->got[got_n] == 0,
          "line %ld: decoded differs (status %d, %zu bytes, %zu expected)", c->line, status, got_n, expected_n);

    json_span stream;
    if (!json_object_get(object, "stream", &stream)) return;
    moert_detokenizer *d = NULL;
    if (!CHECK(moert_detokenizer_create(c->tokenizer, 0, &d) == MOERT_OK, "line %ld: detokenizer", c->line)) return;
    for (long i = 0; i < n; i++) {
        json_span piece;
        const char *text = NULL;
        size_t length = 0;
        status = moert_detokenizer_push(d, c->ids[i], &text, &length);
        if (!CHECK(json_array_get(stream, (size_t)i, &piece) && json_string_decoded(piece, c->expected, TEXT_CAPACITY, &expected_n),
                   "line %ld: unreadable stream piece %ld", c->line, i)) break;
        if (!CHECK(status == MOERT_OK && text && length == expected_n && memcmp(text, c->expected, length) == 0,
                   "line %ld: piece %ld of the stream differs from DecodeStream's", c->line, i)) break;
    }
    moert_detokenizer_free(d);
}

/** Every case of a tokenizer fixture, loaded from its directory and from its tokenizer.json. */
static void test_cases(const char *root, const char *name) {
    char path[1024], title[128];
    snprintf(title, sizeof title, "tokenizer %s: cases of tokenizers 0.23.3", name);
    group_begin(title);
    snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer.json", root, name);
    moert_tokenizer *t = NULL;
    CHECK_STATUS(moert_tokenizer_load(path, &t), MOERT_OK, "load tokenizer.json");
    snprintf(path, sizeof path, "%s/tokenizers/%s/cases.jsonl", root, name);
    char *cases = slurp(path, NULL);
    text_case c = {t, malloc(TEXT_CAPACITY), malloc(TEXT_CAPACITY), malloc(TEXT_CAPACITY), calloc(MAX_IDS, 4),
                   calloc(MAX_IDS, 4), calloc(MAX_IDS, 4), 0, 0};
    if (t && CHECK(cases != NULL, "cannot read %s", path) && c.text && c.expected && c.got && c.ids && c.want && c.got_ids) {
        CHECK(moert_tokenizer_n_vocab(t) > 1000, "n_vocab %d", moert_tokenizer_n_vocab(t));
        for (char *line = cases, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            size_t length = next ? (size_t)(next - line) : strlen(line);
            if (next) next++;
            c.line++;
            if (length) check_case(&c, (json_span){line, length});
        }
        CHECK(c.line >= 60, "only %ld cases", c.line);
    }
    free(cases);
    free(c.text);
    free(c.expected);
    free(c.got);
    free(c.ids);
    free(c.want);
    free(c.got_ids);
    moert_tokenizer_free(t);
    group_end();
}

/** Buffers, pieces, bad input and the special ids of a model directory's tokenizer. */
static void test_calls(const char *root) {
    char path[1024];
    group_begin("tokenizer calls and errors");
    snprintf(path, sizeof path, "%s/tokenizers/qwen2", root);
    moert_tokenizer *t = NULL;
    CHECK_STATUS(moert_tokenizer_load(path, &t), MOERT_OK, "load a directory");
    if (t) {
        /* tokenizer_config.json of qwen2: eos_token and pad_token <|endoftext|> (151643), no bos_token. */
        CHECK(moert_tokenizer_eos(t) == 151643 && moert_tokenizer_pad(t) == 151643 && moert_tokenizer_bos(t) == -1,
              "special ids %d %d %d", moert_tokenizer_bos(t), moert_tokenizer_eos(t), moert_tokenizer_pad(t));
        CHECK(moert_tokenizer_n_stop_tokens(t) == 1 && moert_tokenizer_stop_token(t, 0) == 151643 &&
              moert_tokenizer_stop_token(t, 1) == -1, "stop ids");
        const char *piece = moert_tokenizer_token_to_piece(t, 151644);
        CHECK(piece && strcmp(piece, "<|im_start|>") == 0, "piece of 151644: %s", piece ? piece : "(null)");
        CHECK(moert_tokenizer_piece_to_token(t, "<|im_end|>") == 151645, "id of <|im_end|>");
        CHECK(moert_tokenizer_piece_to_token(t, "no such piece \xe2\x80\xa6") == -1, "an absent piece");
        CHECK(moert_tokenizer_token_to_piece(t, -1) == NULL && moert_tokenizer_token_to_piece(t, 1 << 30) == NULL,
              "pieces out of range");

        const char hello[] = "Hello, world";
        size_t n = 0;
        CHECK_STATUS(moert_tokenizer_encode(t, hello, strlen(hello), MOERT_ENCODE_PARSE_SPECIAL, NULL, 0, &n),
                     MOERT_ERR_BUFFER_TOO_SMALL, "encode: asking for the count");
        CHECK(n == 3, "Hello, world is 3 ids in Qwen2, got %zu", n);
        int32_t ids[8] = {0};
        CHECK_STATUS(moert_tokenizer_encode(t, hello, strlen(hello), MOERT_ENCODE_PARSE_SPECIAL, ids, 8, &n), MOERT_OK, "encode");
        char text[64];
        size_t bytes = 0;
        CHECK_STATUS(moert_tokenizer_decode(t, ids, n, 0, text, 5, &bytes), MOERT_ERR_BUFFER_TOO_SMALL, "decode: short buffer");
        CHECK(bytes == strlen(hello), "decode reports the length it needs, got %zu", bytes);
        CHECK_STATUS(moert_tokenizer_decode(t, ids, n, 0, text, sizeof text, &bytes), MOERT_OK, "decode");
        CHECK(strcmp(text, hello) == 0, "round trip: %s", text);

        const char bad[] = "ab\xe2\x82";
        CHECK_STATUS(moert_tokenizer_encode(t, bad, 4, 0, ids, 8, &n), MOERT_ERR_INVALID_ARGUMENT, "invalid UTF-8");
        CHECK(strstr(moert_last_error(), "invalid UTF-8 at byte 2") != NULL, "message: %s", moert_last_error());
        CHECK_STATUS(moert_tokenizer_encode(t, hello, 5, 0x100, ids, 8, &n), MOERT_ERR_INVALID_ARGUMENT, "unknown flags");
        CHECK_STATUS(moert_tokenizer_encode(NULL, hello, 5, 0, ids, 8, &n), MOERT_ERR_INVALID_ARGUMENT, "NULL tokenizer");
        CHECK_STATUS(moert_tokenizer_encode(t, NULL, 5, 0, ids, 8, &n), MOERT_ERR_INVALID_ARGUMENT, "NULL text");
        CHECK_STATUS(moert_tokenizer_encode(t, NULL, 0, 0, ids, 8, &n), MOERT_OK, "no text");
        CHECK(n == 0, "no text gives no ids");
        const int32_t outside[] = {5, 1 << 30};
        CHECK_STATUS(moert_tokenizer_decode(t, outside, 2, 0, text, sizeof text, &bytes), MOERT_ERR_OUT_OF_RANGE,
                     "decode: an id outside the vocabulary");

        moert_detokenizer *d = NULL;
        CHECK_STATUS(moert_detokenizer_create(t, 0x8, &d), MOERT_ERR_INVALID_ARGUMENT, "detokenizer: unknown flags");
        CHECK(d == NULL, "out-pointer cleared");
        CHECK_STATUS(moert_detokenizer_create(t, MOERT_DECODE_SKIP_SPECIAL, &d), MOERT_OK, "detokenizer");
        const char *piece_text = NULL;
        CHECK_STATUS(moert_detokenizer_push(d, 1 << 30, &piece_text, NULL), MOERT_ERR_OUT_OF_RANGE, "push: an id outside");
        /* "€" is three bytes: a byte-level token holding part of it gives no text until the character is whole. */
        const char euro[] = "\xe2\x82\xac!";
        CHECK_STATUS(moert_tokenizer_encode(t, euro, 4, 0, ids, 8, &n), MOERT_OK, "encode the euro sign");
        char joined[64] = {0};
        for (size_t i = 0; i < n; i++) {
            size_t length = 0;
            if (moert_detokenizer_push(d, ids[i], &piece_text, &length) == MOERT_OK && piece_text) strncat(joined, piece_text, 32);
        }
        if (moert_detokenizer_flush(d, &piece_text, NULL) == MOERT_OK && piece_text) strncat(joined, piece_text, 32);
        CHECK(strcmp(joined, euro) == 0, "streamed text: %s", joined);
        moert_detokenizer_free(d);
        moert_detokenizer_free(NULL);
    }
    moert_tokenizer *none = (moert_tokenizer *)&none;
    CHECK_STATUS(moert_tokenizer_load("/nonexistent", &none), MOERT_ERR_IO, "a missing path");
    CHECK(none == NULL, "out-pointer cleared");
    CHECK(moert_tokenizer_n_vocab(NULL) == 0 && moert_tokenizer_eos(NULL) == -1 && moert_tokenizer_n_stop_tokens(NULL) == 0,
          "NULL tokenizer getters");
    moert_tokenizer_free(NULL);
    moert_tokenizer_free(t);
    group_end();
}

/** The qwen2 chat cases (transformers' apply_chat_template), through both chat functions. */
static void test_chat(const char *root) {
    char path[1024];
    group_begin("chat templates");
    snprintf(path, sizeof path, "%s/tokenizers/qwen2", root);
    moert_tokenizer *t = NULL;
    CHECK_STATUS(moert_tokenizer_load(path, &t), MOERT_OK, "load");
    snprintf(path, sizeof path, "%s/tokenizers/qwen2/chat_cases.jsonl", root);
    char *cases = slurp(path, NULL), *expected = malloc(TEXT_CAPACITY), *got = malloc(TEXT_CAPACITY);
    char *json = malloc(TEXT_CAPACITY), *roles = malloc(TEXT_CAPACITY), *contents = malloc(TEXT_CAPACITY);
    long line = 0;
    if (t && CHECK(cases != NULL, "cannot read %s", path) && expected && got && json && roles && contents) {
        moert_chat_options o;
        moert_chat_options_init(&o);
        CHECK(o.add_generation_prompt == 1 && o.template_name == NULL && o.variables_json == NULL, "chat option defaults");
        /* A host built against a header whose struct ended after add_generation_prompt: nothing past it is written. */
        moert_chat_options older;
        memset(&older, 0x5a, sizeof older);
        moert_chat_options_init_sized(&older, offsetof(moert_chat_options, template_name));
        CHECK(older.struct_size == offsetof(moert_chat_options, template_name) && older.add_generation_prompt == 1,
              "a shorter chat options struct gets its defaults");
        CHECK(((unsigned char *)&older)[offsetof(moert_chat_options, template_name)] == 0x5a, "and nothing past it");
        for (char *l = cases, *next; l && *l; l = next) {
            next = strchr(l, '\n');
            size_t length = next ? (size_t)(next - l) : strlen(l);
            if (next) next++;
            json_span object, messages, v;
            line++;
            if (!json_value((json_span){l, length}, &object) || !json_object_get(object, "messages", &messages) ||
                !json_object_get(object, "rendered", &v)) {
                CHECK(0, "chat line %ld unreadable", line);
                continue;
            }
            size_t want = 0, n = 0;
            json_string_decoded(v, expected, TEXT_CAPACITY, &want);
            o.add_generation_prompt = json_get_true(object, "add_generation_prompt");
            memcpy(json, messages.p, messages.n);
            json[messages.n] = 0;
            moert_status status = moert_tokenizer_apply_chat_template_json(t, json, &o, got, TEXT_CAPACITY, &n);
            CHECK(status == MOERT_OK && n == want && memcmp(got, expected, n) == 0, "line %ld (JSON): status %d", line, status);
            /* The same conversation as an array of structs. */
            moert_chat_message list[16];
            size_t count = json_array_len(messages), used_roles = 0, used_contents = 0;
            for (size_t i = 0; i < count && i < 16; i++) {
                json_span m, r, c;
                size_t rn = 0, cn = 0;
                json_array_get(messages, i, &m);
                json_object_get(m, "role", &r);
                json_object_get(m, "content", &c);
                json_string_decoded(r, roles + used_roles, TEXT_CAPACITY - used_roles, &rn);
                json_string_decoded(c, contents + used_contents, TEXT_CAPACITY - used_contents, &cn);
                list[i] = (moert_chat_message){sizeof(moert_chat_message), roles + used_roles, contents + used_contents};
                used_roles += rn + 1;
                used_contents += cn + 1;
            }
            status = moert_tokenizer_apply_chat_template(t, list, count, &o, got, TEXT_CAPACITY, &n);
            CHECK(status == MOERT_OK && n == want && memcmp(got, expected, n) == 0, "line %ld (structs): status %d", line, status);
            status = moert_tokenizer_apply_chat_template(t, list, count, &o, got, want, &n);
            CHECK(status == MOERT_ERR_BUFFER_TOO_SMALL && n == want, "line %ld: a buffer without room for the NUL", line);
        }
        CHECK(line >= 5, "only %ld chat cases", line);
        size_t n = 0;
        CHECK_STATUS(moert_tokenizer_apply_chat_template_json(t, "{\"role\": 1}", NULL, got, TEXT_CAPACITY, &n),
                     MOERT_ERR_INVALID_ARGUMENT, "messages that are not a list");
        CHECK_STATUS(moert_tokenizer_apply_chat_template_json(t, "[]", NULL, got, TEXT_CAPACITY, &n),
                     MOERT_ERR_INVALID_ARGUMENT, "an empty conversation");
        moert_chat_options named;
        moert_chat_options_init(&named);
        named.template_name = "no-such-template";
        CHECK_STATUS(moert_tokenizer_apply_chat_template_json(t, "[{\"role\":\"user\",\"content\":\"hi\"}]", &named, got,
                                                              TEXT_CAPACITY, &n), MOERT_ERR_UNSUPPORTED, "an unknown template name");
    }
    free(cases);
    free(expected);
    free(got);
    free(json);
    free(roles);
    free(contents);
    moert_tokenizer_free(t);
    group_end();
}

/** Generation that stops on a string: the byte-level tokenizer of the mixtral fixture, greedy ids, and a stop string
 *  taken from their text; generation must end right after the token that completes it. */
static void test_stop_strings(const fixture *fx, moert_model *model) {
    group_begin("stop strings");
    moert_tokenizer *t = NULL;
    CHECK_STATUS(moert_tokenizer_load(fx->dir, &t), MOERT_OK, "the mixtral fixture's tokenizer");
    moert_session *s = new_session(model, 0, 0);
    if (t && s && fx->n_greedy >= 8) {
        CHECK(moert_tokenizer_n_vocab(t) == 256 && moert_tokenizer_eos(t) == 2 && moert_tokenizer_bos(t) == 1,
              "the fixture tokenizer's ids");
        /* The text of greedy tokens 5 and 6 (bytes ")H": whole characters, so that the stream gives them as they come)
           is the stop string. */
        char stop[16];
        size_t n = 0;
        CHECK_STATUS(moert_tokenizer_decode(t, fx->greedy + 5, 2, 0, stop, sizeof stop, &n), MOERT_OK, "decode");
        const char *stops[] = {"never appears \x01\x02\x03", stop};
        moert_generate_options g;
        moert_generate_options_init(&g);
        CHECK(g.tokenizer == NULL && g.stop_strings == NULL && g.n_stop_strings == 0, "generate option defaults");
        g.max_new_tokens = (int32_t)fx->n_greedy;
        g.ignore_eos = 1;
        g.tokenizer = t;
        g.stop_strings = stops;
        g.n_stop_strings = 2;
        int32_t out[64];
        size_t made = 0;
        CHECK_STATUS(moert_session_generate(s, fx->prompt, fx->n_prompt, &g, NULL, NULL, out, 64, &made), MOERT_OK, "generate");
        /* The text of the first k greedy tokens contains the stop string from the k where it is complete. */
        size_t first = 0;
        for (size_t k = 1; k <= fx->n_greedy && !first; k++) {
            char text[256];
            size_t length = 0;
            if (moert_tokenizer_decode(t, fx->greedy, k, 0, text, sizeof text, &length) == MOERT_OK && strstr(text, stop)) first = k;
        }
        CHECK(first > 0 && made == first && memcmp(out, fx->greedy, made * sizeof *out) == 0,
              "generation made %zu tokens, the stop string is complete after %zu", made, first);
        g.tokenizer = NULL;
        moert_session_reset(s);
        CHECK_STATUS(moert_session_generate(s, fx->prompt, fx->n_prompt, &g, NULL, NULL, out, 64, &made),
                     MOERT_ERR_INVALID_ARGUMENT, "stop strings without a tokenizer");
    }
    moert_session_free(s);
    moert_tokenizer_free(t);
    group_end();
}

void test_text(const char *root, const fixture *mixtral, moert_model *model) {
    test_cases(root, "qwen2");
    test_cases(root, "llama-spm");
    test_calls(root);
    test_chat(root);
    test_stop_strings(mixtral, model);
}
