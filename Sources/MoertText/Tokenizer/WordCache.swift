// WordCache: the ids of pre-tokens already merged, found by the pre-token's bytes, kept by each encode scratch.

#if canImport(Glibc)
import Glibc
#endif

/// tokenizers keeps a cache of merged words in the BPE model (`models/bpe/model.rs`, `BPE_LOCAL_CACHE`: up to
/// 10,000 words shorter than 256 bytes). Text repeats its words, so most pre-tokens of a long text are found here
/// instead of being merged again. Each encode scratch has its own (see `ScratchPool`), so no lock guards it; it
/// holds words up to 256 bytes and at most `limit` of them, then stops growing (as tokenizers' does).
struct WordCache {
    private var keyBytes: [UInt8] = []
    private var ids: [Int32] = []
    /// Per entry: key start, key end, ids start, ids end.
    private var entries: [(Int32, Int32, Int32, Int32)] = []
    private var slots: [Int32] = [Int32](repeating: 0, count: 1024)
    private var hashes: [Int] = []
    private var mask = 1023
    static let maxWordLength = 256
    static let limit = 1 << 16

    /// Appends the cached ids of `word` to `out` and returns true, or returns false.
    @inline(__always)
    func lookup(_ word: UnsafeRawBufferPointer, hash: Int, into out: inout [Int32]) -> Bool {
        var slot = hash & mask
        while true {
            let e = Int(slots[slot]) - 1
            if e < 0 { return false }
            if hashes[e] == hash {
                let (ks, ke, s, t) = entries[e]
                if Int(ke - ks) == word.count {
                    let same = keyBytes.withUnsafeBytes {
                        memcmp($0.baseAddress! + Int(ks), word.baseAddress!, word.count) == 0
                    }
                    if same {
                        out.append(contentsOf: ids[Int(s)..<Int(t)])
                        return true
                    }
                }
            }
            slot = (slot + 1) & mask
        }
    }

    /// Remembers that `word` gives `result`.
    mutating func insert(_ word: UnsafeRawBufferPointer, hash: Int, _ result: ArraySlice<Int32>) {
        guard word.count <= Self.maxWordLength, entries.count < Self.limit else { return }
        if (entries.count + 1) * 2 > slots.count { grow() }
        let ks = Int32(keyBytes.count)
        keyBytes.append(contentsOf: word)
        let s = Int32(ids.count)
        ids.append(contentsOf: result)
        entries.append((ks, Int32(keyBytes.count), s, Int32(ids.count)))
        hashes.append(hash)
        place(entries.count - 1)
    }

    private mutating func place(_ e: Int) {
        var slot = hashes[e] & mask
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = Int32(e + 1)
    }

    private mutating func grow() {
        slots = [Int32](repeating: 0, count: slots.count * 2)
        mask = slots.count - 1
        for e in 0..<entries.count { place(e) }
    }
}
