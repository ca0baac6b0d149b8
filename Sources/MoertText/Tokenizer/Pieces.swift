// Pieces: the pre-tokens of one stretch of text, as ranges of a byte arena, split and rewritten by pre-tokenizers.

/// How a split keeps the matched delimiters (tokenizers `SplitDelimiterBehavior`).
enum SplitBehavior: String {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// The pre-tokens of a stretch of text: ranges of `bytes`, in order, never empty.
///
/// `lead` follows tokenizers' `original_shift` for Metaspace's `prepend_scheme: "first"`: -1 when the piece does
/// not start at offset 0 of the input, otherwise how many of its leading bytes still map to offset 0 (a split at
/// offset `s` keeps the start only when `s < lead`).
struct Pieces {
    var bytes: [UInt8] = []
    var starts: [Int] = []
    var ends: [Int] = []
    var leads: [Int] = []
    /// Set by the ByteLevel pre-tokenizer: every byte still stands for its character in GPT-2's map, which is
    /// applied only when something needs the text (the model reads the bytes directly).
    var byteMapped = false

    var count: Int { starts.count }

    /// Empties the list, keeping its storage.
    mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        starts.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
        leads.removeAll(keepingCapacity: true)
        byteMapped = false
    }

    /// Adds `start..<end` of `bytes` when it is not empty, with the lead a slice at offset `s` of a piece with
    /// `parentLead` gets.
    @inline(__always)
    mutating func addRange(_ start: Int, _ end: Int, offset s: Int, parentLead: Int) {
        if start >= end { return }
        starts.append(start)
        ends.append(end)
        leads.append(parentLead >= 0 && s < parentLead ? min(parentLead - s, end - start) : -1)
    }

    /// Appends a whole new piece (copying `text`) with `lead`.
    mutating func append(_ text: UnsafeRawBufferPointer, lead: Int) {
        if text.isEmpty { return }
        starts.append(bytes.count)
        bytes.append(contentsOf: text)
        ends.append(bytes.count)
        leads.append(lead)
    }

    /// Splits piece `i` of `source` by `splits` (ranges relative to the piece, covering it in order, each flagged
    /// as a match of the pattern) and `behavior`, as `NormalizedString::split` does; appends the parts to `self`,
    /// which shares `source`'s bytes. Empty parts are dropped, as `PreTokenizedString::split` drops them.
    mutating func split(_ source: Pieces, _ i: Int, _ splits: [(start: Int, end: Int, match: Bool)],
                        _ behavior: SplitBehavior) {
        let base = source.starts[i], lead = source.leads[i]
        func add(_ s: Int, _ e: Int) { addRange(base + s, base + e, offset: s, parentLead: lead) }
        switch behavior {
        case .isolated:
            for p in splits { add(p.start, p.end) }
        case .removed:
            for p in splits where !p.match { add(p.start, p.end) }
        case .contiguous, .mergedWithPrevious:
            var previousMatch = false
            var current: (start: Int, end: Int)? = nil
            for p in splits {
                let extend = behavior == .contiguous ? p.match == previousMatch : p.match && !previousMatch
                if extend, let c = current {
                    current = (c.start, p.end)
                } else {
                    if let c = current { add(c.start, c.end) }
                    current = (p.start, p.end)
                }
                previousMatch = p.match
            }
            if let c = current { add(c.start, c.end) }
        case .mergedWithNext:
            var previousMatch = false
            var parts: [(start: Int, end: Int)] = []
            for p in splits.reversed() {
                if p.match && !previousMatch, let last = parts.last {
                    parts[parts.count - 1] = (p.start, last.end)
                } else {
                    parts.append((p.start, p.end))
                }
                previousMatch = p.match
            }
            for p in parts.reversed() { add(p.start, p.end) }
        }
    }

    /// The bytes of piece `i`.
    @inline(__always)
    func withPiece<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let s = starts[i], e = ends[i]
        return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[s..<e])) }
    }

    /// Applies GPT-2's byte map to every piece (when `byteMapped`), so that later steps see the characters.
    mutating func materializeByteMap() {
        guard byteMapped else { return }
        var out = Pieces()
        out.bytes.reserveCapacity(bytes.count * 2)
        for i in 0..<count {
            let start = out.bytes.count
            var lead = leads[i]
            for k in starts[i]..<ends[i] {
                if k - starts[i] == leads[i] { lead = out.bytes.count - start }
                ByteLevelAlphabet.append(bytes[k], to: &out.bytes)
            }
            if leads[i] >= ends[i] - starts[i] { lead = out.bytes.count - start }
            out.starts.append(start)
            out.ends.append(out.bytes.count)
            out.leads.append(lead)
        }
        self = out
    }
}
