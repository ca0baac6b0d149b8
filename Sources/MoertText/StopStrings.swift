// StopStrings: watches generated text for strings that end generation.

import MoertTensor

/// Finds the first of some strings in text that arrives token by token. Only the last characters that a match could
/// still span are kept, so memory does not grow with the text.
public struct StopStrings {
    private var detokenizer: StreamingDetokenizer
    private let strings: [String]
    /// The most bytes a stop string has: the tail kept between tokens is one byte shorter.
    private let longest: Int
    private var tail: [UInt8] = []

    /// Watches the text of `tokenizer`'s ids for `strings` (empty strings are ignored).
    public init(tokenizer: Tokenizer, strings: [String]) {
        detokenizer = StreamingDetokenizer(tokenizer: tokenizer, skipSpecialTokens: false)
        self.strings = strings.filter { !$0.isEmpty }
        longest = self.strings.map(\.utf8.count).max() ?? 0
    }

    /// Adds the next id; true when the text so far contains one of the strings.
    /// - Throws: `MoertError` (`.outOfRange`) for an id outside the vocabulary.
    public mutating func push(_ id: Int32) throws -> Bool {
        guard longest > 0 else { return false }
        let text = try detokenizer.push(id)
        guard !text.isEmpty else { return false }
        tail.append(contentsOf: text.utf8)
        let found = strings.contains { s in contains(tail, Array(s.utf8)) }
        if tail.count >= longest { tail.removeFirst(tail.count - (longest - 1)) }
        return found
    }

    private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if haystack[start..<start + needle.count].elementsEqual(needle) { return true }
        }
        return false
    }
}
