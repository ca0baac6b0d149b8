// Tokenizer: a Hugging Face tokenizer.json loaded for encoding and decoding exactly as `tokenizers` 0.23 does.

import MoertFormats
import MoertTensor

/// A tokenizer read from a Hugging Face `tokenizer.json`, giving the ids and texts of the `tokenizers` library
/// (0.23): `encode(text, add_special_tokens=…)` with special-token text in the input matched as those tokens
/// (transformers' default), and `decode(ids, skip_special_tokens=…)`.
///
/// Supported: a BPE model (byte-level as GPT-2, Qwen2, Llama 3, DeepSeek, OLMoE; SentencePiece-style with
/// `byte_fallback` as Llama 2, Mistral, Mixtral, Phi-3); normalizers NFC, NFKC, NFD, NFKD, Lowercase, Strip,
/// Prepend, Replace, Sequence; pre-tokenizers Split, ByteLevel, Metaspace, Digits, Punctuation, Whitespace,
/// WhitespaceSplit, Sequence; post-processors TemplateProcessing (single sequences), BertProcessing,
/// RobertaProcessing, ByteLevel, Sequence; decoders ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace,
/// Sequence; added tokens with all their flags. Anything else is refused when loading (`.unsupported`).
/// `truncation` and `padding` are ignored, as transformers turns them off for a plain encode.
///
/// Threads: immutable after init; share freely. Each call keeps its scratch to itself.
public final class Tokenizer: @unchecked Sendable {
    /// The file, for messages.
    let source: String
    let model: BPEModel
    let normalizers: [NormalizerStep]
    let preTokenizers: [PreTokenizerStep]
    let postProcessors: [PostProcessorStep]
    /// nil: no decoder, tokens are joined with spaces.
    let decoders: [DecoderStep]?
    /// Added tokens matched in the raw text (`normalized: false`) and in normalized text (`normalized: true`).
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    /// Added tokens by id, and their ids by content.
    let addedTokens: [Int32: AddedToken]
    let addedIds: TokenTable
    /// The text decode uses for an added token: its normalized form when it was normalized into something else.
    let addedDecodeText: [Int32: [UInt8]]
    /// The model vocabulary entry of each id (-1 for none), for decoding.
    let modelEntryOfId: [Int32]
    /// Whether decoding with `skipSpecialTokens` drops each id: its decoded text is the content of a special
    /// added token (tokenizers tests the text, not the id).
    let special: [Bool]
    /// GPT-2's split, for ByteLevel with `use_regex`.
    let gpt2: Regex
    /// GPT-2's split compiled once for every tokenizer (a compiled pattern is immutable and shareable).
    private static let gpt2Regex = try? Regex(gpt2Pattern, literal: false, what: "ByteLevel")
    /// Encode scratch between calls (the only state that changes after init; see `ScratchPool`).
    let scratchPool = ScratchPool()

    /// 1 + the largest id of the model vocabulary and the added tokens.
    public let vocabSize: Int

    /// The largest tokenizer.json read: 256 MiB (the largest real ones are about 30 MB).
    public static let maxFileSize = 256 << 20

    /// Loads the tokenizer.json at `path`. `extraTokens` are added after its `added_tokens`, as transformers adds
    /// those tokenizer_config.json lists and names (`TokenizerConfig.addedTokens`).
    /// - Throws: `MoertError`: `.io` when the file cannot be read, `.format` when it is larger than `maxFileSize`,
    ///   not JSON or malformed (naming the key), `.unsupported` for components moert does not implement.
    public convenience init(path: String, extraTokens: [AddedToken] = []) throws {
        let file = try MappedFile(path: path)
        guard file.size <= Self.maxFileSize else {
            throw MoertError.format("\(path): \(file.size) bytes, larger than the \(Self.maxFileSize)-byte limit")
        }
        try self.init(bytes: file.bytes, source: path, extraTokens: extraTokens)
    }

    /// Builds the tokenizer from the bytes of a tokenizer.json; `source` names the file in messages.
    /// - Throws: `MoertError` (`.format`, `.unsupported`) as `init(path:)`.
    public convenience init(bytes: UnsafeRawBufferPointer, source: String, extraTokens: [AddedToken] = []) throws {
        let tape = try JSONTape(bytes, what: source)
        try self.init(document: TokenizerJSON(tape: tape, node: 0), source: source, extraTokens: extraTokens)
    }

    /// Builds the tokenizer from a parsed tokenizer.json; `source` names the file in messages. Prefer
    /// `init(path:)`: `JSON` objects are dictionaries of Strings, which merge vocabulary entries that differ only
    /// by canonical equivalence (such as "ί" U+1F77 and "ί" U+03AF), so a vocabulary with such pairs is refused
    /// by `JSON.parse` already.
    /// - Throws: `MoertError` (`.format`, `.unsupported`) as `init(path:)`.
    public convenience init(json: JSON, source: String) throws {
        var text: [UInt8] = []
        json.write(to: &text)
        let tape = try JSONTape(copying: text, what: source)
        try self.init(document: TokenizerJSON(tape: tape, node: 0), source: source)
    }

    init(document json: TokenizerJSON, source: String, extraTokens: [AddedToken] = []) throws {
        self.source = source
        let reader = ConfigReader(source: source)
        let root = try reader.object(json, "tokenizer.json")
        if let v = root["version"], !v.isNull {
            let version = try reader.string(v, "version")
            guard version == "1.0" else { throw reader.unsupported("version", "tokenizer.json version \"\(version)\" (expected \"1.0\")") }
        }
        model = try reader.bpeModel(root["model"], "model")
        var normalizers: [NormalizerStep] = []
        try reader.normalizers(root["normalizer"], "normalizer", into: &normalizers)
        self.normalizers = normalizers
        var preTokenizers: [PreTokenizerStep] = []
        try reader.preTokenizers(root["pre_tokenizer"], "pre_tokenizer", into: &preTokenizers)
        self.preTokenizers = preTokenizers
        var postProcessors: [PostProcessorStep] = []
        try reader.postProcessors(root["post_processor"], "post_processor", into: &postProcessors)
        self.postProcessors = postProcessors
        if let d = root["decoder"], !d.isNull {
            var decoders: [DecoderStep] = []
            try reader.decoders(d, "decoder", into: &decoders)
            self.decoders = decoders
        } else {
            decoders = nil
        }
        guard let gpt2 = Self.gpt2Regex else { throw MoertError(.internal, "ByteLevel: GPT-2's pattern does not compile") }
        self.gpt2 = gpt2

        let added = try AddedTokensBuilder(reader: reader, json: root["added_tokens"], model: model,
                                           normalizers: normalizers, extraTokens: extraTokens)
        rawMatcher = added.rawMatcher
        normalizedMatcher = added.normalizedMatcher
        addedTokens = added.tokens
        addedIds = added.ids
        addedDecodeText = added.decodeText

        var largest: Int32 = -1
        for id in model.vocab.ids { largest = max(largest, id) }
        for id in added.tokens.keys { largest = max(largest, id) }
        vocabSize = Int(largest) + 1
        var entries = [Int32](repeating: -1, count: vocabSize)
        for (e, id) in model.vocab.ids.enumerated() { entries[Int(id)] = Int32(e) }
        modelEntryOfId = entries
        var special = [Bool](repeating: false, count: vocabSize)
        for content in added.specialContents {
            if let id = model.vocab.id(of: content), added.tokens[id] == nil { special[Int(id)] = true }
        }
        for id in added.tokens.keys {
            if let text = Self.decodeText(id, added: added.decodeText, addedTokens: added.tokens, model: model, entries: entries),
               added.specialContents.contains(text) {
                special[Int(id)] = true
            }
        }
        self.special = special
    }

    /// The text decode starts from for `id`, or nil when the id has none.
    static func decodeText(_ id: Int32, added: [Int32: [UInt8]], addedTokens: [Int32: AddedToken], model: BPEModel,
                           entries: [Int32]) -> [UInt8]? {
        if let text = added[id] { return text }
        if let token = addedTokens[id] { return Array(token.content.utf8) }
        guard id >= 0, Int(id) < entries.count, entries[Int(id)] >= 0 else { return nil }
        return model.vocab.entryBytes(Int(entries[Int(id)]))
    }

    /// The vocabulary entry or added token content of `id`, or nil when no token has it.
    public func token(for id: Int32) -> String? {
        if let token = addedTokens[id] { return token.content }
        guard id >= 0, Int(id) < vocabSize, modelEntryOfId[Int(id)] >= 0 else { return nil }
        return String(decoding: model.vocab.entryBytes(Int(modelEntryOfId[Int(id)])), as: UTF8.self)
    }

    /// The id of the added token or vocabulary entry `token` (added tokens first, as tokenizers' `token_to_id`).
    public func id(for token: String) -> Int32? {
        addedIds.id(of: token) ?? model.vocab.id(of: token)
    }

    /// Whether `id` is a special token: one that `decode(_:skipSpecialTokens: true)` leaves out (an added token
    /// with `special: true`, found by its decoded text as tokenizers does).
    public func isSpecial(_ id: Int32) -> Bool {
        id >= 0 && Int(id) < vocabSize && special[Int(id)]
    }
}
