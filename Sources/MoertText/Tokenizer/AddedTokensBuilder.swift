// AddedTokensBuilder: `added_tokens` of tokenizer.json given ids and matchers as tokenizers' `add_tokens` does.

import MoertFormats
import MoertTensor

/// The added tokens of a tokenizer, built as tokenizers builds them when it loads a file
/// (`tokenizer/serialization.rs` then `AddedVocabulary::add_tokens`): the `id` written in the file is only
/// compared (a mismatch is logged); a token gets the id its content already has (an earlier added token, then the
/// model vocabulary) or the next free one from the model vocabulary's size. Tokens with `normalized: true` are
/// matched in normalized text by their normalized content, which is also what decoding gives for them.
struct AddedTokensBuilder {
    var tokens: [Int32: AddedToken] = [:]
    /// Ids by content, compared as bytes (a Swift dictionary would merge canonically equal contents).
    var ids = TokenTable(capacity: 16)
    var decodeText: [Int32: [UInt8]] = [:]
    var specialContents: Set<[UInt8]> = []
    var rawMatcher = AddedTokenMatcher()
    var normalizedMatcher = AddedTokenMatcher()

    private let reader: ConfigReader
    private let model: BPEModel
    private let normalizers: [NormalizerStep]
    private let regex = RegexScratch()
    private var nextId: Int64

    /// - Parameter extraTokens: tokens to add after the file's list, as transformers adds those of
    ///   tokenizer_config.json.
    init(reader: ConfigReader, json: TokenizerJSON?, model: BPEModel, normalizers: [NormalizerStep],
         extraTokens: [AddedToken] = []) throws {
        self.reader = reader
        self.model = model
        self.normalizers = normalizers
        nextId = Int64(model.vocab.count)
        if let json, !json.isNull {
            for (i, item) in try reader.array(json, "added_tokens").enumerated() {
                let path = "added_tokens[\(i)]"
                let o = try reader.object(item, path)
                let declared = try reader.tokenId(o["id"], path + ".id")
                let content = try reader.string(o["content"], path + ".content")
                let special = try reader.bool(o["special"], path + ".special", default: false)
                let token = AddedToken(content: content,
                                       singleWord: try reader.bool(o["single_word"], path + ".single_word", default: false),
                                       lstrip: try reader.bool(o["lstrip"], path + ".lstrip", default: false),
                                       rstrip: try reader.bool(o["rstrip"], path + ".rstrip", default: false),
                                       normalized: try reader.bool(o["normalized"], path + ".normalized", default: !special),
                                       special: special)
                if let id = try add(token, path: path), id != declared {
                    Log.write(.warning, "\(reader.source): added token \(ConfigReader.quotedKey(content)) is declared with id \(declared) but gets id \(id), as tokenizers gives it")
                }
            }
        }
        for token in extraTokens {
            try add(token, path: "tokenizer_config.json token \(ConfigReader.quotedKey(token.content))")
        }
        // The matchers, as `refresh_added_tokens` builds them; two tokens with one pattern fail as they do there.
        for (id, token) in tokens.sorted(by: { $0.key < $1.key }) {
            let pattern = token.normalized ? (decodeText[id] ?? Array(token.content.utf8)) : Array(token.content.utf8)
            if token.normalized {
                guard !normalizedMatcher.contains(pattern) else {
                    throw reader.malformed("added_tokens", "two normalized added tokens match \(ConfigReader.quotedKey(String(decoding: pattern, as: UTF8.self)))")
                }
                normalizedMatcher.add(pattern, id: id, token: token)
            } else {
                rawMatcher.add(pattern, id: id, token: token)
            }
        }
    }

    /// Adds one token as `AddedVocabulary::add_tokens` does: nothing when an equal token is there already; else the
    /// id its content has (an earlier added token, then the model vocabulary) or the next free one, replacing an
    /// added token of the same content. Returns the id, nil when nothing was added.
    @discardableResult
    private mutating func add(_ token: AddedToken, path: String) throws -> Int32? {
        if token.content.isEmpty { return nil }
        if let id = ids.id(of: token.content), let old = tokens[id], old == token { return nil }
        let id: Int32
        if let known = ids.id(of: token.content) ?? model.vocab.id(of: token.content) {
            id = known
        } else {
            guard nextId <= Int64(maxTokenId) else { throw reader.malformed(path, "more ids than \(maxTokenId + 1)") }
            id = Int32(nextId)
            nextId += 1
        }
        decodeText[id] = nil
        if token.normalized && !normalizers.isEmpty {
            var text = NormalizingText(bytes: Array(token.content.utf8), zero: 0)
            for step in normalizers { try step.apply(&text, regex: regex) }
            if text.bytes != Array(token.content.utf8) { decodeText[id] = text.bytes }
        }
        ids.insert(token.content, id: id)
        if token.special { specialContents.insert(Array(token.content.utf8)) }
        tokens[id] = token
        return id
    }
}
