/*
** moert_plugin.h — the plugin ABI of moert: router and expert kinds in shared libraries or registered in process.
**
** A plugin library exports one symbol, MOERT_PLUGIN_ENTRY ("moert_plugin_init"). moert dlopen()s the library with
** RTLD_LOCAL, checks the ABI, and calls the entry with a host API table; the plugin registers one or more router kinds
** and expert kinds through that table. Plugins reach moert ONLY through the table (never by linking libmoert.so).
**
** Lifecycle of a kind:
**   register  -> for each MoE layer of each model (or session override) that names the kind: create(...) once
**             -> route(...) / forward(...) for every batch of tokens, from worker threads
**             -> destroy(instance) when the model (or session) is freed.
**
** Threads: create and destroy run on the thread that loads or frees the model. route and forward may run on any
** thread, and CONCURRENTLY on the same instance from different sessions: an instance must be read-only after
** create (keep per-call scratch on the stack, or allocate it per call through host->alloc). register_* and
** moert_plugin_load may be called from any thread.
**
** Errors: a plugin never lets a C++ exception, longjmp, Swift error or abort cross the boundary. It returns a
** non-zero moert_status (usually MOERT_ERR_PLUGIN) after calling host->set_error(message); moert adds the plugin's
** name and the layer to the message. Every output of a router is validated (ids in range, weights finite and >= 0,
** counts within the declared maximum) and a violation fails the evaluation with MOERT_ERR_PLUGIN.
**
** Memory: buffers passed into a call are borrowed for that call only. Tensors handed out by host->layer_tensor and
** host->model_tensor stay valid until the instance is destroyed. Whatever a plugin allocates, its destroy frees.
**
** This header is a contract: tables and structs only grow at their end; each starts with struct_size.
*/
#ifndef MOERT_PLUGIN_H
#define MOERT_PLUGIN_H

#include "moert.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Version of the plugin ABI described here; changes only on an incompatible break. */
#define MOERT_PLUGIN_ABI_VERSION 1
/** Name of the one symbol a plugin library exports. */
#define MOERT_PLUGIN_ENTRY "moert_plugin_init"

/* ------------------------------------------------------------------------------------------------------------ */
/* Values handed to plugins                                                                                      */
/* ------------------------------------------------------------------------------------------------------------ */

/** Opaque context of one create() call: which model, layer and parameters the instance is made for. */
typedef struct moert_create_context moert_create_context;

/** The host API table, defined below. */
typedef struct moert_host_api moert_host_api;

/** Element types of moert_tensor. Float tensors are always delivered as float32, whatever their storage. */
#define MOERT_TENSOR_F32 0
#define MOERT_TENSOR_I32 1

/** A read-only tensor borrowed from the model. */
typedef struct moert_tensor {
    uint32_t    struct_size;  /**< Set by the caller to sizeof(moert_tensor). */
    int32_t     dtype;        /**< MOERT_TENSOR_F32 or MOERT_TENSOR_I32. */
    const void *data;         /**< Row-major elements (float or int32_t), 64-byte aligned when converted. */
    int32_t     ndim;         /**< Number of dimensions, 0..4. */
    int64_t     shape[4];     /**< Sizes, outermost first; unused entries are 1. */
} moert_tensor;

/** Facts about the MoE layer an instance is created for. */
typedef struct moert_layer_info {
    uint32_t struct_size;    /**< sizeof(moert_layer_info). */
    int32_t  layer;          /**< Decoder layer index, 0-based. */
    int32_t  moe_index;      /**< Index among the model's MoE layers, 0-based. */
    int32_t  n_moe_layers;   /**< MoE layers in the model. */
    int32_t  hidden_size;    /**< Width of the hidden states. */
    int32_t  n_experts;      /**< Experts in this layer (all kinds together); routers return ids in [0, n_experts). */
    int32_t  top_k;          /**< The configured experts per token (num_experts_per_tok, or a session override). */
    int32_t  vocab_size;     /**< Token ids are in [0, vocab_size). */
    int32_t  expert_index;   /**< For expert create(): this expert's id in the layer; -1 for routers. */
} moert_layer_info;

/* ------------------------------------------------------------------------------------------------------------ */
/* Routers                                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

/** What a router instance declares at create(); prefilled by moert with the defaults shown. */
typedef struct moert_router_caps {
    uint32_t struct_size;             /**< sizeof(moert_router_caps). */
    int32_t  max_experts_per_token;   /**< Capacity of each output row. Default: top_k. At most n_experts. */
    int32_t  state_size;              /**< Floats of per-token state carried from MoE layer to MoE layer within
                                           one forward pass (zero at the first MoE layer). Default 0. All layers
                                           share one state vector; its size is the largest declared. */
} moert_router_caps;

/** Input of one route() call: a batch of n_tokens tokens at one MoE layer. All pointers are borrowed. */
typedef struct moert_router_input {
    uint32_t       struct_size;        /**< sizeof(moert_router_input). */
    int32_t        n_tokens;           /**< Tokens in the batch (>= 1). */
    int32_t        hidden_size;        /**< Width of x. */
    const float   *x;                  /**< [n_tokens, hidden_size] MoE-block input (post-attention RMSNorm). */
    const int32_t *token_ids;          /**< [n_tokens] token ids. */
    const int32_t *positions;          /**< [n_tokens] positions in the sequence (0-based). */
    const int32_t *prev_token_ids;     /**< [n_tokens] id of the token before each one; -1 at position 0. */
    float         *state;              /**< [n_tokens, state_stride] read/write layer-to-layer state; NULL when no
                                            router of the model declares state. */
    int32_t        state_stride;       /**< Floats per token in `state` (the largest declared state_size). */
    const float   *prev_logits;        /**< [n_tokens, prev_logits_width] logits the previous MoE layer's router
                                            wrote to its output `logits`; NULL at the first MoE layer. */
    int32_t        prev_logits_width;  /**< Width of prev_logits rows (that layer's n_experts), 0 when NULL. */
} moert_router_input;

/** Output of one route() call. moert allocates every buffer; the router fills them. */
typedef struct moert_router_output {
    uint32_t struct_size;    /**< sizeof(moert_router_output). */
    int32_t  max_per_token;  /**< Row capacity of expert_ids and weights (the declared max_experts_per_token). */
    int32_t *expert_ids;     /**< [n_tokens, max_per_token] chosen expert ids, in [0, n_experts). */
    float   *weights;        /**< [n_tokens, max_per_token] combination weights, finite and >= 0. */
    int32_t *counts;         /**< [n_tokens] entries used per row, 0..max_per_token (0: MoE output is zero). */
    float   *logits;         /**< [n_tokens, n_experts] optional: raw router logits for the next layer's
                                  prev_logits and for traces. Prefilled with NaN; leave untouched if none. */
} moert_router_output;

/** A router kind. Register a static table with host->register_router (or moert_register_router). */
typedef struct moert_router_ops {
    uint32_t    struct_size;  /**< sizeof(moert_router_ops). */
    uint32_t    abi_version;  /**< MOERT_PLUGIN_ABI_VERSION the plugin was built with. */
    const char *name;         /**< Kind name, e.g. "gru"; unique in the process; [a-z0-9_.-]+. Static storage. */
    /** Creates an instance for one MoE layer. Fill *out_instance and adjust *caps. */
    moert_status (*create)(const moert_host_api *host, const moert_create_context *ctx,
                           const moert_layer_info *layer, moert_router_caps *caps, void **out_instance);
    /** Routes a batch. Must be safe to call concurrently on one instance. */
    moert_status (*route)(void *instance, const moert_router_input *input, moert_router_output *output);
    /** Frees an instance. */
    void (*destroy)(void *instance);
} moert_router_ops;

/* ------------------------------------------------------------------------------------------------------------ */
/* Experts                                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

/** Expert kind flags (moert_expert_ops.flags). */
#define MOERT_EXPERT_ZERO_COMPUTE    0x1u  /**< No matrix products; counted as zero-compute in traces. */
#define MOERT_EXPERT_OUTPUT_ZERO     0x2u  /**< F(x) = 0: never called, its tokens are skipped. */
#define MOERT_EXPERT_OUTPUT_IDENTITY 0x4u  /**< F(x) = x: never called, moert adds w·x itself. */

/** An expert kind. Register a static table with host->register_expert (or moert_register_expert). */
typedef struct moert_expert_ops {
    uint32_t    struct_size;  /**< sizeof(moert_expert_ops). */
    uint32_t    abi_version;  /**< MOERT_PLUGIN_ABI_VERSION the plugin was built with. */
    const char *name;         /**< Kind name, e.g. "moepp.constant"; unique in the process. Static storage. */
    uint32_t    flags;        /**< MOERT_EXPERT_* flags. */
    /** Creates one expert (layer->expert_index says which). */
    moert_status (*create)(const moert_host_api *host, const moert_create_context *ctx,
                           const moert_layer_info *layer, void **out_instance);
    /** y[n_tokens, hidden] = F(x[n_tokens, hidden]) for the gathered tokens routed to this expert. May run
        concurrently on one instance. Not called for OUTPUT_ZERO or OUTPUT_IDENTITY kinds (may be NULL then). */
    moert_status (*forward)(void *instance, const float *x, int32_t n_tokens, int32_t hidden_size, float *y);
    /** Frees an instance. */
    void (*destroy)(void *instance);
} moert_expert_ops;

/* ------------------------------------------------------------------------------------------------------------ */
/* The host API table                                                                                            */
/* ------------------------------------------------------------------------------------------------------------ */

/* Log levels of host->log: MOERT_LOG_ERROR ... MOERT_LOG_DEBUG, defined in moert.h. */

/** Functions moert offers plugins. Check struct_size covers a field before using it (fields only grow).
    The table is at a fixed address for the life of the process: plugins may keep the pointer. */
struct moert_host_api {
    uint32_t struct_size;   /**< sizeof(moert_host_api) of the host. */
    uint32_t abi_version;   /**< MOERT_PLUGIN_ABI_VERSION of the host. */

    /* ABI 1 and later */
    /** Aligned allocation (alignment a power of two, or 0 for 64); NULL on failure or above 1 TiB - 1 MiB. */
    void *(*alloc)(size_t size, size_t alignment);
    /** Frees memory from alloc. NULL is a no-op. */
    void (*free)(void *pointer);
    /** Writes a message at a MOERT_LOG_* level to moert's log: the host's moert_set_log_callback(), else stderr
        for levels up to MOERT_LOG (default MOERT_LOG_WARN). */
    void (*log)(int32_t level, const char *message);
    /** Sets the message that goes with the non-zero status the plugin is about to return (copied). */
    void (*set_error)(const char *message);
    /** Registers a router kind (from moert_plugin_init only: a call from anywhere else returns MOERT_ERR_PLUGIN;
        the table must stay valid while loaded). */
    moert_status (*register_router)(void *host_context, const moert_router_ops *ops);
    /** Registers an expert kind (from moert_plugin_init only, as register_router). Unknown MOERT_EXPERT_* flag bits,
        or OUTPUT_ZERO with OUTPUT_IDENTITY, are refused with MOERT_ERR_PLUGIN. */
    moert_status (*register_expert)(void *host_context, const moert_expert_ops *ops);
    /** A tensor of this MoE layer, by name relative to the layer's block prefix P ("model.layers.<l>.mlp.", or
        "model.layers.<l>.block_sparse_moe." in Mixtral checkpoints that use that name): a router reads
        P + name (e.g. "gate.weight", the model's own gate), expert e reads P + "experts.<e>." + name.
        Returns MOERT_ERR_FORMAT (message set) when absent or not F32/F16/BF16/I32. */
    moert_status (*layer_tensor)(const moert_create_context *ctx, const char *name, moert_tensor *out);
    /** A tensor by its full name in the checkpoint (for weights shared by all layers). */
    moert_status (*model_tensor)(const moert_create_context *ctx, const char *name, moert_tensor *out);
    /** A numeric parameter of this router/expert from the model's moert section (layer entries override
        the defaults). Returns MOERT_OK, or MOERT_ERR_OUT_OF_RANGE when the key is absent (no message set),
        or MOERT_ERR_FORMAT when it is not a number. */
    moert_status (*param_number)(const moert_create_context *ctx, const char *key, double *out);
    /** A text parameter; *out is borrowed until create returns. Same statuses as param_number. */
    moert_status (*param_string)(const moert_create_context *ctx, const char *key, const char **out);
    /** Row-major single-precision GEMM through moert's BLAS: C = alpha·op(A)·op(B) + beta·C, where op(X) is X or
        its transpose when trans_x is non-zero; A is m×k after op, B is k×n after op, C is m×n. */
    void (*sgemm)(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k, float alpha,
                  const float *a, int32_t lda, const float *b, int32_t ldb, float beta, float *c, int32_t ldc);
};

/** Signature of MOERT_PLUGIN_ENTRY. Check host->abi_version and host->struct_size, then register kinds. */
typedef moert_status (*moert_plugin_init_fn)(const moert_host_api *host, void *host_context);

/** Marks the entry point of a plugin library as exported (the rest of a plugin should stay hidden). */
#if defined(_WIN32) || defined(__CYGWIN__)
#  define MOERT_PLUGIN_EXPORT __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#  define MOERT_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#  define MOERT_PLUGIN_EXPORT
#endif

/**
 * The entry point every plugin library defines (libmoert.so does not): check the host's ABI version and table
 * size (MOERT_PLUGIN_CHECK_HOST below), register kinds with host->register_router / register_expert passing
 * `host_context` through, and return MOERT_OK. Return an error status (after host->set_error) to refuse loading.
 * Called once per library.
 */
MOERT_PLUGIN_EXPORT moert_status moert_plugin_init(const moert_host_api *host, void *host_context);

/* ------------------------------------------------------------------------------------------------------------ */
/* Helpers for plugins (header-only)                                                                             */
/* ------------------------------------------------------------------------------------------------------------ */

/**
 * Non-zero when the sized struct `*s` of type `type` (which starts with struct_size) holds `field`: its struct_size
 * covers the field's last byte. A struct from an older moert or plugin is shorter; read only the fields it holds.
 */
#define MOERT_STRUCT_HAS(s, type, field) ((s)->struct_size >= offsetof(type, field) + sizeof((s)->field))

/** Non-zero when the host table `host` holds `field` (a table from an older moert is shorter). */
#define MOERT_HOST_HAS(host, field) MOERT_STRUCT_HAS(host, moert_host_api, field)

/**
 * The check every moert_plugin_init starts with, naming the newest host field the plugin uses:
 *
 *     moert_status s = MOERT_PLUGIN_CHECK_HOST(host, "gru", sgemm);
 *     if (s != MOERT_OK) return s;
 *
 * See moert_plugin_check_host().
 */
#define MOERT_PLUGIN_CHECK_HOST(host, plugin_name, newest_field)  \
    moert_plugin_check_host((host), (plugin_name),                \
                            offsetof(moert_host_api, newest_field) + sizeof((host)->newest_field))

/*
** The message below is assembled by hand rather than with snprintf so that this header needs no <stdio.h>: a plugin
** including it gets <stddef.h> and <stdint.h> only, as a host including moert.h does. The two helpers are internal to
** moert_plugin_check_host(); each writes `text` (or `value` in decimal) into message[at..] without passing
** message[size - 1], keeps the message NUL-terminated, and returns the new end.
*/
static inline size_t moert_plugin_put_text(char *message, size_t size, size_t at, const char *text) {
    while (*text != '\0' && at + 1 < size) message[at++] = *text++;
    message[at] = '\0';
    return at;
}

static inline size_t moert_plugin_put_uint(char *message, size_t size, size_t at, uint64_t value) {
    char digits[20]; /* UINT64_MAX has 20 decimal digits */
    size_t n = 0;
    do {
        digits[n++] = "0123456789"[value % 10];
        value /= 10;
    } while (value != 0);
    while (n > 0 && at + 1 < size) message[at++] = digits[--n];
    message[at] = '\0';
    return at;
}

/**
 * Checks that a plugin may use the host table: its abi_version is MOERT_PLUGIN_ABI_VERSION and it is at least
 * `needed_bytes` long: up to the end of the newest field the plugin calls (MOERT_PLUGIN_CHECK_HOST computes it).
 * [in] host          the table given to moert_plugin_init (or to create); may be NULL.
 * [in] plugin_name   prefix of the message, e.g. "gru"; borrowed.
 * [in] needed_bytes  how much of the table the plugin reads.
 * Returns MOERT_OK, or MOERT_ERR_PLUGIN. When refusing a table long enough to hold set_error (at its ABI 1 place),
 * whatever its abi_version, it first sets the message "<plugin_name>: built for plugin ABI <this header's version>
 * (host table of <sizeof(moert_host_api) here> bytes), host has ABI <host's version> (<host's struct_size> bytes)".
 * A NULL host is refused without a message. Header-only (static inline): no symbol of libmoert is involved.
 * @since 0.2.0
 */
static inline moert_status moert_plugin_check_host(const moert_host_api *host, const char *plugin_name,
                                                   size_t needed_bytes) {
    char message[256];
    size_t at = 0;
    if (host == NULL) return MOERT_ERR_PLUGIN;
    if (host->abi_version == MOERT_PLUGIN_ABI_VERSION && host->struct_size >= needed_bytes) return MOERT_OK;
    if (!MOERT_HOST_HAS(host, set_error) || host->set_error == NULL) return MOERT_ERR_PLUGIN;
    at = moert_plugin_put_text(message, sizeof message, at, plugin_name != NULL ? plugin_name : "plugin");
    at = moert_plugin_put_text(message, sizeof message, at, ": built for plugin ABI ");
    at = moert_plugin_put_uint(message, sizeof message, at, MOERT_PLUGIN_ABI_VERSION);
    at = moert_plugin_put_text(message, sizeof message, at, " (host table of ");
    at = moert_plugin_put_uint(message, sizeof message, at, sizeof(moert_host_api));
    at = moert_plugin_put_text(message, sizeof message, at, " bytes), host has ABI ");
    at = moert_plugin_put_uint(message, sizeof message, at, host->abi_version);
    at = moert_plugin_put_text(message, sizeof message, at, " (");
    at = moert_plugin_put_uint(message, sizeof message, at, host->struct_size);
    moert_plugin_put_text(message, sizeof message, at, " bytes)");
    host->set_error(message);
    return MOERT_ERR_PLUGIN;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Host-side functions (exported by libmoert.so; for host applications, not for plugins)                        */
/* ------------------------------------------------------------------------------------------------------------ */

/**
 * Loads a plugin library and registers its kinds. `path` is a file path, or a bare name ("gru") looked up as
 * `libmoert_<name>.so` and `<name>` in each directory of MOERT_PLUGIN_PATH (colon-separated), then next to
 * libmoert.so, then in its `moert/plugins` subdirectory. Loading a library that is already loaded is a no-op.
 * Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT (NULL or empty path), MOERT_ERR_IO (not found / dlopen failed;
 * message lists the paths tried) or MOERT_ERR_PLUGIN (no entry symbol, wrong ABI version, init failed, a kind
 * registered twice). Threads: any. @since 0.1.0
 */
MOERT_API moert_status moert_plugin_load(const char *path);

/**
 * Registers a router kind from the host process itself (no shared library), e.g. a Python callback router.
 * [in] ops  borrowed; it and everything it points to must stay valid until moert_shutdown(). Returns MOERT_OK,
 * MOERT_ERR_INVALID_ARGUMENT or MOERT_ERR_PLUGIN (bad version, duplicate name). Threads: any. @since 0.1.0
 */
MOERT_API moert_status moert_register_router(const moert_router_ops *ops);

/** Registers an expert kind from the host process; as moert_register_router(). @since 0.1.0 */
MOERT_API moert_status moert_register_expert(const moert_expert_ops *ops);

/** Kinds of registry entries for moert_kind_count() and moert_kind_name(). */
#define MOERT_KIND_ROUTER 0
#define MOERT_KIND_EXPERT 1

/** Number of registered kinds of `kind` (built-in ones included); 0 for an unknown `kind`. @since 0.1.0 */
MOERT_API int32_t moert_kind_count(int32_t kind);

/**
 * Name of the index-th registered kind (static storage while registered), or NULL when out of range.
 * @since 0.1.0
 */
MOERT_API const char *moert_kind_name(int32_t kind, int32_t index);

/**
 * Unregisters every plugin kind and unloads every plugin library. Call it once no model is alive.
 * Returns MOERT_OK, or MOERT_ERR_INVALID_ARGUMENT when models are still loaded (nothing is unloaded).
 * Threads: no other moert call may run. @since 0.1.0
 */
MOERT_API moert_status moert_shutdown(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOERT_PLUGIN_H */
