// test_moert.cpp — tests of the C++ binding (moert.hpp) against the transformers fixtures.
//
// Usage: test_moert FIXTURES_DIR   (e.g. Tests/fixtures)
//
// Expected values come from each fixture's config.json and reference.safetensors (written by transformers, see
// tools/make_fixtures.py), the tokenizer fixtures' cases.jsonl (written by tokenizers 0.23.3, see
// tools/make_tokenizer_fixtures.py) with their tokenizer.json, and the chat fixtures (rendered by transformers, see
// tools/make_chat_fixtures.py), never from moert. The memory and routing checks also compare moert with itself where the C
// API promises equality: an expert budget must not change results, and undoing a router override must restore them
// exactly. One line is printed per check group; the last line is "N passed, M failed", and the exit status is
// non-zero when anything failed.
#include "moert.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <unistd.h>

namespace {

// Logits must match transformers within 1e-4 of the reference's largest |logit|: both compute in float32 from the
// same stored weights with different summation orders, which moves logits by about 1e-6 of their scale here, while a
// wrong routing, rope or norm moves them by 1e-2 or more.
constexpr double kLogitsRtol = 1e-4;

// MARK: - Check bookkeeping

int n_passed = 0, n_failed = 0;
int group_checks = 0, group_failures = 0;
std::string group_name;

/// Starts a group of checks; end_group() prints its one-line result.
void begin_group(const std::string &name) {
    group_name = name;
    group_checks = group_failures = 0;
}

/// Prints the current group's result line.
void end_group() {
    if (group_failures == 0) {
        std::cout << "ok    " << group_name << " (" << group_checks << " checks)\n";
    } else {
        std::cout << "FAIL  " << group_name << " (" << group_failures << " of " << group_checks << " checks failed)\n";
    }
    std::cout.flush();
}

/// Records one check; on failure prints `what` (indented, before the group's line).
bool check_at(bool ok, int line, const std::string &what) {
    group_checks++;
    if (ok) {
        n_passed++;
        return true;
    }
    n_failed++;
    group_failures++;
    std::cout << "      line " << line << ": " << what << "\n";
    return false;
}

#define CHECK(cond, what) check_at((cond), __LINE__, (what))

/// Runs `body` and checks that it throws moert::Error with `status` and a message containing `substring`.
bool check_throws_at(const std::function<void()> &body, moert_status status, const std::string &substring,
                     const std::string &what, int line) {
    try {
        body();
    } catch (const moert::Error &e) {
        std::string message = e.what();
        return check_at(e.status() == status && message.find(substring) != std::string::npos, line,
                        what + ": expected status " + std::to_string(status) + " mentioning \"" + substring +
                            "\", got " + std::to_string(e.status()) + ": " + message);
    } catch (const std::exception &e) {
        return check_at(false, line, what + ": threw a non-moert exception: " + e.what());
    }
    return check_at(false, line, what + ": did not throw");
}

#define CHECK_THROWS(body, status, substring, what) check_throws_at((body), (status), (substring), (what), __LINE__)

/// Runs a group body, turning an unexpected exception into a failed check.
void run_group(const std::string &name, const std::function<void()> &body) {
    begin_group(name);
    try {
        body();
    } catch (const std::exception &e) {
        check_at(false, __LINE__, std::string("unexpected exception: ") + e.what());
    }
    end_group();
}

// MARK: - A minimal JSON reader

/// A parsed JSON value (numbers as double; enough for config.json, safetensors headers, tokenizer.json and the text
/// fixtures' JSON lines).
struct Json {
    enum class Type { null, boolean, number, string, array, object } type = Type::null;
    double number = 0;
    std::string text;
    std::vector<Json> items;
    std::map<std::string, Json> members;

    /// Member `key` of an object; a null value when absent.
    const Json &operator[](const std::string &key) const {
        static const Json none;
        auto it = members.find(key);
        return it == members.end() ? none : it->second;
    }
};

/// Appends code point `u` as UTF-8.
void put_utf8(uint32_t u, std::string &out) {
    if (u < 0x80) {
        out += static_cast<char>(u);
    } else if (u < 0x800) {
        out += static_cast<char>(0xC0 | (u >> 6));
        out += static_cast<char>(0x80 | (u & 0x3F));
    } else if (u < 0x10000) {
        out += static_cast<char>(0xE0 | (u >> 12));
        out += static_cast<char>(0x80 | ((u >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (u & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (u >> 18));
        out += static_cast<char>(0x80 | ((u >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((u >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (u & 0x3F));
    }
}

/// Recursive-descent parser over a string; throws std::runtime_error on malformed input.
class JsonParser {
public:
    explicit JsonParser(const std::string &text) : s_(text) {}

    /// Parses the whole text as one value.
    Json parse() {
        Json v = value(0);
        ws();
        if (i_ != s_.size()) fail("trailing bytes");
        return v;
    }

private:
    [[noreturn]] void fail(const std::string &why) const {
        throw std::runtime_error("JSON: " + why + " at byte " + std::to_string(i_));
    }
    void ws() {
        while (i_ < s_.size() && std::strchr(" \t\r\n", s_[i_]) && s_[i_]) i_++;
    }
    char peek() {
        ws();
        if (i_ >= s_.size()) fail("unexpected end");
        return s_[i_];
    }
    void expect(char c) {
        if (peek() != c) fail(std::string("expected '") + c + "'");
        i_++;
    }
    /// The value of four hex digits at the cursor, which moves past them.
    uint32_t hex4() {
        if (i_ + 4 > s_.size()) fail("short \\u escape");
        uint32_t v = 0;
        for (int k = 0; k < 4; k++) {
            char c = s_[i_++];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) fail("bad hex digit");
            v = v * 16 + static_cast<uint32_t>(d);
        }
        return v;
    }
    /// A string with its escapes decoded into UTF-8 (\uXXXX with surrogate pairs; \u0000 gives a NUL byte).
    std::string string() {
        expect('"');
        std::string out;
        while (i_ < s_.size() && s_[i_] != '"') {
            if (s_[i_] != '\\') {
                out += s_[i_++];
                continue;
            }
            if (++i_ >= s_.size()) fail("unterminated escape");
            char e = s_[i_++];
            switch (e) {
                case '"': case '\\': case '/': out += e; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t u = hex4();
                    if (u >= 0xD800 && u < 0xDC00) {
                        if (s_.compare(i_, 2, "\\u") != 0) fail("lone high surrogate");
                        i_ += 2;
                        uint32_t low = hex4();
                        if (low < 0xDC00 || low >= 0xE000) fail("bad low surrogate");
                        u = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00);
                    } else if (u >= 0xDC00 && u < 0xE000) {
                        fail("lone low surrogate");
                    }
                    put_utf8(u, out);
                    break;
                }
                default: fail("bad escape");
            }
        }
        if (i_ >= s_.size()) fail("unterminated string");
        i_++;
        return out;
    }
    Json value(int depth) {
        if (depth > 64) fail("nested too deeply");
        Json v;
        char c = peek();
        if (c == '{') {
            v.type = Json::Type::object;
            i_++;
            if (peek() == '}') return i_++, v;
            for (;;) {
                std::string key = string();
                expect(':');
                v.members[key] = value(depth + 1);
                if (peek() == '}') return i_++, v;
                expect(',');
            }
        }
        if (c == '[') {
            v.type = Json::Type::array;
            i_++;
            if (peek() == ']') return i_++, v;
            for (;;) {
                v.items.push_back(value(depth + 1));
                if (peek() == ']') return i_++, v;
                expect(',');
            }
        }
        if (c == '"') {
            v.type = Json::Type::string;
            v.text = string();
            return v;
        }
        for (const char *word : {"null", "true", "false"}) {
            if (s_.compare(i_, std::strlen(word), word) == 0) {
                i_ += std::strlen(word);
                v.type = word[0] == 'n' ? Json::Type::null : Json::Type::boolean;
                v.number = word[0] == 't';
                return v;
            }
        }
        size_t used = 0;
        try {
            v.number = std::stod(s_.substr(i_, 32), &used);
        } catch (const std::exception &) {
            fail("bad value");
        }
        v.type = Json::Type::number;
        i_ += used;
        return v;
    }

    const std::string &s_;
    size_t i_ = 0;
};

/// The bytes of a file; throws std::runtime_error when it cannot be read.
std::string read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// MARK: - Safetensors reader

/// A reference.safetensors file: the header and the data section, with every tensor's range checked on access.
class Safetensors {
public:
    /// Reads and validates the framing of `path`.
    explicit Safetensors(const std::string &path) : bytes_(read_file(path)) {
        if (bytes_.size() < 8) throw std::runtime_error(path + ": shorter than 8 bytes");
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = (n << 8) | static_cast<unsigned char>(bytes_[static_cast<size_t>(i)]);
        if (n > bytes_.size() - 8) throw std::runtime_error(path + ": header length beyond the file");
        header_ = JsonParser(bytes_.substr(8, static_cast<size_t>(n))).parse();
        data_start_ = 8 + static_cast<size_t>(n);
    }

    /// Tensor `name` of 4-byte `dtype` ("F32" or "I32") as T values; `shape` receives its dimensions.
    template <class T>
    std::vector<T> read(const std::string &name, const std::string &dtype, std::vector<size_t> &shape) const {
        static_assert(sizeof(T) == 4, "F32 and I32 only");
        const Json &t = header_[name];
        if (t.type != Json::Type::object || t["dtype"].text != dtype) throw std::runtime_error(name + ": not " + dtype);
        size_t count = 1;
        shape.clear();
        for (const Json &d : t["shape"].items) {
            if (d.number < 0 || d.number > 1e9) throw std::runtime_error(name + ": bad shape");
            shape.push_back(static_cast<size_t>(d.number));
            count *= shape.back();
        }
        const std::vector<Json> &offsets = t["data_offsets"].items;
        if (offsets.size() != 2) throw std::runtime_error(name + ": bad data_offsets");
        double begin = offsets[0].number, end = offsets[1].number;
        if (begin < 0 || end < begin || end > static_cast<double>(bytes_.size() - data_start_) ||
            static_cast<size_t>(end - begin) != count * sizeof(T)) {
            throw std::runtime_error(name + ": data_offsets disagree with the shape or the file size");
        }
        std::vector<T> out(count);
        std::memcpy(out.data(), bytes_.data() + data_start_ + static_cast<size_t>(begin), count * sizeof(T));
        return out;
    }

private:
    std::string bytes_;
    Json header_;
    size_t data_start_ = 0;
};

// MARK: - Fixtures

/// One fixture: its config.json and its transformers reference outputs.
struct Fixture {
    std::string name, dir;
    Json config;
    std::vector<int32_t> prompt, greedy;
    std::vector<float> logits, full_logits;  // [n_prompt, vocab], [n_prompt + n_greedy, vocab]
    size_t vocab = 0;

    /// Reads fixture `name` under `root`; throws std::runtime_error when its files disagree.
    Fixture(const std::string &root, const std::string &fixture_name) : name(fixture_name), dir(root + "/" + fixture_name) {
        config = JsonParser(read_file(dir + "/config.json")).parse();
        Safetensors ref(dir + "/reference.safetensors");
        std::vector<size_t> shape;
        prompt = ref.read<int32_t>("prompt", "I32", shape);
        greedy = ref.read<int32_t>("greedy", "I32", shape);
        logits = ref.read<float>("logits", "F32", shape);
        if (shape.size() != 2 || shape[0] != prompt.size()) throw std::runtime_error(name + ": logits shape");
        vocab = shape[1];
        full_logits = ref.read<float>("full_logits", "F32", shape);
        if (shape.size() != 2 || shape[0] != prompt.size() + greedy.size() || shape[1] != vocab) {
            throw std::runtime_error(name + ": full_logits shape");
        }
    }

    /// Row `r` of full_logits.
    std::vector<float> full_row(size_t r) const {
        return std::vector<float>(full_logits.begin() + static_cast<std::ptrdiff_t>(r * vocab),
                                  full_logits.begin() + static_cast<std::ptrdiff_t>((r + 1) * vocab));
    }
};

/// max |got - ref| / max |ref|: the error relative to the logits' scale (INFINITY on a size mismatch or NaN).
double rel_error(const std::vector<float> &got, const std::vector<float> &ref) {
    if (got.size() != ref.size()) return INFINITY;
    double scale = 0, worst = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        scale = std::max(scale, std::fabs(static_cast<double>(ref[i])));
        double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
        if (std::isnan(d)) return INFINITY;
        worst = std::max(worst, d);
    }
    return scale > 0 ? worst / scale : worst;
}

/// Text of a relative error for messages.
std::string describe(double err) {
    std::ostringstream s;
    s << "relative error " << err << " (limit " << kLogitsRtol << ")";
    return s.str();
}

/// Greedy generation options for the fixtures' continuation: n_greedy tokens, EOS ignored.
moert::GenerateOptions greedy_options(const Fixture &fx) {
    moert::GenerateOptions o;
    o.max_new_tokens = static_cast<int32_t>(fx.greedy.size());
    o.ignore_eos = true;
    return o;
}

// MARK: - Checks

/// version(), version_number(), abi_version() and the thread count.
void test_library() {
    CHECK(moert::version() == MOERT_VERSION, "version() " + moert::version());
    CHECK(moert::version_number() == MOERT_VERSION_NUMBER, "version_number()");
    CHECK(moert::abi_version() == MOERT_ABI_VERSION, "abi_version()");
    moert::set_threads(1);
    CHECK(moert::get_threads() == 1, "get_threads() after set_threads(1)");
    CHECK_THROWS([] { moert::set_threads(-1); }, MOERT_ERR_INVALID_ARGUMENT, "-1", "set_threads(-1)");
    moert::set_threads(0);
    CHECK(moert::get_threads() >= 1, "get_threads() after set_threads(0)");
    CHECK(moert::ModelOptions().to_c().struct_size == sizeof(moert_model_options),
          "ModelOptions::to_c() sets struct_size");
}

/// A value as text, for the table of defaults.
template <class T>
std::string text(T value) {
    std::ostringstream s;
    s << +value;
    return s.str();
}

/// Every default the binding offers against the C library's, read at run time: the *_options_init functions fill
/// the option structs, and NULL options to moert_model_load and moert_session_create stand for the defaults.
void test_defaults(const Fixture &fx) {
    moert_model_options model;
    moert_model_options_init(&model);
    moert_session_options session;
    moert_session_options_init(&session);
    moert_sampler_options sampler;
    moert_sampler_options_init(&sampler);
    moert_generate_options generate;
    moert_generate_options_init(&generate);
    CHECK(generate.sampler == nullptr, "moert_generate_options_init leaves the sampler NULL (greedy)");

    // What Model(path) and Session(model) choose, against C given NULL options.
    moert_model *c_model = nullptr;
    CHECK(moert_model_load(fx.dir.c_str(), nullptr, &c_model) == MOERT_OK, "moert_model_load with NULL options");
    std::unique_ptr<moert_model, decltype(&moert_model_free)> c_model_owner(c_model, moert_model_free);
    moert_model_info c_info{};
    c_info.struct_size = sizeof c_info;
    CHECK(moert_model_get_info(c_model, &c_info) == MOERT_OK, "moert_model_get_info");
    moert_session *c_session = nullptr;
    CHECK(moert_session_create(c_model, nullptr, &c_session) == MOERT_OK, "moert_session_create with NULL options");
    std::unique_ptr<moert_session, decltype(&moert_session_free)> c_session_owner(c_session, moert_session_free);
    moert::Model default_model(fx.dir);
    moert::Session default_session(default_model);

    const moert::ModelOptions m;
    const moert::SessionOptions so;
    const moert::SamplerOptions s;
    const moert::GenerateOptions g;
    struct Row {
        std::string what, binding, library;
    };
    const Row rows[] = {
        {"ModelOptions().max_context", text(m.max_context), text(model.max_context)},
        {"ModelOptions().expert_budget_bytes", text(m.expert_budget_bytes), text(model.expert_budget_bytes)},
        {"ModelOptions().expert_budget_percent", text(m.expert_budget_percent), text(model.expert_budget_percent)},
        {"ModelOptions().flags", text(m.flags), text(model.flags)},
        {"SessionOptions().n_ctx", text(so.n_ctx), text(session.n_ctx)},
        {"SessionOptions().max_batch", text(so.max_batch), text(session.max_batch)},
        {"SessionOptions().kv_type", text(so.kv_type), text(session.kv_type)},
        {"SessionOptions().flags", text(so.flags), text(session.flags)},
        {"SessionOptions().n_keep", text(so.n_keep), text(session.n_keep)},
        {"SamplerOptions().temperature", text(s.temperature), text(sampler.temperature)},
        {"SamplerOptions().top_k", text(s.top_k), text(sampler.top_k)},
        {"SamplerOptions().top_p", text(s.top_p), text(sampler.top_p)},
        {"SamplerOptions().seed", text(s.seed), text(sampler.seed)},
        {"GenerateOptions().max_new_tokens", text(g.max_new_tokens), text(generate.max_new_tokens)},
        {"GenerateOptions().ignore_eos", text(g.ignore_eos ? 1 : 0), text(generate.ignore_eos)},
        {"GenerateOptions().tokenizer", g.tokenizer ? "set" : "NULL", generate.tokenizer ? "set" : "NULL"},
        {"GenerateOptions().stop_strings.size()", text(g.stop_strings.size()), text(generate.n_stop_strings)},
        // A NULL sampler in C is greedy: the sampler option defaults.
        {"GenerateOptions().sampler.temperature", text(g.sampler.temperature), text(sampler.temperature)},
        {"GenerateOptions().sampler.top_k", text(g.sampler.top_k), text(sampler.top_k)},
        {"GenerateOptions().sampler.top_p", text(g.sampler.top_p), text(sampler.top_p)},
        {"GenerateOptions().sampler.seed", text(g.sampler.seed), text(sampler.seed)},
        {"Model(path).info().context_length", text(default_model.info().context_length), text(c_info.context_length)},
        {"Session(model).n_ctx()", text(default_session.n_ctx()), text(moert_session_n_ctx(c_session))},
    };
    for (const Row &row : rows) {
        CHECK(row.binding == row.library,
              row.what + " is " + row.binding + ", the library's default is " + row.library);
    }
}

/// info() agrees with config.json.
void test_info(const Fixture &fx, const moert::Model &model) {
    moert::ModelInfo info = model.info();
    const Json &c = fx.config;
    CHECK(info.architecture == c["architectures"].items.at(0).text, "architecture " + info.architecture);
    CHECK(info.vocab_size == 256 && info.vocab_size == static_cast<int32_t>(c["vocab_size"].number), "vocab_size");
    CHECK(info.hidden_size == static_cast<int32_t>(c["hidden_size"].number), "hidden_size");
    CHECK(info.n_layers == static_cast<int32_t>(c["num_hidden_layers"].number), "n_layers");
    CHECK(info.n_heads == static_cast<int32_t>(c["num_attention_heads"].number), "n_heads");
    CHECK(info.n_kv_heads == static_cast<int32_t>(c["num_key_value_heads"].number), "n_kv_heads");
    CHECK(info.n_experts_per_tok == static_cast<int32_t>(c["num_experts_per_tok"].number), "n_experts_per_tok");
    double experts = c["num_local_experts"].type == Json::Type::number ? c["num_local_experts"].number
                     : c["num_experts"].type == Json::Type::number     ? c["num_experts"].number
                                                                       : c["n_routed_experts"].number;  // DeepSeek
    CHECK(info.n_experts == static_cast<int32_t>(experts), "n_experts");
    CHECK(info.context_length == static_cast<int64_t>(c["max_position_embeddings"].number), "context_length");
    const Json &eos = c["eos_token_id"];
    CHECK(info.eos_token_id == (eos.type == Json::Type::number ? static_cast<int32_t>(eos.number) : -1), "eos_token_id");
    CHECK(info.n_params > 0 && info.file_bytes > 0, "n_params and file_bytes are positive");
}

/// eos_tokens() lists config.json's eos_token_id (a number or a list); every MoE layer uses the built-in kinds.
void test_eos_and_kinds(const Fixture &fx, const moert::Model &model) {
    const Json &eos = fx.config["eos_token_id"];
    std::vector<int32_t> want;
    if (eos.type == Json::Type::number) want.push_back(static_cast<int32_t>(eos.number));
    for (const Json &id : eos.items) want.push_back(static_cast<int32_t>(id.number));
    std::vector<int32_t> got = model.eos_tokens();
    CHECK(!want.empty() && got == want, "eos_tokens() differs from config.json's eos_token_id");
    CHECK(!got.empty() && got.front() == model.info().eos_token_id, "eos_tokens() starts with info().eos_token_id");

    moert::ModelInfo info = model.info();
    bool routers_builtin = true, experts_builtin = true, ends = true;
    for (int32_t m = 0; m < info.n_moe_layers; m++) {
        routers_builtin = routers_builtin && model.router_kind(m) == "topk";
        for (int32_t e = 0; e < info.n_experts; e++) experts_builtin = experts_builtin && model.expert_kind(m, e) == "ffn";
        ends = ends && !model.expert_kind(m, info.n_experts) && !model.expert_kind(m, -1);
    }
    CHECK(info.n_moe_layers > 0 && routers_builtin, "router_kind() of every MoE layer is \"topk\"");
    CHECK(experts_builtin, "expert_kind() of every expert is \"ffn\"");
    CHECK(ends, "expert_kind() past either end of a layer is std::nullopt");
    CHECK(!model.router_kind(info.n_moe_layers) && !model.router_kind(-1), "router_kind() out of range is std::nullopt");
}

/// eval(prompt, true) reproduces every prompt position's logits.
void test_prefill(const Fixture &fx, const moert::Model &model) {
    moert::Session session(model);
    std::vector<float> logits = session.eval(fx.prompt, true);
    double err = rel_error(logits, fx.logits);
    CHECK(err <= kLogitsRtol, "prompt logits: " + describe(err));
    CHECK(session.n_past() == static_cast<int64_t>(fx.prompt.size()), "n_past after the prompt");
    CHECK(session.vocab_size() == fx.vocab, "vocab_size()");
}

/// generate() reproduces the greedy continuation, and the callback sees the same tokens in order.
void test_generate(const Fixture &fx, const moert::Model &model) {
    moert::Session session(model);
    std::vector<int32_t> seen;
    std::vector<int32_t> tokens = session.generate(fx.prompt, greedy_options(fx), [&seen](int32_t t) {
        seen.push_back(t);
        return true;
    });
    CHECK(tokens == fx.greedy, "generated tokens differ from transformers' greedy continuation");
    CHECK(seen == tokens, "the callback saw other tokens than generate() returned");
    session.reset();
    CHECK(session.generate(fx.prompt, greedy_options(fx)) == fx.greedy, "generate() without a callback");
}

/// SCMoE through GenerateOptions: beta 0 leaves the strong logits (transformers' greedy continuation); an expert
/// rank the layers do not have is refused.
void test_scmoe(const Fixture &fx, const moert::Model &model) {
    moert::Session session(model);
    moert::GenerateOptions options = greedy_options(fx);
    CHECK(options.scmoe_weak_rank == -1 && options.scmoe_beta == 0.5f && options.scmoe_alpha == 0.1f, "SCMoE defaults");
    options.scmoe_weak_rank = 2;
    options.scmoe_beta = 0.0f;
    CHECK(session.generate(fx.prompt, options) == fx.greedy, "SCMoE with beta 0 is greedy decoding");
    session.reset();
    options.scmoe_weak_rank = 1000;
    CHECK_THROWS([&] { session.generate(fx.prompt, options); }, MOERT_ERR_INVALID_ARGUMENT, "rank", "SCMoE rank 1000");
}

/// Prompt then one token at a time reproduces full_logits row by row.
void test_decode(const Fixture &fx, const moert::Model &model) {
    moert::Session session(model);
    size_t p = fx.prompt.size();
    double err = rel_error(session.eval(fx.prompt), fx.full_row(p - 1));
    CHECK(err <= kLogitsRtol, "last prompt row: " + describe(err));
    for (size_t i = 0; i < fx.greedy.size(); i++) {
        err = rel_error(session.eval({fx.greedy[i]}), fx.full_row(p + i));
        CHECK(err <= kLogitsRtol, "decode step " + std::to_string(i) + ": " + describe(err));
    }
    CHECK(session.n_past() == static_cast<int64_t>(p + fx.greedy.size()), "n_past after decoding");
}

/// last_logits() gives transformers' logits of the last evaluated position: after eval and after generate (whose
/// last token is fed back), and refuses an empty session.
void test_last_logits(const Fixture &fx, const moert::Model &model) {
    moert::Session session(model);
    CHECK_THROWS([&] { session.last_logits(); }, MOERT_ERR_INVALID_ARGUMENT, "", "last_logits() of an empty session");
    size_t p = fx.prompt.size();
    session.eval(fx.prompt);
    double err = rel_error(session.last_logits(), fx.full_row(p - 1));
    CHECK(err <= kLogitsRtol, "last_logits() after eval: " + describe(err));
    session.reset();
    CHECK(session.generate(fx.prompt, greedy_options(fx)) == fx.greedy, "generate() before last_logits()");
    err = rel_error(session.last_logits(), fx.full_row(p + fx.greedy.size() - 1));
    CHECK(err <= kLogitsRtol, "last_logits() after generate: " + describe(err));
}

/// The parity checks of one fixture.
void test_fixture(const std::string &root, const std::string &name) {
    std::unique_ptr<Fixture> fx;
    std::unique_ptr<moert::Model> model;
    run_group(name + ": load", [&] {
        fx = std::make_unique<Fixture>(root, name);
        model = std::make_unique<moert::Model>(fx->dir);
        CHECK(static_cast<bool>(*model), "Model holds a handle");
    });
    if (!fx || !model) return;
    run_group(name + ": info", [&] { test_info(*fx, *model); });
    run_group(name + ": eos tokens and kinds", [&] { test_eos_and_kinds(*fx, *model); });
    run_group(name + ": prefill logits", [&] { test_prefill(*fx, *model); });
    run_group(name + ": greedy generate", [&] { test_generate(*fx, *model); });
    run_group(name + ": SCMoE", [&] { test_scmoe(*fx, *model); });
    run_group(name + ": kv-cached decode", [&] { test_decode(*fx, *model); });
    run_group(name + ": last logits", [&] { test_last_logits(*fx, *model); });
}

/// Bad input throws moert::Error with the right status and the library's message.
void test_errors(const Fixture &fx, const moert::Model &model) {
    CHECK_THROWS([] { moert::Model("/nonexistent/moert-model"); }, MOERT_ERR_IO, "/nonexistent/moert-model",
                 "missing directory");
    CHECK_THROWS([&] { moert::Model(fx.dir, -1); }, MOERT_ERR_INVALID_ARGUMENT, "max_context", "negative max_context");
    CHECK_THROWS([&] { moert::Session(model, 100000); }, MOERT_ERR_INVALID_ARGUMENT, "n_ctx", "n_ctx too large");
    moert::Session session(model, 8);
    CHECK_THROWS([&] { session.eval({1, 256}); }, MOERT_ERR_OUT_OF_RANGE, "256", "token id 256");
    CHECK_THROWS([&] { session.eval({-5}); }, MOERT_ERR_OUT_OF_RANGE, "-5", "token id -5");
    CHECK_THROWS([&] { session.eval({1, 2, 3, 4, 5, 6, 7, 8, 9}); }, MOERT_ERR_CONTEXT_FULL, "9", "9 tokens, n_ctx 8");
    CHECK_THROWS([&] { session.eval({}); }, MOERT_ERR_INVALID_ARGUMENT, "", "no tokens");
    CHECK_THROWS([&] { session.generate({}); }, MOERT_ERR_INVALID_ARGUMENT, "", "nothing to continue");
    CHECK(session.n_past() == 0, "failed evaluations left the session empty");
    moert::GenerateOptions negative;
    negative.max_new_tokens = -1;
    CHECK_THROWS([&] { session.generate(fx.prompt, negative); }, MOERT_ERR_INVALID_ARGUMENT, "max_new_tokens",
                 "negative max_new_tokens");
    moert::SamplerOptions bad;
    bad.temperature = -1.0f;
    CHECK_THROWS([&] { moert::Sampler{bad}; }, MOERT_ERR_INVALID_ARGUMENT, "temperature", "negative temperature");
    bad = moert::SamplerOptions();
    bad.top_p = 0.0f;
    CHECK_THROWS([&] { moert::Sampler{bad}; }, MOERT_ERR_INVALID_ARGUMENT, "top_p", "top_p 0");
    bad.top_p = 1.5f;
    CHECK_THROWS([&] { moert::Sampler{bad}; }, MOERT_ERR_INVALID_ARGUMENT, "top_p", "top_p 1.5");
    moert::GenerateOptions bad_sampling;
    bad_sampling.sampler = bad;
    CHECK_THROWS([&] { session.generate(fx.prompt, bad_sampling); }, MOERT_ERR_INVALID_ARGUMENT, "top_p",
                 "generate with top_p 1.5");
    moert::Sampler greedy;
    CHECK_THROWS([&] { greedy.sample(std::vector<float>()); }, MOERT_ERR_INVALID_ARGUMENT, "", "sample of no logits");
    try {
        moert::Model("/nonexistent/moert-model");
    } catch (const std::runtime_error &e) {
        CHECK(std::string(e.what()).find("/nonexistent") != std::string::npos, "moert::Error is a std::runtime_error");
    }
}

/// Models, sessions and samplers move; moved-from objects are empty and fail cleanly.
void test_moves(const Fixture &fx) {
    moert::Model a(fx.dir);
    moert::Model b(std::move(a));
    CHECK(!a && b, "move construction transfers the model");
    CHECK(a.get() == nullptr, "moved-from Model holds no handle");
    CHECK_THROWS([&] { a.info(); }, MOERT_ERR_INVALID_ARGUMENT, "model", "info() of a moved-from Model");
    CHECK_THROWS([&] { moert::Session{a}; }, MOERT_ERR_INVALID_ARGUMENT, "model", "Session of a moved-from Model");
    moert::Model c(fx.dir, 32);
    c = std::move(b);  // frees c's own model
    CHECK(c && !b && c.info().context_length != 32, "move assignment transfers the model");

    moert::Session s1(c);
    s1.eval(fx.prompt);
    moert::Session s2(std::move(s1));
    CHECK(!s1 && s2 && s2.n_past() == static_cast<int64_t>(fx.prompt.size()), "move construction keeps the KV cache");
    CHECK(s1.n_past() == 0 && s1.n_ctx() == 0, "moved-from Session reports 0");
    CHECK_THROWS([&] { s1.eval(fx.prompt); }, MOERT_ERR_INVALID_ARGUMENT, "session", "eval() of a moved-from Session");
    CHECK_THROWS([&] { s1.reset(); }, MOERT_ERR_INVALID_ARGUMENT, "session", "reset() of a moved-from Session");
    moert::Session s3(c, 16);
    s3 = std::move(s2);
    CHECK(s3.n_past() == static_cast<int64_t>(fx.prompt.size()) && s3.n_ctx() != 16, "move assignment of a Session");
    double err = rel_error(s3.eval({fx.greedy[0]}), fx.full_row(fx.prompt.size()));
    CHECK(err <= kLogitsRtol, "a moved Session goes on decoding: " + describe(err));

    moert::Sampler p1;
    moert::Sampler p2(std::move(p1));
    CHECK(!p1 && p2, "move construction of a Sampler");
    CHECK_THROWS([&] { p1.sample(fx.logits.data(), fx.vocab); }, MOERT_ERR_INVALID_ARGUMENT, "sampler",
                 "sample() of a moved-from Sampler");
}

/// The callback stops generation by returning false, and an exception it throws comes back out of generate().
void test_callbacks(const Fixture &fx, const moert::Model &model) {
    moert::Session session(model);
    int calls = 0;
    std::vector<int32_t> tokens = session.generate(fx.prompt, greedy_options(fx), [&calls](int32_t) { return ++calls < 3; });
    CHECK(calls == 3 && tokens.size() == 3, "returning false on the third token stops after it");
    CHECK(std::equal(tokens.begin(), tokens.end(), fx.greedy.begin()), "tokens before the stop are the greedy ones");

    session.reset();
    calls = 0;
    bool caught = false;
    try {
        session.generate(fx.prompt, greedy_options(fx), [&calls](int32_t) -> bool {
            if (++calls == 2) throw std::logic_error("callback failure");
            return true;
        });
    } catch (const std::logic_error &e) {
        caught = std::string(e.what()) == "callback failure";
    }
    CHECK(caught, "the callback's exception propagates out of generate() unchanged");
    CHECK(calls == 2, "generation stopped at the throwing callback");
    session.reset();
    CHECK(session.generate(fx.prompt, greedy_options(fx)) == fx.greedy, "the session works after the exception");

    struct Counter {
        int n = 0;
        bool operator()(int32_t) { return ++n < 5; }
    } counter;
    session.reset();
    CHECK(session.generate(fx.prompt, greedy_options(fx), counter).size() == 5 && counter.n == 5,
          "a function object lvalue is called in place");
    bool (*const stop_at_once)(int32_t) = [](int32_t) { return false; };
    session.reset();
    CHECK(session.generate(fx.prompt, greedy_options(fx), stop_at_once).size() == 1, "a function pointer callback");
}

/// Session state: n_ctx, n_past and reset.
void test_session_state(const Fixture &fx, const moert::Model &model) {
    moert::Session session(model, 32, 2);
    CHECK(session.n_ctx() == 32 && session.n_past() == 0, "a new session with n_ctx 32");
    std::vector<float> all = session.eval(fx.prompt, true);
    CHECK(rel_error(all, fx.logits) <= kLogitsRtol, "chunked prefill (max_batch 2) matches transformers");
    session.reset();
    CHECK(session.n_past() == 0, "n_past after reset");
    std::vector<float> last = session.eval(fx.prompt);
    CHECK(std::equal(last.begin(), last.end(), all.end() - static_cast<std::ptrdiff_t>(fx.vocab)),
          "LAST logits equal the last row of ALL after a reset");
}

/// KV cache types and the context shift: a q8_0 cache needs heads of 32-value blocks (this fixture's are 64 wide),
/// takes 34/128 of float32's bytes and stays within its tolerance of transformers (the C test's table); shift()
/// drops positions, and the shift flag lets generation go past n_ctx.
void test_kv_cache(const std::string &root) {
    const Fixture fx(root, "mixtral_hd64");
    const moert::Model model(fx.dir);
    moert::SessionOptions o;
    o.n_ctx = 64;
    moert::Session exact(model, o);
    o.kv_type = MOERT_KV_TYPE_Q8_0;
    moert::Session q8(model, o);
    CHECK(q8.kv_bytes() * 128 == exact.kv_bytes() * 34, "a q8_0 cache takes 34/128 of float32's bytes");
    CHECK(rel_error(q8.eval(fx.prompt, true), fx.logits) <= 3e-2, "q8_0 cache logits within 3e-2 of transformers'");
    q8.shift(1, 2);
    CHECK(q8.n_past() == static_cast<int64_t>(fx.prompt.size()) - 2, "shift(1, 2) drops two positions");
    bool refused = false;
    try {
        q8.shift(0, 100);
    } catch (const moert::Error &e) {
        refused = e.status() == MOERT_ERR_INVALID_ARGUMENT;
    }
    CHECK(refused, "a shift beyond n_past throws MOERT_ERR_INVALID_ARGUMENT");
    o.kv_type = MOERT_KV_TYPE_F32;
    o.n_ctx = 16;
    o.flags = MOERT_SESSION_CONTEXT_SHIFT;
    o.n_keep = 1;
    moert::Session shifting(model, o);
    moert::GenerateOptions g;
    g.max_new_tokens = 40;
    g.ignore_eos = true;
    CHECK(shifting.generate(fx.prompt, g).size() == 40, "with the shift flag, 40 tokens in a context of 16");
}

/// Samplers: greedy is argmax with the lowest id on ties; equal seeds give equal draws; top_k 1 is argmax.
void test_sampler(const Fixture &fx) {
    moert::Sampler greedy;
    CHECK(greedy.sample({0.5f, 2.0f, -1.0f, 2.0f}) == 1, "greedy tie goes to the lowest id");
    std::vector<float> row(fx.logits.begin(), fx.logits.begin() + static_cast<std::ptrdiff_t>(fx.vocab));
    int32_t best = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
    CHECK(greedy.sample(row) == best, "greedy on a reference row is its argmax");
    moert::SamplerOptions o;
    o.temperature = 1.0f;
    o.seed = 99;
    std::vector<float> flat(16, 0.0f);
    moert::Sampler a(o), b(o);
    std::vector<int32_t> da, db;
    for (int i = 0; i < 32; i++) {
        da.push_back(a.sample(flat));
        db.push_back(b.sample(flat.data(), flat.size()));
    }
    CHECK(da == db, "equal seeds give equal draws");
    CHECK(std::all_of(da.begin(), da.end(), [](int32_t t) { return t >= 0 && t < 16; }), "draws are in range");
    o.top_k = 1;
    moert::Sampler top1(o);
    CHECK(top1.sample(row) == best, "top_k 1 is the argmax");
}

// MARK: - Memory

/// The logits of every prompt position ([n_prompt, vocab]) that a new session of `model` computes.
std::vector<float> prompt_logits(const Fixture &fx, const moert::Model &model) {
    moert::Session session(model);
    return session.eval(fx.prompt, true);
}

/// Expert budgets change memory use, never results; memory_stats() and resident_experts() account for it.
void test_memory(const Fixture &fx) {
    moert::Model plain(fx.dir);
    moert::ModelInfo info = plain.info();
    std::vector<float> want = prompt_logits(fx, plain);
    CHECK(rel_error(want, fx.logits) <= kLogitsRtol, "unbudgeted prompt logits: " + describe(rel_error(want, fx.logits)));
    moert::MemoryStats free_stats = plain.memory_stats();
    CHECK(!free_stats.allocator.empty(), "memory_stats().allocator names the allocator");
    CHECK(free_stats.expert_budget_bytes == 0 && free_stats.evictions == 0, "no budget, no evictions");
    CHECK(free_stats.expert_bytes_total > 0 && free_stats.mapped_bytes == info.file_bytes, "expert and mapped bytes");
    CHECK(free_stats.expert_bytes_resident <= free_stats.expert_bytes_total, "resident bytes within the total");

    // Every routed expert of these fixtures has the same shape, so resident bytes are resident experts times one's size.
    const int64_t n_experts_total = static_cast<int64_t>(info.n_moe_layers) * info.n_experts;
    const int64_t expert_bytes = free_stats.expert_bytes_total / n_experts_total;
    std::vector<int32_t> resident = plain.resident_experts();
    int64_t n_resident = 0;
    bool in_range = true;
    for (int32_t r : resident) {
        n_resident += r;
        in_range = in_range && r >= 0 && r <= info.n_experts;
    }
    CHECK(resident.size() == static_cast<size_t>(info.n_moe_layers) && in_range, "resident_experts(): one count per MoE layer");
    CHECK(n_resident * expert_bytes == free_stats.expert_bytes_resident, "resident_experts() sum to the resident bytes");

    moert::ModelOptions quarter;
    quarter.expert_budget_percent = 25.0f;
    moert::Model budgeted(fx.dir, quarter);
    CHECK(prompt_logits(fx, budgeted) == want, "a 25% expert budget gives identical prompt logits");
    moert::Session session(budgeted);
    CHECK(session.generate(fx.prompt, greedy_options(fx)) == fx.greedy, "a 25% expert budget generates the greedy tokens");
    moert::MemoryStats m = budgeted.memory_stats();
    CHECK(m.evictions > 0, "a 25% budget evicts experts, got " + std::to_string(m.evictions) + " evictions");
    CHECK(m.expert_budget_bytes > 0 && std::llabs(4 * m.expert_budget_bytes - m.expert_bytes_total) < 4,
          "the budget is a quarter of the expert bytes: " + std::to_string(m.expert_budget_bytes) + " of " +
              std::to_string(m.expert_bytes_total));
    CHECK(m.misses > 0 && m.hits >= 0 && m.misses * expert_bytes == m.bytes_loaded, "every miss loads one expert");
    CHECK(m.bytes_loaded == m.expert_bytes_resident + m.evictions * expert_bytes,
          "loaded bytes are resident bytes plus evicted ones");
    resident = budgeted.resident_experts();
    n_resident = 0;
    for (int32_t r : resident) n_resident += r;
    CHECK(n_resident * expert_bytes == m.expert_bytes_resident, "resident_experts() under a budget");

    moert::ModelOptions half;
    half.expert_budget_bytes = free_stats.expert_bytes_total / 2;
    moert::Model by_bytes(fx.dir, half);
    CHECK(prompt_logits(fx, by_bytes) == want, "a budget in bytes gives identical prompt logits");
    m = by_bytes.memory_stats();
    CHECK(m.expert_budget_bytes == half.expert_budget_bytes, "memory_stats() reports the budget in bytes");
    CHECK(m.expert_bytes_resident <= m.expert_budget_bytes, "resident bytes stay within a budget of half the experts");

    moert::ModelOptions both = half;
    both.expert_budget_percent = 50.0f;
    CHECK_THROWS([&] { moert::Model(fx.dir, both); }, MOERT_ERR_INVALID_ARGUMENT, "expert budget", "both budget fields");
    moert::ModelOptions bad;
    bad.expert_budget_percent = 101.0f;
    CHECK_THROWS([&] { moert::Model(fx.dir, bad); }, MOERT_ERR_INVALID_ARGUMENT, "expert budget", "a budget of 101%");
    bad = moert::ModelOptions();
    bad.expert_budget_percent = NAN;
    CHECK_THROWS([&] { moert::Model(fx.dir, bad); }, MOERT_ERR_INVALID_ARGUMENT, "expert budget", "a NaN budget");
    bad = moert::ModelOptions();
    bad.expert_budget_bytes = -1;
    CHECK_THROWS([&] { moert::Model(fx.dir, bad); }, MOERT_ERR_INVALID_ARGUMENT, "expert budget", "a negative budget");
    bad = moert::ModelOptions();
    bad.max_context = 16;
    CHECK(moert::Model(fx.dir, bad).info().context_length == 16, "ModelOptions::max_context caps the context");

    moert::Model moved(std::move(plain));
    CHECK_THROWS([&] { plain.memory_stats(); }, MOERT_ERR_INVALID_ARGUMENT, "model", "memory_stats() of a moved-from Model");
    CHECK_THROWS([&] { plain.resident_experts(); }, MOERT_ERR_INVALID_ARGUMENT, "model",
                 "resident_experts() of a moved-from Model");
    CHECK(plain.eos_tokens().empty() && !plain.router_kind(0) && !plain.expert_kind(0, 0),
          "a moved-from Model has no EOS tokens and no kinds");
}

/// A new directory under /tmp, removed with everything in it when the object is destroyed.
struct TempDir {
    std::string path;

    TempDir() {
        char pattern[] = "/tmp/moert_cpp_test_XXXXXX";
        if (!mkdtemp(pattern)) throw std::runtime_error("mkdtemp failed");
        path = pattern;
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
    ~TempDir() { std::filesystem::remove_all(path); }
};

/// Fills `dir` with symbolic links to the files of `source`, except the files named in `written`, which get the given
/// texts instead (whether or not `source` has them).
void link_files(const std::string &source, const std::string &dir, const std::map<std::string, std::string> &written) {
    namespace fs = std::filesystem;
    for (const fs::directory_entry &entry : fs::directory_iterator(source)) {
        if (!written.count(entry.path().filename().string())) {
            fs::create_symlink(fs::absolute(entry.path()), fs::path(dir) / entry.path().filename());
        }
    }
    for (const auto &file : written) std::ofstream(fs::path(dir) / file.first, std::ios::binary) << file.second;
}

/// ModelOptions::flags: a plugin named by path needs MOERT_MODEL_TRUST_PLUGIN_PATHS; MOERT_MODEL_NO_MMAP reads the
/// weights instead of mapping them, with the reference logits; unknown bits are refused.
void test_model_flags(const Fixture &fx) {
    // config.json with a moert section naming a plugin library by path, as a downloaded model could.
    std::string config = read_file(fx.dir + "/config.json");
    config.insert(config.find('{') + 1, "\"moert\": {\"format_version\": 1, \"plugins\": [\"./evil.so\"]},");
    TempDir temp;
    link_files(fx.dir, temp.path, {{"config.json", config}});
    const std::string &dir = temp.path;
    CHECK_THROWS([&] { moert::Model{dir}; }, MOERT_ERR_PLUGIN, "is a path", "a plugin path without trust");
    moert::ModelOptions trusting;
    trusting.flags = MOERT_MODEL_TRUST_PLUGIN_PATHS;
    CHECK_THROWS([&] { moert::Model(dir, trusting); }, MOERT_ERR_IO, "evil.so",
                 "with MOERT_MODEL_TRUST_PLUGIN_PATHS the path is tried (and is missing)");
    CHECK(trusting.to_c().flags == MOERT_MODEL_TRUST_PLUGIN_PATHS, "ModelOptions::to_c() passes the flags");

    moert::ModelOptions read;
    read.flags = MOERT_MODEL_NO_MMAP;
    moert::Model model(fx.dir, read);
    double err = rel_error(prompt_logits(fx, model), fx.logits);
    CHECK(err <= kLogitsRtol, "weights read with MOERT_MODEL_NO_MMAP give the reference logits: " + describe(err));
    moert::Session session(model);
    CHECK(session.generate(fx.prompt, greedy_options(fx)) == fx.greedy, "and the greedy continuation");

    moert::ModelOptions unknown;
    unknown.flags = 0x80u;
    CHECK_THROWS([&] { moert::Model(fx.dir, unknown); }, MOERT_ERR_INVALID_ARGUMENT, "0x80", "an unknown flag bit");
    CHECK((moert::ModelOptions{16, 0, 0.0f}.flags == 0 && moert::ModelOptions{16, 0, 0.0f}.max_context == 16),
          "brace initialisation of the first three fields keeps its meaning");
}

// MARK: - Logging

/// Runs `body` with file descriptor 2 sent to a temporary file and returns what was written to it.
std::string capture_stderr(const std::function<void()> &body) {
    char path[] = "/tmp/moert_test_stderr_XXXXXX";
    int file = mkstemp(path);
    if (file < 0) throw std::runtime_error("mkstemp failed");
    std::fflush(stderr);
    int saved = dup(2);
    dup2(file, 2);
    auto restore = [&] {
        std::fflush(stderr);
        dup2(saved, 2);
        close(saved);
        close(file);
    };
    try {
        body();
    } catch (...) {
        restore();
        unlink(path);
        throw;
    }
    restore();
    std::string text = read_file(path);
    unlink(path);
    return text;
}

/// set_log_callback() gets moert's warnings at their level, on the thread that logs; an empty callback gives them
/// back to stderr; an exception thrown by the callback stays on the C++ side.
void test_log(const Fixture &fx) {
    struct Restore {
        ~Restore() { moert::set_log_callback(nullptr); }
    } restore;
    // ExpertStore's warning for a budget below the experts one step needs (moert.h, "Logging"); once per model.
    const std::string warning = "expert budget of 1 bytes is smaller than the experts one step needs; running over it";
    moert::ModelOptions tiny;
    tiny.expert_budget_bytes = 1;
    auto run_over_budget = [&] {
        moert::Model model(fx.dir, tiny);
        moert::Session session(model);
        session.eval(fx.prompt);
        session.eval({fx.greedy[0]});
    };

    std::vector<std::pair<int32_t, std::string>> received;
    std::string err = capture_stderr([&] {
        moert::set_log_callback([&received](int32_t level, std::string_view message) {
            received.emplace_back(level, std::string(message));
        });
        run_over_budget();
    });
    auto warnings = std::count_if(received.begin(), received.end(), [&](const auto &m) { return m.second == warning; });
    CHECK(warnings == 1, "the callback got the budget warning once per model, got " + std::to_string(warnings));
    CHECK(std::all_of(received.begin(), received.end(),
                      [&](const auto &m) { return m.second != warning || m.first == MOERT_LOG_WARN; }),
          "the budget warning comes at MOERT_LOG_WARN");
    CHECK(err.find(warning) == std::string::npos, "no warning on stderr while a callback is installed");

    moert::set_log_callback(nullptr);
    size_t count = received.size();
    err = capture_stderr(run_over_budget);
    CHECK(received.size() == count, "set_log_callback(nullptr) stops the callback");
    CHECK(err.find("moert: warning: " + warning + "\n") != std::string::npos,
          "set_log_callback(nullptr) restores stderr, got \"" + err + "\"");

    std::vector<std::string> first, second;
    moert::set_log_callback([&first](int32_t, std::string_view message) { first.emplace_back(message); });
    moert::set_log_callback([&second](int32_t, std::string_view message) { second.emplace_back(message); });
    run_over_budget();
    CHECK(first.empty() && std::count(second.begin(), second.end(), warning) == 1, "a replaced callback is not called");

    std::vector<std::thread::id> threads;
    moert::set_log_callback([&threads](int32_t, std::string_view) { threads.push_back(std::this_thread::get_id()); });
    std::thread worker(run_over_budget);
    std::thread::id worker_id = worker.get_id();
    worker.join();
    bool on_worker = std::all_of(threads.begin(), threads.end(), [&](std::thread::id t) { return t == worker_id; });
    CHECK(!threads.empty() && on_worker, "the callback runs on the thread whose call logs");

    int calls = 0;
    moert::set_log_callback([&calls](int32_t, std::string_view) {
        calls++;
        throw std::runtime_error("log callback failure");
    });
    bool returned = false;
    err = capture_stderr([&] {
        run_over_budget();
        returned = true;
    });
    CHECK(returned && calls >= 1, "an exception thrown by the callback does not reach the evaluation");
    CHECK(err.find(warning) == std::string::npos, "the message of a throwing callback is dropped, not printed");

    moert::set_log_callback({});
    err = capture_stderr(run_over_budget);
    CHECK(err.find(warning) != std::string::npos, "set_log_callback({}) restores stderr too");
}

// MARK: - Routing

/// Expert counts recomputed from a trace, in the layout of moert::ExpertCounts.
std::vector<int64_t> counts_from(const moert::Trace &t, const moert::ModelInfo &info) {
    std::vector<int64_t> counts(static_cast<size_t>(info.n_moe_layers) * static_cast<size_t>(info.n_experts), 0);
    std::map<int32_t, int32_t> moe_index;  // decoder layer -> MoE layer, in order of first appearance by layer
    for (int32_t l : t.layers) moe_index.emplace(l, 0);
    int32_t m = 0;
    for (auto &entry : moe_index) entry.second = m++;
    for (size_t r = 0; r < t.size(); r++) {
        for (int64_t i = t.offsets[r]; i < t.offsets[r + 1]; i++) {
            counts[static_cast<size_t>(moe_index[t.layers[r]] * info.n_experts + t.expert_ids[static_cast<size_t>(i)])]++;
        }
    }
    return counts;
}

/// True when every record of `t` chose `k` distinct in-range experts with finite weights >= 0.
bool records_choose(const moert::Trace &t, const moert::ModelInfo &info, int64_t k) {
    if (t.offsets.size() != t.size() + 1 || t.offsets.front() != 0) return false;
    for (size_t r = 0; r < t.size(); r++) {
        if (t.offsets[r + 1] - t.offsets[r] != k) return false;
        for (int64_t i = t.offsets[r]; i < t.offsets[r + 1]; i++) {
            int32_t e = t.expert_ids[static_cast<size_t>(i)];
            float w = t.weights[static_cast<size_t>(i)];
            if (e < 0 || e >= info.n_experts || !std::isfinite(w) || w < 0) return false;
            for (int64_t j = t.offsets[r]; j < i; j++) {
                if (t.expert_ids[static_cast<size_t>(j)] == e) return false;
            }
        }
    }
    return true;
}

/// trace() records one record per (token, MoE layer); expert_counts() agrees with it; clearing and resetting empty them.
void test_trace(const Fixture &fx, const moert::Model &model) {
    moert::ModelInfo info = model.info();
    const int64_t n_prompt = static_cast<int64_t>(fx.prompt.size()), k = info.n_experts_per_tok;
    moert::Session session(model);
    moert::Trace empty = session.trace();
    CHECK(empty.empty() && empty.offsets == std::vector<int64_t>{0}, "a new session's trace is empty, offsets {0}");
    session.set_trace(true);
    session.eval(fx.prompt);
    moert::Trace t = session.trace();
    CHECK(static_cast<int64_t>(t.size()) == n_prompt * info.n_moe_layers,
          "trace records: " + std::to_string(t.size()) + ", want tokens x MoE layers");
    if (!CHECK(t.layers.size() == t.size() && t.tokens.size() == t.size() && t.offsets.size() == t.size() + 1,
               "per-record arrays have size() elements, offsets size() + 1") ||
        !CHECK(t.expert_ids.size() == static_cast<size_t>(t.offsets.back()) && t.weights.size() == t.expert_ids.size(),
               "expert_ids and weights have offsets.back() elements")) {
        return;  // the checks below index the arrays by the offsets
    }
    CHECK(records_choose(t, info, k), "every record chose num_experts_per_tok distinct experts with valid weights");
    bool tokens_match = true;
    for (size_t r = 0; r < t.size(); r++) {
        int32_t p = t.positions[r];
        tokens_match = tokens_match && p >= 0 && p < n_prompt && t.tokens[r] == fx.prompt[static_cast<size_t>(p)] &&
                       t.layers[r] >= 0 && t.layers[r] < info.n_layers;
    }
    CHECK(tokens_match, "each record names the prompt token at its position and a decoder layer");

    moert::ExpertCounts counts = session.expert_counts();
    CHECK(counts.n_moe_layers == info.n_moe_layers && counts.n_experts == info.n_experts &&
              counts.counts.size() == static_cast<size_t>(info.n_moe_layers * info.n_experts),
          "expert_counts() dimensions are MoE layers x experts");
    int64_t total = std::accumulate(counts.counts.begin(), counts.counts.end(), int64_t{0});
    CHECK(total == n_prompt * info.n_moe_layers * k,
          "counters sum to " + std::to_string(total) + ", want tokens x MoE layers x top-k");
    CHECK(counts.counts == counts_from(t, info), "expert_counts() agrees with the trace");
    CHECK(counts.at(info.n_moe_layers - 1, info.n_experts - 1) == counts.counts.back(), "ExpertCounts::at() is row-major");
    bool at_throws = false;
    try {
        counts.at(0, info.n_experts);
    } catch (const std::out_of_range &) {
        at_throws = true;
    }
    CHECK(at_throws, "ExpertCounts::at() past a row throws std::out_of_range");

    session.clear_trace();
    CHECK(session.trace().empty(), "clear_trace() empties the trace");
    CHECK(t.size() == static_cast<size_t>(n_prompt * info.n_moe_layers), "a copied trace outlives clear_trace()");
    session.set_trace(false);
    session.eval({fx.greedy[0]});
    CHECK(session.trace().empty(), "nothing is traced with tracing off");
    counts = session.expert_counts();
    total = std::accumulate(counts.counts.begin(), counts.counts.end(), int64_t{0});
    CHECK(total == (n_prompt + 1) * info.n_moe_layers * k, "counters go on without tracing");
    session.reset_counters();
    counts = session.expert_counts();
    CHECK(std::all_of(counts.counts.begin(), counts.counts.end(), [](int64_t c) { return c == 0; }) &&
              counts.counts.size() == static_cast<size_t>(info.n_moe_layers * info.n_experts),
          "reset_counters() zeroes the counters");

    moert::Session moved(std::move(session));
    CHECK_THROWS([&] { session.set_trace(true); }, MOERT_ERR_INVALID_ARGUMENT, "session", "set_trace() of a moved-from Session");
    CHECK_THROWS([&] { session.trace(); }, MOERT_ERR_INVALID_ARGUMENT, "session", "trace() of a moved-from Session");
    CHECK_THROWS([&] { session.clear_trace(); }, MOERT_ERR_INVALID_ARGUMENT, "session", "clear_trace() of a moved-from Session");
    CHECK_THROWS([&] { session.expert_counts(); }, MOERT_ERR_INVALID_ARGUMENT, "session",
                 "expert_counts() of a moved-from Session");
    CHECK_THROWS([&] { session.reset_counters(); }, MOERT_ERR_INVALID_ARGUMENT, "session",
                 "reset_counters() of a moved-from Session");
}

/// set_top_k() and set_router() override one session's routers; 0 and restore_router() bring the model's back exactly.
void test_router_overrides(const Fixture &fx, const moert::Model &model) {
    moert::ModelInfo info = model.info();
    moert::Session session(model), other(model);
    std::vector<float> base = session.eval(fx.prompt, true);
    CHECK(rel_error(base, fx.logits) <= kLogitsRtol, "prompt logits: " + describe(rel_error(base, fx.logits)));

    session.set_top_k(1);
    session.set_trace(true);
    session.reset();
    std::vector<float> top1 = session.eval(fx.prompt, true);
    CHECK(top1 != base && rel_error(top1, base) > 100 * kLogitsRtol, "set_top_k(1) changes the logits");
    CHECK(records_choose(session.trace(), info, 1), "with set_top_k(1) every record chose one expert");
    CHECK(other.eval(fx.prompt, true) == base, "the override does not reach another session");
    session.set_top_k(0);
    session.reset();
    CHECK(session.eval(fx.prompt, true) == base, "set_top_k(0) restores the model's routers exactly");
    session.set_top_k(info.n_experts);
    CHECK_THROWS([&] { session.set_top_k(info.n_experts + 1); }, MOERT_ERR_INVALID_ARGUMENT, "top_k",
                 "set_top_k(n_experts + 1)");
    CHECK_THROWS([&] { session.set_top_k(-1); }, MOERT_ERR_INVALID_ARGUMENT, "top_k", "set_top_k(-1)");

    session.set_router("topk", "{\"top_k\": 1}");
    session.reset();
    CHECK(rel_error(session.eval(fx.prompt, true), base) > 100 * kLogitsRtol, "set_router(topk, top_k 1) changes the logits");
    session.restore_router();
    session.reset();
    CHECK(session.eval(fx.prompt, true) == base, "restore_router() restores the model's routers exactly");
    session.set_router("topk");
    session.reset();
    double err = rel_error(session.eval(fx.prompt, true), fx.logits);
    CHECK(err <= kLogitsRtol, "set_router(topk) without parameters routes as the model: " + describe(err));
    CHECK_THROWS([&] { session.set_router("no-such-router"); }, MOERT_ERR_INVALID_ARGUMENT, "no-such-router",
                 "an unknown router kind");
    CHECK_THROWS([&] { session.set_router("topk", "{\"top_k\": "); }, MOERT_ERR_INVALID_ARGUMENT, "", "truncated JSON");
    CHECK_THROWS([&] { session.set_router("topk", "[1]"); }, MOERT_ERR_INVALID_ARGUMENT, "object", "params not an object");
    session.restore_router();

    moert::Session moved(std::move(session));
    CHECK_THROWS([&] { session.set_top_k(1); }, MOERT_ERR_INVALID_ARGUMENT, "session", "set_top_k() of a moved-from Session");
    CHECK_THROWS([&] { session.set_router("topk"); }, MOERT_ERR_INVALID_ARGUMENT, "session",
                 "set_router() of a moved-from Session");
    CHECK_THROWS([&] { session.restore_router(); }, MOERT_ERR_INVALID_ARGUMENT, "session",
                 "restore_router() of a moved-from Session");
}

// MARK: - Text

/// The lines of a JSON-lines file, parsed. Lines end in "\n" only: the texts hold other line separators (U+2028, ...).
std::vector<Json> read_json_lines(const std::string &path) {
    std::string text = read_file(path);
    std::vector<Json> lines;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        if (end > start) lines.push_back(JsonParser(text.substr(start, end - start)).parse());
        start = end + 1;
    }
    return lines;
}

/// A JSON array of ids as a vector.
std::vector<int32_t> json_ids(const Json &array) {
    std::vector<int32_t> ids;
    for (const Json &id : array.items) ids.push_back(static_cast<int32_t>(id.number));
    return ids;
}

/// Text for messages: printable ASCII as it is, other bytes as \xNN.
std::string shown(const std::string &text) {
    std::string out;
    for (unsigned char c : text) {
        if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        }
    }
    return out;
}

/// `text` as a JSON string literal.
std::string json_quote(const std::string &text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\u%04x", c);
            out += hex;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

/// The names of the tokenizer fixtures under `root`/tokenizers that have cases, sorted.
std::vector<std::string> tokenizer_fixture_names(const std::string &root) {
    std::vector<std::string> names;
    for (const std::filesystem::directory_entry &entry : std::filesystem::directory_iterator(root + "/tokenizers")) {
        if (std::filesystem::is_regular_file(entry.path() / "cases.jsonl")) names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

/// Every case of a tokenizer fixture (tokenizers 0.23.3's results, see tools/make_tokenizer_fixtures.py): the ids of
/// encode three ways, decode with and without special tokens, and the detokenizer's pieces against DecodeStream's.
void test_tokenizer_cases(const std::string &root, const std::string &name) {
    moert::Tokenizer tokenizer(root + "/tokenizers/" + name + "/tokenizer.json");
    std::vector<Json> cases = read_json_lines(root + "/tokenizers/" + name + "/cases.jsonl");
    CHECK(cases.size() >= 60, "only " + std::to_string(cases.size()) + " cases");
    int line = 0, skipping_checked = 0;
    for (const Json &c : cases) {
        line++;
        const std::string at = "line " + std::to_string(line) + ": ";
        std::vector<int32_t> ids = json_ids(c["ids"]);
        if (c["decode_only"].type != Json::Type::boolean || c["decode_only"].number == 0) {
            const std::string &text = c["text"].text;
            CHECK(tokenizer.encode(text) == ids, at + "encode(text) differs from ids");
            CHECK(tokenizer.encode(text, true) == json_ids(c["ids_special"]), at + "encode(text, true) differs from ids_special");
            CHECK(tokenizer.encode(text, false, false) == json_ids(c["ids_plain"]),
                  at + "encode(text, false, false) differs from ids_plain");
        }
        const std::string &decoded = c["decoded"].text;
        std::string got = tokenizer.decode(ids);
        CHECK(got == decoded, at + "decode(ids) is \"" + shown(got) + "\", tokenizers gives \"" + shown(decoded) + "\"");
        CHECK(tokenizer.decode(ids, true) == c["decoded_skip"].text, at + "decode(ids, true) differs from decoded_skip");

        moert::Detokenizer detokenizer(tokenizer);
        std::vector<std::string> pieces;
        for (int32_t id : ids) pieces.push_back(detokenizer.push(id));
        std::string rest = detokenizer.flush();
        std::vector<std::string> stream;
        std::string streamed;
        for (const Json &piece : c["stream"].items) {
            stream.push_back(piece.text);
            streamed += piece.text;
        }
        CHECK(pieces == stream, at + "the detokenizer's pieces differ from DecodeStream's");
        // The pieces add up to the decoded text wherever tokenizers' own pieces do (a broken byte sequence followed by
        // more bytes makes decode rewrite text the stream already gave, in tokenizers as in moert).
        if (decoded.compare(0, streamed.size(), streamed) == 0) {
            std::string joined;
            for (const std::string &piece : pieces) joined += piece;
            CHECK(joined + rest == decoded, at + "pieces and flush() do not add up to decoded");
        }
        // Where decoding rewrites nothing (no U+FFFD), a skipping detokenizer adds up to decoded_skip.
        if (decoded.find("\xef\xbf\xbd") == std::string::npos) {
            moert::Detokenizer skipping = tokenizer.detokenizer(true);
            std::string joined;
            for (int32_t id : ids) joined += skipping.push(id);
            joined += skipping.flush();
            CHECK(joined == c["decoded_skip"].text, at + "a skipping detokenizer's text differs from decoded_skip");
            skipping_checked++;
        }
    }
    CHECK(skipping_checked > 50, "only " + std::to_string(skipping_checked) + " cases checked the skipping detokenizer");
}

/// The parsed tokenizer.json of tokenizer fixture `name`, read once (Qwen2's takes a moment).
const Json &tokenizer_json(const std::string &root, const std::string &name) {
    static std::map<std::string, Json> documents;
    auto it = documents.find(name);
    if (it == documents.end()) {
        it = documents.emplace(name, JsonParser(read_file(root + "/tokenizers/" + name + "/tokenizer.json")).parse()).first;
    }
    return it->second;
}

/// n_vocab(), token_to_piece() and piece_to_token() against tokenizer.json itself: every added token and a sample of
/// the vocabulary.
void test_tokenizer_vocabulary(const std::string &root, const std::string &name) {
    const Json &document = tokenizer_json(root, name);
    moert::Tokenizer tokenizer(root + "/tokenizers/" + name + "/tokenizer.json");
    const std::map<std::string, Json> &vocab = document["model"]["vocab"].members;
    int32_t largest = -1;
    std::vector<std::pair<std::string, int32_t>> entries;
    size_t step = std::max<size_t>(1, vocab.size() / 500), k = 0;
    for (const auto &entry : vocab) {
        int32_t id = static_cast<int32_t>(entry.second.number);
        largest = std::max(largest, id);
        if (k++ % step == 0) entries.emplace_back(entry.first, id);
    }
    for (const Json &added : document["added_tokens"].items) {
        int32_t id = static_cast<int32_t>(added["id"].number);
        largest = std::max(largest, id);
        entries.emplace_back(added["content"].text, id);
    }
    CHECK(tokenizer.n_vocab() == largest + 1, "n_vocab() " + std::to_string(tokenizer.n_vocab()) + ", tokenizer.json's largest id " +
                                                  std::to_string(largest));
    int wrong = 0;
    for (const auto &entry : entries) {
        if (tokenizer.token_to_piece(entry.second) != entry.first || tokenizer.piece_to_token(entry.first) != entry.second) {
            if (wrong++ < 3) CHECK(false, "piece \"" + shown(entry.first) + "\" and id " + std::to_string(entry.second));
        }
    }
    CHECK(wrong == 0 && entries.size() > 400, std::to_string(wrong) + " of " + std::to_string(entries.size()) +
                                                  " pieces and ids differ from tokenizer.json's");
    CHECK(!tokenizer.token_to_piece(tokenizer.n_vocab()) && !tokenizer.token_to_piece(-1), "pieces out of range are std::nullopt");
    CHECK(!tokenizer.piece_to_token("no such piece in any vocabulary"), "an absent piece is std::nullopt");
}

/// Special and stop ids of a directory, buffers, NUL bytes, bad input, and moved-from tokenizers.
void test_tokenizer_calls(const std::string &root) {
    const std::string dir = root + "/tokenizers/qwen2";
    // The ids of the added tokens, from tokenizer.json.
    std::map<std::string, int32_t> added;
    for (const Json &token : tokenizer_json(root, "qwen2")["added_tokens"].items) {
        added[token["content"].text] = static_cast<int32_t>(token["id"].number);
    }
    // transformers' special_tokens_map for this tokenizer_config.json: eos and pad, no bos.
    Json special = JsonParser(read_file(root + "/chat/qwen2/special_tokens.json")).parse();
    CHECK(read_file(dir + "/tokenizer_config.json") == read_file(root + "/chat/qwen2/tokenizer_config.json"),
          "the qwen2 directory has the tokenizer_config.json that special_tokens.json was made from");
    moert::Tokenizer tokenizer(dir);
    CHECK(!tokenizer.bos_token_id() && special["bos_token"].type == Json::Type::null, "no bos_token");
    CHECK(tokenizer.eos_token_id() == added.at(special["eos_token"].text), "eos_token_id() is the eos_token's id");
    CHECK(tokenizer.pad_token_id() == added.at(special["pad_token"].text), "pad_token_id() is the pad_token's id");
    // No generation_config.json or config.json: the only stop id is the eos_token.
    CHECK(tokenizer.stop_token_ids() == std::vector<int32_t>{added.at(special["eos_token"].text)}, "stop_token_ids()");
    moert::Tokenizer from_file(dir + "/tokenizer.json");
    CHECK(!from_file.bos_token_id() && !from_file.eos_token_id() && !from_file.pad_token_id() &&
              from_file.stop_token_ids().empty(),
          "a tokenizer loaded from a file has no special or stop ids");

    // GPT-2's byte-level alphabet writes byte 0 as U+0100 "Ā": a NUL in the text is a token like any other.
    const std::string with_nul("H\0i", 3);
    std::vector<int32_t> ids = tokenizer.encode(with_nul);
    std::optional<int32_t> nul = tokenizer.piece_to_token("\xc4\x80");
    CHECK(nul && std::find(ids.begin(), ids.end(), *nul) != ids.end(), "encode() reads the text past its NUL byte");
    CHECK(tokenizer.decode(ids) == with_nul, "decode() keeps the NUL byte: " + shown(tokenizer.decode(ids)));
    moert::Detokenizer detokenizer(tokenizer);
    std::string streamed;
    for (int32_t id : ids) streamed += detokenizer.push(id);
    streamed += detokenizer.flush();
    CHECK(streamed == with_nul, "the detokenizer keeps the NUL byte");
    CHECK(tokenizer.encode("").empty() && tokenizer.decode({}).empty(), "no text, no ids");
    // tokenizer.json's id 56940 is 128 "Ġ" (spaces): more text than the first buffer decode() tries.
    CHECK(tokenizer.token_to_piece(56940) == [] {
        std::string piece;
        for (int i = 0; i < 128; i++) piece += "\xc4\xa0";
        return piece;
    }(), "the piece of 56940");
    CHECK(tokenizer.decode({56940, 56940}) == std::string(256, ' '), "decode() grows its buffer");

    CHECK_THROWS([&] { tokenizer.encode("ab\xe2\x82"); }, MOERT_ERR_INVALID_ARGUMENT, "invalid UTF-8 at byte 2",
                 "an incomplete character");
    CHECK_THROWS([&] { tokenizer.encode("ok \xff"); }, MOERT_ERR_INVALID_ARGUMENT, "invalid UTF-8 at byte 3", "byte 0xff");
    const int32_t n_vocab = tokenizer.n_vocab();
    CHECK_THROWS([&] { tokenizer.decode({5, n_vocab}); }, MOERT_ERR_OUT_OF_RANGE, std::to_string(n_vocab),
                 "decode() of an id outside the vocabulary");
    CHECK_THROWS([&] { tokenizer.decode({-1}); }, MOERT_ERR_OUT_OF_RANGE, "-1", "decode() of id -1");
    CHECK_THROWS([&] { detokenizer.push(n_vocab); }, MOERT_ERR_OUT_OF_RANGE, std::to_string(n_vocab),
                 "push() of an id outside the vocabulary");
    CHECK_THROWS([&] { tokenizer.piece_to_token(std::string("a\0b", 3)); }, MOERT_ERR_INVALID_ARGUMENT, "NUL",
                 "piece_to_token() of a piece holding a NUL byte");
    CHECK_THROWS([] { moert::Tokenizer("/nonexistent/moert-tokenizer"); }, MOERT_ERR_IO, "/nonexistent/moert-tokenizer",
                 "a missing path");

    // A push refused for its id leaves the detokenizer as it was (the first case's pieces, see cases.jsonl).
    Json first = read_json_lines(dir + "/cases.jsonl").at(0);
    std::vector<int32_t> first_ids = json_ids(first["ids"]);
    moert::Detokenizer fresh = tokenizer.detokenizer();
    std::vector<std::string> pieces{fresh.push(first_ids.at(0))};
    CHECK_THROWS([&] { fresh.push(n_vocab); }, MOERT_ERR_OUT_OF_RANGE, "", "a refused push");
    for (size_t i = 1; i < first_ids.size(); i++) pieces.push_back(fresh.push(first_ids[i]));
    std::vector<std::string> stream;
    for (const Json &piece : first["stream"].items) stream.push_back(piece.text);
    CHECK(pieces == stream, "the pieces after a refused push are DecodeStream's");
    // flush() starts over: the same ids give the same pieces again.
    fresh.flush();
    pieces.clear();
    for (int32_t id : first_ids) pieces.push_back(fresh.push(id));
    CHECK(pieces == stream && fresh.flush().empty(), "after flush() the detokenizer starts over");

    // Moves: the detokenizer borrows the C tokenizer, which a move hands on.
    moert::Tokenizer moved(std::move(tokenizer));
    CHECK(!tokenizer && moved && tokenizer.get() == nullptr, "move construction transfers the tokenizer");
    moert::Detokenizer moved_detokenizer(std::move(fresh));
    CHECK(!fresh && moved_detokenizer.push(first_ids.at(0)) == stream.at(0), "a moved Detokenizer goes on");
    CHECK(tokenizer.n_vocab() == 0 && !tokenizer.eos_token_id() && tokenizer.stop_token_ids().empty() &&
              !tokenizer.token_to_piece(0) && !tokenizer.piece_to_token("a"),
          "a moved-from Tokenizer reports nothing");
    CHECK_THROWS([&] { tokenizer.encode("a"); }, MOERT_ERR_INVALID_ARGUMENT, "tokenizer", "encode() of a moved-from Tokenizer");
    CHECK_THROWS([&] { tokenizer.decode({1}); }, MOERT_ERR_INVALID_ARGUMENT, "tokenizer", "decode() of a moved-from Tokenizer");
    CHECK_THROWS([&] { moert::Detokenizer{tokenizer}; }, MOERT_ERR_INVALID_ARGUMENT, "tokenizer",
                 "a Detokenizer of a moved-from Tokenizer");
    CHECK_THROWS([&] { fresh.push(1); }, MOERT_ERR_INVALID_ARGUMENT, "detokenizer", "push() of a moved-from Detokenizer");
    CHECK_THROWS([&] { fresh.flush(); }, MOERT_ERR_INVALID_ARGUMENT, "detokenizer", "flush() of a moved-from Detokenizer");
}

/// Whether Detokenizer can be made from a Tokenizer of value category T (temporaries are refused at compile time).
template <class T>
constexpr bool detokenizer_from = std::is_constructible_v<moert::Detokenizer, T>;
static_assert(detokenizer_from<const moert::Tokenizer &> && !detokenizer_from<moert::Tokenizer>,
              "a Detokenizer borrows a Tokenizer lvalue and refuses a temporary");

/// The conversation of a qwen2 chat case as ChatMessage values and as the JSON text of those two keys, role first (as
/// the dicts transformers received).
std::vector<moert::ChatMessage> chat_messages(const Json &messages, std::string &json) {
    std::vector<moert::ChatMessage> list;
    json = "[";
    for (const Json &m : messages.items) {
        if (m.members.size() != 2) throw std::runtime_error("a chat case message with more than role and content");
        list.push_back(moert::ChatMessage{m["role"].text, m["content"].text});
        json += std::string(json.size() > 1 ? ", " : "") + "{\"role\": " + json_quote(m["role"].text) +
                ", \"content\": " + json_quote(m["content"].text) + "}";
    }
    json += "]";
    return list;
}

/// The qwen2 chat cases (transformers' apply_chat_template) through both chat functions; named templates and
/// variables with the command-r config of Tests/fixtures/chat; the errors of bad conversations.
void test_chat_templates(const std::string &root) {
    moert::Tokenizer qwen2(root + "/tokenizers/qwen2");
    int line = 0;
    for (const Json &c : read_json_lines(root + "/tokenizers/qwen2/chat_cases.jsonl")) {
        line++;
        const std::string at = "qwen2 chat line " + std::to_string(line) + ": ";
        std::string json;
        std::vector<moert::ChatMessage> messages = chat_messages(c["messages"], json);
        bool generation = c["add_generation_prompt"].number != 0;
        const std::string &rendered = c["rendered"].text;
        std::string got = qwen2.apply_chat_template(messages, generation);
        CHECK(got == rendered, at + "apply_chat_template() gives \"" + shown(got) + "\"");
        CHECK(qwen2.apply_chat_template_json(json, generation) == rendered, at + "apply_chat_template_json()");
        if (generation) CHECK(qwen2.apply_chat_template(messages) == rendered, at + "add_generation_prompt defaults to true");
    }
    CHECK(line >= 5, "only " + std::to_string(line) + " qwen2 chat cases");

    // Tests/fixtures/chat/cases.jsonl: the cases of the qwen2 and command-r configs, with template names (command-r's
    // "rag") and variables (documents, tools). Each config goes beside the qwen2 tokenizer.json.
    namespace fs = std::filesystem;
    TempDir temp;
    std::map<std::string, std::unique_ptr<moert::Tokenizer>> tokenizers;
    int rendered_cases = 0, error_cases = 0, named = 0;
    line = 0;
    for (const Json &c : read_json_lines(root + "/chat/cases.jsonl")) {
        line++;
        if (c["config"].type != Json::Type::string) continue;
        const std::string &config = c["config"].text;
        std::unique_ptr<moert::Tokenizer> &tokenizer = tokenizers[config];
        if (!tokenizer) {
            fs::path dir = fs::path(temp.path) / config;
            fs::create_directory(dir);
            fs::create_symlink(fs::absolute(root + "/tokenizers/qwen2/tokenizer.json"), dir / "tokenizer.json");
            fs::create_symlink(fs::absolute(root + "/chat/" + config + "/tokenizer_config.json"), dir / "tokenizer_config.json");
            tokenizer = std::make_unique<moert::Tokenizer>(dir.string());
        }
        const std::string at = "chat line " + std::to_string(line) + " (" + config + ", " + c["conversation"].text + "): ";
        bool generation = c["add_generation_prompt"].number != 0;
        const std::string &name = c["template_name"].text;
        named += !name.empty();
        auto render = [&] { return tokenizer->apply_chat_template_json(c["messages"].text, generation, name, c["variables"].text); };
        if (c["rendered"].type == Json::Type::string) {
            std::string got = render();
            CHECK(got == c["rendered"].text, at + "rendered \"" + shown(got) + "\"");
            rendered_cases++;
            continue;
        }
        const std::string &type = c["error"]["type"].text, &message = c["error"]["message"].text;
        try {
            render();
            CHECK(false, at + "rendered, transformers raised " + type);
        } catch (const moert::Error &e) {
            std::string what = e.what();
            if (type == "TemplateError") {
                CHECK(e.status() == MOERT_ERR_INVALID_ARGUMENT && what.find(message) != std::string::npos,
                      at + "raise_exception: expected MOERT_ERR_INVALID_ARGUMENT with \"" + message + "\", got " + what);
            } else {
                CHECK(what.size() >= message.size() && what.compare(what.size() - message.size(), message.size(), message) == 0,
                      at + type + ": expected a message ending in \"" + message + "\", got " + what);
            }
            error_cases++;
        }
    }
    CHECK(rendered_cases >= 40 && error_cases >= 4 && named >= 2,
          "the config cases: " + std::to_string(rendered_cases) + " rendered, " + std::to_string(error_cases) + " errors, " +
              std::to_string(named) + " with a template name");

    const std::vector<moert::ChatMessage> hi{{"user", "hi"}};
    CHECK_THROWS([&] { qwen2.apply_chat_template_json("{\"role\": 1}"); }, MOERT_ERR_INVALID_ARGUMENT, "", "messages that are not a list");
    CHECK_THROWS([&] { qwen2.apply_chat_template({}); }, MOERT_ERR_INVALID_ARGUMENT, "", "an empty conversation");
    CHECK_THROWS([&] { qwen2.apply_chat_template(hi, true, "no-such-template"); }, MOERT_ERR_UNSUPPORTED, "no-such-template",
                 "an unknown template name");
    CHECK_THROWS([&] { qwen2.apply_chat_template(hi, true, "", "[1]"); }, MOERT_ERR_INVALID_ARGUMENT, "variables_json",
                 "variables that are not an object");
    CHECK_THROWS([&] { qwen2.apply_chat_template({{"user", std::string("a\0b", 3)}}); }, MOERT_ERR_INVALID_ARGUMENT, "NUL",
                 "content holding a NUL byte");
    CHECK_THROWS([&] { qwen2.apply_chat_template_json(std::string("[]\0[]", 5)); }, MOERT_ERR_INVALID_ARGUMENT, "NUL",
                 "messages JSON holding a NUL byte");
    moert::Tokenizer plain(root + "/tokenizers/qwen2/tokenizer.json");
    CHECK_THROWS([&] { plain.apply_chat_template(hi); }, MOERT_ERR_UNSUPPORTED, "chat template",
                 "a tokenizer without a chat template");
}

/// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool valid_utf8(const std::string &text) {
    size_t i = 0;
    while (i < text.size()) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (n == 0 || i + n > text.size()) return false;
        uint32_t u = n == 1 ? c : n == 2 ? (c & 0x1Fu) : n == 3 ? (c & 0x0Fu) : (c & 0x07u);
        for (size_t k = 1; k < n; k++) {
            unsigned char d = static_cast<unsigned char>(text[i + k]);
            if ((d & 0xC0) != 0x80) return false;
            u = (u << 6) | (d & 0x3Fu);
        }
        const uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
        if (u < smallest[n] || u > 0x10FFFF || (u >= 0xD800 && u < 0xE000)) return false;
        i += n;
    }
    return true;
}

/// The character GPT-2's byte-level alphabet writes for byte `b` (bytes_to_unicode of GPT-2's encoder.py, which
/// tokenizers' ByteLevel uses): printable bytes stand for themselves, the others for U+0100 onwards, in byte order.
std::string byte_level_char(unsigned b) {
    auto printable = [](unsigned x) { return (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF); };
    uint32_t code = b;
    if (!printable(b)) {
        code = 256;
        for (unsigned x = 0; x < b; x++) code += printable(x) ? 0 : 1;
    }
    std::string out;
    put_utf8(code, out);
    return out;
}

/// The first `n` ids of `ids`.
std::vector<int32_t> first_ids(const std::vector<int32_t> &ids, size_t n) {
    return std::vector<int32_t>(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(std::min(n, ids.size())));
}

/// Session::generate_text on the mixtral fixture, whose tokenizer.json is GPT-2's byte-level alphabet without merges (id
/// b is byte b): the ids are transformers' greedy continuation, and the text is their decode, streamed in whole
/// characters.
void test_generate_text(const Fixture &fx, const moert::Model &model) {
    const Json vocab = JsonParser(read_file(fx.dir + "/tokenizer.json")).parse()["model"]["vocab"];
    const Json config = JsonParser(read_file(fx.dir + "/tokenizer_config.json")).parse();
    moert::Tokenizer tokenizer(fx.dir);
    CHECK(tokenizer.n_vocab() == static_cast<int32_t>(fx.vocab), "the fixture tokenizer has the model's vocabulary size");
    CHECK(tokenizer.bos_token_id() == static_cast<int32_t>(vocab[config["bos_token"].text].number) &&
              tokenizer.eos_token_id() == static_cast<int32_t>(vocab[config["eos_token"].text].number),
          "bos and eos ids are those of tokenizer_config.json's tokens");
    // generation_config.json's and config.json's eos_token_id and the eos_token are all one id.
    CHECK(tokenizer.stop_token_ids() == std::vector<int32_t>{static_cast<int32_t>(fx.config["eos_token_id"].number)},
          "stop_token_ids()");

    moert::GenerateOptions options = greedy_options(fx);
    moert::Session session(model);
    std::vector<std::string> pieces;
    moert::GeneratedText out = session.generate_text(tokenizer, fx.prompt, options, [&pieces](std::string_view piece) {
        pieces.emplace_back(piece);
        return true;
    });
    CHECK(out.tokens == fx.greedy, "generate_text() from ids generates transformers' greedy continuation");
    std::string joined;
    bool whole = true;
    for (const std::string &piece : pieces) {
        joined += piece;
        whole = whole && !piece.empty() && valid_utf8(piece);
    }
    CHECK(joined == out.text && out.text == tokenizer.decode(out.tokens, true),
          "the pieces add up to the returned text, decode(tokens, true): \"" + shown(joined) + "\"");
    CHECK(whole && pieces.size() > 1, "every piece is non-empty, whole UTF-8");
    CHECK(session.n_past() == static_cast<int64_t>(fx.prompt.size() + fx.greedy.size()),
          "the session holds the prompt and every generated token, as after generate()");

    // tokenizer.json gives byte b's character the id b, and has no merges: a text's ids are its bytes.
    bool bytes_are_ids = vocab.members.size() == 256;
    for (unsigned b = 0; b < 256; b++) {
        bytes_are_ids = bytes_are_ids && vocab[byte_level_char(b)].number == b;
    }
    CHECK(bytes_are_ids && JsonParser(read_file(fx.dir + "/tokenizer.json")).parse()["model"]["merges"].items.empty(),
          "tokenizer.json maps each byte to its own value as id");
    // A text prompt is encoded with the special tokens, as transformers' encode(text): this tokenizer adds none.
    const std::string prompt = "Hi, MoE!";
    std::vector<int32_t> prompt_ids;
    for (char c : prompt) prompt_ids.push_back(static_cast<unsigned char>(c));
    CHECK(tokenizer.encode(prompt, true) == prompt_ids, "the prompt's ids are its bytes");
    session.reset();
    std::vector<int32_t> plain = session.generate(prompt_ids, options);
    session.reset();
    out = session.generate_text(tokenizer, prompt, options);
    CHECK(out.tokens == plain && out.text == tokenizer.decode(plain, true),
          "generate_text() of a text prompt generates what generate() does from its ids");

    // A conversation goes through the chat template of tokenizer_config.json:
    // '<' + role + '>' + content + '\n' per message, then '<assistant>'.
    std::vector<moert::ChatMessage> chat{{"user", "Hi"}};
    CHECK(tokenizer.apply_chat_template(chat) == "<user>Hi\n<assistant>", "the fixture's chat template");
    session.reset();
    plain = session.generate(tokenizer.encode("<user>Hi\n<assistant>"), options);
    session.reset();
    pieces.clear();
    out = session.generate_text(tokenizer, chat, options, [&pieces](std::string_view piece) {
        pieces.emplace_back(piece);
        return true;
    });
    CHECK(out.tokens == plain && out.text == tokenizer.decode(plain, true),
          "generate_text() of a conversation generates what generate() does from its rendered ids");

    // Continuing: an empty prompt goes on from the session's tokens.
    session.reset();
    moert::GenerateOptions half = options;
    half.max_new_tokens = static_cast<int32_t>(fx.greedy.size() / 2);
    moert::GeneratedText a = session.generate_text(tokenizer, fx.prompt, half);
    moert::GeneratedText b = session.generate_text(tokenizer, std::vector<int32_t>(), half, false);
    std::vector<int32_t> both = a.tokens;
    both.insert(both.end(), b.tokens.begin(), b.tokens.end());
    CHECK(both == first_ids(fx.greedy, 2 * static_cast<size_t>(half.max_new_tokens)),
          "generate_text() with no prompt continues the greedy continuation");

    // The callback stops generation by returning false; the rest of the text still comes, so pieces add up.
    session.reset();
    int calls = 0;
    joined.clear();
    out = session.generate_text(tokenizer, fx.prompt, options, [&](std::string_view piece) {
        joined += std::string(piece);
        return ++calls < 2;
    });
    CHECK(out.tokens.size() < fx.greedy.size() && out.tokens == first_ids(fx.greedy, out.tokens.size()) &&
              joined == tokenizer.decode(out.tokens, true),
          "returning false stops generation after that piece's token: " + std::to_string(out.tokens.size()) + " tokens");
    session.reset();
    bool caught = false;
    try {
        session.generate_text(tokenizer, fx.prompt, options, [](std::string_view) -> bool { throw std::logic_error("text callback"); });
    } catch (const std::logic_error &e) {
        caught = std::string(e.what()) == "text callback";
    }
    CHECK(caught, "the text callback's exception propagates out of generate_text()");
}

/// Stop strings and the tokenizer's stop ids, through generate() with GenerateOptions::tokenizer and through
/// generate_text(): generation ends after the token that completes the string, or after a stop id.
void test_stop_strings(const Fixture &fx, const moert::Model &model) {
    moert::Tokenizer tokenizer(fx.dir);
    // The text of greedy tokens 5 and 6 (whole characters) is the stop string; it is complete after the first k
    // tokens for the smallest k whose decode contains it.
    const std::string stop = tokenizer.decode({fx.greedy.at(5), fx.greedy.at(6)});
    size_t first = 0;
    for (size_t k = 1; k <= fx.greedy.size() && first == 0; k++) {
        if (tokenizer.decode(first_ids(fx.greedy, k)).find(stop) != std::string::npos) first = k;
    }
    CHECK(first > 0 && first < fx.greedy.size(), "the stop string \"" + shown(stop) + "\" is complete after " +
                                                     std::to_string(first) + " greedy tokens");
    moert::GenerateOptions options = greedy_options(fx);
    options.tokenizer = &tokenizer;
    options.stop_strings = {"never appears \x01\x02\x03", "", stop};
    moert::Session session(model);
    std::vector<int32_t> tokens = session.generate(fx.prompt, options);
    CHECK(tokens == first_ids(fx.greedy, first), "generate() stops after the token that completes a stop string");
    session.reset();
    options.tokenizer = nullptr;
    moert::GeneratedText out = session.generate_text(tokenizer, fx.prompt, options);
    CHECK(out.tokens == first_ids(fx.greedy, first) && out.text.find(stop) != std::string::npos &&
              out.text == tokenizer.decode(out.tokens, true),
          "generate_text() stops there too, and its text holds the stop string");

    session.reset();
    CHECK_THROWS([&] { session.generate(fx.prompt, options); }, MOERT_ERR_INVALID_ARGUMENT, "tokenizer",
                 "stop strings without a tokenizer");
    options.tokenizer = &tokenizer;
    options.stop_strings = {std::string("a\0b", 3)};
    CHECK_THROWS([&] { session.generate(fx.prompt, options); }, MOERT_ERR_INVALID_ARGUMENT, "NUL", "a stop string holding a NUL byte");
    options.stop_strings = {"ab\xff"};
    CHECK_THROWS([&] { session.generate(fx.prompt, options); }, MOERT_ERR_INVALID_ARGUMENT, "UTF-8", "a stop string of invalid UTF-8");
    moert::Tokenizer moved(std::move(tokenizer));
    CHECK_THROWS([&] { session.generate(fx.prompt, options); }, MOERT_ERR_INVALID_ARGUMENT, "Tokenizer",
                 "GenerateOptions::tokenizer pointing at a moved-from Tokenizer");
    CHECK(session.n_past() == 0, "refused generations evaluated nothing");

    // The tokenizer's stop ids: a tokenizer_config.json whose eos_token is the piece of greedy token 3 (tokenizer.json's
    // entry for that id), beside the same tokenizer.json, without the model's generation_config.json and config.json.
    const Json document = JsonParser(read_file(fx.dir + "/tokenizer.json")).parse();
    std::string eos_piece;
    for (const auto &entry : document["model"]["vocab"].members) {
        if (static_cast<int32_t>(entry.second.number) == fx.greedy.at(3)) eos_piece = entry.first;
    }
    TempDir dir;
    std::filesystem::create_symlink(std::filesystem::absolute(fx.dir + "/tokenizer.json"), dir.path + "/tokenizer.json");
    std::ofstream(dir.path + "/tokenizer_config.json") << "{\"eos_token\": " << json_quote(eos_piece) << "}";
    moert::Tokenizer stopping(dir.path);
    CHECK(stopping.stop_token_ids() == std::vector<int32_t>{fx.greedy.at(3)}, "the eos_token is the only stop id");
    options = greedy_options(fx);
    options.ignore_eos = false;
    session.reset();
    CHECK(session.generate(fx.prompt, options) == fx.greedy, "without a tokenizer the model's EOS never comes");
    options.tokenizer = &stopping;
    session.reset();
    CHECK(session.generate(fx.prompt, options) == first_ids(fx.greedy, 4), "the tokenizer's stop id ends generation");
    session.reset();
    options.tokenizer = nullptr;
    CHECK(session.generate_text(stopping, fx.prompt, options).tokens == first_ids(fx.greedy, 4),
          "generate_text() stops at its tokenizer's stop ids");
    options.ignore_eos = true;
    options.tokenizer = &stopping;
    session.reset();
    CHECK(session.generate(fx.prompt, options) == fx.greedy, "ignore_eos ignores the tokenizer's stop ids too");
}

// MARK: - Plugins

/// True when `names` holds `name`.
bool contains(const std::vector<std::string> &names, const std::string &name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

/// load_plugin() finds libraries by path or name and reports failures as MOERT_ERR_IO; kinds() lists what is known.
void test_plugins(const std::string &root) {
    CHECK(contains(moert::kinds(MOERT_KIND_ROUTER), "topk"), "kinds(MOERT_KIND_ROUTER) lists \"topk\"");
    CHECK(contains(moert::kinds(MOERT_KIND_EXPERT), "ffn"), "kinds(MOERT_KIND_EXPERT) lists \"ffn\"");
    CHECK(moert::kinds(7).empty(), "kinds() of an unknown kind is empty");
    CHECK_THROWS([] { moert::load_plugin("no_such_plugin_name"); }, MOERT_ERR_IO, "no_such_plugin_name",
                 "load_plugin() of a nonexistent name");
    CHECK_THROWS([] { moert::load_plugin(""); }, MOERT_ERR_INVALID_ARGUMENT, "", "load_plugin() of an empty name");
    CHECK_THROWS([] { moert::load_plugin("/nonexistent/libmoert_nothing.so"); }, MOERT_ERR_IO,
                 "/nonexistent/libmoert_nothing.so", "load_plugin() of a nonexistent path");

    // The hash router ships next to libmoert.so, where a bare name is looked up.
    moert::load_plugin("hash");
    std::vector<std::string> routers = moert::kinds(MOERT_KIND_ROUTER);
    CHECK(contains(routers, "hash"), "load_plugin(\"hash\") registers the \"hash\" router kind");
    moert::load_plugin("hash");
    CHECK(moert::kinds(MOERT_KIND_ROUTER) == routers, "loading a loaded plugin again changes nothing");

    Fixture fx(root, "plugins/hash");
    moert::Model model(fx.dir);
    CHECK(model.router_kind(0) == "hash", "the hash fixture's MoE layers use the \"hash\" router");
    double err = rel_error(prompt_logits(fx, model), fx.logits);
    CHECK(err <= kLogitsRtol, "hash-routed prompt logits match the reference: " + describe(err));
    CHECK_THROWS([] { moert::shutdown(); }, MOERT_ERR_INVALID_ARGUMENT, "model", "shutdown() while a model is loaded");
    CHECK(contains(moert::kinds(MOERT_KIND_ROUTER), "hash"), "a refused shutdown() unregisters nothing");
}

/// A router instance of the test's host kinds: the layer's gate and its top-k.
struct HostRouter {
    const moert_host_api *host;
    const float *gate;  // [n_experts, hidden]
    int32_t n_experts, hidden, top_k;
    bool throws;
};

/// create(): reads the layer's own gate through the host table. Nothing is thrown across the C boundary.
moert_status host_router_create(const moert_host_api *host, const moert_create_context *ctx, const moert_layer_info *layer,
                                void **out, bool throws) noexcept {
    try {
        moert_tensor gate{};
        gate.struct_size = sizeof gate;
        moert_status status = host->layer_tensor(ctx, "gate.weight", &gate);
        if (status != MOERT_OK) return status;
        if (gate.dtype != MOERT_TENSOR_F32 || gate.ndim != 2 || gate.shape[0] != layer->n_experts ||
            gate.shape[1] != layer->hidden_size) {
            host->set_error("cpp_test router: gate.weight is not [n_experts, hidden_size] float32");
            return MOERT_ERR_PLUGIN;
        }
        *out = new HostRouter{host, static_cast<const float *>(gate.data), layer->n_experts, layer->hidden_size,
                              layer->top_k, throws};
        return MOERT_OK;
    } catch (const std::exception &e) {
        host->set_error(e.what());
        return MOERT_ERR_PLUGIN;
    }
}

moert_status topk_create(const moert_host_api *host, const moert_create_context *ctx, const moert_layer_info *layer,
                         moert_router_caps *, void **out) noexcept {
    return host_router_create(host, ctx, layer, out, false);
}

moert_status throwing_create(const moert_host_api *host, const moert_create_context *ctx, const moert_layer_info *layer,
                             moert_router_caps *, void **out) noexcept {
    return host_router_create(host, ctx, layer, out, true);
}

/// route(): the Mixtral router (modeling_mixtral.py, MixtralSparseMoeBlock.forward): softmax over the router logits,
/// top-k, renormalised, i.e. a softmax over the k largest logits; ties go to the lower id. The throwing kind throws
/// a C++ exception inside, which is caught here and returned as MOERT_ERR_PLUGIN.
moert_status host_router_route(void *instance, const moert_router_input *in, moert_router_output *out) noexcept {
    const auto *r = static_cast<const HostRouter *>(instance);
    try {
        if (r->throws) throw std::runtime_error("cpp_test.throwing: route refused on purpose");
        std::vector<double> logits(static_cast<size_t>(r->n_experts));
        for (int32_t t = 0; t < in->n_tokens; t++) {
            const float *x = in->x + static_cast<size_t>(t) * static_cast<size_t>(in->hidden_size);
            // [E, H] x [H] -> [E]
            for (int32_t e = 0; e < r->n_experts; e++) {
                double acc = 0;
                for (int32_t h = 0; h < r->hidden; h++) {
                    acc += static_cast<double>(r->gate[static_cast<size_t>(e) * static_cast<size_t>(r->hidden) +
                                                       static_cast<size_t>(h)]) * x[h];
                }
                logits[static_cast<size_t>(e)] = acc;
            }
            int32_t *ids = out->expert_ids + static_cast<size_t>(t) * static_cast<size_t>(out->max_per_token);
            float *w = out->weights + static_cast<size_t>(t) * static_cast<size_t>(out->max_per_token);
            std::vector<bool> chosen(static_cast<size_t>(r->n_experts), false);
            double sum = 0;
            std::vector<double> p(static_cast<size_t>(r->top_k));
            for (int32_t k = 0; k < r->top_k; k++) {
                int32_t best = -1;
                for (int32_t e = 0; e < r->n_experts; e++) {
                    if (!chosen[static_cast<size_t>(e)] && (best < 0 || logits[static_cast<size_t>(e)] > logits[static_cast<size_t>(best)])) {
                        best = e;
                    }
                }
                chosen[static_cast<size_t>(best)] = true;
                ids[k] = best;
                p[static_cast<size_t>(k)] = std::exp(logits[static_cast<size_t>(best)] - logits[static_cast<size_t>(ids[0])]);
                sum += p[static_cast<size_t>(k)];
            }
            for (int32_t k = 0; k < r->top_k; k++) w[k] = static_cast<float>(p[static_cast<size_t>(k)] / sum);
            out->counts[t] = r->top_k;
        }
        return MOERT_OK;
    } catch (const std::exception &e) {
        r->host->set_error(e.what());
        return MOERT_ERR_PLUGIN;
    }
}

void host_router_destroy(void *instance) noexcept { delete static_cast<HostRouter *>(instance); }

/// create() of an expert that is never called (F(x) = 0).
moert_status zero_create(const moert_host_api *, const moert_create_context *, const moert_layer_info *, void **out) noexcept {
    *out = nullptr;
    return MOERT_OK;
}

void zero_destroy(void *) noexcept {}

// The tables are registered by reference and must outlive registration: static storage.
const moert_router_ops cpp_topk_ops = {sizeof(moert_router_ops), MOERT_PLUGIN_ABI_VERSION, "cpp_test.topk",
                                       topk_create, host_router_route, host_router_destroy};
const moert_router_ops cpp_throwing_ops = {sizeof(moert_router_ops), MOERT_PLUGIN_ABI_VERSION, "cpp_test.throwing",
                                           throwing_create, host_router_route, host_router_destroy};
const moert_router_ops cpp_wrong_abi_ops = {sizeof(moert_router_ops), MOERT_PLUGIN_ABI_VERSION + 1, "cpp_test.wrong_abi",
                                            topk_create, host_router_route, host_router_destroy};
const moert_expert_ops cpp_zero_ops = {sizeof(moert_expert_ops), MOERT_PLUGIN_ABI_VERSION, "cpp_test.zero",
                                       MOERT_EXPERT_ZERO_COMPUTE | MOERT_EXPERT_OUTPUT_ZERO, zero_create, nullptr,
                                       zero_destroy};

/// Whether register_router() accepts an argument of type T (temporaries are refused at compile time).
template <class T, class = void>
struct accepts_router_table : std::false_type {};
template <class T>
struct accepts_router_table<T, std::void_t<decltype(moert::register_router(std::declval<T>()))>> : std::true_type {};
static_assert(accepts_router_table<const moert_router_ops &>::value, "register_router() takes a table lvalue");
static_assert(!accepts_router_table<moert_router_ops>::value && !accepts_router_table<const moert_router_ops>::value,
              "register_router() refuses a temporary table");

/// Kinds registered from this process: a C++ router reproduces transformers; its exceptions become MOERT_ERR_PLUGIN.
void test_host_kinds(const Fixture &fx, const moert::Model &model) {
    size_t routers = moert::kinds(MOERT_KIND_ROUTER).size(), experts = moert::kinds(MOERT_KIND_EXPERT).size();
    moert::register_router(cpp_topk_ops);
    moert::register_router(cpp_throwing_ops);
    moert::register_expert(cpp_zero_ops);
    std::vector<std::string> router_names = moert::kinds(MOERT_KIND_ROUTER);
    CHECK(router_names.size() == routers + 2 && contains(router_names, "cpp_test.topk") &&
              contains(router_names, "cpp_test.throwing"),
          "registered routers are listed");
    CHECK(moert::kinds(MOERT_KIND_EXPERT).size() == experts + 1 && contains(moert::kinds(MOERT_KIND_EXPERT), "cpp_test.zero"),
          "the registered expert is listed");
    CHECK_THROWS([] { moert::register_router(cpp_topk_ops); }, MOERT_ERR_PLUGIN, "cpp_test.topk", "a router registered twice");
    CHECK_THROWS([] { moert::register_expert(cpp_zero_ops); }, MOERT_ERR_PLUGIN, "cpp_test.zero", "an expert registered twice");
    CHECK_THROWS([] { moert::register_router(cpp_wrong_abi_ops); }, MOERT_ERR_PLUGIN, "ABI", "a newer abi_version");
    CHECK(moert::kinds(MOERT_KIND_ROUTER).size() == routers + 2, "refused registrations are not listed");

    moert::ModelInfo info = model.info();
    moert::Session mine(model), builtin(model);
    mine.set_router("cpp_test.topk");
    mine.set_trace(true);
    builtin.set_trace(true);
    double err = rel_error(mine.eval(fx.prompt, true), fx.logits);
    CHECK(err <= kLogitsRtol, "the C++ router's prompt logits match transformers: " + describe(err));
    builtin.eval(fx.prompt, true);
    moert::Trace a = mine.trace(), b = builtin.trace();
    CHECK(a.size() == b.size() && a.offsets == b.offsets && a.expert_ids == b.expert_ids,
          "the C++ router chose the built-in router's experts");
    CHECK(records_choose(a, info, info.n_experts_per_tok), "the C++ router's trace is valid");
    CHECK(a.weights.size() == b.weights.size() && rel_error(a.weights, b.weights) <= 1e-5,
          "the C++ router's weights match the built-in's within 1e-5 (float vs double softmax)");

    mine.set_router("cpp_test.throwing");
    mine.reset();
    CHECK_THROWS([&] { mine.eval(fx.prompt); }, MOERT_ERR_PLUGIN, "route refused on purpose",
                 "an exception inside route() comes back as MOERT_ERR_PLUGIN with its message");
    mine.restore_router();
    mine.reset();
    err = rel_error(mine.eval(fx.prompt, true), fx.logits);
    CHECK(err <= kLogitsRtol, "the session works after restore_router() and reset(): " + describe(err));
}

/// shutdown() unregisters every non-built-in kind once no model is alive; kinds can be registered again after it.
void test_shutdown() {
    moert::shutdown();
    const std::vector<std::string> builtin_routers{"topk", "deepseek_v2", "deepseek_v3", "gpt_oss"};
    CHECK(moert::kinds(MOERT_KIND_ROUTER) == builtin_routers, "after shutdown() only the built-in router kinds are left");
    CHECK(moert::kinds(MOERT_KIND_EXPERT) == std::vector<std::string>{"ffn"}, "after shutdown() only \"ffn\" is left");
    moert::register_router(cpp_topk_ops);
    moert::load_plugin("hash");
    std::vector<std::string> routers = moert::kinds(MOERT_KIND_ROUTER);
    CHECK(contains(routers, "cpp_test.topk") && contains(routers, "hash"), "kinds register and load again after shutdown()");
    moert::shutdown();
    CHECK(moert::kinds(MOERT_KIND_ROUTER) == builtin_routers, "a second shutdown() unregisters them again");
}

}  // namespace

/// Runs every group on the fixtures under argv[1] and prints "N passed, M failed".
/// tensor_dtype() of a checkpoint quantized by llama.cpp's quantizer: the types its config.json's quantization entry
/// names, F32 for what was kept, -1 for a missing tensor.
void test_quantized(const std::string &root) {
    const std::string dir = root + "/mixtral_q4_0";
    Json config = JsonParser(read_file(dir + "/config.json")).parse();
    moert::Model model(dir);
    const Json &tensors = config["moert"]["quantization"]["tensors"];
    CHECK(!tensors.members.empty(), "the fixture names quantized tensors");
    for (const auto &[name, type] : tensors.members) {
        int32_t want = type.text == "q8_0" ? MOERT_DTYPE_Q8_0 : type.text == "q4_0" ? MOERT_DTYPE_Q4_0 : -2;
        CHECK(model.tensor_dtype(name) == want, name + ": tensor_dtype differs from config.json");
    }
    CHECK(model.tensor_dtype("model.norm.weight") == MOERT_DTYPE_F32, "norms keep F32");
    CHECK(model.tensor_dtype("no.such.tensor") == -1, "a missing tensor is -1");
    CHECK(model.info().dtype == MOERT_DTYPE_MIXED, "a quantized checkpoint is MOERT_DTYPE_MIXED");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        std::cerr << "usage: " << argv[0] << " FIXTURES_DIR\n";
        return 2;
    }
    const std::string root = argv[1];
    run_group("library", test_library);
    for (const char *name : {"mixtral", "mixtral_bf16", "mixtral_sharded", "mixtral_hd64", "qwen2_moe", "qwen3_moe", "olmoe",
                             "deepseek_v2", "deepseek_v2_lite"}) {
        test_fixture(root, name);
    }
    run_group("KV cache types and context shift", [&] { test_kv_cache(root); });
    run_group("quantized weights", [&] { test_quantized(root); });
    std::unique_ptr<Fixture> fx;
    std::unique_ptr<moert::Model> model;
    run_group("mixtral: setup for API checks", [&] {
        fx = std::make_unique<Fixture>(root, "mixtral");
        model = std::make_unique<moert::Model>(fx->dir);
        CHECK(model->info().vocab_size == static_cast<int32_t>(fx->vocab), "the model's vocab matches the reference");
    });
    if (fx && model) {
        run_group("defaults", [&] { test_defaults(*fx); });
        run_group("errors", [&] { test_errors(*fx, *model); });
        run_group("move semantics", [&] { test_moves(*fx); });
        run_group("callbacks", [&] { test_callbacks(*fx, *model); });
        run_group("session state", [&] { test_session_state(*fx, *model); });
        run_group("sampler", [&] { test_sampler(*fx); });
        run_group("memory and expert budgets", [&] { test_memory(*fx); });
        run_group("model flags", [&] { test_model_flags(*fx); });
        run_group("log callback", [&] { test_log(*fx); });
        run_group("routing trace and counters", [&] { test_trace(*fx, *model); });
        run_group("router overrides", [&] { test_router_overrides(*fx, *model); });
        run_group("generate_text", [&] { test_generate_text(*fx, *model); });
        run_group("stop strings and stop ids", [&] { test_stop_strings(*fx, *model); });
        run_group("plugins", [&] { test_plugins(root); });
        run_group("host-registered kinds", [&] { test_host_kinds(*fx, *model); });
    }
    for (const std::string &name : tokenizer_fixture_names(root)) {
        run_group("tokenizer " + name + ": cases of tokenizers 0.23.3", [&] { test_tokenizer_cases(root, name); });
    }
    for (const char *name : {"qwen2", "llama-spm"}) {
        run_group(std::string("tokenizer ") + name + ": vocabulary of tokenizer.json", [&] { test_tokenizer_vocabulary(root, name); });
    }
    run_group("tokenizer calls and errors", [&] { test_tokenizer_calls(root); });
    run_group("chat templates", [&] { test_chat_templates(root); });
    model.reset();
    // Last: shutdown() needs every model freed.
    run_group("shutdown", test_shutdown);
    std::cout << n_passed << " passed, " << n_failed << " failed\n";
    return n_failed == 0 ? 0 : 1;
}
