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
    /// Parsed chat templates by source text, filled on first use.
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
        let config = try TokenizerConfig.read(directory: path)
        let tokenizer = try Tokenizer(path: file, extraTokens: config?.addedTokens ?? [])
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

    /// Renders a conversation with the chat template `name` (nil: the one transformers picks — "tool_use" when
    /// `variablesJSON` passes tools and the tokenizer has it, else "default"), as transformers'
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`. `messagesJSON` is a JSON array of
    /// message objects ("role", "content" and whatever else the template reads), `variablesJSON` a JSON object of
    /// further variables (`tools`, `enable_thinking`, ...); key order is kept, as templates show it (`tojson`). The
    /// tokenizer_config.json's special tokens are variables too, unless `variablesJSON` sets them.
    /// - Throws: `MoertError`: `.unsupported` when there is no such template, `.format` for JSON text of another
    ///   shape, else the errors of `ChatTemplate.render`.
    public func applyChatTemplate(messagesJSON: String, addGenerationPrompt: Bool, name: String? = nil,
                                  variablesJSON: String? = nil) throws -> String {
        let withTools = try variablesJSON.map { text -> Bool in
            guard let object = try JSON.parse(text, what: "template variables").object else { return false }
            return object["tools"].map { !$0.isNull } ?? false
        } ?? false
        let template = try chatTemplate(name: name, withTools: withTools)
        return try template.render(messagesJSON: messagesJSON, addGenerationPrompt: addGenerationPrompt,
                                   variables: config?.templateVariables ?? [:], variablesJSON: variablesJSON)
    }

    /// As `applyChatTemplate(messagesJSON:...)`, for messages of a role and a text each.
    public func applyChatTemplate(_ messages: [(role: String, content: String)], addGenerationPrompt: Bool) throws -> String {
        // Written key by key so that "role" comes first, as in the dicts transformers receives.
        let text = "[" + messages.map { "{\"role\":\(JSON.quote($0.role)),\"content\":\(JSON.quote($0.content))}" }
            .joined(separator: ",") + "]"
        return try applyChatTemplate(messagesJSON: text, addGenerationPrompt: addGenerationPrompt)
    }

    /// The parsed template transformers would choose (see `applyChatTemplate`), parsed once.
    private func chatTemplate(name: String?, withTools: Bool) throws -> ChatTemplate {
        guard let source = config?.chatTemplate(named: name, withTools: withTools) else {
            let known = config?.chatTemplates.keys.sorted().joined(separator: ", ") ?? ""
            if known.isEmpty {
                throw MoertError.unsupported("the tokenizer has no chat template (tokenizer_config.json's chat_template or chat_template.jinja)")
            }
            throw MoertError.unsupported("no chat template named \(name ?? "default") (the tokenizer has: \(known))")
        }
        return try lock.withLock {
            if let t = templates[source] { return t }
            let t = try ChatTemplate(source: source)
            templates[source] = t
            return t
        }
    }
}
