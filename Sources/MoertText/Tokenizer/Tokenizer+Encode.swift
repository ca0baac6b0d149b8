// Tokenizer+Encode: text to ids — added tokens, normalizers, pre-tokenizers, the BPE model, the post-processor.

import MoertTensor

extension Tokenizer {
    /// The ids of `text`: tokenizers' `encode(text, add_special_tokens)`. Special-token text in the input (e.g.
    /// "<|im_start|>") is matched as those tokens, as transformers does, unless `parseSpecialTokens` is false: then
    /// it is encoded as text (tokenizers' `encode_special_tokens`).
    /// - Throws: `MoertError` only for what tokenizers also refuses (an `unk_token` missing from the vocabulary
    ///   when a character needs it) or a runaway split pattern (`.unsupported`).
    public func encode(_ text: String, addSpecialTokens: Bool, parseSpecialTokens: Bool = true) throws -> [Int32] {
        var text = text
        return try text.withUTF8 {
            try encodeValid(UnsafeRawBufferPointer($0), addSpecialTokens: addSpecialTokens, parseSpecial: parseSpecialTokens)
        }
    }

    /// The ids of the UTF-8 text in `bytes` (see `encode(_:addSpecialTokens:parseSpecialTokens:)`).
    /// - Throws: `MoertError` (`.invalidArgument`) naming the byte offset of the first invalid UTF-8 sequence.
    public func encode(bytes: UnsafeRawBufferPointer, addSpecialTokens: Bool, parseSpecialTokens: Bool = true) throws -> [Int32] {
        let bad = UTF8Text.firstInvalidOffset(bytes)
        guard bad == bytes.count else { throw MoertError.invalid("text: invalid UTF-8 at byte \(bad)") }
        return try encodeValid(bytes, addSpecialTokens: addSpecialTokens, parseSpecial: parseSpecialTokens)
    }

    /// `TokenizerImpl::encode_single_sequence` then `post_process`, on text known to be valid UTF-8.
    private func encodeValid(_ text: UnsafeRawBufferPointer, addSpecialTokens: Bool, parseSpecial: Bool) throws -> [Int32] {
        try scratchPool.with { try encodeValid(text, addSpecialTokens: addSpecialTokens, parseSpecial: parseSpecial, scratch: $0) }
    }

    private func encodeValid(_ text: UnsafeRawBufferPointer, addSpecialTokens: Bool, parseSpecial: Bool,
                             scratch: EncodeScratch) throws -> [Int32] {
        var ids: [Int32] = []
        ids.reserveCapacity(text.count / 3)
        // 1. Added tokens that match the raw text (AddedVocabulary::extract_and_normalize, first split).
        for segment in rawMatcher.split(text, skipSpecial: !parseSpecial) {
            if let id = segment.id { ids.append(id); continue }
            if segment.start >= segment.end { continue }
            // 2. Normalize the stretch between them, then find the normalized added tokens in it.
            let slice = UnsafeRawBufferPointer(rebasing: text[segment.start..<segment.end])
            var normalized = NormalizingText(bytes: Array(slice), zero: UTF8Scalar.length(lead: slice[0]))
            for step in normalizers { try step.apply(&normalized, regex: scratch.regex) }
            let atStart = segment.start == 0
            try normalized.bytes.withUnsafeBytes { raw in
                for part in normalizedMatcher.split(raw, skipSpecial: !parseSpecial) {
                    if let id = part.id { ids.append(id); continue }
                    if part.start >= part.end { continue }
                    // A slice keeps offset 0 only if its first byte still maps there (NormalizedString::slice).
                    let lead = atStart && part.start < normalized.zero ? normalized.zero - part.start : -1
                    try encodePiece(UnsafeRawBufferPointer(rebasing: raw[part.start..<part.end]), lead: lead,
                                    into: &ids, scratch: scratch)
                }
            }
        }
        // 3. The post-processor.
        for step in postProcessors { ids = step.apply(ids, addSpecialTokens: addSpecialTokens) }
        return ids
    }

    /// Pre-tokenizes one normalized stretch and appends the model's ids for its pre-tokens.
    private func encodePiece(_ text: UnsafeRawBufferPointer, lead: Int, into ids: inout [Int32],
                             scratch: EncodeScratch) throws {
        scratch.pieces.removeAll()
        scratch.pieces.append(text, lead: lead)
        for step in preTokenizers {
            try step.apply(&scratch.pieces, spare: &scratch.spare, gpt2: gpt2, regex: scratch.regex)
        }
        // Byte-level pieces go to the model as raw bytes when it can read them so; otherwise as mapped text.
        let direct = scratch.pieces.byteMapped && model.byteLevelDirect
        if scratch.pieces.byteMapped && !direct { scratch.pieces.materializeByteMap() }
        let pieces = scratch.pieces
        try pieces.bytes.withUnsafeBytes { all in
            for i in 0..<pieces.count {
                let word = UnsafeRawBufferPointer(rebasing: all[pieces.starts[i]..<pieces.ends[i]])
                let hash = TokenTable.hash(word)
                if scratch.cache.lookup(word, hash: hash, into: &ids) { continue }
                let first = ids.count
                if direct {
                    model.tokenizeByteLevel(word, into: &ids, scratch: &scratch.word, key: &scratch.key)
                } else {
                    try model.tokenize(word, into: &ids, scratch: &scratch.word, key: &scratch.key)
                }
                scratch.cache.insert(word, hash: hash, ids[first...])
            }
        }
    }
}
