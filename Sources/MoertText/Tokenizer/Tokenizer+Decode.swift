// Tokenizer+Decode: ids to text — token texts, the decoders, and the joining tokenizers' `decode` does.

import MoertTensor

extension Tokenizer {
    /// The text of `ids`: tokenizers' `decode(ids, skip_special_tokens)`.
    /// - Throws: `MoertError` (`.outOfRange`) naming the first id that no token has (tokenizers would skip it).
    public func decode(_ ids: UnsafeBufferPointer<Int32>, skipSpecialTokens: Bool) throws -> String {
        String(decoding: try decodeBytes(ids, skipSpecialTokens: skipSpecialTokens), as: UTF8.self)
    }

    /// The decoded text as UTF-8 bytes (always valid).
    func decodeBytes(_ ids: UnsafeBufferPointer<Int32>, skipSpecialTokens: Bool) throws -> [UInt8] {
        var tokens: [[UInt8]] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let text = Self.decodeText(id, added: addedDecodeText, addedTokens: addedTokens, model: model,
                                             entries: modelEntryOfId) else {
                throw MoertError(.outOfRange, "token id \(id) is not in the vocabulary of \(vocabSize) ids")
            }
            if skipSpecialTokens && special[Int(id)] { continue }
            tokens.append(text)
        }
        guard let decoders else {
            // No decoder: tokenizers joins the tokens with spaces.
            return Array(tokens.joined(separator: [0x20]))
        }
        try scratchPool.with { scratch in
            for step in decoders { try step.apply(&tokens, regex: scratch.regex) }
        }
        return Array(tokens.joined())
    }
}
