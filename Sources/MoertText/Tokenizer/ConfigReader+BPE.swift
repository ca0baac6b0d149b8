// ConfigReader+BPE: the `model` section of tokenizer.json — a BPE vocabulary and its merges — read into tables.

import MoertFormats
import MoertTensor

extension ConfigReader {
    /// The BPE model (`models/bpe/serialization.rs`): `vocab` (token → id), `merges` (`"a b"` strings or
    /// `["a", "b"]` pairs, rank = position), `unk_token`, `continuing_subword_prefix`, `end_of_word_suffix`,
    /// `fuse_unk`, `byte_fallback`, `ignore_merges` (absent in older files: false). `dropout` must be null or 0.
    func bpeModel(_ value: TokenizerJSON?, _ path: String) throws -> BPEModel {
        guard let value, !value.isNull else { throw malformed(path, "missing") }
        let o = try object(value, path)
        if let t = o["type"] {
            let name = try string(t, path + ".type")
            guard name == "BPE" else { throw unsupported(path + ".type", "model type \"\(name)\" is not supported (only BPE)") }
        }
        if let d = o["dropout"], !d.isNull {
            guard let p = d.double, p >= 0, p <= 1 else { throw malformed(path + ".dropout", "expected null or a number from 0 to 1") }
            guard p == 0 else { throw unsupported(path + ".dropout", "BPE dropout \(p) is not supported (only null or 0)") }
        }
        let unk = try optionalString(o["unk_token"], path + ".unk_token")
        let prefix = try optionalString(o["continuing_subword_prefix"], path + ".continuing_subword_prefix")
        let suffix = try optionalString(o["end_of_word_suffix"], path + ".end_of_word_suffix")

        // vocab
        guard let vocabValue = o["vocab"] else { throw malformed(path + ".vocab", "missing") }
        let vocabObject = try object(vocabValue, path + ".vocab")
        var vocab = TokenTable(capacity: vocabObject.count)
        try vocabObject.forEachRawMember { token, idValue in
            guard idValue.kind == .int, let id = idValue.int, id >= 0, id <= Int64(maxTokenId) else {
                _ = try tokenId(idValue, "\(path).vocab.\(Self.quotedKey(String(decoding: token, as: UTF8.self)))")
                return
            }
            vocab.insert(token, id: Int32(id))
        }
        // Ids must be distinct: tokenizers would decode a shared id to either token, as its hash map happens to
        // iterate.
        var seen = IdSet()
        for (e, id) in vocab.ids.enumerated() where !seen.insert(id) {
            let first = vocab.ids.firstIndex(of: id) ?? e
            throw malformed(path + ".vocab", "tokens \(Self.quotedKey(String(decoding: vocab.entryBytes(first), as: UTF8.self))) and \(Self.quotedKey(String(decoding: vocab.entryBytes(e), as: UTF8.self))) share id \(id)")
        }

        // merges
        let mergeList = try array(o["merges"], path + ".merges")
        var merges = MergeTable(capacity: mergeList.count)
        let prefixBytes = Array((prefix ?? "").utf8)
        var joined: [UInt8] = []
        func add(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ p: @autoclosure () -> String) throws {
            guard let left = vocab.id(of: a) else { throw missing(p(), a) }
            guard let right = vocab.id(of: b) else { throw missing(p(), b) }
            // The merged token: b loses the continuing-subword prefix (tokenizers cuts its length in bytes).
            guard b.count >= prefixBytes.count else {
                throw malformed(p(), "token \(Self.quotedKey(String(decoding: b, as: UTF8.self))) is shorter than continuing_subword_prefix")
            }
            joined.removeAll(keepingCapacity: true)
            joined.append(contentsOf: a)
            joined.append(contentsOf: b[prefixBytes.count...])
            guard let merged = vocab.id(of: joined) else {
                throw malformed(p(), "the merged token \(Self.quotedKey(String(decoding: joined, as: UTF8.self))) is not in the vocabulary")
            }
            merges.append(left, right, newId: merged)
        }
        var scratchA: [UInt8] = [], scratchB: [UInt8] = []
        let tape = mergeList.first?.tape
        if mergeList.first?.kind == .array {
            for (i, m) in mergeList.enumerated() {
                guard let pair = m.array, pair.count == 2, pair[0].kind == .string, pair[1].kind == .string else {
                    throw malformed("\(path).merges[\(i)]", "expected a pair of strings like the first merge")
                }
                try tape!.withString(pair[0].node, scratch: &scratchA) { a in
                    try tape!.withString(pair[1].node, scratch: &scratchB) { b in try add(a, b, "\(path).merges[\(i)]") }
                }
            }
        } else {
            for (i, m) in mergeList.enumerated() {
                guard m.kind == .string else {
                    throw malformed("\(path).merges[\(i)]", "expected a string \"a b\" like the first merge")
                }
                try tape!.withString(m.node, scratch: &scratchA) { raw in
                    // tokenizers skips "#version" lines of merges.txt here too.
                    if raw.starts(with: "#version".utf8) { return }
                    guard let space = raw.firstIndex(of: 0x20), raw[(space + 1)...].firstIndex(of: 0x20) == nil else {
                        throw malformed("\(path).merges[\(i)]", "expected two tokens separated by one space")
                    }
                    try add(UnsafeRawBufferPointer(rebasing: raw[..<space]), UnsafeRawBufferPointer(rebasing: raw[(space + 1)...]),
                            "\(path).merges[\(i)]")
                }
            }
        }
        return BPEModel(vocab: vocab, merges: merges, unkToken: unk, continuingSubwordPrefix: prefix,
                        endOfWordSuffix: suffix, fuseUnk: try bool(o["fuse_unk"], path + ".fuse_unk", default: false),
                        byteFallback: try bool(o["byte_fallback"], path + ".byte_fallback", default: false),
                        ignoreMerges: try bool(o["ignore_merges"], path + ".ignore_merges", default: false))
    }

    private func missing(_ path: String, _ token: UnsafeRawBufferPointer) -> MoertError {
        malformed(path, "token \(Self.quotedKey(String(decoding: token, as: UTF8.self))) is not in the vocabulary")
    }

    /// A token in quotes, cut to 80 characters, for messages.
    static func quotedKey(_ s: String) -> String {
        s.count > 80 ? "\"\(s.prefix(80))…\"" : "\"\(s)\""
    }
}

/// A set of token ids below 2^24, one bit each.
struct IdSet {
    private var words: [UInt64] = []

    /// Adds `id`; false when it was already there.
    mutating func insert(_ id: Int32) -> Bool {
        let w = Int(id) >> 6, bit = UInt64(1) << UInt64(id & 63)
        if w >= words.count { words.append(contentsOf: repeatElement(0, count: w + 1 - words.count)) }
        if words[w] & bit != 0 { return false }
        words[w] |= bit
        return true
    }
}
