// MergeTable: BPE merges keyed by the pair of token ids they join, giving the merge's rank and the id it makes.

/// The merges of a BPE model as an open-addressing hash from `(left id, right id)` packed in one `UInt64` to the
/// merge's rank (its position in the file) and the id of the merged token: tokenizers' `MergeMap`
/// (`models/bpe/model.rs`), without hashing tuples.
struct MergeTable {
    /// Packed keys; `empty` marks a free slot (no pair of non-negative Int32 ids packs to it).
    private var keys: [UInt64]
    /// `rank << 32 | newId` for the slot's key.
    private var values: [UInt64]
    private let mask: Int
    private static let empty = UInt64.max
    /// The merged id of each rank, so a queue entry can carry only its rank and position.
    private(set) var newIdOfRank: [Int32] = []

    /// A table sized for `capacity` merges.
    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = [UInt64](repeating: Self.empty, count: size)
        values = [UInt64](repeating: 0, count: size)
        mask = size - 1
        newIdOfRank.reserveCapacity(capacity)
    }

    @inline(__always)
    private static func pack(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    @inline(__always)
    private static func slot(_ key: UInt64, _ mask: Int) -> Int {
        // Multiplicative (Fibonacci) hashing: the two ids are small and close together, so their bits need mixing.
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// Records the merge of `a` and `b` into `newId` with the next rank. A pair seen before takes the new rank and
    /// id, as tokenizers' map does when its iterator of merges repeats a pair (the last one wins).
    mutating func append(_ a: Int32, _ b: Int32, newId: Int32) {
        let rank = UInt64(newIdOfRank.count)
        newIdOfRank.append(newId)
        let key = Self.pack(a, b)
        var s = Self.slot(key, mask)
        while keys[s] != Self.empty && keys[s] != key { s = (s + 1) & mask }
        keys[s] = key
        values[s] = rank << 32 | UInt64(UInt32(bitPattern: newId))
    }

    /// The rank of merging `a` then `b`, or -1 when they do not merge.
    @inline(__always)
    func rank(_ a: Int32, _ b: Int32) -> Int {
        let key = Self.pack(a, b)
        var s = Self.slot(key, mask)
        while true {
            let k = keys[s]
            if k == key { return Int(values[s] >> 32) }
            if k == Self.empty { return -1 }
            s = (s + 1) & mask
        }
    }
}
