/* json.c — a minimal JSON reader over spans of a text: enough to read config.json and safetensors headers. */
#include "json.h"

#include <stdlib.h>
#include <string.h>

/** Index of the first non-whitespace byte at or after `i`. */
static size_t json_skip_ws(json_span s, size_t i) {
    while (i < s.n && (s.p[i] == ' ' || s.p[i] == '\t' || s.p[i] == '\n' || s.p[i] == '\r')) i++;
    return i;
}

/** Moves `*i` past a string that starts at `*i`. Returns 0 when it is not a complete string. */
static int json_skip_string(json_span s, size_t *i) {
    if (*i >= s.n || s.p[*i] != '"') return 0;
    for (size_t j = *i + 1; j < s.n; j++) {
        if (s.p[j] == '\\') {
            j++;
        } else if (s.p[j] == '"') {
            *i = j + 1;
            return 1;
        }
    }
    return 0;
}

static int json_skip_value(json_span s, size_t *i, int depth);

/** Moves `*i` past an object or array (opened by `open`, closed by `close`) that starts at `*i`. */
static int json_skip_container(json_span s, size_t *i, char close, int depth) {
    size_t j = json_skip_ws(s, *i + 1);
    if (j < s.n && s.p[j] == close) {
        *i = j + 1;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            if (!json_skip_string(s, &j)) return 0;
            j = json_skip_ws(s, j);
            if (j >= s.n || s.p[j] != ':') return 0;
            j = json_skip_ws(s, j + 1);
        }
        if (!json_skip_value(s, &j, depth + 1)) return 0;
        j = json_skip_ws(s, j);
        if (j >= s.n) return 0;
        if (s.p[j] == close) {
            *i = j + 1;
            return 1;
        }
        if (s.p[j] != ',') return 0;
        j = json_skip_ws(s, j + 1);
    }
}

/** Moves `*i` past any JSON value that starts at `*i` (depth-limited). Returns 0 on malformed input. */
static int json_skip_value(json_span s, size_t *i, int depth) {
    if (depth > 64 || *i >= s.n) return 0;
    char c = s.p[*i];
    if (c == '"') return json_skip_string(s, i);
    if (c == '{') return json_skip_container(s, i, '}', depth);
    if (c == '[') return json_skip_container(s, i, ']', depth);
    size_t j = *i;
    while (j < s.n && (strchr("+-.eE", s.p[j]) || (s.p[j] >= '0' && s.p[j] <= '9') || (s.p[j] >= 'a' && s.p[j] <= 'z'))) {
        j++;
    }
    if (j == *i) return 0;
    *i = j;
    return 1;
}

int json_value(json_span s, json_span *out) {
    size_t i = json_skip_ws(s, 0), start = i;
    if (!json_skip_value(s, &i, 0)) return 0;
    out->p = s.p + start;
    out->n = i - start;
    return json_skip_ws(s, i) == s.n;
}

int json_object_each(json_span object, void (*visit)(json_span key, json_span value, void *ctx), void *ctx) {
    size_t i = 0;
    if (object.n < 2 || object.p[0] != '{') return 0;
    i = json_skip_ws(object, 1);
    if (i < object.n && object.p[i] == '}') return 1;
    for (;;) {
        size_t key_start = i;
        if (!json_skip_string(object, &i)) return 0;
        json_span key = {object.p + key_start + 1, i - key_start - 2};
        i = json_skip_ws(object, i);
        if (i >= object.n || object.p[i] != ':') return 0;
        i = json_skip_ws(object, i + 1);
        size_t value_start = i;
        if (!json_skip_value(object, &i, 1)) return 0;
        json_span value = {object.p + value_start, i - value_start};
        if (visit) visit(key, value, ctx);
        i = json_skip_ws(object, i);
        if (i < object.n && object.p[i] == '}') return 1;
        if (i >= object.n || object.p[i] != ',') return 0;
        i = json_skip_ws(object, i + 1);
    }
}

/** State of json_object_get()'s search. */
typedef struct json_lookup {
    const char *key;
    json_span value;
    int found;
} json_lookup;

/** json_object_each() visitor that remembers the member named `lookup->key`. */
static void json_lookup_visit(json_span key, json_span value, void *ctx) {
    json_lookup *lookup = ctx;
    if (!lookup->found && key.n == strlen(lookup->key) && memcmp(key.p, lookup->key, key.n) == 0) {
        lookup->value = value;
        lookup->found = 1;
    }
}

int json_object_get(json_span object, const char *key, json_span *out) {
    json_lookup lookup = {key, {NULL, 0}, 0};
    if (!json_object_each(object, json_lookup_visit, &lookup) || !lookup.found) return 0;
    *out = lookup.value;
    return 1;
}

int json_array_get(json_span array, size_t index, json_span *out) {
    if (array.n < 2 || array.p[0] != '[') return 0;
    size_t i = json_skip_ws(array, 1);
    for (size_t k = 0; i < array.n && array.p[i] != ']'; k++) {
        size_t start = i;
        if (!json_skip_value(array, &i, 1)) return 0;
        if (k == index) {
            out->p = array.p + start;
            out->n = i - start;
            return 1;
        }
        i = json_skip_ws(array, i);
        if (i < array.n && array.p[i] == ',') i = json_skip_ws(array, i + 1);
    }
    return 0;
}

size_t json_array_len(json_span array) {
    json_span unused;
    size_t n = 0;
    while (json_array_get(array, n, &unused)) n++;
    return n;
}

int json_int(json_span v, int64_t *out) {
    size_t i = 0;
    int negative = v.n > 0 && v.p[0] == '-';
    if (negative) i++;
    if (i >= v.n || i + 18 < v.n) return 0;
    int64_t x = 0;
    for (; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') return 0;
        x = x * 10 + (v.p[i] - '0');
    }
    *out = negative ? -x : x;
    return 1;
}

int json_string(json_span v, char *buf, size_t capacity) {
    if (v.n < 2 || v.p[0] != '"' || v.p[v.n - 1] != '"' || v.n - 2 >= capacity) return 0;
    if (memchr(v.p, '\\', v.n)) return 0;
    memcpy(buf, v.p + 1, v.n - 2);
    buf[v.n - 2] = 0;
    return 1;
}

/** The value of four hex digits at p, or -1. */
static long hex4(const char *p) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/** Appends code point `u` as UTF-8; returns 0 when it does not fit. */
static int put_utf8(unsigned long u, char *buf, size_t capacity, size_t *n) {
    unsigned char out[4];
    size_t len;
    if (u < 0x80) { out[0] = (unsigned char)u; len = 1; }
    else if (u < 0x800) { out[0] = (unsigned char)(0xC0 | (u >> 6)); out[1] = (unsigned char)(0x80 | (u & 0x3F)); len = 2; }
    else if (u < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (u >> 12)); out[1] = (unsigned char)(0x80 | ((u >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (u & 0x3F)); len = 3;
    } else {
        out[0] = (unsigned char)(0xF0 | (u >> 18)); out[1] = (unsigned char)(0x80 | ((u >> 12) & 0x3F));
        out[2] = (unsigned char)(0x80 | ((u >> 6) & 0x3F)); out[3] = (unsigned char)(0x80 | (u & 0x3F)); len = 4;
    }
    if (*n + len >= capacity) return 0;
    memcpy(buf + *n, out, len);
    *n += len;
    return 1;
}

int json_string_decoded(json_span v, char *buf, size_t capacity, size_t *out_n) {
    if (v.n < 2 || v.p[0] != '"' || v.p[v.n - 1] != '"' || capacity == 0) return 0;
    size_t n = 0, i = 1, end = v.n - 1;
    while (i < end) {
        char c = v.p[i];
        if (c != '\\') {
            if (n + 1 >= capacity) return 0;
            buf[n++] = c;
            i++;
            continue;
        }
        if (i + 1 >= end) return 0;
        char e = v.p[i + 1];
        i += 2;
        char plain = e == '"' ? '"' : e == '\\' ? '\\' : e == '/' ? '/' : e == 'b' ? '\b' : e == 'f' ? '\f'
                   : e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : 0;
        if (plain) {
            if (n + 1 >= capacity) return 0;
            buf[n++] = plain;
            continue;
        }
        if (e != 'u' || i + 4 > end) return 0;
        long u = hex4(v.p + i);
        i += 4;
        if (u < 0) return 0;
        if (u >= 0xD800 && u < 0xDC00) {
            if (i + 6 > end || v.p[i] != '\\' || v.p[i + 1] != 'u') return 0;
            long low = hex4(v.p + i + 2);
            if (low < 0xDC00 || low >= 0xE000) return 0;
            u = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00);
            i += 6;
        }
        if (!put_utf8((unsigned long)u, buf, capacity, &n)) return 0;
    }
    buf[n] = 0;
    if (out_n) *out_n = n;
    return 1;
}

int64_t json_get_int(json_span object, const char *key, int64_t fallback) {
    json_span v;
    int64_t x;
    return json_object_get(object, key, &v) && json_int(v, &x) ? x : fallback;
}

double json_get_double(json_span object, const char *key, double fallback) {
    json_span v;
    char buf[64], *end;
    if (!json_object_get(object, key, &v) || v.n == 0 || v.n >= sizeof buf) return fallback;
    memcpy(buf, v.p, v.n);
    buf[v.n] = 0;
    double x = strtod(buf, &end);
    return end == buf + v.n ? x : fallback;
}

int json_get_true(json_span object, const char *key) {
    json_span v;
    return json_object_get(object, key, &v) && v.n == 4 && memcmp(v.p, "true", 4) == 0;
}
