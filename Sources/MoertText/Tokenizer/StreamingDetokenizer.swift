// StreamingDetokenizer: text token by token, never ending in a broken UTF-8 sequence (tokenizers' DecodeStream).

import MoertTensor

/// Incremental detokenization: text arrives token by token and never ends in a broken UTF-8 sequence; the
/// concatenation of every `push` plus `finish` equals `decode` of all the ids, except where decoding more ids
/// rewrites text already given (byte-fallback bytes that stay invalid UTF-8 once more bytes follow become one
/// U+FFFD each), where it is what tokenizers' stream gives too.
///
/// The algorithm of tokenizers' `DecodeStream` (`step_decode_stream`, `tokenizer/mod.rs`): keep a window of recent
/// ids and the text they decode to (the prefix); decode the window with the new id, and while that text ends in
/// U+FFFD (an incomplete sequence, typically byte-fallback tokens) give nothing; otherwise give what follows the
/// prefix and slide the window to start at the previous prefix. Decoding a window rather than one id keeps what
/// depends on neighbours right (Metaspace and Strip drop the first token's leading space; byte-level tokens split
/// characters).
public struct StreamingDetokenizer {
    private let tokenizer: Tokenizer
    private let skipSpecialTokens: Bool
    private var ids: [Int32] = []
    private var prefix: [UInt8] = []
    private var prefixIndex = 0

    /// A stream over `tokenizer`, decoding as `decode(_:skipSpecialTokens:)` does.
    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// The text that `id` completes: empty while the decoded text ends in an incomplete UTF-8 sequence.
    /// - Throws: `MoertError`: `.outOfRange` for an id no token has (the stream is unchanged); `.unsupported` when
    ///   the decoder rewrote text already given out, where tokenizers fails too (`InvalidPrefix`).
    public mutating func push(_ id: Int32) throws -> String {
        if prefix.isEmpty && !ids.isEmpty {
            let text = try decode(ids)
            if !Self.endsWithReplacement(text) {
                prefix = text
                prefixIndex = ids.count
            }
        }
        ids.append(id)
        let text: [UInt8]
        do { text = try decode(ids) } catch { ids.removeLast(); throw error }
        guard text.count > prefix.count, !Self.endsWithReplacement(text) else { return "" }
        guard text.starts(with: prefix) else {
            throw MoertError.unsupported("decoding token \(id) changed text already given out: expected it to start with \"\(String(decoding: prefix, as: UTF8.self))\", got \"\(String(decoding: text, as: UTF8.self))\"")
        }
        let new = String(decoding: text[prefix.count...], as: UTF8.self)
        let newPrefixIndex = ids.count - prefixIndex
        ids.removeFirst(prefixIndex)
        prefix = try decode(ids)
        prefixIndex = newPrefixIndex
        return new
    }

    /// The text still held back (an incomplete sequence at the end, given as U+FFFD as `decode` gives it).
    public mutating func finish() -> String {
        defer { reset() }
        guard !ids.isEmpty, let text = try? decode(ids), text.count > prefix.count, text.starts(with: prefix) else {
            return ""
        }
        return String(decoding: text[prefix.count...], as: UTF8.self)
    }

    /// Forgets every id, for a new text.
    public mutating func reset() {
        ids.removeAll()
        prefix.removeAll()
        prefixIndex = 0
    }

    private func decode(_ ids: [Int32]) throws -> [UInt8] {
        try ids.withUnsafeBufferPointer { try tokenizer.decodeBytes($0, skipSpecialTokens: skipSpecialTokens) }
    }

    private static func endsWithReplacement(_ text: [UInt8]) -> Bool {
        text.count >= 3 && text[text.count - 3] == 0xEF && text[text.count - 2] == 0xBF && text[text.count - 1] == 0xBD
    }
}
