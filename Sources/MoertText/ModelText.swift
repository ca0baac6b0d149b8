// ModelText: the text side of a model directory — its tokenizer, special tokens, chat templates and stop ids.

import MoertFormats
import MoertTensor

/// A tokenizer with what the files beside it say: tokenizer_config.json (special tokens, chat templates),
/// generation_config.json and config.json (the ids that end generation). Immutable after `init`; share freely.
public final class ModelText: @unchecked Sendable {
    /// tokenizer.json.
    public let tokenizer: Tokenizer
    /// tokenizer_config.json (and chat_template.jinja); nil when loaded from a tokenizer.json file or absent.
    public let config: TokenizerConfig?
    /// The ids of the config's bos_token, eos_token and pad_token; nil when it names none.
    public let bos: Int32?, eos: Int32?, pad: Int32?
    /// The ids that end generation: generation_config.json's eos_token_id, then config.json's, then eos.
    public let stopTokenIds: [Int32]
    /// Parsed chat templates by name, filled on first use.
    private var templates: [String: ChatTemplate] = [:]
    private let lock = Lock()

    /// Loads `path`: a model directory holding tokenizer.json, or a tokenizer.json file.
    /// - Throws: `MoertError` (`.io` without tokenizer.json; `.format`, `.unsupported` as the files' parsers throw).
    public init(path: String) throws {
        guard isDirectory(path) else {
            tokenizer = try Tokenizer(path: path)
            config = nil
            bos = nil
            eos = nil
            pad = nil
            stopTokenIds = []
            return
        }
        let file = joinPath(path, "tokenizer.json")
        guard fileExists(file) else { throw MoertError(.io, "\(path): no tokenizer.json (expected a Hugging Face model directory)") }
        let tokenizer = try Tokenizer(path: file)
        let config = try TokenizerConfig.read(directory: path)
        self.tokenizer = tokenizer
        self.config = config
        func id(_ token: String?) -> Int32? { token.flatMap { tokenizer.id(for: $0) } }
        bos = id(config?.bosToken)
        eos = id(config?.eosToken)
        pad = id(config?.padToken)
        // config.json may be absent (a tokenizer-only directory) or describe a model moert does not run: only its
        // eos_token_id is read here.
        var modelEOS: [Int32] = []
        let modelConfig = joinPath(path, "config.json")
        if fileExists(modelConfig) {
            let json = try JSON.parse(try readTextFile(modelConfig), what: modelConfig)
            modelEOS = try GenerationConfig(json: json, source: modelConfig).eosTokenIds
        }
        stopTokenIds = GenerationConfig.stopTokenIds(generation: try GenerationConfig.read(directory: path),
                                                     config: modelEOS + (eos.map { [$0] } ?? []))
    }

    /// Renders `messages` (JSON objects with "role", "content" and whatever else the template reads) with the chat
    /// template `name` (nil: "default"), as transformers' `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)`: the config's special tokens are variables, and `variables` adds or overrides some.
    /// - Throws: `MoertError`: `.unsupported` when there is no such template, else the errors of `ChatTemplate`.
    public func applyChatTemplate(_ messages: [JSON], addGenerationPrompt: Bool, name: String? = nil,
                                  variables: [String: JSON] = [:]) throws -> String {
        let name = name ?? "default"
        let template = try lock.withLock { () throws -> ChatTemplate in
            if let t = templates[name] { return t }
            guard let source = config?.chatTemplates[name] else {
                let known = config?.chatTemplates.keys.sorted().joined(separator: ", ") ?? ""
                throw MoertError.unsupported(known.isEmpty ? "the tokenizer has no chat template (tokenizer_config.json's chat_template or chat_template.jinja)"
                                                           : "no chat template named \(name) (the tokenizer has: \(known))")
            }
            let t = try ChatTemplate(source: source)
            templates[name] = t
            return t
        }
        var all: [String: JSON] = [:]
        for (key, value) in config?.specialTokens ?? [:] { all[key] = .string(value) }
        for (key, value) in variables { all[key] = value }
        return try template.render(messages: messages, addGenerationPrompt: addGenerationPrompt, variables: all)
    }
}
