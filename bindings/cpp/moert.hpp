// moert.hpp — header-only C++17 binding of the moert C API: RAII handles, exceptions, std containers.
//
// A thin layer over include/moert.h and the host-side part of include/moert_plugin.h: each method makes the C calls
// named in its comment, turns a failed status into a moert::Error and copies buffers into std::vector and
// std::string. It adds no behaviour of its own.
//
// Threads follow the C API: a Model or Tokenizer may be shared by any number of threads (and a Model by any number of
// Sessions); a Session, Sampler or Detokenizer is used by one thread at a time. The plugin functions may be called from any thread, except shutdown(), which needs
// every other moert call to have finished, as set_threads() and set_log_callback() do.
#ifndef MOERT_HPP
#define MOERT_HPP

#include <moert.h>
#include <moert_plugin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace moert {

/// A failed moert call: the status code (`MOERT_ERR_*`) and the library's message from moert_last_error().
class Error : public std::runtime_error {
public:
    /// Creates an error for `status` with the library's `message` (the status text when the message is empty).
    Error(moert_status status, const std::string &message)
        : std::runtime_error(message.empty() ? std::string(moert_status_string(status)) : message), status_(status) {}

    /// The status code the C call returned, one of the `MOERT_ERR_*` values.
    moert_status status() const noexcept { return status_; }

    /// The static English text of the status code (moert_status_string).
    const char *status_string() const noexcept { return moert_status_string(status_); }

private:
    moert_status status_;
};

namespace detail {

/// Throws moert::Error carrying this thread's last error when `status` is not MOERT_OK.
inline void check(moert_status status) {
    if (status != MOERT_OK) throw Error(status, moert_last_error());
}

/// Copies `count` elements at `data`, borrowed from the library, into a vector (empty for a count <= 0 or NULL).
template <class T>
std::vector<T> copy_array(const T *data, int64_t count) {
    if (count <= 0 || data == nullptr) return std::vector<T>();
    return std::vector<T>(data, data + count);
}

/// A name the library returns (static or model-owned storage) as an optional string; NULL becomes std::nullopt.
inline std::optional<std::string> optional_name(const char *name) {
    return name ? std::optional<std::string>(name) : std::nullopt;
}

/// `text` as a NUL-terminated C string for an argument named `what`; an empty text gives NULL when `empty_is_null`.
/// Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT) when the text holds a NUL byte: C would read it only up to there.
inline const char *c_string(const std::string &text, const char *what, bool empty_is_null = false) {
    if (text.find('\0') != std::string::npos) {
        throw Error(MOERT_ERR_INVALID_ARGUMENT, std::string(what) + " holds a NUL byte, which a C string cannot carry");
    }
    return empty_is_null && text.empty() ? nullptr : text.c_str();
}

/// Runs a C call that writes text and a NUL into a host buffer, `call(buffer, capacity, &length)`, first with
/// `capacity` bytes and, on MOERT_ERR_BUFFER_TOO_SMALL, once more with the length it reported. Returns the text by
/// its length, so a NUL inside it is kept. Throws moert::Error for any other failure.
template <class Call>
std::string read_text(Call &&call, size_t capacity) {
    std::string buffer(capacity, '\0');
    size_t length = 0;
    moert_status status = call(&buffer[0], buffer.size(), &length);
    if (status == MOERT_ERR_BUFFER_TOO_SMALL) {
        buffer.assign(length + 1, '\0');
        status = call(&buffer[0], buffer.size(), &length);
    }
    check(status);
    buffer.resize(length < buffer.size() ? length : buffer.size());
    return buffer;
}

/// A token id the C API gives as -1 when there is none, as an optional; std::nullopt for any negative id.
inline std::optional<int32_t> optional_id(int32_t token) {
    return token >= 0 ? std::optional<int32_t>(token) : std::nullopt;
}

}  // namespace detail

// MARK: - Library

/// The library's version text, "MAJOR.MINOR.PATCH" (moert_version); compare with MOERT_VERSION.
inline std::string version() { return moert_version(); }

/// The library's version number, MAJOR*1000000 + MINOR*1000 + PATCH (moert_version_number).
inline uint32_t version_number() { return moert_version_number(); }

/// The library's ABI version (moert_abi_version); a host should refuse to run when it differs from MOERT_ABI_VERSION.
inline uint32_t abi_version() { return moert_abi_version(); }

/// Sets the process-wide number of worker threads; 0 restores the default (online CPUs). Call while no evaluation
/// runs. Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT) for a negative count (moert_set_threads).
inline void set_threads(int32_t n_threads) { detail::check(moert_set_threads(n_threads)); }

/// The number of worker threads in effect, at least 1 (moert_get_threads).
inline int32_t get_threads() { return moert_get_threads(); }

// MARK: - Logging

/// Receives one log message: a MOERT_LOG_* level and one line of text without a newline, valid during the call.
using LogCallback = std::function<void(int32_t level, std::string_view message)>;

namespace detail {

/// The installed log callback. moert holds a pointer to the function `current` owns; at exit the destructor gives
/// moert its default log back before freeing it, so a late message never reaches a destroyed callback.
struct LogSink {
    std::unique_ptr<LogCallback> current;

    ~LogSink() {
        if (current) moert_set_log_callback(nullptr, nullptr);
    }
};

/// The process's one LogSink (an inline function's static: shared by every translation unit).
inline LogSink &log_sink() {
    static LogSink sink;
    return sink;
}

/// moert_log_callback: calls the installed function. No exception crosses into C: one the function throws is caught
/// here, and that message is dropped.
inline void log_trampoline(int32_t level, const char *message, void *user_data) noexcept {
    try {
        (*static_cast<const LogCallback *>(user_data))(level, message ? std::string_view(message) : std::string_view());
    } catch (...) {
        // Nowhere to report it: the call that logged is not the callback's caller and goes on.
    }
}

}  // namespace detail

/// Sends moert's log messages (its own warnings, such as an expert budget smaller than the experts one step needs,
/// and what plugins write with host->log) to `callback`, at every level, instead of stderr (moert_set_log_callback).
/// An empty callback (`nullptr`, `{}`) restores the default: "moert: <level>: <message>" lines on stderr for levels
/// up to the environment variable MOERT_LOG, or up to MOERT_LOG_WARN when it is unset.
/// `callback` runs on the thread whose moert call logs, possibly on several threads at once, and must not call moert.
/// An exception it throws is caught before it reaches C, and its message is dropped. The binding keeps `callback`
/// until it is replaced. Call this while no other moert call runs, as set_threads().
inline void set_log_callback(LogCallback callback) {
    detail::LogSink &sink = detail::log_sink();
    if (!callback) {
        moert_set_log_callback(nullptr, nullptr);
        sink.current.reset();
        return;
    }
    auto next = std::make_unique<LogCallback>(std::move(callback));
    moert_set_log_callback(&detail::log_trampoline, next.get());
    sink.current = std::move(next);  // frees the previous callback, which moert no longer calls
}

// MARK: - Plugins

/// Loads a plugin library and registers the router and expert kinds it provides (moert_plugin_load). `path_or_name`
/// is a file path, or a bare name such as "gru" looked up as `libmoert_<name>.so` and `<name>` in each directory of
/// MOERT_PLUGIN_PATH, then next to libmoert.so, then in its `moert/plugins` subdirectory. Loading a library that is
/// already loaded does nothing. Models load the plugins their config names by themselves; this is for
/// Session::set_router() with a kind no model loaded.
/// Throws moert::Error: MOERT_ERR_IO (not found or refused by the loader; the message lists the paths tried),
/// MOERT_ERR_PLUGIN (no entry symbol, a wrong ABI version, a failed init, a kind registered twice) or
/// MOERT_ERR_INVALID_ARGUMENT (an empty name).
inline void load_plugin(const std::string &path_or_name) { detail::check(moert_plugin_load(path_or_name.c_str())); }

/// Names of the registered kinds of `kind`, MOERT_KIND_ROUTER or MOERT_KIND_EXPERT, built-in ones first ("topk",
/// "ffn"); empty for any other value (moert_kind_count, moert_kind_name).
inline std::vector<std::string> kinds(int32_t kind) {
    std::vector<std::string> names;
    int32_t count = moert_kind_count(kind);
    for (int32_t i = 0; i < count; i++) {
        // NULL when another thread unregistered kinds (moert_shutdown) between the two calls.
        if (const char *name = moert_kind_name(kind, i)) names.emplace_back(name);
    }
    return names;
}

/// Registers a router kind from the host process itself, without a shared library (moert_register_router).
/// `ops` is borrowed, not copied: the table and everything it points to (name, functions) must stay valid until
/// shutdown(), so pass a table with static storage. Its functions are called from moert's worker threads and must
/// not let an exception escape: catch everything, call host->set_error() and return a status.
/// Throws moert::Error: MOERT_ERR_PLUGIN (a wrong abi_version or struct_size, a missing function, a name outside
/// [a-z0-9_.-]+ or already registered).
inline void register_router(const moert_router_ops &ops) { detail::check(moert_register_router(&ops)); }

/// Deleted: a temporary table would be gone long before moert stops using it (see register_router()).
void register_router(const moert_router_ops &&) = delete;

/// Registers an expert kind from the host process itself (moert_register_expert); as register_router(), the table
/// `ops` must stay valid until shutdown(). Throws moert::Error (MOERT_ERR_PLUGIN: a bad table or a duplicate name).
inline void register_expert(const moert_expert_ops &ops) { detail::check(moert_register_expert(&ops)); }

/// Deleted: a temporary table would be gone long before moert stops using it (see register_expert()).
void register_expert(const moert_expert_ops &&) = delete;

/// Unregisters every plugin and host-registered kind and unloads every plugin library (moert_shutdown). Call it once
/// no Model is alive and no other moert call runs. Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT while models are
/// still loaded; nothing is unloaded then).
inline void shutdown() { detail::check(moert_shutdown()); }

// MARK: - Options

namespace detail {

/// Fills a C options struct with the library's defaults (the header's moert_*_options_init).
inline void init_options(moert_model_options *o) { moert_model_options_init(o); }
inline void init_options(moert_session_options *o) { moert_session_options_init(o); }
inline void init_options(moert_sampler_options *o) { moert_sampler_options_init(o); }
inline void init_options(moert_generate_options *o) { moert_generate_options_init(o); }
inline void init_options(moert_chat_options *o) { moert_chat_options_init(o); }

/// The library's defaults for the C options struct `Options`, read once: the binding's defaults come from here rather
/// than repeating the numbers of moert.h.
template <class Options>
const Options &defaults() {
    static const Options value = [] {
        Options o;
        init_options(&o);
        return o;
    }();
    return value;
}

}  // namespace detail

/// Model loading options; the defaults are those of moert_model_options_init(), read from the library. The first
/// three fields follow the C struct's order, so `ModelOptions{max_context, expert_budget_bytes, expert_budget_percent}`
/// works too; `flags` comes last (it is first in C) so that such an initialiser keeps its meaning.
struct ModelOptions {
    /// Cap on the context length sessions may ask for; 0 = the model's own.
    int64_t max_context = detail::defaults<moert_model_options>().max_context;
    /// Cap on resident routed-expert weights in their compute layout (F16 and BF16 kept as stored, float32 otherwise),
    /// in bytes; 0 = no cap. Experts are materialised on first use and evicted least-recently-used beyond the cap;
    /// results do not change.
    int64_t expert_budget_bytes = detail::defaults<moert_model_options>().expert_budget_bytes;
    /// The cap as a share of all routed-expert bytes, in (0, 100]; 0 = unused. At most one of the two budget fields
    /// may be set.
    float expert_budget_percent = detail::defaults<moert_model_options>().expert_budget_percent;
    /// MOERT_MODEL_* bits; 0 by default, and unknown bits are refused. MOERT_MODEL_TRUST_PLUGIN_PATHS lets the
    /// checkpoint's moert section name plugin libraries by path (relative to the model directory); without it a model
    /// names plugins by bare name only and a path is refused with MOERT_ERR_PLUGIN, since loading a library runs its
    /// code. MOERT_MODEL_NO_MMAP reads the safetensors files into memory instead of mapping them, so that a file
    /// changed or truncated afterwards cannot affect the model.
    uint32_t flags = detail::defaults<moert_model_options>().flags;

    /// The C struct, filled by moert_model_options_init() and then with these values.
    moert_model_options to_c() const {
        moert_model_options o;
        moert_model_options_init(&o);
        o.flags = flags;
        o.max_context = max_context;
        o.expert_budget_bytes = expert_budget_bytes;
        o.expert_budget_percent = expert_budget_percent;
        return o;
    }
};

/// Sampling parameters; the defaults are those of moert_sampler_options_init(), read from the library: greedy.
struct SamplerOptions {
    /// 0 = greedy (argmax, lowest id on ties); > 0 divides the logits.
    float temperature = detail::defaults<moert_sampler_options>().temperature;
    /// Keep the k most likely tokens; 0 = all.
    int32_t top_k = detail::defaults<moert_sampler_options>().top_k;
    /// Keep the smallest set whose probability reaches p, in (0, 1]; 1 = all.
    float top_p = detail::defaults<moert_sampler_options>().top_p;
    /// Seed of the random stream; equal seeds give equal draws.
    uint64_t seed = detail::defaults<moert_sampler_options>().seed;

    /// The C struct, filled by moert_sampler_options_init() and then with these values.
    moert_sampler_options to_c() const {
        moert_sampler_options o;
        moert_sampler_options_init(&o);
        o.temperature = temperature;
        o.top_k = top_k;
        o.top_p = top_p;
        o.seed = seed;
        return o;
    }
};

class Tokenizer;

/// Generation parameters; the defaults are those of moert_generate_options_init(), read from the library.
struct GenerateOptions {
    /// Most tokens to generate (>= 0).
    int32_t max_new_tokens = detail::defaults<moert_generate_options>().max_new_tokens;
    /// false: stop after one of the model's EOS tokens, or of `tokenizer`'s stop ids, is generated (it is reported);
    /// true: go on to max_new_tokens (stop strings still apply).
    bool ignore_eos = detail::defaults<moert_generate_options>().ignore_eos != 0;
    /// How tokens are chosen; the default, SamplerOptions(), is greedy, as a NULL sampler is in C.
    SamplerOptions sampler;
    /// The model's tokenizer, borrowed for the generate call: its stop ids (Tokenizer::stop_token_ids()) end generation
    /// too, unless ignore_eos, and stop_strings need it. nullptr (the default, NULL in C): neither.
    const Tokenizer *tokenizer = nullptr;
    /// Strings that end generation after the token that completes one of them in the generated text (the text with
    /// special tokens, as a Detokenizer gives it); that token is reported. Empty strings are ignored. They need
    /// `tokenizer`. Empty by default.
    std::vector<std::string> stop_strings;
    /// -1 (the default): off; r >= 0: SCMoE self-contrast decoding against a weak pass that keeps the expert at
    /// 0-based rank r alone in every MoE layer (moert_generate_options.scmoe_weak_rank).
    int32_t scmoe_weak_rank = detail::defaults<moert_generate_options>().scmoe_weak_rank;
    /// SCMoE's beta (moert_generate_options.scmoe_beta).
    float scmoe_beta = detail::defaults<moert_generate_options>().scmoe_beta;
    /// SCMoE's plausibility cutoff alpha (moert_generate_options.scmoe_alpha).
    float scmoe_alpha = detail::defaults<moert_generate_options>().scmoe_alpha;
};

/// Facts about a loaded model (moert_model_info), with the architecture copied into a std::string.
struct ModelInfo {
    std::string architecture;       ///< e.g. "MixtralForCausalLM".
    int32_t vocab_size = 0;         ///< Number of token ids (logits per position).
    int32_t hidden_size = 0;        ///< Width of the residual stream.
    int32_t n_layers = 0;           ///< Decoder layers.
    int32_t n_moe_layers = 0;       ///< Layers whose MLP is a mixture of experts.
    int32_t n_experts = 0;          ///< Routed experts per MoE layer.
    int32_t n_experts_per_tok = 0;  ///< Top-k of the built-in router.
    int32_t n_heads = 0;            ///< Attention (query) heads.
    int32_t n_kv_heads = 0;         ///< Key/value heads.
    int32_t head_dim = 0;           ///< Width of one attention head.
    int32_t dtype = 0;              ///< MOERT_DTYPE_* of the weights on disk.
    int64_t context_length = 0;     ///< Longest context a session may use (after max_context).
    int64_t n_params = 0;           ///< Number of parameters.
    int64_t file_bytes = 0;         ///< Bytes of safetensors files mapped.
    int64_t weight_bytes = 0;       ///< Bytes held beyond the mapping: weights converted at load, resident experts.
    int32_t bos_token_id = -1;      ///< -1 when the config names none.
    int32_t eos_token_id = -1;      ///< -1 when the config names none (the first when it names several).
};

/// Memory use of a model (moert_memory_stats), with the allocator name copied into a std::string.
struct MemoryStats {
    std::string allocator;              ///< Expert memory: "jemalloc (in process)", "jemalloc (loaded)" or "aligned malloc".
    int64_t expert_bytes_total = 0;     ///< All routed experts in their compute layout.
    int64_t expert_bytes_resident = 0;  ///< Routed experts materialised now.
    int64_t expert_budget_bytes = 0;    ///< The residency cap; 0 = none.
    int64_t mapped_bytes = 0;           ///< Safetensors files mapped.
    int64_t converted_bytes = 0;        ///< Other weights converted or copied at load (small F16/BF16 ones widened).
    int64_t arena_active_bytes = 0;     ///< jemalloc's active bytes of the model's arena; -1 without jemalloc.
    int64_t arena_mapped_bytes = 0;     ///< jemalloc's mapped bytes of the arena; -1 without jemalloc.
    int64_t hits = 0;                   ///< Expert uses that found the weights resident.
    int64_t misses = 0;                 ///< Expert uses that materialised them.
    int64_t bytes_loaded = 0;           ///< Bytes materialised so far.
    int64_t evictions = 0;              ///< Experts evicted under the budget.
};

/// A session's routing trace (moert_trace), copied out of the arrays the session lends: one record per (token,
/// MoE layer), in evaluation order. Record r chose expert_ids[offsets[r] .. offsets[r+1]) with the weights at the
/// same indices.
struct Trace {
    std::vector<int32_t> positions;   ///< [size()] the token's position in the sequence.
    std::vector<int32_t> layers;      ///< [size()] the decoder layer index.
    std::vector<int32_t> tokens;      ///< [size()] the token id.
    std::vector<int64_t> offsets{0};  ///< [size() + 1] where each record's experts start; offsets[0] is 0.
    std::vector<int32_t> expert_ids;  ///< [offsets.back()] the chosen experts.
    std::vector<float> weights;       ///< [offsets.back()] their combination weights.

    /// Number of records.
    size_t size() const noexcept { return positions.size(); }

    /// True when no record was traced.
    bool empty() const noexcept { return positions.empty(); }
};

/// A session's per-layer expert counters (moert_session_get_expert_counts): counts[m * n_experts + e] is the number
/// of tokens routed to expert e in the m-th MoE layer since the session was created or its counters reset.
struct ExpertCounts {
    int32_t n_moe_layers = 0;     ///< Rows: the model's MoE layers.
    int32_t n_experts = 0;        ///< Columns: the experts of the largest layer.
    std::vector<int64_t> counts;  ///< [n_moe_layers * n_experts], row-major.

    /// The count of expert `expert` in the `moe_layer`-th MoE layer.
    /// Throws std::out_of_range when either index is outside the table.
    int64_t at(int32_t moe_layer, int32_t expert) const {
        if (moe_layer < 0 || moe_layer >= n_moe_layers || expert < 0 || expert >= n_experts) {
            throw std::out_of_range("ExpertCounts::at(" + std::to_string(moe_layer) + ", " + std::to_string(expert) +
                                    ") outside " + std::to_string(n_moe_layers) + " x " + std::to_string(n_experts));
        }
        return counts[static_cast<size_t>(moe_layer) * static_cast<size_t>(n_experts) + static_cast<size_t>(expert)];
    }
};

// MARK: - Model

/// A loaded model (moert_model): immutable, shareable between threads. Move-only; frees the model when destroyed.
/// Every Session created from it must be destroyed first.
class Model {
public:
    /// Loads a Hugging Face MoE checkpoint directory (moert_model_load). `max_context` caps the context length
    /// sessions may ask for; 0 (the default of moert_model_options_init()) keeps the model's own.
    /// Throws moert::Error (MOERT_ERR_IO, _FORMAT, _UNSUPPORTED, _INVALID_ARGUMENT, _OUT_OF_MEMORY).
    explicit Model(const std::string &path, int64_t max_context = detail::defaults<moert_model_options>().max_context)
        : Model(path, ModelOptions{max_context}) {}

    /// Loads a checkpoint directory with `options` (moert_model_load): a context cap, an expert residency budget and
    /// the MOERT_MODEL_* flags. Throws moert::Error as Model(path, max_context); MOERT_ERR_INVALID_ARGUMENT also for a
    /// negative budget, a percentage above 100, both budget fields set or unknown flag bits; MOERT_ERR_PLUGIN for a
    /// plugin named by path without MOERT_MODEL_TRUST_PLUGIN_PATHS.
    explicit Model(const std::string &path, const ModelOptions &options) {
        moert_model_options c = options.to_c();
        detail::check(moert_model_load(path.c_str(), &c, &handle_));
    }

    Model(const Model &) = delete;
    Model &operator=(const Model &) = delete;

    /// Takes over `other`'s model; `other` is left empty.
    Model(Model &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}

    /// Frees this model and takes over `other`'s; `other` is left empty.
    Model &operator=(Model &&other) noexcept {
        if (this != &other) {
            moert_model_free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }

    /// Frees the model (moert_model_free).
    ~Model() { moert_model_free(handle_); }

    /// Describes the model (moert_model_get_info). Throws moert::Error when the Model is empty (moved from).
    ModelInfo info() const {
        moert_model_info c{};
        c.struct_size = sizeof c;
        detail::check(moert_model_get_info(handle_, &c));
        ModelInfo i;
        i.architecture = c.architecture ? c.architecture : "";
        i.vocab_size = c.vocab_size;
        i.hidden_size = c.hidden_size;
        i.n_layers = c.n_layers;
        i.n_moe_layers = c.n_moe_layers;
        i.n_experts = c.n_experts;
        i.n_experts_per_tok = c.n_experts_per_tok;
        i.n_heads = c.n_heads;
        i.n_kv_heads = c.n_kv_heads;
        i.head_dim = c.head_dim;
        i.dtype = c.dtype;
        i.context_length = c.context_length;
        i.n_params = c.n_params;
        i.file_bytes = c.file_bytes;
        i.weight_bytes = c.weight_bytes;
        i.bos_token_id = c.bos_token_id;
        i.eos_token_id = c.eos_token_id;
        return i;
    }

    /// The ids generation stops at: generation_config.json's eos_token_id, then config.json's not yet listed
    /// (moert_model_eos_token_count, moert_model_eos_token); empty when they name none or the Model is empty.
    std::vector<int32_t> eos_tokens() const {
        std::vector<int32_t> ids;
        int32_t count = moert_model_eos_token_count(handle_);
        for (int32_t i = 0; i < count; i++) ids.push_back(moert_model_eos_token(handle_, i));
        return ids;
    }

    /// How tensor `name` of the checkpoint is stored: MOERT_DTYPE_F32, _F16, _BF16, _Q8_0, _Q4_0, _Q3_0 or _Q4_K; -1
    /// when the checkpoint holds no such weight or the Model is empty (moert_model_tensor_dtype).
    int32_t tensor_dtype(const std::string &name) const {
        if (!handle_ || name.find('\0') != std::string::npos) return -1;
        return moert_model_tensor_dtype(handle_, name.c_str());
    }

    /// Memory statistics: expert residency, the budget, mappings, the allocator and its counters
    /// (moert_model_get_memory_stats). Throws moert::Error when the Model is empty.
    MemoryStats memory_stats() const {
        moert_memory_stats c{};
        c.struct_size = sizeof c;
        detail::check(moert_model_get_memory_stats(handle_, &c));
        MemoryStats m;
        m.allocator = c.allocator ? c.allocator : "";
        m.expert_bytes_total = c.expert_bytes_total;
        m.expert_bytes_resident = c.expert_bytes_resident;
        m.expert_budget_bytes = c.expert_budget_bytes;
        m.mapped_bytes = c.mapped_bytes;
        m.converted_bytes = c.converted_bytes;
        m.arena_active_bytes = c.arena_active_bytes;
        m.arena_mapped_bytes = c.arena_mapped_bytes;
        m.hits = c.hits;
        m.misses = c.misses;
        m.bytes_loaded = c.bytes_loaded;
        m.evictions = c.evictions;
        return m;
    }

    /// Resident routed experts per MoE layer: element m for the m-th MoE layer (moert_model_get_resident_experts).
    /// Throws moert::Error when the Model is empty.
    std::vector<int32_t> resident_experts() const {
        int32_t n_moe_layers = 0;
        detail::check(moert_model_get_resident_experts(handle_, nullptr, 0, &n_moe_layers));
        std::vector<int32_t> counts(n_moe_layers > 0 ? static_cast<size_t>(n_moe_layers) : 0);
        detail::check(moert_model_get_resident_experts(handle_, counts.data(), counts.size(), &n_moe_layers));
        return counts;
    }

    /// The router kind of the `moe_layer`-th MoE layer ("topk" for the built-in) (moert_model_router_kind);
    /// std::nullopt when `moe_layer` is out of range or the Model is empty.
    std::optional<std::string> router_kind(int32_t moe_layer) const {
        return detail::optional_name(moert_model_router_kind(handle_, moe_layer));
    }

    /// The kind of expert `expert` in the `moe_layer`-th MoE layer ("ffn" for the built-in SwiGLU experts)
    /// (moert_model_expert_kind); std::nullopt when either index is out of range or the Model is empty.
    std::optional<std::string> expert_kind(int32_t moe_layer, int32_t expert) const {
        return detail::optional_name(moert_model_expert_kind(handle_, moe_layer, expert));
    }

    /// The C handle (owned by this object; NULL once moved from), for calls this binding does not wrap.
    moert_model *get() const noexcept { return handle_; }

    /// True while the object holds a model.
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    moert_model *handle_ = nullptr;
};

// MARK: - Text

/// One message of a conversation for Tokenizer::apply_chat_template() (moert_chat_message).
struct ChatMessage {
    std::string role;     ///< "system", "user", "assistant", ... UTF-8.
    std::string content;  ///< The message's text, UTF-8.
};

class Detokenizer;

/// A Hugging Face tokenizer (moert_tokenizer): encodes and decodes as the `tokenizers` library does, and renders chat
/// templates as transformers' `apply_chat_template` does. Immutable after load: share it freely between threads.
/// Move-only; frees the tokenizer when destroyed. Every Detokenizer made from it must be destroyed first.
///
/// A model's tokenizer is the Tokenizer of its directory: `moert::Tokenizer tokenizer(model_dir)`. It is independent
/// of the Model, which neither loads nor keeps one; either may be destroyed first.
class Tokenizer {
public:
    /// Loads a tokenizer (moert_tokenizer_load). `path` is a model directory holding tokenizer.json, whose
    /// tokenizer_config.json (special tokens, chat templates), chat_template.jinja, generation_config.json and
    /// config.json (stop ids) are read too, or the path of a tokenizer.json file (then there are no special ids, stop
    /// ids or chat templates).
    /// Throws moert::Error: MOERT_ERR_IO (no tokenizer.json), MOERT_ERR_FORMAT (a malformed file, named),
    /// MOERT_ERR_UNSUPPORTED (a tokenizer component moert does not implement, named), MOERT_ERR_INVALID_ARGUMENT.
    explicit Tokenizer(const std::string &path) { detail::check(moert_tokenizer_load(path.c_str(), &handle_)); }

    Tokenizer(const Tokenizer &) = delete;
    Tokenizer &operator=(const Tokenizer &) = delete;

    /// Takes over `other`'s tokenizer; `other` is left empty. Detokenizers made from `other` now depend on this object.
    Tokenizer(Tokenizer &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}

    /// Frees this tokenizer and takes over `other`'s; `other` is left empty. Detokenizers of the tokenizer this object
    /// held must have been destroyed.
    Tokenizer &operator=(Tokenizer &&other) noexcept {
        if (this != &other) {
            moert_tokenizer_free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }

    /// Frees the tokenizer (moert_tokenizer_free).
    ~Tokenizer() { moert_tokenizer_free(handle_); }

    /// Number of token ids: 1 + the largest id of the vocabulary and added tokens (moert_tokenizer_n_vocab); 0 when
    /// the Tokenizer is empty.
    int32_t n_vocab() const noexcept { return moert_tokenizer_n_vocab(handle_); }

    /// Encodes UTF-8 text into token ids, as `tokenizers`' `encode` (moert_tokenizer_encode). `text` is taken by its
    /// length: it need not be NUL-terminated, and a NUL inside it is encoded like any other character.
    /// `add_special_tokens` adds the special tokens of the post-processor (e.g. a BOS first), as transformers'
    /// `encode(text, add_special_tokens=True)` (transformers' default; off here, as in `moert tokenize`).
    /// `parse_special_tokens` matches special-token text written in the input (e.g. "<|im_start|>") as those tokens,
    /// as transformers does; false encodes such text as plain text.
    /// Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT: invalid UTF-8, the message giving the byte offset of the first
    /// invalid byte; an empty Tokenizer).
    std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false,
                                bool parse_special_tokens = true) const {
        uint32_t flags = (add_special_tokens ? MOERT_ENCODE_ADD_SPECIAL : 0u) |
                         (parse_special_tokens ? MOERT_ENCODE_PARSE_SPECIAL : 0u);
        // Most tokenizers give at most one id per byte plus a few special ones; a larger count is asked again.
        std::vector<int32_t> ids(text.size() + 16);
        size_t count = 0;
        moert_status status = moert_tokenizer_encode(handle_, text.data(), text.size(), flags, ids.data(), ids.size(), &count);
        if (status == MOERT_ERR_BUFFER_TOO_SMALL) {
            ids.resize(count);
            status = moert_tokenizer_encode(handle_, text.data(), text.size(), flags, ids.data(), ids.size(), &count);
        }
        detail::check(status);
        ids.resize(count < ids.size() ? count : ids.size());
        return ids;
    }

    /// Decodes token ids into UTF-8 text, as `tokenizers`' `decode` (moert_tokenizer_decode): byte sequences that do not
    /// form valid UTF-8 become U+FFFD. The text may hold NUL bytes (a token of byte 0); size() counts them.
    /// `skip_special_tokens` leaves special tokens out, as `decode(ids, skip_special_tokens=True)`.
    /// Throws moert::Error (MOERT_ERR_OUT_OF_RANGE: an id outside the vocabulary, named; MOERT_ERR_INVALID_ARGUMENT
    /// for an empty Tokenizer).
    std::string decode(const std::vector<int32_t> &ids, bool skip_special_tokens = false) const {
        uint32_t flags = skip_special_tokens ? MOERT_DECODE_SKIP_SPECIAL : 0u;
        return detail::read_text(
            [&](char *text, size_t capacity, size_t *length) {
                return moert_tokenizer_decode(handle_, ids.data(), ids.size(), flags, text, capacity, length);
            },
            16 * ids.size() + 64);
    }

    /// A new Detokenizer over this tokenizer (see Detokenizer): ids in one at a time, text out without broken UTF-8.
    Detokenizer detokenizer(bool skip_special_tokens = false) const &;

    /// Deleted: the detokenizer would outlive the temporary tokenizer it borrows.
    Detokenizer detokenizer(bool skip_special_tokens = false) const && = delete;

    /// The vocabulary entry of `token` as tokenizer.json writes it (e.g. "Ġthe", "▁the", "<0x0A>", "<|im_end|>"), as
    /// transformers' `convert_ids_to_tokens` (moert_tokenizer_token_to_piece); std::nullopt when the id is out of
    /// range or the Tokenizer is empty.
    std::optional<std::string> token_to_piece(int32_t token) const {
        return detail::optional_name(moert_tokenizer_token_to_piece(handle_, token));
    }

    /// The id of a vocabulary entry or added token, the inverse of token_to_piece() (moert_tokenizer_piece_to_token);
    /// std::nullopt when there is none or the Tokenizer is empty. Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT) when
    /// `piece` holds a NUL byte, which the C call cannot receive.
    std::optional<int32_t> piece_to_token(const std::string &piece) const {
        return detail::optional_id(moert_tokenizer_piece_to_token(handle_, detail::c_string(piece, "piece")));
    }

    /// The id of tokenizer_config.json's bos_token (moert_tokenizer_bos); std::nullopt when it names none, the
    /// tokenizer was loaded from a tokenizer.json file or the Tokenizer is empty.
    std::optional<int32_t> bos_token_id() const noexcept { return detail::optional_id(moert_tokenizer_bos(handle_)); }

    /// The id of tokenizer_config.json's eos_token (moert_tokenizer_eos), or std::nullopt as bos_token_id().
    std::optional<int32_t> eos_token_id() const noexcept { return detail::optional_id(moert_tokenizer_eos(handle_)); }

    /// The id of tokenizer_config.json's pad_token (moert_tokenizer_pad), or std::nullopt as bos_token_id().
    std::optional<int32_t> pad_token_id() const noexcept { return detail::optional_id(moert_tokenizer_pad(handle_)); }

    /// The ids that end generation: the eos_token_id of generation_config.json (often several) and of config.json,
    /// then the eos_token, without repeats (moert_tokenizer_n_stop_tokens, moert_tokenizer_stop_token); empty for a
    /// tokenizer loaded from a file or an empty Tokenizer. GenerateOptions::tokenizer makes generation stop at them.
    std::vector<int32_t> stop_token_ids() const {
        std::vector<int32_t> ids;
        int32_t count = moert_tokenizer_n_stop_tokens(handle_);
        for (int32_t i = 0; i < count; i++) {
            int32_t id = moert_tokenizer_stop_token(handle_, i);
            if (id >= 0) ids.push_back(id);
        }
        return ids;
    }

    /// Renders a conversation with the tokenizer's chat template as transformers' `apply_chat_template(messages,
    /// tokenize=False, add_generation_prompt=...)` does (moert_tokenizer_apply_chat_template). Encode the result with
    /// add_special_tokens false: the template writes the special tokens itself.
    /// `add_generation_prompt` ends the text with the start of an assistant turn; its default is that of
    /// moert_chat_options_init(), true (transformers' is false). `template_name` picks one of tokenizer_config.json's
    /// named templates; empty (the default) passes NULL: "default", or "tool_use" when the variables hold tools, as
    /// transformers chooses. `variables_json` is a JSON object of further template variables (e.g.
    /// {"enable_thinking": false} or {"tools": [...]}); empty (the default) passes none.
    /// Throws moert::Error: MOERT_ERR_INVALID_ARGUMENT (bad messages or options, a role or content holding a NUL
    /// byte; the template's raise_exception, with its message), MOERT_ERR_UNSUPPORTED (no chat template, or none of
    /// that name; a Jinja construct moert does not implement, named), MOERT_ERR_FORMAT (a template that does not parse,
    /// with line and column).
    std::string apply_chat_template(const std::vector<ChatMessage> &messages,
                                    bool add_generation_prompt = detail::defaults<moert_chat_options>().add_generation_prompt != 0,
                                    const std::string &template_name = std::string(),
                                    const std::string &variables_json = std::string()) const {
        std::vector<moert_chat_message> list;
        list.reserve(messages.size());
        size_t bytes = 0;
        for (const ChatMessage &m : messages) {
            list.push_back(moert_chat_message{sizeof(moert_chat_message), detail::c_string(m.role, "ChatMessage::role"),
                                              detail::c_string(m.content, "ChatMessage::content")});
            bytes += m.role.size() + m.content.size();
        }
        moert_chat_options o = chat_options(add_generation_prompt, template_name, variables_json);
        return detail::read_text(
            [&](char *text, size_t capacity, size_t *length) {
                return moert_tokenizer_apply_chat_template(handle_, list.data(), list.size(), &o, text, capacity, length);
            },
            2 * bytes + 4096);
    }

    /// As apply_chat_template(), with the conversation as a JSON array of message objects, which may carry more than
    /// role and content (e.g. tool_calls), as transformers takes them (moert_tokenizer_apply_chat_template_json).
    /// Throws moert::Error as apply_chat_template(); MOERT_ERR_INVALID_ARGUMENT also for text that is not a JSON array
    /// of objects, or that holds a NUL byte.
    std::string apply_chat_template_json(std::string_view messages_json,
                                         bool add_generation_prompt = detail::defaults<moert_chat_options>().add_generation_prompt != 0,
                                         const std::string &template_name = std::string(),
                                         const std::string &variables_json = std::string()) const {
        const std::string messages(messages_json);
        const char *c_messages = detail::c_string(messages, "messages_json");
        moert_chat_options o = chat_options(add_generation_prompt, template_name, variables_json);
        return detail::read_text(
            [&](char *text, size_t capacity, size_t *length) {
                return moert_tokenizer_apply_chat_template_json(handle_, c_messages, &o, text, capacity, length);
            },
            2 * messages.size() + 4096);
    }

    /// The C handle (owned by this object; NULL once moved from), for calls this binding does not wrap.
    moert_tokenizer *get() const noexcept { return handle_; }

    /// True while the object holds a tokenizer.
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    /// The C chat options, filled by moert_chat_options_init() and then with these values; the strings are borrowed.
    static moert_chat_options chat_options(bool add_generation_prompt, const std::string &template_name,
                                           const std::string &variables_json) {
        moert_chat_options o;
        moert_chat_options_init(&o);
        o.add_generation_prompt = add_generation_prompt ? 1 : 0;
        o.template_name = detail::c_string(template_name, "template_name", true);
        o.variables_json = detail::c_string(variables_json, "variables_json", true);
        return o;
    }

    moert_tokenizer *handle_ = nullptr;
};

/// Turns token ids arriving one at a time into text without ever splitting a UTF-8 sequence (moert_detokenizer): the
/// texts push() returns, followed by what flush() returns, add up to Tokenizer::decode() of the same ids. Used by one
/// thread at a time. Move-only; frees the detokenizer when destroyed. It borrows its Tokenizer's C tokenizer: destroy
/// the Detokenizer before the Tokenizer that holds it (the one it was made from, or the one that was moved into).
class Detokenizer {
public:
    /// Creates a detokenizer over `tokenizer` (moert_detokenizer_create). `skip_special_tokens` leaves special tokens
    /// out, as `decode(ids, skip_special_tokens=True)`. Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT for an empty
    /// Tokenizer).
    explicit Detokenizer(const Tokenizer &tokenizer, bool skip_special_tokens = false) {
        detail::check(moert_detokenizer_create(tokenizer.get(), skip_special_tokens ? MOERT_DECODE_SKIP_SPECIAL : 0u, &handle_));
    }

    /// Deleted: the detokenizer would outlive the temporary tokenizer it borrows.
    Detokenizer(const Tokenizer &&tokenizer, bool skip_special_tokens = false) = delete;

    Detokenizer(const Detokenizer &) = delete;
    Detokenizer &operator=(const Detokenizer &) = delete;

    /// Takes over `other`'s detokenizer and the text it held back; `other` is left empty.
    Detokenizer(Detokenizer &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}

    /// Frees this detokenizer and takes over `other`'s; `other` is left empty.
    Detokenizer &operator=(Detokenizer &&other) noexcept {
        if (this != &other) {
            moert_detokenizer_free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }

    /// Frees the detokenizer (moert_detokenizer_free).
    ~Detokenizer() { moert_detokenizer_free(handle_); }

    /// Adds one id and returns the text it completes, often empty (e.g. after the first bytes of a character)
    /// (moert_detokenizer_push). The text is copied, and may hold a NUL byte.
    /// Throws moert::Error (MOERT_ERR_OUT_OF_RANGE: an id outside the vocabulary, and the detokenizer is unchanged;
    /// MOERT_ERR_INVALID_ARGUMENT for an empty Detokenizer).
    std::string push(int32_t token) {
        const char *text = nullptr;
        size_t length = 0;
        detail::check(moert_detokenizer_push(handle_, token, &text, &length));
        return text ? std::string(text, length) : std::string();
    }

    /// Returns the text still held back, an incomplete UTF-8 sequence at the end becoming U+FFFD as decode() gives it,
    /// and starts over as a new detokenizer (moert_detokenizer_flush). Throws moert::Error for an empty Detokenizer.
    std::string flush() {
        const char *text = nullptr;
        size_t length = 0;
        detail::check(moert_detokenizer_flush(handle_, &text, &length));
        return text ? std::string(text, length) : std::string();
    }

    /// The C handle (owned by this object; NULL once moved from), for calls this binding does not wrap.
    moert_detokenizer *get() const noexcept { return handle_; }

    /// True while the object holds a detokenizer.
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    moert_detokenizer *handle_ = nullptr;
};

inline Detokenizer Tokenizer::detokenizer(bool skip_special_tokens) const & { return Detokenizer(*this, skip_special_tokens); }

/// What Session::generate_text() made: the generated ids and their text.
struct GeneratedText {
    std::vector<int32_t> tokens;  ///< The generated ids, as Session::generate() returns them.
    std::string text;             ///< Their text: the pieces given to the callback, joined; it equals
                                  ///< Tokenizer::decode(tokens, skip_special_tokens).
};

// MARK: - Session

/// Options of a Session (moert_session_options); the defaults are moert_session_options_init()'s.
struct SessionOptions {
    /// Tokens the KV cache holds; 0 = min(model context, 4096).
    int64_t n_ctx = detail::defaults<moert_session_options>().n_ctx;
    /// Most tokens one forward chunk takes; 0 = 512.
    int32_t max_batch = detail::defaults<moert_session_options>().max_batch;
    /// Element type of the KV cache: MOERT_KV_TYPE_F32 (exact, the default), _F16, _BF16 or _Q8_0.
    int32_t kv_type = detail::defaults<moert_session_options>().kv_type;
    /// 0 or MOERT_SESSION_CONTEXT_SHIFT: generation drops the oldest positions after the first n_keep when the
    /// context is full instead of stopping.
    uint32_t flags = detail::defaults<moert_session_options>().flags;
    /// Positions a context shift keeps at the start, in [0, n_ctx).
    int32_t n_keep = detail::defaults<moert_session_options>().n_keep;

    /// The C struct, filled by moert_session_options_init() and then with these values.
    moert_session_options to_c() const {
        moert_session_options o;
        moert_session_options_init(&o);
        o.n_ctx = n_ctx;
        o.max_batch = max_batch;
        o.kv_type = kv_type;
        o.flags = flags;
        o.n_keep = n_keep;
        return o;
    }
};

/// One sequence being evaluated (moert_session): a KV cache over a shared Model. Used by one thread at a time.
/// Move-only; frees the session when destroyed. The Model must outlive it.
class Session {
public:
    /// Creates a session with `options` (moert_session_create).
    /// Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT: an empty Model, n_ctx beyond the model's, an unknown kv_type
    /// or q8_0 with heads that are not a multiple of 32, a bad n_keep; _UNSUPPORTED: MOERT_SESSION_CONTEXT_SHIFT on a
    /// model that cannot shift; _OUT_OF_MEMORY).
    Session(const Model &model, const SessionOptions &options) {
        moert_session_options o = options.to_c();
        vocab_size_ = static_cast<size_t>(model.info().vocab_size);
        detail::check(moert_session_create(model.get(), &o, &handle_));
    }

    /// Creates a session (moert_session_create). `n_ctx` is the KV cache size in tokens (0 = min(model context,
    /// 4096)); `max_batch` the most tokens one forward chunk takes (0 = 512). Both default to the values of
    /// moert_session_options_init(), 0.
    /// Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT, e.g. an empty Model or n_ctx beyond the model's; _OUT_OF_MEMORY).
    explicit Session(const Model &model, int64_t n_ctx = detail::defaults<moert_session_options>().n_ctx,
                     int32_t max_batch = detail::defaults<moert_session_options>().max_batch) {
        moert_session_options options;
        moert_session_options_init(&options);
        options.n_ctx = n_ctx;
        options.max_batch = max_batch;
        vocab_size_ = static_cast<size_t>(model.info().vocab_size);
        detail::check(moert_session_create(model.get(), &options, &handle_));
    }

    Session(const Session &) = delete;
    Session &operator=(const Session &) = delete;

    /// Takes over `other`'s session; `other` is left empty.
    Session(Session &&other) noexcept
        : handle_(std::exchange(other.handle_, nullptr)), vocab_size_(std::exchange(other.vocab_size_, 0)) {}

    /// Frees this session and takes over `other`'s; `other` is left empty.
    Session &operator=(Session &&other) noexcept {
        if (this != &other) {
            moert_session_free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
            vocab_size_ = std::exchange(other.vocab_size_, 0);
        }
        return *this;
    }

    /// Frees the session (moert_session_free).
    ~Session() { moert_session_free(handle_); }

    /// Evaluates `tokens` after those already in the session (moert_session_eval) and returns the logits of the
    /// last position (vocab_size floats) or, with `all_logits`, of every position (tokens.size() * vocab_size,
    /// row-major). Throws moert::Error: MOERT_ERR_OUT_OF_RANGE for a bad token id and MOERT_ERR_CONTEXT_FULL when
    /// they do not fit (nothing is evaluated then), MOERT_ERR_INVALID_ARGUMENT for no tokens, ...
    std::vector<float> eval(const std::vector<int32_t> &tokens, bool all_logits = false) {
        std::vector<float> logits((all_logits ? tokens.size() : 1) * vocab_size_);
        detail::check(moert_session_eval(handle_, tokens.data(), tokens.size(),
                                         all_logits ? MOERT_LOGITS_ALL : MOERT_LOGITS_LAST, logits.data(), logits.size()));
        return logits;
    }

    /// The logits of the last evaluated position, vocab_size floats (moert_session_last_logits): those the last
    /// evaluation made, or, when it kept none (a generation of 0 tokens, an eval through the C API without logits),
    /// computed again for that position. Throws moert::Error: MOERT_ERR_INVALID_ARGUMENT for an empty session, or
    /// the errors of eval(). Needs libmoert 0.2.0.
    std::vector<float> last_logits() {
        std::vector<float> logits(vocab_size_);
        detail::check(moert_session_last_logits(handle_, logits.data(), logits.size()));
        return logits;
    }

    /// Evaluates `prompt` (may be empty when the session holds tokens), then generates up to
    /// options.max_new_tokens tokens (moert_session_generate), calling `callback(token)` for each in order;
    /// returning false from it stops after that token. `callback` is any callable `bool(int32_t)`. An exception it
    /// throws stops generation and is rethrown here once the C call has returned. Generation also stops after an EOS
    /// token (unless options.ignore_eos) and after the token that completes one of options.stop_strings.
    /// Returns the generated tokens. Throws moert::Error with the statuses of eval(); MOERT_ERR_INVALID_ARGUMENT also
    /// for stop strings without a tokenizer, or holding a NUL byte or invalid UTF-8; MOERT_ERR_OUT_OF_RANGE when
    /// stop strings are watched and a generated id is outside the tokenizer's vocabulary; MOERT_ERR_UNSUPPORTED for a
    /// tokenizer or stop strings with a library older than 0.2.0, which would ignore them.
    template <class Callback>
    std::vector<int32_t> generate(const std::vector<int32_t> &prompt, const GenerateOptions &options, Callback &&callback) {
        static_assert(std::is_invocable_r_v<bool, Callback &, int32_t>, "the callback must be callable as bool(int32_t)");
        using State = Trampoline<std::remove_reference_t<Callback>>;
        State state{callback, nullptr};
        std::vector<int32_t> tokens;
        moert_status status = generate_raw(prompt, options, &State::call, &state, tokens);
        if (state.error) std::rethrow_exception(state.error);
        detail::check(status);
        return tokens;
    }

    /// Like generate(prompt, options, callback) without a callback.
    std::vector<int32_t> generate(const std::vector<int32_t> &prompt, const GenerateOptions &options = GenerateOptions()) {
        std::vector<int32_t> tokens;
        detail::check(generate_raw(prompt, options, nullptr, nullptr, tokens));
        return tokens;
    }

    /// Forgets every token evaluated so far (moert_session_reset). Throws moert::Error when the Session is empty.
    void reset() { detail::check(moert_session_reset(handle_)); }

    /// Number of tokens in the KV cache (moert_session_n_past); 0 when the Session is empty.
    int64_t n_past() const noexcept { return moert_session_n_past(handle_); }

    /// Capacity of the KV cache in tokens (moert_session_n_ctx); 0 when the Session is empty.
    int64_t n_ctx() const noexcept { return moert_session_n_ctx(handle_); }

    /// Bytes of the KV cache (moert_session_kv_bytes); 0 when the Session is empty.
    int64_t kv_bytes() const noexcept { return moert_session_kv_bytes(handle_); }

    /// Drops positions [n_keep, n_keep + n_discard) from the KV cache, the later ones moved back with their keys
    /// rotated (moert_session_shift). Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT: a range outside n_past;
    /// _UNSUPPORTED: a model with a sliding window).
    void shift(int64_t n_keep, int64_t n_discard) { detail::check(moert_session_shift(handle_, n_keep, n_discard)); }

    /// Logits per position: the model's vocab_size.
    size_t vocab_size() const noexcept { return vocab_size_; }

    // MARK: Text

    /// Generates from token ids and streams the text: generate(prompt, options, ...) with options.tokenizer set to
    /// `tokenizer`, so that its stop ids end generation too (unless options.ignore_eos) and options.stop_strings are
    /// watched, each generated id going through a Detokenizer of `tokenizer` (moert_session_generate,
    /// moert_detokenizer_push, moert_detokenizer_flush). `prompt` may be empty when the session holds tokens.
    /// `on_text(piece)` is called with each non-empty piece of text in order; pieces never split a UTF-8 character, so
    /// an id that completes none gives no call. Returning false stops generation after the id whose text it is. The
    /// text still held back at the end (an incomplete character, as U+FFFD) comes last, also when `on_text` stopped
    /// generation (its return value is then ignored), so the pieces add up to tokenizer.decode(tokens,
    /// skip_special_tokens). `skip_special_tokens` (default true, as `moert generate` prints) leaves special tokens
    /// such as an EOS out of the text; stop strings are watched in the text with special tokens either way.
    /// `on_text` is any callable `bool(std::string_view)`; the view is valid during the call. An exception it throws
    /// stops generation and is rethrown here once the C call has returned.
    /// Returns the ids and their text. Throws moert::Error as generate(); MOERT_ERR_OUT_OF_RANGE also for a generated
    /// id outside the tokenizer's vocabulary, MOERT_ERR_INVALID_ARGUMENT for an empty Tokenizer.
    template <class Callback>
    GeneratedText generate_text(const Tokenizer &tokenizer, const std::vector<int32_t> &prompt, const GenerateOptions &options,
                                Callback &&on_text, bool skip_special_tokens = true) {
        static_assert(std::is_invocable_r_v<bool, Callback &, std::string_view>,
                      "the callback must be callable as bool(std::string_view)");
        Detokenizer detokenizer(tokenizer, skip_special_tokens);
        GenerateOptions with_tokenizer = options;
        with_tokenizer.tokenizer = &tokenizer;
        GeneratedText out;
        out.tokens = generate(prompt, with_tokenizer, [&](int32_t token) -> bool {
            std::string piece = detokenizer.push(token);
            if (piece.empty()) return true;
            out.text += piece;
            return on_text(std::string_view(piece));
        });
        std::string rest = detokenizer.flush();
        if (!rest.empty()) {
            out.text += rest;
            static_cast<void>(on_text(std::string_view(rest)));
        }
        return out;
    }

    /// As generate_text(tokenizer, ids, options, on_text) with the ids of tokenizer.encode(prompt, true): with the
    /// special tokens of the post-processor (a BOS, ...), as transformers' `encode(text)` and `moert generate --prompt`
    /// encode a prompt. Throws moert::Error as encode() and generate_text().
    template <class Callback>
    GeneratedText generate_text(const Tokenizer &tokenizer, std::string_view prompt, const GenerateOptions &options,
                                Callback &&on_text, bool skip_special_tokens = true) {
        return generate_text(tokenizer, tokenizer.encode(prompt, true), options, std::forward<Callback>(on_text),
                             skip_special_tokens);
    }

    /// As generate_text(tokenizer, ids, options, on_text) with a conversation: rendered with the tokenizer's chat
    /// template and add_generation_prompt, then encoded without added special tokens (the template writes them).
    /// Throws moert::Error as apply_chat_template() and generate_text().
    template <class Callback>
    GeneratedText generate_text(const Tokenizer &tokenizer, const std::vector<ChatMessage> &messages,
                                const GenerateOptions &options, Callback &&on_text, bool skip_special_tokens = true) {
        return generate_text(tokenizer, tokenizer.encode(tokenizer.apply_chat_template(messages, true), false), options,
                             std::forward<Callback>(on_text), skip_special_tokens);
    }

    /// Like generate_text(tokenizer, prompt, options, on_text) without a callback.
    GeneratedText generate_text(const Tokenizer &tokenizer, const std::vector<int32_t> &prompt,
                                const GenerateOptions &options = GenerateOptions(), bool skip_special_tokens = true) {
        return generate_text(tokenizer, prompt, options, [](std::string_view) { return true; }, skip_special_tokens);
    }

    /// Like generate_text(tokenizer, prompt, options, on_text) without a callback.
    GeneratedText generate_text(const Tokenizer &tokenizer, std::string_view prompt,
                                const GenerateOptions &options = GenerateOptions(), bool skip_special_tokens = true) {
        return generate_text(tokenizer, prompt, options, [](std::string_view) { return true; }, skip_special_tokens);
    }

    /// Like generate_text(tokenizer, messages, options, on_text) without a callback.
    GeneratedText generate_text(const Tokenizer &tokenizer, const std::vector<ChatMessage> &messages,
                                const GenerateOptions &options = GenerateOptions(), bool skip_special_tokens = true) {
        return generate_text(tokenizer, messages, options, [](std::string_view) { return true; }, skip_special_tokens);
    }

    // MARK: Routing

    /// Replaces the router of every MoE layer for this session only; the model and its other sessions are unchanged
    /// (moert_session_set_router). `kind` names a registered router kind ("topk" is built in; see kinds() and
    /// load_plugin()); `params_json` is a JSON object of parameters as in the model's "moert" section, and an empty
    /// string passes none (NULL). Throws moert::Error: MOERT_ERR_INVALID_ARGUMENT (an unknown kind, bad JSON), or what
    /// the kind's create returns.
    void set_router(const std::string &kind, const std::string &params_json = std::string()) {
        detail::check(moert_session_set_router(handle_, kind.c_str(), params_json.empty() ? nullptr : params_json.c_str()));
    }

    /// Restores the model's own routers after set_router() or set_top_k() (moert_session_set_router with a NULL
    /// kind). Throws moert::Error when the Session is empty.
    void restore_router() { detail::check(moert_session_set_router(handle_, nullptr, nullptr)); }

    /// Routes with the model's own router ("topk") and `top_k` experts per token, keeping the rest of each layer's
    /// routing (moert_session_set_top_k); 0 restores the model's routers.
    /// Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT: top_k negative, above the experts of a layer, or above the
    /// experts of the groups a group-limited layer keeps).
    void set_top_k(int32_t top_k) { detail::check(moert_session_set_top_k(handle_, top_k)); }

    /// Turns recording of the routing trace on or off (moert_session_set_trace). The expert counters are kept
    /// either way. Throws moert::Error when the Session is empty.
    void set_trace(bool enabled) { detail::check(moert_session_set_trace(handle_, enabled ? 1 : 0)); }

    /// A copy of the routing trace recorded since tracing was turned on or last cleared (moert_session_get_trace).
    /// The copy stays valid whatever the session does next. Throws moert::Error when the Session is empty.
    Trace trace() {
        moert_trace c{};
        c.struct_size = sizeof c;
        detail::check(moert_session_get_trace(handle_, &c));
        int64_t n = c.n_records > 0 ? c.n_records : 0;
        Trace t;
        t.positions = detail::copy_array(c.positions, n);
        t.layers = detail::copy_array(c.layers, n);
        t.tokens = detail::copy_array(c.tokens, n);
        if (c.offsets != nullptr) t.offsets = detail::copy_array(c.offsets, n + 1);
        int64_t n_choices = t.offsets.back();
        t.expert_ids = detail::copy_array(c.expert_ids, n_choices);
        t.weights = detail::copy_array(c.weights, n_choices);
        return t;
    }

    /// Empties the routing trace (moert_session_clear_trace). Throws moert::Error when the Session is empty.
    void clear_trace() { detail::check(moert_session_clear_trace(handle_)); }

    /// A copy of the per-layer expert counters (moert_session_get_expert_counts).
    /// Throws moert::Error when the Session is empty.
    ExpertCounts expert_counts() const {
        ExpertCounts c;
        detail::check(moert_session_get_expert_counts(handle_, nullptr, 0, &c.n_moe_layers, &c.n_experts));
        size_t rows = c.n_moe_layers > 0 ? static_cast<size_t>(c.n_moe_layers) : 0;
        size_t cols = c.n_experts > 0 ? static_cast<size_t>(c.n_experts) : 0;
        c.counts.assign(rows * cols, 0);
        detail::check(moert_session_get_expert_counts(handle_, c.counts.data(), c.counts.size(), nullptr, nullptr));
        return c;
    }

    /// Zeroes the expert counters (moert_session_reset_counters). Throws moert::Error when the Session is empty.
    void reset_counters() { detail::check(moert_session_reset_counters(handle_)); }

    // MARK: Handle

    /// The C handle (owned by this object; NULL once moved from), for calls this binding does not wrap.
    moert_session *get() const noexcept { return handle_; }

    /// True while the object holds a session.
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    /// What the C callback needs to reach a C++ callable: the callable and the exception it threw, if any.
    template <class F>
    struct Trampoline {
        /// The host's callable, borrowed for the generate() call.
        F &callback;
        /// The exception the callable threw; generation stopped right after it.
        std::exception_ptr error;

        /// moert_token_callback: runs the callable. No exception crosses into C: it is kept and generation stops.
        static int32_t call(int32_t token, void *user_data) noexcept {
            auto *self = static_cast<Trampoline *>(user_data);
            try {
                return self->callback(token) ? 0 : 1;
            } catch (...) {
                self->error = std::current_exception();
                return 1;
            }
        }
    };

    /// The C call shared by both generate() overloads: fills `tokens` with what was generated and returns the
    /// status, so that a callback's exception can take precedence over it. Throws moert::Error for arguments it
    /// cannot pass (see generate()).
    moert_status generate_raw(const std::vector<int32_t> &prompt, const GenerateOptions &options,
                              moert_token_callback callback, void *user_data, std::vector<int32_t> &tokens) {
        moert_sampler_options sampler = options.sampler.to_c();
        moert_generate_options c;
        moert_generate_options_init(&c);
        c.max_new_tokens = options.max_new_tokens;
        c.ignore_eos = options.ignore_eos ? 1 : 0;
        c.sampler = &sampler;
        std::vector<const char *> stop_strings;
        if (options.tokenizer != nullptr || !options.stop_strings.empty()) {
            // A library older than the header fills a shorter struct and would ignore the fields past its end.
            if (c.struct_size < offsetof(moert_generate_options, n_stop_strings) + sizeof c.n_stop_strings) {
                throw Error(MOERT_ERR_UNSUPPORTED, "GenerateOptions::tokenizer and stop_strings need libmoert 0.2.0 or "
                                                   "later; this one is " + version());
            }
            if (options.tokenizer != nullptr && !*options.tokenizer) {
                throw Error(MOERT_ERR_INVALID_ARGUMENT, "GenerateOptions::tokenizer points at an empty (moved-from) Tokenizer");
            }
            for (const std::string &text : options.stop_strings) stop_strings.push_back(detail::c_string(text, "a stop string"));
            c.tokenizer = options.tokenizer != nullptr ? options.tokenizer->get() : nullptr;
            c.stop_strings = stop_strings.empty() ? nullptr : stop_strings.data();
            c.n_stop_strings = static_cast<int32_t>(stop_strings.size());
        }
        if (options.scmoe_weak_rank >= 0 || options.scmoe_weak_rank < -1) {
            if (c.struct_size < offsetof(moert_generate_options, scmoe_alpha) + sizeof c.scmoe_alpha) {
                throw Error(MOERT_ERR_UNSUPPORTED, "GenerateOptions::scmoe_weak_rank needs a libmoert with SCMoE; this one is " +
                                                   version());
            }
            c.scmoe_weak_rank = options.scmoe_weak_rank;
            c.scmoe_beta = options.scmoe_beta;
            c.scmoe_alpha = options.scmoe_alpha;
        }
        tokens.assign(options.max_new_tokens > 0 ? static_cast<size_t>(options.max_new_tokens) : 0, 0);
        size_t n_generated = 0;
        moert_status status = moert_session_generate(handle_, prompt.empty() ? nullptr : prompt.data(), prompt.size(),
                                                     &c, callback, user_data, tokens.data(), tokens.size(), &n_generated);
        tokens.resize(n_generated < tokens.size() ? n_generated : tokens.size());
        return status;
    }

    moert_session *handle_ = nullptr;
    size_t vocab_size_ = 0;
};

// MARK: - Sampler

/// A token sampler with its own seeded random stream (moert_sampler). Used by one thread at a time. Move-only.
class Sampler {
public:
    /// Creates a sampler (moert_sampler_create); the default options are greedy.
    /// Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT: negative temperature or top_k, top_p outside (0, 1], NaN).
    explicit Sampler(const SamplerOptions &options = SamplerOptions()) {
        moert_sampler_options c = options.to_c();
        detail::check(moert_sampler_create(&c, &handle_));
    }

    Sampler(const Sampler &) = delete;
    Sampler &operator=(const Sampler &) = delete;

    /// Takes over `other`'s sampler; `other` is left empty.
    Sampler(Sampler &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}

    /// Frees this sampler and takes over `other`'s; `other` is left empty.
    Sampler &operator=(Sampler &&other) noexcept {
        if (this != &other) {
            moert_sampler_free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }

    /// Frees the sampler (moert_sampler_free).
    ~Sampler() { moert_sampler_free(handle_); }

    /// Draws one token from a row of logits (moert_sampler_sample).
    /// Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT: an empty row, all NaN, an empty Sampler).
    int32_t sample(const std::vector<float> &logits) { return sample(logits.data(), logits.size()); }

    /// Draws one token from `n_vocab` logits at `logits` (moert_sampler_sample).
    int32_t sample(const float *logits, size_t n_vocab) {
        int32_t token = -1;
        detail::check(moert_sampler_sample(handle_, logits, n_vocab, &token));
        return token;
    }

    /// The C handle (owned by this object; NULL once moved from).
    moert_sampler *get() const noexcept { return handle_; }

    /// True while the object holds a sampler.
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    moert_sampler *handle_ = nullptr;
};

}  // namespace moert

#endif  // MOERT_HPP
