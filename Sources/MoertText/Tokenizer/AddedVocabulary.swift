// AddedVocabulary: added tokens found in text before the model sees it, as tokenizers' AddedVocabulary finds them.

/// An entry of `added_tokens`: its text and how it is matched (tokenizers' `AddedToken`).
public struct AddedToken: Equatable, Sendable {
    public var content: String
    public var singleWord: Bool
    public var lstrip: Bool
    public var rstrip: Bool
    public var normalized: Bool
    public var special: Bool

    /// A token with the given flags; the defaults are those of a special token as transformers adds one by name.
    public init(content: String, singleWord: Bool = false, lstrip: Bool = false, rstrip: Bool = false,
                normalized: Bool = false, special: Bool = true) {
        self.content = content
        self.singleWord = singleWord
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.normalized = normalized
        self.special = special
    }
}

/// A stretch of text between added tokens (`id` nil) or an added token's match.
struct AddedSplit {
    var start: Int
    var end: Int
    var id: Int32?
}

/// Finds added tokens in text, leftmost first and longest at a position, with the `single_word`, `lstrip` and
/// `rstrip` rules of tokenizers' `AddedVocabulary::find_matches` (`tokenizer/added_vocabulary.rs`). The patterns
/// are few and mostly start with a rare byte, so a byte trie walked from each candidate position is as fast as the
/// Aho-Corasick automaton tokenizers builds, and simpler.
struct AddedTokenMatcher {
    /// Trie nodes: child edges as (byte, node) lists; node 0 is the root.
    private var edges: [[(UInt8, Int32)]] = [[]]
    /// The token id ending at each node, or -1.
    private var terminal: [Int32] = [-1]
    /// Whether a pattern starts with this byte.
    private var firstByte = [Bool](repeating: false, count: 256)
    /// Flags of each id that has a pattern here.
    private var flags: [Int32: AddedToken] = [:]

    var isEmpty: Bool { flags.isEmpty }

    /// Adds `pattern` for `token` with `id`. An empty pattern never matches.
    mutating func add(_ pattern: [UInt8], id: Int32, token: AddedToken) {
        guard let first = pattern.first else { return }
        var node = 0
        for b in pattern {
            if let next = child(node, b) {
                node = next
            } else {
                edges.append([])
                terminal.append(-1)
                edges[node].append((b, Int32(edges.count - 1)))
                node = edges.count - 1
            }
        }
        terminal[node] = id
        firstByte[Int(first)] = true
        flags[id] = token
    }

    /// The splits of `text`: matches with their id and the stretches between them, covering the text (ranges may
    /// overlap where an `rstrip` token's whitespace holds the start of the next match, as in tokenizers). With
    /// `skipSpecial`, matches of special tokens are passed over (their text stays text), as tokenizers does with
    /// `encode_special_tokens`.
    func split(_ text: UnsafeRawBufferPointer, skipSpecial: Bool = false) -> [AddedSplit] {
        if text.isEmpty { return [AddedSplit(start: 0, end: 0, id: nil)] }
        if isEmpty { return [AddedSplit(start: 0, end: text.count, id: nil)] }
        var splits: [AddedSplit] = []
        var startOffset = 0
        var i = 0
        let n = text.count
        while i < n {
            if !firstByte[Int(text[i])] { i += 1; continue }
            // The longest pattern starting at i.
            var node = 0, k = i
            var bestEnd = -1
            var bestId: Int32 = -1
            while k < n, let next = child(node, text[k]) {
                node = next
                k += 1
                if terminal[node] >= 0 { bestEnd = k; bestId = terminal[node] }
            }
            if bestEnd < 0 { i += 1; continue }
            var start = i, stop = bestEnd
            // Whatever the rules below decide, the search goes on after this match (a non-overlapping iterator).
            i = bestEnd
            guard let token = flags[bestId], !(skipSpecial && token.special) else { continue }
            if token.singleWord {
                let startSpace = start == 0 || !UnicodeClasses.isWord(UTF8Scalar.decode(text, before: start).scalar)
                let stopSpace = stop == n || !UnicodeClasses.isWord(UTF8Scalar.decode(text, at: stop).scalar)
                if !startSpace || !stopSpace { continue }
            }
            if token.lstrip {
                var newStart = start
                while newStart > 0 {
                    let (s, length) = UTF8Scalar.decode(text, before: newStart)
                    if !UnicodeClasses.isWhitespace(s) { break }
                    newStart -= length
                }
                // Spaces a previous match already took stay with it.
                start = max(newStart, startOffset)
            }
            if token.rstrip {
                while stop < n {
                    let (s, length) = UTF8Scalar.decode(text, at: stop)
                    if !UnicodeClasses.isWhitespace(s) { break }
                    stop += length
                }
            }
            if startOffset < start { splits.append(AddedSplit(start: startOffset, end: start, id: nil)) }
            splits.append(AddedSplit(start: start, end: stop, id: bestId))
            startOffset = stop
        }
        if startOffset != n { splits.append(AddedSplit(start: startOffset, end: n, id: nil)) }
        return splits
    }

    @inline(__always)
    private func child(_ node: Int, _ byte: UInt8) -> Int? {
        for (b, next) in edges[node] where b == byte { return Int(next) }
        return nil
    }

    /// Whether `pattern` is already a pattern here (tokenizers refuses two added tokens with one pattern).
    func contains(_ pattern: [UInt8]) -> Bool {
        var node = 0
        for b in pattern {
            guard let next = child(node, b) else { return false }
            node = next
        }
        return terminal[node] >= 0
    }
}
