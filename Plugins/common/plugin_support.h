/* plugin_support.h — helpers the C plugins share for create(): messages, shape text, tensor and parameter readers. */
#ifndef MOERT_PLUGIN_SUPPORT_H
#define MOERT_PLUGIN_SUPPORT_H

#include <moert_plugin.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
** Each plugin library is built with its own copy of plugin_support.c, and moert loads every plugin RTLD_LOCAL. The
** helpers are hidden so that a plugin still exports moert_plugin_init alone, whatever visibility its build defaults
** to (SwiftPM does not pass -fvisibility=hidden).
*/
#if defined(__GNUC__) || defined(__clang__)
#  define PLUGIN_HIDDEN __attribute__((visibility("hidden")))
#  define PLUGIN_PRINTF(format_index, first_arg) __attribute__((format(printf, format_index, first_arg)))
#else
#  define PLUGIN_HIDDEN
#  define PLUGIN_PRINTF(format_index, first_arg)
#endif

/**
 * What the create-time readers need from one create() call; all three are borrowed for that call.
 * `kind` is the router or expert kind name that starts every message ("gru: parameter top_k = 0: ...").
 */
typedef struct plugin_create_env {
    const moert_host_api *host;
    const moert_create_context *ctx;
    const char *kind;
} plugin_create_env;

/**
 * Formats a message (at most 511 bytes; longer ones are cut), hands it to `set_error` and returns `status`.
 * [in] set_error  host->set_error, or the copy an instance keeps for route(); NULL sets no message.
 * Returns `status`, so that a failure reads `return plugin_fail(host->set_error, MOERT_ERR_FORMAT, "...");`.
 */
PLUGIN_HIDDEN moert_status plugin_fail(void (*set_error)(const char *message), moert_status status,
                                       const char *format, ...) PLUGIN_PRINTF(3, 4);

/**
 * Writes `ndim` dimensions as "[d0, d1, ...]" into buf, cut to `size` bytes (always NUL-terminated).
 * Returns buf, so that it can stand as a printf argument.
 */
PLUGIN_HIDDEN const char *plugin_dims_text(int32_t ndim, const int64_t *dims, char *buf, size_t size);

/** plugin_dims_text of a tensor's shape (its first four dimensions at most, all moert_tensor holds). */
PLUGIN_HIDDEN const char *plugin_shape_text(const moert_tensor *t, char *buf, size_t size);

/** host->layer_tensor (names relative to the layer's block prefix) or host->model_tensor (full names). */
typedef moert_status (*plugin_tensor_lookup)(const moert_create_context *ctx, const char *name, moert_tensor *out);

/**
 * Fetches tensor `name` through `lookup` and checks that it is float32 (the host converts F16/BF16), has exactly
 * the shape `want` (`ndim` entries) and that every element is finite.
 * [in]  want_text  the wanted shape as messages give it, e.g. "[r, 512]"; NULL writes `want` as "[d0, d1, ...]".
 * [out] out        the tensor's data, borrowed from the model until the instance is destroyed; NULL on failure.
 * Returns MOERT_OK; the host's status when the tensor is absent or unreadable (the host set the message); or
 * MOERT_ERR_FORMAT with "<kind>: tensor <name>: expected ..., got ..." or "... element <i> is not finite".
 */
PLUGIN_HIDDEN moert_status plugin_float_tensor(const plugin_create_env *env, plugin_tensor_lookup lookup,
                                               const char *name, int32_t ndim, const int64_t *want,
                                               const char *want_text, const float **out);

/**
 * plugin_float_tensor for a tensor a checkpoint may leave out: when the lookup fails it returns MOERT_OK with
 * *out = NULL. A tensor present in a dtype the host cannot read then stays unused, and the model load fails
 * naming it. A tensor that is there but of the wrong shape or not finite fails as in plugin_float_tensor.
 */
PLUGIN_HIDDEN moert_status plugin_optional_float_tensor(const plugin_create_env *env, plugin_tensor_lookup lookup,
                                                        const char *name, int32_t ndim, const int64_t *want,
                                                        const char *want_text, const float **out);

/**
 * Reads integer parameter `key`, which must lie in [lo, hi]; *out = `fallback` when absent (not range-checked, so
 * a value outside [lo, hi] can mark "not given").
 * Returns MOERT_OK; the host's status when the value is not a number (the host set the message); or
 * MOERT_ERR_FORMAT with "<kind>: parameter <key> = <v>: expected an integer in [lo, hi]".
 */
PLUGIN_HIDDEN moert_status plugin_int_param(const plugin_create_env *env, const char *key, int32_t fallback,
                                            int32_t lo, int32_t hi, int32_t *out);

/**
 * Reads boolean parameter `key`: JSON true/false, or a number with non-zero meaning true; *out is 1 or 0, or
 * `fallback` when absent. Returns MOERT_OK; the host's status when the value is neither (message set by the host);
 * or MOERT_ERR_FORMAT with "<kind>: parameter <key>: expected true or false" for NaN.
 */
PLUGIN_HIDDEN moert_status plugin_bool_param(const plugin_create_env *env, const char *key, int32_t fallback,
                                             int32_t *out);

/**
 * Reads string parameter `key`; *out = `fallback` (may be NULL) when absent. The string is borrowed until create()
 * returns. Returns MOERT_OK; the host's status when the value is not a string (message set by the host); or
 * MOERT_ERR_FORMAT with "<kind>: parameter <key>: expected a string" when the host hands back NULL.
 */
PLUGIN_HIDDEN moert_status plugin_string_param(const plugin_create_env *env, const char *key, const char *fallback,
                                               const char **out);

/**
 * Inserts expert `id` with value `v` into a row kept in descending value order, at most `cap` (>= 1) long, of
 * which *count are filled. Experts arrive in increasing id order, so an equal value goes after the ones already
 * there: ties keep the lower id first. Static inline: route() calls it once per expert and token, and an inline
 * definition stays inlinable in each plugin, as the copies it replaces were.
 */
static inline void plugin_topk_insert(int32_t *ids, float *values, int32_t *count, int32_t cap, int32_t id,
                                      float v) {
    int32_t c = *count;
    if (c == cap) {
        if (!(v > values[c - 1])) return;
        c--;
    }
    int32_t i = c;
    while (i > 0 && v > values[i - 1]) {
        ids[i] = ids[i - 1];
        values[i] = values[i - 1];
        i--;
    }
    ids[i] = id;
    values[i] = v;
    *count = c + 1;
}

#ifdef __cplusplus
}
#endif

#endif /* MOERT_PLUGIN_SUPPORT_H */
