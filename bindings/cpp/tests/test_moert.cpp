// test_moert.cpp — tests of the C++ binding (moert.hpp) against the transformers fixtures.
//
// Usage: test_moert FIXTURES_DIR   (e.g. Tests/fixtures)
//
// Expected values come from each fixture's config.json and reference.safetensors (written by transformers, see
// tools/make_fixtures.py), never from moert. One line is printed per check group; the last line is
// "N passed, M failed", and the exit status is non-zero when anything failed.
#include "moert.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

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

/// A parsed JSON value (numbers as double; enough for config.json and safetensors headers).
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
    std::string string() {
        expect('"');
        std::string out;
        while (i_ < s_.size() && s_[i_] != '"') {
            if (s_[i_] == '\\') fail("escapes are not needed by these files");
            out += s_[i_++];
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

/// version(), version_number(), abi_version(), the thread count and the option defaults.
void test_library() {
    CHECK(moert::version() == MOERT_VERSION, "version() " + moert::version());
    CHECK(moert::version_number() == MOERT_VERSION_NUMBER, "version_number()");
    CHECK(moert::abi_version() == MOERT_ABI_VERSION, "abi_version()");
    moert::set_threads(1);
    CHECK(moert::get_threads() == 1, "get_threads() after set_threads(1)");
    CHECK_THROWS([] { moert::set_threads(-1); }, MOERT_ERR_INVALID_ARGUMENT, "-1", "set_threads(-1)");
    moert::set_threads(0);
    CHECK(moert::get_threads() >= 1, "get_threads() after set_threads(0)");

    moert_sampler_options cs;
    moert_sampler_options_init(&cs);
    moert::SamplerOptions s;
    CHECK(s.temperature == cs.temperature && s.top_k == cs.top_k && s.top_p == cs.top_p && s.seed == cs.seed,
          "SamplerOptions defaults differ from moert_sampler_options_init");
    moert_generate_options cg;
    moert_generate_options_init(&cg);
    moert::GenerateOptions g;
    CHECK(g.max_new_tokens == cg.max_new_tokens && g.ignore_eos == (cg.ignore_eos != 0) && cg.sampler == nullptr &&
              g.sampler.temperature == 0.0f,
          "GenerateOptions defaults differ from moert_generate_options_init (greedy sampler)");
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
    double experts = c["num_local_experts"].type == Json::Type::number ? c["num_local_experts"].number : c["num_experts"].number;
    CHECK(info.n_experts == static_cast<int32_t>(experts), "n_experts");
    CHECK(info.context_length == static_cast<int64_t>(c["max_position_embeddings"].number), "context_length");
    const Json &eos = c["eos_token_id"];
    CHECK(info.eos_token_id == (eos.type == Json::Type::number ? static_cast<int32_t>(eos.number) : -1), "eos_token_id");
    CHECK(info.n_params > 0 && info.file_bytes > 0, "n_params and file_bytes are positive");
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
    run_group(name + ": prefill logits", [&] { test_prefill(*fx, *model); });
    run_group(name + ": greedy generate", [&] { test_generate(*fx, *model); });
    run_group(name + ": kv-cached decode", [&] { test_decode(*fx, *model); });
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

}  // namespace

/// Runs every group on the fixtures under argv[1] and prints "N passed, M failed".
int main(int argc, char **argv) {
    if (argc != 2) {
        std::cerr << "usage: " << argv[0] << " FIXTURES_DIR\n";
        return 2;
    }
    const std::string root = argv[1];
    run_group("library", test_library);
    for (const char *name : {"mixtral", "mixtral_bf16", "mixtral_sharded", "qwen2_moe", "qwen3_moe", "olmoe"}) {
        test_fixture(root, name);
    }
    std::unique_ptr<Fixture> fx;
    std::unique_ptr<moert::Model> model;
    run_group("mixtral: setup for API checks", [&] {
        fx = std::make_unique<Fixture>(root, "mixtral");
        model = std::make_unique<moert::Model>(fx->dir);
        CHECK(model->info().vocab_size == static_cast<int32_t>(fx->vocab), "the model's vocab matches the reference");
    });
    if (fx && model) {
        run_group("errors", [&] { test_errors(*fx, *model); });
        run_group("move semantics", [&] { test_moves(*fx); });
        run_group("callbacks", [&] { test_callbacks(*fx, *model); });
        run_group("session state", [&] { test_session_state(*fx, *model); });
        run_group("sampler", [&] { test_sampler(*fx); });
    }
    model.reset();
    std::cout << n_passed << " passed, " << n_failed << " failed\n";
    return n_failed == 0 ? 0 : 1;
}
