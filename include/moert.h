/*
** moert.h — the public C API of moert, an embeddable Mixture-of-Experts inference runtime.
**
** This header is a contract. Functions and struct fields are only ever added, never changed or removed;
** every struct that crosses the boundary starts with `uint32_t struct_size` and is filled with defaults by
** its `*_init` function, so a host compiled against an older header keeps working with a newer library.
**
** Conventions
**  - Every fallible call returns a `moert_status`; `MOERT_OK` (0) is success. On failure a message is left in
**    a thread-local buffer, read with moert_last_error(), and every out-pointer is set to NULL (or 0).
**  - Ownership: a handle returned through an out-pointer is owned by the caller and released with the matching
**    `*_free` call; `*_free(NULL)` is a harmless no-op. moert never frees host memory, and the host never
**    frees moert memory with anything but a moert call. Pointer arguments are borrowed for the call only.
**  - Threads: `moert_model` is immutable after load and may be shared by any number of threads and sessions.
**    A `moert_session` or `moert_sampler` must be used by one thread at a time (different ones may run in
**    parallel). Free a model only after every session created from it has been freed.
**  - Token ids are `int32_t` in [0, vocab_size). Sizes and counts are `size_t` or fixed-width integers.
*/
#ifndef MOERT_H
#define MOERT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
** MOERT_API marks the functions libmoert exports. On Windows the library is a DLL: it is built with MOERT_BUILD
** defined (dllexport), and hosts see dllimport. Elsewhere only these functions have default visibility.
*/
#if defined(_WIN32) || defined(__CYGWIN__)
#  if defined(MOERT_BUILD)
#    define MOERT_API __declspec(dllexport)
#  else
#    define MOERT_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define MOERT_API __attribute__((visibility("default")))
#else
#  define MOERT_API
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define MOERT_DEPRECATED(hint) __attribute__((deprecated(hint)))
#elif defined(_MSC_VER)
#  define MOERT_DEPRECATED(hint) __declspec(deprecated(hint))
#else
#  define MOERT_DEPRECATED(hint)
#endif

/* ------------------------------------------------------------------------------------------------------------ */
/* Versions                                                                                                      */
/* ------------------------------------------------------------------------------------------------------------ */

/** Library version as text, "MAJOR.MINOR.PATCH". */
#define MOERT_VERSION "0.2.0"
/** Library version as a number: MAJOR*1000000 + MINOR*1000 + PATCH. */
#define MOERT_VERSION_NUMBER 2000
/** ABI version. It changes only on an incompatible break, together with the SONAME `libmoert.so.<ABI>`. */
#define MOERT_ABI_VERSION 1

/**
 * The library's version text (static storage, never NULL); compare with MOERT_VERSION.
 * Threads: any. @since 0.1.0
 */
MOERT_API const char *moert_version(void);

/** The library's MOERT_VERSION_NUMBER. Threads: any. @since 0.1.0 */
MOERT_API uint32_t moert_version_number(void);

/** The library's MOERT_ABI_VERSION; a host should refuse to run when it differs from the header's. @since 0.1.0 */
MOERT_API uint32_t moert_abi_version(void);

/* ------------------------------------------------------------------------------------------------------------ */
/* Status codes and errors                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

/** Result of every fallible call. The numbers below are fixed forever. */
typedef int32_t moert_status;

#define MOERT_OK                     0  /**< Success. */
#define MOERT_ERR_INVALID_ARGUMENT   1  /**< A NULL handle, a bad option value or an inconsistent argument. */
#define MOERT_ERR_IO                 2  /**< A file could not be opened, read or mapped. */
#define MOERT_ERR_FORMAT             3  /**< A file is malformed: bad JSON, a lying safetensors header, wrong shape. */
#define MOERT_ERR_UNSUPPORTED        4  /**< Well-formed but not supported: architecture, rope type, dtype, ... */
#define MOERT_ERR_OUT_OF_MEMORY      5  /**< An allocation failed or would exceed a limit. */
#define MOERT_ERR_OUT_OF_RANGE       6  /**< A token id outside [0, vocab_size) or an index past its bound. */
#define MOERT_ERR_CONTEXT_FULL       7  /**< The session's context (n_ctx) has no room for the tokens given. */
#define MOERT_ERR_BUFFER_TOO_SMALL   8  /**< An output buffer given by the host is smaller than required. */
#define MOERT_ERR_PLUGIN             9  /**< A plugin failed to load, register or returned invalid output. */
#define MOERT_ERR_INTERNAL          10  /**< A bug in moert; please report it with the message. */
#define MOERT_ERR_NUMERIC           11  /**< The computation produced NaN or infinity (router logits or output logits),
                                             from non-finite weights or values out of float32 range; the session
                                             must be reset. @since 0.2.0 */

/**
 * Static English text for a status code (never NULL; "unknown status" for numbers not listed above).
 * Threads: any. @since 0.1.0
 */
MOERT_API const char *moert_status_string(moert_status status);

/**
 * The message of the last failed call on this thread, e.g.
 * "model.layers.0.mlp.gate.weight in model.safetensors: expected shape [4, 64], got [4, 63]".
 * Never NULL (empty when nothing failed yet). The text is owned by moert and stays valid until the next moert
 * call on the same thread; it is meaningful only right after a call that returned an error.
 * Threads: thread-local. @since 0.1.0
 */
MOERT_API const char *moert_last_error(void);

/* ------------------------------------------------------------------------------------------------------------ */
/* Threads                                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

/**
 * Sets the number of worker threads used by moert's kernels and by its BLAS library, process-wide.
 * [in] n_threads  1 or more, at most 64 used (a larger count means 64); 0 restores the default (the number of
 *                 online CPUs, at most 64).
 * When moert's own kernels compute every large product (`moert kernels`: no decode float32 GEMV, prefill GEMM or
 * prefill attention on blas), the BLAS library only serves small ones and gets one thread, here and whenever a
 * model's kernels are chosen at load: its idle workers would otherwise spin on the cores moert's threads compute on.
 * Returns MOERT_OK, or MOERT_ERR_INVALID_ARGUMENT for a negative count.
 * Threads: call while no evaluation is running. @since 0.1.0
 */
MOERT_API moert_status moert_set_threads(int32_t n_threads);

/** The number of worker threads currently in effect (at least 1). Threads: any. @since 0.1.0 */
MOERT_API int32_t moert_get_threads(void);

/* ------------------------------------------------------------------------------------------------------------ */
/* Logging                                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

/** Levels of log messages; lower is more severe. */
#define MOERT_LOG_ERROR 0
#define MOERT_LOG_WARN  1
#define MOERT_LOG_INFO  2
#define MOERT_LOG_DEBUG 3

/**
 * Receives one log message. [in] level  a MOERT_LOG_* level. [in] message  one line of UTF-8 without a trailing
 * newline, borrowed for the call. [in] user_data  the pointer given to moert_set_log_callback().
 * It may be called on any thread that calls into moert, and on several at once; it must not call moert.
 */
typedef void (*moert_log_callback)(int32_t level, const char *message, void *user_data);

/**
 * Sends moert's log messages — its own warnings (e.g. an expert budget smaller than one step needs, a plugin
 * parameter the plugin never read) and what plugins write with host->log — to `callback`, at every level.
 * [in] callback   NULL restores the default: "moert: <level>: <message>" lines on stderr (<level> is "error",
 *                 "warning", "info" or "debug") for levels up to the environment variable MOERT_LOG (an integer,
 *                 read when the first message is written), or up to MOERT_LOG_WARN when it is unset.
 * [in] user_data  passed to every call of `callback`; borrowed until the callback is replaced.
 * Threads: call while no other moert call runs (as moert_set_threads()). @since 0.2.0
 */
MOERT_API void moert_set_log_callback(moert_log_callback callback, void *user_data);

/* ------------------------------------------------------------------------------------------------------------ */
/* Models                                                                                                        */
/* ------------------------------------------------------------------------------------------------------------ */

/**
 * A loaded model: configuration plus weights, memory-mapped from a Hugging Face checkpoint directory.
 * Threads: immutable after load; share it freely between threads and sessions.
 */
typedef struct moert_model moert_model;

/** Storage dtypes of weights on disk (moert_model_info.dtype). Computation is float32. */
#define MOERT_DTYPE_F32   0
#define MOERT_DTYPE_F16   1
#define MOERT_DTYPE_BF16  2
#define MOERT_DTYPE_MIXED 3  /**< The checkpoint mixes several float dtypes, or holds quantized weights. */
#define MOERT_DTYPE_Q8_0  4  /**< Blocks of 32 weights: an f16 scale and 32 int8 (GGML's Q8_0; docs/model-format.md).
                                  Only per tensor (moert_model_tensor_dtype()). @since 0.2.0 */
#define MOERT_DTYPE_Q4_0  5  /**< Blocks of 32 weights: an f16 scale and 32 4-bit quants (GGML's Q4_0). Only per
                                  tensor (moert_model_tensor_dtype()). @since 0.2.0 */
#define MOERT_DTYPE_Q3_0  6  /**< Blocks of 32 weights: an f16 scale and 32 3-bit quants (moert's own; Q4_0's rule
                                  with 3 bits, docs/model-format.md). Only per tensor (moert_model_tensor_dtype()).
                                  @since 0.2.0 */
#define MOERT_DTYPE_Q4_K  7  /**< Super-blocks of 256 weights: an f16 scale and minimum scale, a 6-bit scale and
                                  minimum per 32 weights, and 4-bit quants (GGML's Q4_K; docs/model-format.md). Only
                                  per tensor (moert_model_tensor_dtype()). @since 0.2.0 */

/** Flags of moert_model_options.flags. */
#define MOERT_MODEL_TRUST_PLUGIN_PATHS 0x1u  /**< Let the checkpoint's moert section name plugin libraries by path
                                                  (relative to the model directory). Without it a model may name
                                                  plugins by bare name only, found in the host's plugin directories
                                                  (see moert_plugin_load()), and a path is refused with
                                                  MOERT_ERR_PLUGIN: loading a library runs its code, so a downloaded
                                                  model must not choose one. @since 0.2.0 */
#define MOERT_MODEL_NO_MMAP            0x2u  /**< Read the safetensors files into memory instead of mapping them:
                                                  the load takes longer and the weights are not shared with the page
                                                  cache, but a file changed or truncated afterwards cannot affect the
                                                  model. Mapped, a file that shrinks is refused at the next evaluation
                                                  (MOERT_ERR_IO); a truncation during an evaluation still faults the
                                                  process (SIGBUS). @since 0.2.0 */

/** Options for moert_model_load(). Fill with moert_model_options_init(), then change what you need. */
typedef struct moert_model_options {
    uint32_t struct_size;  /**< sizeof(moert_model_options); set by moert_model_options_init(). */
    uint32_t flags;        /**< MOERT_MODEL_* bits; 0 by default. Unknown bits are refused. */
    int64_t  max_context;  /**< Cap on the context length sessions may ask for; 0 = the model's own. */
    int64_t  expert_budget_bytes;    /**< Cap on resident routed-expert weights in their compute layout (F16 and
                                          BF16 kept as stored, float32 otherwise), in bytes; 0 = no cap. Experts are materialised on first use and evicted
                                          least-recently-used beyond the cap; results do not change. When the
                                          experts one step uses at once exceed the cap, it is exceeded for that
                                          step (with one warning in the log, see moert_set_log_callback()) rather than failing. Shared experts,
                                          dense MLPs, attention and embeddings are pinned: always resident,
                                          outside the budget. */
    float    expert_budget_percent;  /**< The cap as a share of all routed-expert bytes, in (0, 100]; 0 = unused.
                                          At most one of the two budget fields may be set. */
} moert_model_options;

/**
 * Fills the first `size` bytes of `options` with the model option defaults and sets struct_size to min(size, the library's
 * sizeof): a host built against an older, smaller header is never written past its struct. Call it through
 * moert_model_options_init(), which passes sizeof for you. Threads: any. @since 0.1.0
 */
MOERT_API void moert_model_options_init_sized(moert_model_options *options, size_t size);

/** Fills `options` with defaults and sets `struct_size` (see moert_model_options_init_sized()). @since 0.1.0 */
static inline void moert_model_options_init(moert_model_options *options) { moert_model_options_init_sized(options, sizeof *options); }

/**
 * Loads a Hugging Face MoE checkpoint directory: `config.json` plus `model.safetensors`, or shards listed in
 * `model.safetensors.index.json`. Files are memory-mapped and validated (header, dtypes, shapes, byte ranges)
 * before use. Supported `architectures[0]`: MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM,
 * OlmoeForCausalLM; anything else is refused with MOERT_ERR_UNSUPPORTED naming what is unsupported.
 * [in]  path       directory, UTF-8, borrowed.
 * [in]  options    may be NULL for defaults.
 * [out] out_model  receives the model (owned; free with moert_model_free()); NULL on failure.
 * Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT, MOERT_ERR_IO, MOERT_ERR_FORMAT, MOERT_ERR_UNSUPPORTED or
 * MOERT_ERR_OUT_OF_MEMORY. Threads: any. @since 0.1.0
 */
MOERT_API moert_status moert_model_load(const char *path, const moert_model_options *options,
                                        moert_model **out_model);

/** Frees a model. NULL is a no-op. All of its sessions must be freed first. @since 0.1.0 */
MOERT_API void moert_model_free(moert_model *model);

/** Facts about a loaded model, filled by moert_model_get_info(). */
typedef struct moert_model_info {
    uint32_t    struct_size;        /**< Set by the caller to sizeof(moert_model_info) before the call. */
    const char *architecture;       /**< e.g. "MixtralForCausalLM"; owned by the model, valid until it is freed. */
    int32_t     vocab_size;         /**< Number of token ids (logits per position). */
    int32_t     hidden_size;        /**< Width of the residual stream. */
    int32_t     n_layers;           /**< Decoder layers. */
    int32_t     n_moe_layers;       /**< Layers whose MLP is a mixture of experts. */
    int32_t     n_experts;          /**< Routed experts of the largest MoE layer, all kinds together (config.json's
                                         num_experts unless the moert section says otherwise). */
    int32_t     n_experts_per_tok;  /**< Top-k of the built-in router. */
    int32_t     n_heads;            /**< Attention (query) heads. */
    int32_t     n_kv_heads;         /**< Key/value heads (grouped-query attention; n_heads for multi-head latent
                                         attention). */
    int32_t     head_dim;           /**< Width of one attention head (for multi-head latent attention a query/key
                                         head: qk_nope_head_dim + qk_rope_head_dim). */
    int32_t     dtype;              /**< MOERT_DTYPE_* of the weights on disk. */
    int64_t     context_length;     /**< Longest context a session may use (after max_context). */
    int64_t     n_params;           /**< Number of parameters. */
    int64_t     file_bytes;         /**< Bytes of safetensors files mapped. */
    int64_t     weight_bytes;       /**< Bytes of weights held beyond the mapping: weights converted at load
                                         plus routed experts materialised so far (see moert_memory_stats). */
    int32_t     bos_token_id;       /**< -1 when the config names none. */
    int32_t     eos_token_id;       /**< -1 when the config names none (the first one when it names several). */
} moert_model_info;

/**
 * Describes a model. [in] model; [in,out] info  with `struct_size` set by the caller: only the fields it covers
 * are written. Returns MOERT_OK or MOERT_ERR_INVALID_ARGUMENT. Threads: any. @since 0.1.0
 */
MOERT_API moert_status moert_model_get_info(const moert_model *model, moert_model_info *info);

/**
 * Number of the model's end-of-sequence token ids, the ids moert_session_generate() stops at: generation_config.json's
 * `eos_token_id` (often several), then config.json's not yet listed (before 0.2.0: config.json's only); 0 when none
 * or model is NULL. Threads: any. @since 0.1.0
 */
MOERT_API int32_t moert_model_eos_token_count(const moert_model *model);

/** The index-th end-of-sequence token id, or -1 when out of range or model is NULL. Threads: any. @since 0.1.0 */
MOERT_API int32_t moert_model_eos_token(const moert_model *model, int32_t index);

/**
 * How tensor `name` (UTF-8, as named in the checkpoint, e.g. "model.layers.0.self_attn.q_proj.weight") is stored:
 * MOERT_DTYPE_F32, _F16, _BF16, _Q8_0, _Q4_0 or _Q3_0 (quantized tensors are named in the moert section's quantization
 * entry, written by `moert quantize`). Quantized and half-precision matrices are computed as stored; plugins see
 * every tensor as float32 through the host table. Returns -1 when model or name is NULL or the checkpoint holds no
 * such weight (a missing tensor, or an integer one). Threads: any. @since 0.2.0
 */
MOERT_API int32_t moert_model_tensor_dtype(const moert_model *model, const char *name);

/* ------------------------------------------------------------------------------------------------------------ */
/* Memory                                                                                                        */
/* ------------------------------------------------------------------------------------------------------------ */

/** Memory use of a model, filled by moert_model_get_memory_stats(). Byte counts are int64_t. */
typedef struct moert_memory_stats {
    uint32_t    struct_size;            /**< Set by the caller to sizeof(moert_memory_stats). */
    const char *allocator;              /**< Expert memory: "jemalloc (in process)", "jemalloc (loaded)" or
                                             "aligned malloc"; static storage. */
    int64_t     expert_bytes_total;     /**< All routed experts in their compute layout. */
    int64_t     expert_bytes_resident;  /**< Routed experts materialised now. */
    int64_t     expert_budget_bytes;    /**< The residency cap; 0 = none. */
    int64_t     mapped_bytes;           /**< Safetensors files mapped. */
    int64_t     converted_bytes;        /**< Other weights converted or copied at load (small F16/BF16 tensors such as
                                             norms and router gates are widened to float32). */
    int64_t     arena_active_bytes;     /**< jemalloc's active bytes of the model's arena; -1 without jemalloc. */
    int64_t     arena_mapped_bytes;     /**< jemalloc's mapped bytes of the arena; -1 without jemalloc. */
    int64_t     hits;                   /**< Expert uses that found the weights resident. */
    int64_t     misses;                 /**< Expert uses that materialised them. */
    int64_t     bytes_loaded;           /**< Bytes materialised so far. */
    int64_t     evictions;              /**< Experts evicted under the budget. */
} moert_memory_stats;

/**
 * Memory statistics of a model. [in,out] stats  with struct_size set by the caller. Returns MOERT_OK or
 * MOERT_ERR_INVALID_ARGUMENT. Threads: any. @since 0.1.0
 */
MOERT_API moert_status moert_model_get_memory_stats(const moert_model *model, moert_memory_stats *stats);

/**
 * Resident routed experts per MoE layer: counts[m] for the m-th MoE layer. counts may be NULL to query the
 * layer count through out_n_moe_layers (may be NULL). Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT or
 * MOERT_ERR_BUFFER_TOO_SMALL. Threads: any. @since 0.1.0
 */
MOERT_API moert_status moert_model_get_resident_experts(const moert_model *model, int32_t *counts, size_t capacity,
                                                        int32_t *out_n_moe_layers);

/* ------------------------------------------------------------------------------------------------------------ */
/* Sessions                                                                                                      */
/* ------------------------------------------------------------------------------------------------------------ */

/**
 * One sequence being evaluated: a KV cache and scratch buffers over a shared model.
 * Threads: one thread at a time; different sessions of one model may run on different threads at once.
 */
typedef struct moert_session moert_session;

/** Element types of the KV cache (moert_session_options.kv_type). @since 0.2.0 */
#define MOERT_KV_TYPE_F32  0  /**< float32: exactly what transformers attends over (the default). */
#define MOERT_KV_TYPE_F16  1  /**< IEEE half precision, rounded to nearest even: half the bytes. */
#define MOERT_KV_TYPE_BF16 2  /**< bfloat16, rounded to nearest even: half the bytes. */
#define MOERT_KV_TYPE_Q8_0 3  /**< Blocks of 32 values of a head with one f16 scale (GGML's q8_0): 8.5 bits a value.
                                   Needs a head dimension that is a multiple of 32. */

/** moert_session_options.flags: moert_session_generate() shifts the context when it is full (drops the oldest
 *  positions after the first n_keep, see moert_session_shift()) instead of stopping. @since 0.2.0 */
#define MOERT_SESSION_CONTEXT_SHIFT (1u << 0)

/** Options for moert_session_create(). Fill with moert_session_options_init(). */
typedef struct moert_session_options {
    uint32_t struct_size;  /**< sizeof(moert_session_options); set by moert_session_options_init(). */
    uint32_t flags;        /**< 0 or MOERT_SESSION_CONTEXT_SHIFT (until 0.2.0: reserved, must be 0). */
    int64_t  n_ctx;        /**< Tokens the KV cache holds; 0 = min(model context length, 4096). */
    int32_t  max_batch;    /**< Most tokens one moert_session_eval() call takes; 0 = 512. Larger inputs
                                 are split into chunks of this size internally. */
    /* 0.2.0 and later */
    int32_t  kv_type;      /**< MOERT_KV_TYPE_*; default MOERT_KV_TYPE_F32. @since 0.2.0 */
    int32_t  n_keep;       /**< Positions a context shift keeps at the start (a system prompt), in [0, n_ctx).
                                 Default 0. @since 0.2.0 */
} moert_session_options;

/**
 * Fills the first `size` bytes of `options` with the session option defaults and sets struct_size to min(size, the library's
 * sizeof): a host built against an older, smaller header is never written past its struct. Call it through
 * moert_session_options_init(), which passes sizeof for you. Threads: any. @since 0.1.0
 */
MOERT_API void moert_session_options_init_sized(moert_session_options *options, size_t size);

/** Fills `options` with defaults and sets `struct_size` (see moert_session_options_init_sized()). @since 0.1.0 */
static inline void moert_session_options_init(moert_session_options *options) { moert_session_options_init_sized(options, sizeof *options); }

/**
 * Creates a session on a model. [in] model  borrowed; it must outlive the session. [in] options  may be NULL.
 * [out] out_session  owned; free with moert_session_free(). Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT (also: an
 * unknown flag bit or kv_type, MOERT_KV_TYPE_Q8_0 with a head dimension that is not a multiple of 32, n_keep outside
 * [0, n_ctx)), MOERT_ERR_UNSUPPORTED (MOERT_SESSION_CONTEXT_SHIFT on a model that cannot shift, see
 * moert_session_shift()) or MOERT_ERR_OUT_OF_MEMORY. Threads: any (the model may be shared). @since 0.1.0
 */
MOERT_API moert_status moert_session_create(moert_model *model, const moert_session_options *options,
                                            moert_session **out_session);

/** Frees a session. NULL is a no-op. @since 0.1.0 */
MOERT_API void moert_session_free(moert_session *session);

/** Forgets every token evaluated so far (empties the KV cache). Returns MOERT_OK or MOERT_ERR_INVALID_ARGUMENT. @since 0.1.0 */
MOERT_API moert_status moert_session_reset(moert_session *session);

/** Number of tokens in the session's KV cache (positions already evaluated); 0 for NULL. @since 0.1.0 */
MOERT_API int64_t moert_session_n_past(const moert_session *session);

/** Capacity of the session's KV cache in tokens; 0 for NULL. @since 0.1.0 */
MOERT_API int64_t moert_session_n_ctx(const moert_session *session);

/** Bytes of the session's KV cache (keys and values of every layer: n_ctx positions for a full-attention layer, its
 * window for a sliding-window layer, which keeps a ring buffer of it); 0 for NULL. @since 0.2.0 */
MOERT_API int64_t moert_session_kv_bytes(const moert_session *session);

/**
 * Drops positions [n_keep, n_keep + n_discard) from the KV cache: the later positions move back by n_discard (their
 * keys rotated to their new positions, as llama.cpp's context shift), the first n_keep stay, n_past shrinks by
 * n_discard, and the last logits stay as they were. The kept tokens' keys and values were computed while the dropped
 * ones were visible, so what follows differs from evaluating the kept tokens afresh.
 * Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT (a range outside [0, n_past)) or MOERT_ERR_UNSUPPORTED (a model with
 * sliding-window layers, which keep only their window; the message says why).
 * Threads: one thread per session. @since 0.2.0
 */
MOERT_API moert_status moert_session_shift(moert_session *session, int64_t n_keep, int64_t n_discard);

/** Which logits moert_session_eval() writes. */
#define MOERT_LOGITS_NONE 0  /**< None: only fill the KV cache. */
#define MOERT_LOGITS_LAST 1  /**< The last position's: vocab_size floats. */
#define MOERT_LOGITS_ALL  2  /**< Every position's: n_tokens * vocab_size floats, row-major. */

/**
 * Evaluates `n_tokens` tokens that follow the ones already in the session (prefill when the session is empty,
 * incremental decode after it) and writes logits.
 * [in]  tokens          n_tokens ids in [0, vocab_size); borrowed.
 * [in]  n_tokens        at least 1.
 * [in]  logits_mode     MOERT_LOGITS_NONE, _LAST or _ALL.
 * [out] logits          host buffer for float32 logits; may be NULL only with MOERT_LOGITS_NONE.
 * [in]  logits_capacity number of floats `logits` holds.
 * Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT, MOERT_ERR_OUT_OF_RANGE (a bad token id: nothing is evaluated),
 * MOERT_ERR_CONTEXT_FULL (nothing is evaluated), MOERT_ERR_BUFFER_TOO_SMALL, MOERT_ERR_IO (a mapped checkpoint file
 * shrank since the load: nothing is evaluated), MOERT_ERR_PLUGIN or MOERT_ERR_NUMERIC (a non-finite result). After
 * any other failure the session must be reset before further use.
 * Threads: one thread per session. @since 0.1.0
 */
MOERT_API moert_status moert_session_eval(moert_session *session, const int32_t *tokens, size_t n_tokens,
                                          int32_t logits_mode, float *logits, size_t logits_capacity);

/**
 * Writes the logits of the last evaluated position: those the last evaluation made, or, when it asked for none
 * (MOERT_LOGITS_NONE, or a generation of 0 tokens), computed by evaluating that position again (its keys and values
 * are rewritten from the same inputs).
 * [out] logits, logits_capacity  host buffer of at least vocab_size floats.
 * Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT (NULL, or an empty session), MOERT_ERR_BUFFER_TOO_SMALL, or the errors
 * of moert_session_eval(). Threads: one thread per session. @since 0.2.0
 */
MOERT_API moert_status moert_session_last_logits(moert_session *session, float *logits, size_t logits_capacity);

/* ------------------------------------------------------------------------------------------------------------ */
/* Sampling and generation                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

/** Sampling parameters. Fill with moert_sampler_options_init(): the defaults are greedy. */
typedef struct moert_sampler_options {
    uint32_t struct_size;  /**< sizeof(moert_sampler_options); set by moert_sampler_options_init(). */
    float    temperature;  /**< 0 = greedy (argmax, lowest id on ties); > 0 divides the logits. Default 0. */
    int32_t  top_k;        /**< Keep the k most likely tokens; 0 = all. Default 0. */
    float    top_p;        /**< Keep the smallest set whose probability reaches p, in (0, 1]; 1 = all. Default 1. */
    uint64_t seed;         /**< Seed of the sampler's random stream; equal seeds give equal draws. Default 0. */
} moert_sampler_options;

/**
 * Fills the first `size` bytes of `options` with the sampler option (greedy) defaults and sets struct_size to min(size, the library's
 * sizeof): a host built against an older, smaller header is never written past its struct. Call it through
 * moert_sampler_options_init(), which passes sizeof for you. Threads: any. @since 0.1.0
 */
MOERT_API void moert_sampler_options_init_sized(moert_sampler_options *options, size_t size);

/** Fills `options` with defaults and sets `struct_size` (see moert_sampler_options_init_sized()). @since 0.1.0 */
static inline void moert_sampler_options_init(moert_sampler_options *options) { moert_sampler_options_init_sized(options, sizeof *options); }

/** A token sampler with its own seeded random stream. Threads: one thread at a time. */
typedef struct moert_sampler moert_sampler;

/**
 * Creates a sampler. [in] options  may be NULL (greedy). [out] out_sampler  owned; free with
 * moert_sampler_free(). Returns MOERT_OK or MOERT_ERR_INVALID_ARGUMENT (negative temperature or top_k,
 * top_p outside (0, 1], NaN). @since 0.1.0
 */
MOERT_API moert_status moert_sampler_create(const moert_sampler_options *options, moert_sampler **out_sampler);

/** Frees a sampler. NULL is a no-op. @since 0.1.0 */
MOERT_API void moert_sampler_free(moert_sampler *sampler);

/**
 * Draws one token from a row of logits. [in] logits  n_vocab floats, borrowed. [out] out_token.
 * Returns MOERT_OK or MOERT_ERR_INVALID_ARGUMENT (NULL pointers, n_vocab 0 or above INT32_MAX, logits all NaN).
 * Threads: one thread per sampler. @since 0.1.0
 */
MOERT_API moert_status moert_sampler_sample(moert_sampler *sampler, const float *logits, size_t n_vocab,
                                            int32_t *out_token);

/**
 * Called by moert_session_generate() for every new token, in order.
 * Return 0 to go on, anything else to stop after this token. `user_data` is the pointer given to the call.
 */
typedef int32_t (*moert_token_callback)(int32_t token, void *user_data);

/** Options for moert_session_generate(). Fill with moert_generate_options_init(). */
typedef struct moert_generate_options {
    uint32_t struct_size;                   /**< sizeof(moert_generate_options); set by the _init function. */
    int32_t  max_new_tokens;                /**< Most tokens to generate (>= 0). Default 16. */
    int32_t  ignore_eos;                    /**< 0 (default): stop after the model's EOS token is generated
                                                 (it is reported); 1: go on to max_new_tokens. */
    const moert_sampler_options *sampler;   /**< Sampling; NULL = greedy. Borrowed for the call. */
    /* 0.2.0 and later */
    const struct moert_tokenizer *tokenizer; /**< The model's tokenizer (see moert_tokenizer_load()), for stop strings
                                                 and the tokenizer's stop ids (moert_tokenizer_stop_token()); NULL:
                                                 neither. Borrowed for the call. @since 0.2.0 */
    const char *const *stop_strings;        /**< n_stop_strings UTF-8 strings (needs `tokenizer`): generation stops
                                                 after the token that completes one of them in the generated text
                                                 (that token is reported). NULL: none. Borrowed. @since 0.2.0 */
    int32_t  n_stop_strings;                /**< Number of stop_strings (>= 0). Default 0. @since 0.2.0 */
    int32_t  scmoe_weak_rank;               /**< -1 (default): off. r >= 0: SCMoE self-contrast decoding ("Unchosen
                                                 Experts Can Contribute Too", Shi et al. 2024): each token is chosen
                                                 from (1 + scmoe_beta) z_s - scmoe_beta z_w over the tokens with
                                                 p_s >= scmoe_alpha * max p_s (the others are excluded), where z_s are
                                                 the session's logits (its routers and top-k: the strong activation)
                                                 and z_w those of a weak activation that keeps, in every MoE layer,
                                                 only the expert at 0-based rank r of the built-in router's
                                                 probabilities. The weak pass has its own KV cache, made per call by
                                                 evaluating the session's tokens again (about doubling the cost).
                                                 Needs every MoE layer's built-in gate and a session without context
                                                 shift (MOERT_ERR_INVALID_ARGUMENT otherwise). @since 0.2.0 */
    float    scmoe_beta;                    /**< SCMoE's beta (finite, >= 0). Default 0.5. @since 0.2.0 */
    float    scmoe_alpha;                   /**< SCMoE's plausibility cutoff alpha, in (0, 1]. Default 0.1. @since 0.2.0 */
} moert_generate_options;

/**
 * Fills the first `size` bytes of `options` with the generation option defaults and sets struct_size to min(size, the library's
 * sizeof): a host built against an older, smaller header is never written past its struct. Call it through
 * moert_generate_options_init(), which passes sizeof for you. Threads: any. @since 0.1.0
 */
MOERT_API void moert_generate_options_init_sized(moert_generate_options *options, size_t size);

/** Fills `options` with defaults and sets `struct_size` (see moert_generate_options_init_sized()). @since 0.1.0 */
static inline void moert_generate_options_init(moert_generate_options *options) { moert_generate_options_init_sized(options, sizeof *options); }

/**
 * Evaluates `prompt` after the tokens already in the session, then generates up to max_new_tokens tokens,
 * feeding each back in — the last one too, so n_past grows by n_prompt + the number generated and a later call
 * with n_prompt = 0 continues the sequence (only a full context leaves the last token unevaluated). Every generated token is passed to `callback` (may be NULL) and stored in `out_tokens`
 * (may be NULL) while there is room.
 * [in]  prompt, n_prompt  tokens to evaluate first; n_prompt may be 0 when the session already holds tokens.
 * [in]  options           may be NULL for defaults.
 * [out] out_tokens, out_capacity  optional host buffer for the generated ids.
 * [out] out_n_generated   may be NULL; receives the number of tokens generated.
 * Returns MOERT_OK (also when the callback stops early or the context fills up after at least one token), or the
 * errors of moert_session_eval(). Threads: one thread per session. @since 0.1.0
 */
MOERT_API moert_status moert_session_generate(moert_session *session, const int32_t *prompt, size_t n_prompt,
                                              const moert_generate_options *options,
                                              moert_token_callback callback, void *user_data,
                                              int32_t *out_tokens, size_t out_capacity,
                                              size_t *out_n_generated);

/* ------------------------------------------------------------------------------------------------------------ */
/* Routing: per-session router overrides, traces and counters                                                    */
/* ------------------------------------------------------------------------------------------------------------ */

/**
 * Replaces the router of every MoE layer for this session only (the model is unchanged). `kind` names a registered
 * router kind ("topk", the architecture's own router, and "deepseek_v2", "deepseek_v3", "gpt_oss" are built in;
 * plugins add more, see moert_plugin.h); `params_json` is a JSON object of
 * parameters as in the model's "moert" section (may be NULL). kind NULL restores the model's own routers.
 * Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT (unknown kind, bad JSON) or the errors of the kind's create.
 * Threads: one thread per session. @since 0.1.0
 */
MOERT_API moert_status moert_session_set_router(moert_session *session, const char *kind, const char *params_json);

/**
 * Shortcut for the architecture's own router ("topk") with another k, keeping the rest of each layer's routing
 * (renormalisation, scaling, expert groups). top_k in [1, n_experts], and no more than the experts of the groups a
 * group-limited layer keeps; 0 restores the model's routers. Returns MOERT_OK or MOERT_ERR_INVALID_ARGUMENT.
 * Threads: one thread per session. @since 0.1.0
 */
MOERT_API moert_status moert_session_set_top_k(moert_session *session, int32_t top_k);

/**
 * Turns recording of the routing trace on (non-zero) or off. Counters are always kept.
 * Returns MOERT_OK or MOERT_ERR_INVALID_ARGUMENT. @since 0.1.0
 */
MOERT_API moert_status moert_session_set_trace(moert_session *session, int32_t enabled);

/** The routing trace: one record per (token, MoE layer), in evaluation order. Arrays are owned by the session. */
typedef struct moert_trace {
    uint32_t       struct_size;  /**< Set by the caller to sizeof(moert_trace). */
    int64_t        n_records;    /**< Records. */
    const int32_t *positions;    /**< [n_records] token position in the sequence. */
    const int32_t *layers;       /**< [n_records] decoder layer index. */
    const int32_t *tokens;       /**< [n_records] token id. */
    const int64_t *offsets;      /**< [n_records + 1] record r uses expert_ids/weights[offsets[r] .. offsets[r+1]). */
    const int32_t *expert_ids;   /**< Chosen experts. */
    const float   *weights;      /**< Their weights. */
} moert_trace;

/**
 * Borrows the trace: the records made while tracing was on, since the session was created or the trace last
 * cleared (turning tracing off and on again keeps earlier records). The arrays stay valid until the next
 * eval, generate, clear or free of the session. Returns MOERT_OK or MOERT_ERR_INVALID_ARGUMENT. @since 0.1.0
 */
MOERT_API moert_status moert_session_get_trace(moert_session *session, moert_trace *trace);

/** Empties the trace. Returns MOERT_OK or MOERT_ERR_INVALID_ARGUMENT. @since 0.1.0 */
MOERT_API moert_status moert_session_clear_trace(moert_session *session);

/**
 * Copies the per-layer expert counters: counts[m * n_experts + e] = tokens routed to expert e in the m-th MoE
 * layer since the session was created or its counters reset (n_experts = the largest layer's count).
 * [out] counts may be NULL to query the sizes; capacity in elements. [out] out_n_moe_layers, out_n_experts
 * may be NULL. Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT or MOERT_ERR_BUFFER_TOO_SMALL. @since 0.1.0
 */
MOERT_API moert_status moert_session_get_expert_counts(const moert_session *session, int64_t *counts, size_t capacity,
                                                       int32_t *out_n_moe_layers, int32_t *out_n_experts);

/** Zeroes the expert counters. Returns MOERT_OK or MOERT_ERR_INVALID_ARGUMENT. @since 0.1.0 */
MOERT_API moert_status moert_session_reset_counters(moert_session *session);

/**
 * The kind name of expert `expert` in the `moe_layer`-th MoE layer ("ffn" for the built-in SwiGLU experts),
 * owned by the model; NULL when out of range. @since 0.1.0
 */
MOERT_API const char *moert_model_expert_kind(const moert_model *model, int32_t moe_layer, int32_t expert);

/**
 * The router kind name of the `moe_layer`-th MoE layer ("topk" for the built-in), owned by the model; NULL when
 * out of range. @since 0.1.0
 */
MOERT_API const char *moert_model_router_kind(const moert_model *model, int32_t moe_layer);

/* ------------------------------------------------------------------------------------------------------------ */
/* Text: tokenizers, streaming detokenizers and chat templates                                                   */
/* ------------------------------------------------------------------------------------------------------------ */

/**
 * A tokenizer: Hugging Face `tokenizer.json` (encode and decode as the `tokenizers` library does), with the
 * model directory's `tokenizer_config.json` (special tokens, chat templates), `chat_template.jinja`,
 * `generation_config.json` and `config.json` (stop ids) when loaded from a directory.
 * Threads: immutable after load; share it freely between threads.
 */
typedef struct moert_tokenizer moert_tokenizer;

/**
 * Loads a tokenizer.
 * [in]  path           a model directory holding tokenizer.json, or the path of a tokenizer.json file. UTF-8, borrowed.
 * [out] out_tokenizer  owned; free with moert_tokenizer_free(); NULL on failure.
 * Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT, MOERT_ERR_IO (no tokenizer.json), MOERT_ERR_FORMAT (malformed file,
 * named) or MOERT_ERR_UNSUPPORTED (a tokenizer component moert does not implement, named). Threads: any. @since 0.2.0
 */
MOERT_API moert_status moert_tokenizer_load(const char *path, moert_tokenizer **out_tokenizer);

/** Frees a tokenizer. NULL is a no-op. Free detokenizers made from it first. @since 0.2.0 */
MOERT_API void moert_tokenizer_free(moert_tokenizer *tokenizer);

/** Number of token ids (1 + the largest id of the vocabulary and added tokens); 0 for NULL. @since 0.2.0 */
MOERT_API int32_t moert_tokenizer_n_vocab(const moert_tokenizer *tokenizer);

/** Flags of moert_tokenizer_encode(). */
#define MOERT_ENCODE_ADD_SPECIAL   0x1u  /**< Add the special tokens of the post-processor (e.g. a BOS first), as
                                              `encode(text, add_special_tokens=True)`. */
#define MOERT_ENCODE_PARSE_SPECIAL 0x2u  /**< Match special-token text written in the input (e.g. "<|im_start|>") as
                                              those tokens, as transformers does; without it such text is encoded as
                                              plain text. */

/**
 * Encodes UTF-8 text into token ids.
 * [in]  text, n_bytes  the text (need not be NUL-terminated; may be NULL when n_bytes is 0). Borrowed.
 * [in]  flags          MOERT_ENCODE_* bits; transformers' `encode(text)` is both.
 * [out] tokens, capacity  host buffer for the ids; may be NULL with capacity 0 to ask for the count.
 * [out] out_n_tokens   receives the number of ids (also when the buffer is too small); may be NULL.
 * Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT (invalid UTF-8, with its byte offset in the message; unknown flags) or
 * MOERT_ERR_BUFFER_TOO_SMALL (nothing written). Threads: any. @since 0.2.0
 */
MOERT_API moert_status moert_tokenizer_encode(const moert_tokenizer *tokenizer, const char *text, size_t n_bytes,
                                              uint32_t flags, int32_t *tokens, size_t capacity, size_t *out_n_tokens);

/** Flags of moert_tokenizer_decode() and moert_detokenizer_create(). */
#define MOERT_DECODE_SKIP_SPECIAL 0x1u  /**< Leave special tokens out, as `decode(ids, skip_special_tokens=True)`. */

/**
 * Decodes token ids into UTF-8 text, as `tokenizers`' `decode` (byte sequences that do not form valid UTF-8
 * become U+FFFD).
 * [in]  tokens, n_tokens  the ids; tokens may be NULL when n_tokens is 0. Borrowed.
 * [in]  flags             MOERT_DECODE_* bits.
 * [out] text, capacity    host buffer; receives the text and a terminating NUL. May be NULL with capacity 0.
 * [out] out_n_bytes       receives the text's length without the NUL (also when the buffer is too small); may be NULL.
 * Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT, MOERT_ERR_OUT_OF_RANGE (an id outside the vocabulary, named) or
 * MOERT_ERR_BUFFER_TOO_SMALL (capacity < length + 1; nothing written). Threads: any. @since 0.2.0
 */
MOERT_API moert_status moert_tokenizer_decode(const moert_tokenizer *tokenizer, const int32_t *tokens, size_t n_tokens,
                                              uint32_t flags, char *text, size_t capacity, size_t *out_n_bytes);

/**
 * The vocabulary entry of a token as tokenizer.json writes it (e.g. "Ġthe", "▁the", "<0x0A>", "<|im_end|>"), as
 * `convert_ids_to_tokens`: owned by the tokenizer, valid until it is freed; NULL when out of range. @since 0.2.0
 */
MOERT_API const char *moert_tokenizer_token_to_piece(const moert_tokenizer *tokenizer, int32_t token);

/** The id of a vocabulary entry or added token (the inverse of moert_tokenizer_token_to_piece()); -1 when none. @since 0.2.0 */
MOERT_API int32_t moert_tokenizer_piece_to_token(const moert_tokenizer *tokenizer, const char *piece);

/** Special ids from tokenizer_config.json (bos_token, eos_token, pad_token); -1 when the config names none or
 *  the tokenizer was loaded from a file. @since 0.2.0 */
MOERT_API int32_t moert_tokenizer_bos(const moert_tokenizer *tokenizer);
/** See moert_tokenizer_bos(). @since 0.2.0 */
MOERT_API int32_t moert_tokenizer_eos(const moert_tokenizer *tokenizer);
/** See moert_tokenizer_bos(). @since 0.2.0 */
MOERT_API int32_t moert_tokenizer_pad(const moert_tokenizer *tokenizer);

/**
 * Number of ids that end generation: the eos_token_id of generation_config.json (often several) and of config.json,
 * and the tokenizer's eos_token, without repeats, in that order. 0 for NULL. @since 0.2.0
 */
MOERT_API int32_t moert_tokenizer_n_stop_tokens(const moert_tokenizer *tokenizer);

/** The index-th id of moert_tokenizer_n_stop_tokens(); -1 when out of range. @since 0.2.0 */
MOERT_API int32_t moert_tokenizer_stop_token(const moert_tokenizer *tokenizer, int32_t index);

/**
 * Turns ids arriving one at a time into text without ever splitting a UTF-8 sequence: the texts it returns,
 * concatenated with what moert_detokenizer_flush() returns, equal moert_tokenizer_decode() of all the ids.
 * Threads: one thread at a time.
 */
typedef struct moert_detokenizer moert_detokenizer;

/**
 * Creates a detokenizer. [in] tokenizer  borrowed; it must outlive the detokenizer. [in] flags  MOERT_DECODE_* bits.
 * [out] out_detokenizer  owned; free with moert_detokenizer_free(). Returns MOERT_OK or MOERT_ERR_INVALID_ARGUMENT.
 * @since 0.2.0
 */
MOERT_API moert_status moert_detokenizer_create(const moert_tokenizer *tokenizer, uint32_t flags,
                                                moert_detokenizer **out_detokenizer);

/** Frees a detokenizer. NULL is a no-op. @since 0.2.0 */
MOERT_API void moert_detokenizer_free(moert_detokenizer *detokenizer);

/**
 * Adds one id and returns the text it completes, often empty (e.g. the first bytes of a character).
 * [out] out_text     receives NUL-terminated UTF-8, owned by the detokenizer and valid until its next call.
 * [out] out_n_bytes  receives its length; may be NULL.
 * Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT or MOERT_ERR_OUT_OF_RANGE (an id outside the vocabulary; the
 * detokenizer is unchanged). @since 0.2.0
 */
MOERT_API moert_status moert_detokenizer_push(moert_detokenizer *detokenizer, int32_t token, const char **out_text,
                                              size_t *out_n_bytes);

/**
 * Returns the text still held back (an incomplete sequence at the end becomes U+FFFD, as decode does) and starts
 * over, as a new detokenizer. Outputs as moert_detokenizer_push(). Returns MOERT_OK or MOERT_ERR_INVALID_ARGUMENT.
 * @since 0.2.0
 */
MOERT_API moert_status moert_detokenizer_flush(moert_detokenizer *detokenizer, const char **out_text,
                                               size_t *out_n_bytes);

/** One message of a conversation for moert_tokenizer_apply_chat_template(). */
typedef struct moert_chat_message {
    uint32_t    struct_size;  /**< sizeof(moert_chat_message); the array is read at the stride of the first
                                   element's struct_size. */
    const char *role;         /**< "system", "user", "assistant", ... UTF-8. */
    const char *content;      /**< UTF-8 text. */
} moert_chat_message;

/** Options of the chat template functions. Fill with moert_chat_options_init(). */
typedef struct moert_chat_options {
    uint32_t    struct_size;            /**< sizeof(moert_chat_options); set by moert_chat_options_init(). */
    int32_t     add_generation_prompt;  /**< Non-zero (default 1): end with the start of an assistant turn. */
    const char *template_name;          /**< Which of tokenizer_config.json's templates; NULL (default) = "default". */
    const char *variables_json;         /**< A JSON object of extra template variables (e.g. {"enable_thinking":
                                             false} or {"tools": [...]}); NULL (default) = none. */
} moert_chat_options;

/**
 * Fills the first `size` bytes of `options` with the chat option defaults and sets struct_size to min(size, the
 * library's sizeof). Call it through moert_chat_options_init(). Threads: any. @since 0.2.0
 */
MOERT_API void moert_chat_options_init_sized(moert_chat_options *options, size_t size);

/** Fills `options` with defaults and sets `struct_size` (see moert_chat_options_init_sized()). @since 0.2.0 */
static inline void moert_chat_options_init(moert_chat_options *options) { moert_chat_options_init_sized(options, sizeof *options); }

/**
 * Renders a conversation with the tokenizer's chat template as transformers' `apply_chat_template(messages,
 * tokenize=False, add_generation_prompt=...)` does (Jinja with trim_blocks and lstrip_blocks, the config's special
 * tokens as variables). Encode the result without MOERT_ENCODE_ADD_SPECIAL: the template writes them.
 * [in]  messages, n_messages  the conversation; borrowed.
 * [in]  options               may be NULL for defaults.
 * [out] text, capacity, out_n_bytes  as moert_tokenizer_decode().
 * Returns MOERT_OK, MOERT_ERR_INVALID_ARGUMENT (bad messages or options; the template's raise_exception, with its
 * message), MOERT_ERR_UNSUPPORTED (no chat template; a Jinja construct moert does not implement, named),
 * MOERT_ERR_FORMAT (a template that does not parse, with line and column) or MOERT_ERR_BUFFER_TOO_SMALL.
 * Threads: any. @since 0.2.0
 */
MOERT_API moert_status moert_tokenizer_apply_chat_template(const moert_tokenizer *tokenizer,
                                                           const moert_chat_message *messages, size_t n_messages,
                                                           const moert_chat_options *options, char *text,
                                                           size_t capacity, size_t *out_n_bytes);

/**
 * As moert_tokenizer_apply_chat_template(), with the conversation as a JSON array of message objects, which may
 * carry more than role and content (e.g. tool_calls), as transformers takes them. @since 0.2.0
 */
MOERT_API moert_status moert_tokenizer_apply_chat_template_json(const moert_tokenizer *tokenizer,
                                                                const char *messages_json,
                                                                const moert_chat_options *options, char *text,
                                                                size_t capacity, size_t *out_n_bytes);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOERT_H */
