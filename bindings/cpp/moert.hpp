// moert.hpp — header-only C++17 binding of the moert C API: RAII handles, exceptions, std containers.
//
// A thin layer over include/moert.h: each method makes one C call (named in its comment), turns a failed status into
// a moert::Error and converts buffers to std::vector. It adds no behaviour of its own.
//
// Threads follow the C API: a Model may be shared by any number of threads and Sessions; a Session or Sampler is
// used by one thread at a time.
#ifndef MOERT_HPP
#define MOERT_HPP

#include <moert.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
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

// MARK: - Options

/// Sampling parameters; the defaults are those of moert_sampler_options_init(): greedy.
struct SamplerOptions {
    /// 0 = greedy (argmax, lowest id on ties); > 0 divides the logits.
    float temperature = 0.0f;
    /// Keep the k most likely tokens; 0 = all.
    int32_t top_k = 0;
    /// Keep the smallest set whose probability reaches p, in (0, 1]; 1 = all.
    float top_p = 1.0f;
    /// Seed of the random stream; equal seeds give equal draws.
    uint64_t seed = 0;

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

/// Generation parameters; the defaults are those of moert_generate_options_init().
struct GenerateOptions {
    /// Most tokens to generate (>= 0).
    int32_t max_new_tokens = 16;
    /// false: stop after the model's EOS token is generated (it is reported); true: go on to max_new_tokens.
    bool ignore_eos = false;
    /// How tokens are chosen; the default is greedy, as a NULL sampler is in C.
    SamplerOptions sampler;
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
    int64_t weight_bytes = 0;       ///< Bytes of float32 weights resident beyond the mapping.
    int32_t bos_token_id = -1;      ///< -1 when the config names none.
    int32_t eos_token_id = -1;      ///< -1 when the config names none (the first when it names several).
};

// MARK: - Model

/// A loaded model (moert_model): immutable, shareable between threads. Move-only; frees the model when destroyed.
/// Every Session created from it must be destroyed first.
class Model {
public:
    /// Loads a Hugging Face MoE checkpoint directory (moert_model_load). `max_context` caps the context length
    /// sessions may ask for; 0 keeps the model's own.
    /// Throws moert::Error (MOERT_ERR_IO, _FORMAT, _UNSUPPORTED, _INVALID_ARGUMENT, _OUT_OF_MEMORY).
    explicit Model(const std::string &path, int64_t max_context = 0) {
        moert_model_options options;
        moert_model_options_init(&options);
        options.max_context = max_context;
        detail::check(moert_model_load(path.c_str(), &options, &handle_));
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

    /// The C handle (owned by this object; NULL once moved from), for calls this binding does not wrap.
    moert_model *get() const noexcept { return handle_; }

    /// True while the object holds a model.
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    moert_model *handle_ = nullptr;
};

// MARK: - Session

/// One sequence being evaluated (moert_session): a KV cache over a shared Model. Used by one thread at a time.
/// Move-only; frees the session when destroyed. The Model must outlive it.
class Session {
public:
    /// Creates a session (moert_session_create). `n_ctx` is the KV cache size in tokens (0 = min(model context,
    /// 4096)); `max_batch` the most tokens one forward chunk takes (0 = 512).
    /// Throws moert::Error (MOERT_ERR_INVALID_ARGUMENT, e.g. an empty Model or n_ctx beyond the model's; _OUT_OF_MEMORY).
    explicit Session(const Model &model, int64_t n_ctx = 0, int32_t max_batch = 0) {
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

    /// Evaluates `prompt` (may be empty when the session holds tokens), then generates up to
    /// options.max_new_tokens tokens (moert_session_generate), calling `callback(token)` for each in order;
    /// returning false from it stops after that token. `callback` is any callable `bool(int32_t)`. An exception it
    /// throws stops generation and is rethrown here once the C call has returned.
    /// Returns the generated tokens. Throws moert::Error with the statuses of eval().
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

    /// Logits per position: the model's vocab_size.
    size_t vocab_size() const noexcept { return vocab_size_; }

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
    /// status, so that a callback's exception can take precedence over it.
    moert_status generate_raw(const std::vector<int32_t> &prompt, const GenerateOptions &options,
                              moert_token_callback callback, void *user_data, std::vector<int32_t> &tokens) {
        moert_sampler_options sampler = options.sampler.to_c();
        moert_generate_options c;
        moert_generate_options_init(&c);
        c.max_new_tokens = options.max_new_tokens;
        c.ignore_eos = options.ignore_eos ? 1 : 0;
        c.sampler = &sampler;
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
