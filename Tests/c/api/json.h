/* json.h — the minimal JSON reader of the C tests: spans over a text, no allocation; strings unescaped on request. */
#ifndef MOERT_TESTS_API_JSON_H
#define MOERT_TESTS_API_JSON_H

#include <stddef.h>
#include <stdint.h>

/** A slice of a JSON text holding exactly one value (or one key, quotes included). */
typedef struct json_span {
    const char *p;
    size_t n;
} json_span;

/** Trims whitespace around a value span and checks that it holds exactly one value. */
int json_value(json_span s, json_span *out);

/** Walks an object: calls `visit(key, value, ctx)` for each member (key without quotes). Returns 0 if malformed. */
int json_object_each(json_span object, void (*visit)(json_span key, json_span value, void *ctx), void *ctx);

/** The value of member `key` of `object`. Returns 0 when absent or malformed. */
int json_object_get(json_span object, const char *key, json_span *out);

/** Element `index` of an array. Returns 0 when out of bounds or malformed. */
int json_array_get(json_span array, size_t index, json_span *out);

/** Number of elements of an array (0 for anything else). */
size_t json_array_len(json_span array);

/** Parses an integer value. Returns 0 for anything else (null, a fraction, a string). */
int json_int(json_span v, int64_t *out);

/** Copies a string value without escapes into `buf`. Returns 0 if it is not such a string or does not fit. */
int json_string(json_span v, char *buf, size_t capacity);

/**
 * Decodes a string value with its escapes (\n, \uXXXX with surrogate pairs, ...) into UTF-8 in `buf`, followed by a
 * NUL; `*out_n` receives the byte count (the text may hold NUL bytes). Returns 0 if it is not a valid string or
 * does not fit.
 */
int json_string_decoded(json_span v, char *buf, size_t capacity, size_t *out_n);

/** Member `key` of `object` as an integer, or `fallback` when absent or not an integer. */
int64_t json_get_int(json_span object, const char *key, int64_t fallback);

/** Member `key` of `object` as a number (integer or decimal, with an exponent), or `fallback` when absent or not
    a number. */
double json_get_double(json_span object, const char *key, double fallback);

/** True when member `key` of `object` is the literal true. */
int json_get_true(json_span object, const char *key);

#endif /* MOERT_TESTS_API_JSON_H */
