/* plugin_support.c — the create-time helpers of plugin_support.h, compiled into each C plugin library. */
#include "plugin_support.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

moert_status plugin_fail(void (*set_error)(const char *message), moert_status status, const char *format, ...) {
    if (set_error == NULL) return status;
    char message[512];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    set_error(message);
    return status;
}

const char *plugin_dims_text(int32_t ndim, const int64_t *dims, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int32_t i = 0; i < ndim && used < size; i++) {
        used += (size_t)snprintf(buf + used, size - used, i == 0 ? "%lld" : ", %lld", (long long)dims[i]);
    }
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

const char *plugin_shape_text(const moert_tensor *t, char *buf, size_t size) {
    return plugin_dims_text(t->ndim < 4 ? t->ndim : 4, t->shape, buf, size);
}

/** Both tensor readers: `optional` turns a failed lookup into MOERT_OK with *out = NULL. */
static moert_status float_tensor(const plugin_create_env *env, plugin_tensor_lookup lookup, const char *name,
                                 int32_t ndim, const int64_t *want, const char *want_text, int optional,
                                 const float **out) {
    moert_tensor t;
    memset(&t, 0, sizeof t);
    t.struct_size = (uint32_t)sizeof t;
    *out = NULL;
    moert_status status = lookup(env->ctx, name, &t);
    if (status != MOERT_OK) return optional ? MOERT_OK : status;  // the host named the missing tensor
    char wanted[96], got[96];
    if (want_text == NULL) want_text = plugin_dims_text(ndim, want, wanted, sizeof wanted);
    if (t.dtype != MOERT_TENSOR_F32) {
        return plugin_fail(env->host->set_error, MOERT_ERR_FORMAT,
                           "%s: tensor %s: expected a float tensor %s, got an integer tensor %s", env->kind, name,
                           want_text, plugin_shape_text(&t, got, sizeof got));
    }
    int ok = t.ndim == ndim && t.data != NULL;
    for (int32_t i = 0; ok && i < ndim; i++) ok = t.shape[i] == want[i];
    if (!ok) {
        return plugin_fail(env->host->set_error, MOERT_ERR_FORMAT, "%s: tensor %s: expected shape %s, got %s",
                           env->kind, name, want_text, plugin_shape_text(&t, got, sizeof got));
    }
    const float *data = (const float *)t.data;
    int64_t count = 1;
    for (int32_t i = 0; i < ndim; i++) count *= want[i];
    for (int64_t i = 0; i < count; i++) {
        if (!isfinite(data[i])) {
            return plugin_fail(env->host->set_error, MOERT_ERR_FORMAT, "%s: tensor %s: element %lld is not finite",
                               env->kind, name, (long long)i);
        }
    }
    *out = data;
    return MOERT_OK;
}

moert_status plugin_float_tensor(const plugin_create_env *env, plugin_tensor_lookup lookup, const char *name,
                                 int32_t ndim, const int64_t *want, const char *want_text, const float **out) {
    return float_tensor(env, lookup, name, ndim, want, want_text, 0, out);
}

moert_status plugin_optional_float_tensor(const plugin_create_env *env, plugin_tensor_lookup lookup,
                                          const char *name, int32_t ndim, const int64_t *want,
                                          const char *want_text, const float **out) {
    return float_tensor(env, lookup, name, ndim, want, want_text, 1, out);
}

moert_status plugin_int_param(const plugin_create_env *env, const char *key, int32_t fallback, int32_t lo,
                              int32_t hi, int32_t *out) {
    double v = 0;
    moert_status status = env->host->param_number(env->ctx, key, &v);
    if (status == MOERT_ERR_OUT_OF_RANGE) {
        *out = fallback;
        return MOERT_OK;
    }
    if (status != MOERT_OK) return status;
    if (!(v >= lo && v <= hi) || v != floor(v)) {
        return plugin_fail(env->host->set_error, MOERT_ERR_FORMAT,
                           "%s: parameter %s = %g: expected an integer in [%d, %d]", env->kind, key, v, (int)lo,
                           (int)hi);
    }
    *out = (int32_t)v;
    return MOERT_OK;
}

moert_status plugin_bool_param(const plugin_create_env *env, const char *key, int32_t fallback, int32_t *out) {
    double v = 0;
    moert_status status = env->host->param_number(env->ctx, key, &v);
    if (status == MOERT_ERR_OUT_OF_RANGE) {
        *out = fallback;
        return MOERT_OK;
    }
    if (status != MOERT_OK) return status;
    if (isnan(v)) {
        return plugin_fail(env->host->set_error, MOERT_ERR_FORMAT, "%s: parameter %s: expected true or false",
                           env->kind, key);
    }
    *out = v != 0;
    return MOERT_OK;
}

moert_status plugin_string_param(const plugin_create_env *env, const char *key, const char *fallback,
                                 const char **out) {
    const char *s = NULL;
    moert_status status = env->host->param_string(env->ctx, key, &s);
    if (status == MOERT_ERR_OUT_OF_RANGE) {
        *out = fallback;
        return MOERT_OK;
    }
    if (status != MOERT_OK) return status;
    if (s == NULL) {
        return plugin_fail(env->host->set_error, MOERT_ERR_FORMAT, "%s: parameter %s: expected a string", env->kind,
                           key);
    }
    *out = s;
    return MOERT_OK;
}
