// TokenTable: token texts kept as UTF-8 bytes in one arena, found by content through an open-addressing hash.

#if canImport(Glibc)
import Glibc
#endif

/// A set of distinct byte strings, each with an id, looked up without making a String: the vocabulary of a model
/// and the contents of added tokens. Lookups hash the bytes in place (FNV-1a), so the encoder can ask for a slice of
/// its buffer.
struct TokenTable {
    /// Every entry's bytes, one after the other.
    private var arena: [UInt8] = []
    /// Entry `i` is `arena[starts[i] ..< starts[i + 1]]`.
    private var starts: [Int32] = [0]
    /// The id of entry `i`.
    private(set) var ids: [Int32] = []
    /// Hash slots: entry index + 1, 0 when empty. The count is a power of two at least twice the entries.
    private var slots: [Int32] = []
    private var mask = 0

    /// The number of entries.
    var count: Int { ids.count }

    /// Makes room for `capacity` entries without growing the slots.
    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Int32](repeating: 0, count: size)
        mask = size - 1
        ids.reserveCapacity(capacity)
        starts.reserveCapacity(capacity + 1)
    }

    /// FNV-1a over `bytes`: short keys (most tokens are under 16 bytes) make a multiply-per-byte hash cheaper than
    /// Swift's seeded Hasher, whose setup dominates at these lengths.
    @inline(__always)
    static func hash(_ bytes: UnsafeRawBufferPointer) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// The bytes of entry `index`.
    func withEntry<R>(_ index: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let start = Int(starts[index]), end = Int(starts[index + 1])
        return try arena.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
    }

    /// The bytes of entry `index` as an array.
    func entryBytes(_ index: Int) -> [UInt8] {
        Array(arena[Int(starts[index])..<Int(starts[index + 1])])
    }

    /// The entry index holding `key`, or -1.
    func index(of key: UnsafeRawBufferPointer) -> Int {
        if ids.isEmpty { return -1 }
        var slot = Self.hash(key) & mask
        return arena.withUnsafeBytes { a in
            while true {
                let e = Int(slots[slot]) - 1
                if e < 0 { return -1 }
                let start = Int(starts[e]), end = Int(starts[e + 1])
                if end - start == key.count
                    && (key.count == 0 || memcmp(a.baseAddress! + start, key.baseAddress!, key.count) == 0) {
                    return e
                }
                slot = (slot + 1) & mask
            }
        }
    }

    /// The id of `key`, or nil.
    func id(of key: UnsafeRawBufferPointer) -> Int32? {
        let e = index(of: key)
        return e < 0 ? nil : ids[e]
    }

    /// The id of `key`, or nil.
    func id(of key: [UInt8]) -> Int32? { key.withUnsafeBytes { id(of: $0) } }

    /// The id of `text`, or nil.
    func id(of text: String) -> Int32? {
        var text = text
        return text.withUTF8 { id(of: UnsafeRawBufferPointer($0)) }
    }

    /// Adds `key` with `id`, or gives an existing entry the new id. Returns the entry index.
    @discardableResult
    mutating func insert(_ key: UnsafeRawBufferPointer, id: Int32) -> Int {
        let existing = index(of: key)
        if existing >= 0 { ids[existing] = id; return existing }
        if (ids.count + 1) * 2 > slots.count { grow() }
        let e = ids.count
        arena.append(contentsOf: key)
        starts.append(Int32(arena.count))
        ids.append(id)
        place(entry: e, hash: Self.hash(key))
        return e
    }

    /// Adds `text` with `id` (see `insert(_:id:)`).
    @discardableResult
    mutating func insert(_ text: String, id: Int32) -> Int {
        var text = text
        return text.withUTF8 { insert(UnsafeRawBufferPointer($0), id: id) }
    }

    private mutating func place(entry e: Int, hash: Int) {
        var slot = hash & mask
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = Int32(e + 1)
    }

    private mutating func grow() {
        let size = Swift.max(16, slots.count * 2)
        slots = [Int32](repeating: 0, count: size)
        mask = size - 1
        for e in 0..<ids.count {
            let h = withEntry(e) { Self.hash($0) }
            place(entry: e, hash: h)
        }
    }
}
