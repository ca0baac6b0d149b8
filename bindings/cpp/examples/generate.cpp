// generate.cpp — example: load a model directory, generate greedily from token ids or from text given on the command
// line.
//
// Usage: generate MODEL_DIR [TOKEN_ID...]     (default prompt: 1 2 3)
//        generate MODEL_DIR --text PROMPT     (with the tokenizer of MODEL_DIR; the text is printed as it comes)
#include "moert.hpp"

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string_view>
#include <vector>

/// Loads argv[1], generates 8 tokens after the prompt and prints them (or their text) as they come.
int main(int argc, char **argv) {
    if (argc < 2 || (argc > 2 && std::strcmp(argv[2], "--text") == 0 && argc != 4)) {
        std::cerr << "usage: " << argv[0] << " MODEL_DIR [TOKEN_ID...]\n       " << argv[0] << " MODEL_DIR --text PROMPT\n";
        return 2;
    }
    const bool text = argc == 4 && std::strcmp(argv[2], "--text") == 0;
    std::vector<int32_t> prompt;
    for (int i = 2; i < argc && !text; i++) prompt.push_back(static_cast<int32_t>(std::strtol(argv[i], nullptr, 10)));
    if (prompt.empty()) prompt = {1, 2, 3};
    try {
        moert::Model model(argv[1]);
        moert::ModelInfo info = model.info();
        std::cout << "moert " << moert::version() << ": " << info.architecture << ", " << info.n_layers << " layers, "
                  << info.n_experts << " experts (top " << info.n_experts_per_tok << "), vocab " << info.vocab_size << "\n";
        moert::Session session(model);
        moert::GenerateOptions options;
        options.max_new_tokens = 8;
        options.ignore_eos = true;
        if (text) {
            // The model's tokenizer is the one of its directory; it encodes the prompt and decodes what is generated.
            moert::Tokenizer tokenizer(argv[1]);
            std::cout << "generated text: " << argv[3];
            moert::GeneratedText out = session.generate_text(tokenizer, argv[3], options, [](std::string_view piece) {
                std::cout << piece << std::flush;
                return true;
            });
            std::cout << "\n" << out.tokens.size() << " tokens, " << out.text.size() << " bytes of text\n";
            return 0;
        }
        std::cout << "generated:";
        std::vector<int32_t> tokens = session.generate(prompt, options, [](int32_t token) {
            std::cout << ' ' << token << std::flush;
            return true;
        });
        std::cout << "\n" << tokens.size() << " tokens, " << session.n_past() << " positions in the KV cache\n";
    } catch (const moert::Error &e) {
        std::cerr << "moert error " << e.status() << " (" << e.status_string() << "): " << e.what() << "\n";
        return 1;
    }
    return 0;
}
