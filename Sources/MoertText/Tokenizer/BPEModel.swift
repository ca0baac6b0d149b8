// BPEModel: tokenizers' BPE model — vocabulary, merges, unknown and byte-fallback handling of one pre-token.

import MoertTensor

/// A byte-pair-encoding model (tokenizers `models/bpe/model.rs`): each character of a pre-token becomes a symbol
/// (its vocabulary id, its `<0xXX>` bytes under `byte_fallback`, or the unknown token), and the symbols are then
/// merged lowest rank first.
struct BPEModel {
    /// Token text to id.
    let vocab: TokenTable
    let merges: MergeTable
    /// The id of `unk_token` when it is set and in the vocabulary; `unkMissing` when it is set but absent, which
    /// tokenizers reports only when a character needs it.
    let unkId: Int32?
    let unkToken: String?
    let continuingSubwordPrefix: [UInt8]
    let endOfWordSuffix: [UInt8]
    let fuseUnk: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    /// The id of `<0xXX>` for each byte value (-1 when absent), for `byte_fallback`.
    let byteTokens: [Int32]
    /// For each byte value, the id of the one-character token that GPT-2's byte-to-unicode map gives it
    /// (-1 when the vocabulary lacks it): the first symbols of a byte-level pre-token come straight from its bytes.
    let byteLevelIds: [Int32]

    init(vocab: TokenTable, merges: MergeTable, unkToken: String?, continuingSubwordPrefix: String?,
         endOfWordSuffix: String?, fuseUnk: Bool, byteFallback: Bool, ignoreMerges: Bool) {
        self.vocab = vocab
        self.merges = merges
        self.unkToken = unkToken
        self.unkId = unkToken.flatMap { vocab.id(of: $0) }
        self.continuingSubwordPrefix = Array((continuingSubwordPrefix ?? "").utf8)
        self.endOfWordSuffix = Array((endOfWordSuffix ?? "").utf8)
        self.fuseUnk = fuseUnk
        self.byteFallback = byteFallback
        self.ignoreMerges = ignoreMerges
        byteTokens = (0..<256).map { b in vocab.id(of: Array(ByteLevelAlphabet.fallbackName(UInt8(b)).utf8)) ?? -1 }
        byteLevelIds = (0..<256).map { b in vocab.id(of: ByteLevelAlphabet.utf8(of: UInt8(b))) ?? -1 }
    }

    /// Whether byte-level pre-tokens can start from `byteLevelIds` without building their mapped text: no prefix or
    /// suffix changes the characters' lookups and every byte has its token.
    var byteLevelDirect: Bool {
        continuingSubwordPrefix.isEmpty && endOfWordSuffix.isEmpty && !byteLevelIds.contains(-1)
    }

    /// Appends the ids of `word` (UTF-8 text) to `out`: tokenizers' `merge_word` then `merge_all`, after the
    /// `ignore_merges` shortcut of `tokenize_with_cache`.
    /// - Throws: `.format` when a character needs the unknown token and `unk_token` is not in the vocabulary.
    func tokenize(_ word: UnsafeRawBufferPointer, into out: inout [Int32], scratch: inout BPEWord,
                  key: inout [UInt8]) throws {
        if word.isEmpty { return }
        if ignoreMerges, let id = vocab.id(of: word) { out.append(id); return }
        scratch.removeAll()
        var unk: (id: Int32, length: Int)? = nil
        var i = 0
        let n = word.count
        while i < n {
            let length = UTF8Scalar.length(lead: word[i])
            let end = min(i + length, n)
            let isFirst = i == 0, isLast = end == n
            let id: Int32?
            if (isFirst || continuingSubwordPrefix.isEmpty) && (!isLast || endOfWordSuffix.isEmpty) {
                id = vocab.id(of: UnsafeRawBufferPointer(rebasing: word[i..<end]))
            } else {
                key.removeAll(keepingCapacity: true)
                if !isFirst { key.append(contentsOf: continuingSubwordPrefix) }
                key.append(contentsOf: UnsafeRawBufferPointer(rebasing: word[i..<end]))
                if isLast { key.append(contentsOf: endOfWordSuffix) }
                id = vocab.id(of: key)
            }
            if let id {
                if let u = unk { scratch.add(u.id, byteLength: u.length); unk = nil }
                scratch.add(id, byteLength: end - i)
            } else {
                if byteFallback && fallback(word, i, end, isFirst: isFirst, isLast: isLast, into: &scratch, key: &key) {
                    i = end
                    continue
                }
                if let unkToken {
                    guard let unkId else {
                        throw MoertError.format("unk_token \"\(unkToken)\" is not in the vocabulary")
                    }
                    if let u = unk {
                        if fuseUnk {
                            unk = (u.id, u.length + end - i)
                        } else {
                            scratch.add(u.id, byteLength: u.length)
                            unk = (unkId, end - i)
                        }
                    } else {
                        unk = (unkId, end - i)
                    }
                }
            }
            i = end
        }
        if let u = unk { scratch.add(u.id, byteLength: u.length) }
        scratch.mergeAll(merges)
        scratch.forEachSymbol { out.append($0) }
    }

    /// Adds the `<0xXX>` tokens of the character's lookup text (prefix and suffix included, as tokenizers spells
    /// it) when every one exists; a pending unknown stays pending, as in tokenizers.
    private func fallback(_ word: UnsafeRawBufferPointer, _ i: Int, _ end: Int, isFirst: Bool, isLast: Bool,
                          into scratch: inout BPEWord, key: inout [UInt8]) -> Bool {
        key.removeAll(keepingCapacity: true)
        if !isFirst { key.append(contentsOf: continuingSubwordPrefix) }
        key.append(contentsOf: UnsafeRawBufferPointer(rebasing: word[i..<end]))
        if isLast { key.append(contentsOf: endOfWordSuffix) }
        for b in key where byteTokens[Int(b)] < 0 { return false }
        for b in key { scratch.add(byteTokens[Int(b)], byteLength: 1) }
        return true
    }

    /// Appends the ids of a byte-level pre-token given by its raw bytes, each byte standing for the character
    /// GPT-2's map gives it. Requires `byteLevelDirect`; the result equals `tokenize` on the mapped text, since
    /// with every byte's character in the vocabulary no unknown or fallback path is taken.
    func tokenizeByteLevel(_ raw: UnsafeRawBufferPointer, into out: inout [Int32], scratch: inout BPEWord,
                           key: inout [UInt8]) {
        if raw.isEmpty { return }
        if ignoreMerges {
            key.removeAll(keepingCapacity: true)
            for b in raw { key.append(contentsOf: ByteLevelAlphabet.utf8(of: b)) }
            if let id = vocab.id(of: key) { out.append(id); return }
        }
        scratch.removeAll()
        for b in raw { scratch.add(byteLevelIds[Int(b)], byteLength: ByteLevelAlphabet.utf8Length(of: b)) }
        scratch.mergeAll(merges)
        scratch.forEachSymbol { out.append($0) }
    }
}
