// TokenizerConfig: the chat templates and special tokens of a model directory's tokenizer_config.json.

import Glibc
import MoertFormats
import MoertTensor

/// What moert reads from tokenizer_config.json (and the template files beside it): the chat templates and the
/// special tokens templates see. Generation settings are not read here.
public struct TokenizerConfig: Sendable {
    /// Chat templates by name. A single template is "default"; the list form (`[{"name", "template"}]`, as
    /// Command-R ships it) maps by name. When the directory has `chat_template.jinja` or
    /// `additional_chat_templates/<name>.jinja`, those files replace the config's templates, as transformers 5.x
    /// loads them (`PreTrainedTokenizerBase._from_pretrained`: "independent chat template file(s) ... take priority").
    public var chatTemplates: [String: String] = [:]
    /// The content of `bos_token` (a config writes a string or an AddedToken object `{"content": ...}`).
    public var bosToken: String?
    /// The content of `eos_token`.
    public var eosToken: String?
    /// The content of `pad_token`.
    public var padToken: String?
    /// The content of `unk_token`.
    public var unkToken: String?
    /// `add_bos_token` when the config sets it.
    public var addBosToken: Bool?
    /// `add_eos_token` when the config sets it.
    public var addEosToken: Bool?
    /// Every special token a template sees as a variable, by name (`bos_token`, `eos_token`, ..., and model-specific
    /// `*_token` entries): transformers' `special_tokens_map`, which apply_chat_template passes to the template.
    public var specialTokens: [String: String] = [:]
    /// The tokens transformers adds to tokenizer.json's when it loads the directory (`TokenizersBackend.__init__`
    /// and `_post_init`): the `added_tokens_decoder` entries by id (with their flags; their ids are not kept: each
    /// gets the id its text has, else the next free one), then as special tokens the named ones in
    /// `SPECIAL_TOKENS_ATTRIBUTES` order, the model-specific `*_token` entries and `extra_special_tokens` object (by
    /// name), and the `extra_special_tokens` (or, in older files, `additional_special_tokens`) list. A token equal to
    /// one tokenizer.json lists changes nothing.
    public var addedTokens: [AddedToken] {
        let named = Self.namedTokens.compactMap { specialTokens[$0] }
        let specific = specialTokens.filter { !Self.namedTokens.contains($0.key) }.sorted { $0.key < $1.key }.map(\.value)
        return decoderTokens + (named + specific + extraSpecialTokens).map { AddedToken(content: $0) }
    }
    /// The `added_tokens_decoder` entries, in the order of their ids.
    public var decoderTokens: [AddedToken] = []
    /// The `extra_special_tokens` (or `additional_special_tokens`) list.
    public var extraSpecialTokens: [String] = []

    /// The named special tokens of transformers' `SPECIAL_TOKENS_ATTRIBUTES`.
    static let namedTokens = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]

    /// An empty configuration: no templates, no tokens.
    public init() {}

    /// Reads the configuration of a model directory: `tokenizer_config.json`, then the template files beside it
    /// (`chat_template.jinja`, `additional_chat_templates/*.jinja`), then the legacy `special_tokens_map.json`
    /// when the config has no `added_tokens_decoder` (as transformers does).
    /// - Returns: nil when the directory has neither tokenizer_config.json nor a template file.
    /// - Throws: `MoertError` `.io` or `.format` for a file that cannot be read or parsed.
    public static func read(directory: String) throws -> TokenizerConfig? {
        let configPath = joinPath(directory, "tokenizer_config.json")
        let templatePath = joinPath(directory, "chat_template.jinja")
        let extraTemplates = try templateFiles(in: joinPath(directory, "additional_chat_templates"))
        let hasConfig = fileExists(configPath)
        guard hasConfig || fileExists(templatePath) || !extraTemplates.isEmpty else { return nil }
        var json = JSON.object([:])
        if hasConfig { json = try JSON.parse(try readTextFile(configPath), what: configPath) }
        var config = try TokenizerConfig(json: json, source: configPath)
        var files: [String: String] = [:]
        if fileExists(templatePath) { files["default"] = try readTextFile(templatePath) }
        for (name, path) in extraTemplates { files[name] = try readTextFile(path) }
        if !files.isEmpty { config.chatTemplates = files }
        let mapPath = joinPath(directory, "special_tokens_map.json")
        if json.object?["added_tokens_decoder"] == nil && fileExists(mapPath) {
            let map = try JSON.parse(try readTextFile(mapPath), what: mapPath)
            guard let entries = map.object else { throw MoertError.format("\(mapPath): expected a JSON object") }
            for (key, value) in entries where key.hasSuffix("_token") {
                guard let content = try Self.content(value, key: key, source: mapPath, strict: true) else { continue }
                config.set(key, content)
            }
        }
        return config
    }

    /// `<name>.jinja` files of a directory (none when it does not exist), by template name.
    private static func templateFiles(in directory: String) throws -> [(String, String)] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var found: [(String, String)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasSuffix(".jinja"), name.count > 6 else { continue }
            found.append((String(name.dropLast(6)), joinPath(directory, name)))
        }
        return found.sorted { $0.0 < $1.0 }
    }

    /// Reads the parsed tokenizer_config.json.
    /// - Parameter source: the file's name, for error messages.
    /// - Throws: `MoertError` `.format` naming the key for a value of the wrong type: a chat_template that is
    ///   neither a string nor a list of `{"name", "template"}` objects, a named special token that is neither a
    ///   string nor an object with a string `content`, a non-boolean `add_bos_token`.
    public init(json: JSON, source: String) throws {
        guard let object = json.object else { throw MoertError.format("\(source): expected a JSON object") }
        switch object["chat_template"] {
        case nil, .null?:
            break
        case .string(let s)?:
            chatTemplates["default"] = s
        case .array(let list)?:
            for (i, entry) in list.enumerated() {
                guard case .string(let name)? = entry.object?["name"], case .string(let template)? = entry.object?["template"] else {
                    throw MoertError.format("\(source): chat_template[\(i)]: expected an object with string \"name\" and \"template\"")
                }
                chatTemplates[name] = template
            }
        case let other?:
            throw MoertError.format("\(source): chat_template: expected a string or a list of templates, got \(Self.kind(other))")
        }
        for key in ["add_bos_token", "add_eos_token"] {
            switch object[key] {
            case nil, .null?: break
            case .bool(let b)?: if key == "add_bos_token" { addBosToken = b } else { addEosToken = b }
            case let other?: throw MoertError.format("\(source): \(key): expected true or false, got \(Self.kind(other))")
            }
        }
        // Named tokens must be strings or AddedToken objects (transformers raises a TypeError otherwise); other
        // "*_token" entries count when they are strings or serialized AddedTokens ({"__type": "AddedToken"}).
        for (key, value) in object where key.hasSuffix("_token") {
            let named = Self.namedTokens.contains(key)
            guard let content = try Self.content(value, key: key, source: source, strict: named) else { continue }
            set(key, content)
        }
        if case .object(let extra)? = object["extra_special_tokens"] {
            for (key, value) in extra {
                guard let content = try Self.content(value, key: "extra_special_tokens." + key, source: source, strict: false) else { continue }
                set(key, content)
            }
        }
        if case .object(let entries)? = object["added_tokens_decoder"] {
            decoderTokens = try Self.decoderTokens(entries, source: source)
        }
        let listKey = object["extra_special_tokens"]?.array != nil ? "extra_special_tokens" : "additional_special_tokens"
        for (i, value) in (object[listKey]?.array ?? []).enumerated() {
            if let content = try Self.content(value, key: "\(listKey)[\(i)]", source: source, strict: true) {
                extraSpecialTokens.append(content)
            }
        }
    }

    /// The entries of `added_tokens_decoder` (`{"<id>": {"content": ..., "special": ..., ...}}`) sorted by id.
    private static func decoderTokens(_ entries: [String: JSON], source: String) throws -> [AddedToken] {
        var tokens: [(Int, AddedToken)] = []
        for (key, value) in entries {
            let what = "\(source): added_tokens_decoder.\(key)"
            guard let id = Int(key), id >= 0, case .object(let o) = value, case .string(let content)? = o["content"] else {
                throw MoertError.format("\(what): expected a token id with an object holding a string \"content\"")
            }
            func flag(_ name: String, _ fallback: Bool) throws -> Bool {
                switch o[name] {
                case nil, .null?: return fallback
                case .bool(let b)?: return b
                case let other?: throw MoertError.format("\(what).\(name): expected true or false, got \(Self.kind(other))")
                }
            }
            let special = try flag("special", false)
            tokens.append((id, AddedToken(content: content, singleWord: try flag("single_word", false),
                                          lstrip: try flag("lstrip", false), rstrip: try flag("rstrip", false),
                                          normalized: try flag("normalized", !special), special: special)))
        }
        return tokens.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// Sets a special token and, for the named ones, its field.
    private mutating func set(_ key: String, _ content: String) {
        specialTokens[key] = content
        switch key {
        case "bos_token": bosToken = content
        case "eos_token": eosToken = content
        case "pad_token": padToken = content
        case "unk_token": unkToken = content
        default: break
        }
    }

    /// The content of a token value: a string, or an AddedToken object's `content`. Nil for null, and (when not
    /// `strict`) for values that are not tokens.
    private static func content(_ value: JSON, key: String, source: String, strict: Bool) throws -> String? {
        switch value {
        case .null: return nil
        case .string(let s): return s
        case .object(let o):
            if case .string(let s)? = o["content"], strict || o["__type"] == .string("AddedToken") { return s }
        default: break
        }
        guard strict else { return nil }
        throw MoertError.format("\(source): \(key): expected a string or an object with a string \"content\", got \(kind(value))")
    }

    private static func kind(_ v: JSON) -> String {
        switch v {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// The template transformers uses when none is named: with several, "tool_use" when tools are passed and it
    /// exists, else "default" (`get_chat_template`). Nil when there is none to choose.
    /// - Parameter name: a template name to pick instead.
    public func chatTemplate(named name: String? = nil, withTools: Bool = false) -> String? {
        if let name { return chatTemplates[name] }
        if withTools, let t = chatTemplates["tool_use"] { return t }
        return chatTemplates["default"]
    }

    /// The special tokens as template variables.
    public var templateVariables: [String: JSON] { specialTokens.mapValues { .string($0) } }
}
