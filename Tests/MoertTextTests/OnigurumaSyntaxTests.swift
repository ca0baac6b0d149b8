// OnigurumaSyntaxTests: shorthand classes rewritten so PCRE2 matches what Oniguruma matches.

@testable import MoertText
import Testing

@Suite("Oniguruma shorthands for PCRE2")
struct OnigurumaSyntaxTests {
    static let space = OnigurumaSyntax.space, word = OnigurumaSyntax.word

    static let cases: [(String, String)] = [
        (#"\s+(?!\S)"#, "[\(space)]+(?![^\(space)])"),
        (#"[^\s\p{L}\p{N}]+"#, "[^\(space)\\p{L}\\p{N}]+"),
        (#"\w+|[^\w\s]+"#, "[\(word)]+|[^\(word)\(space)]+"),
        (#"[\S\d]"#, #"[\S\d]"#),
        (#"\\s"#, #"\\s"#),
        (#"[]\s]"#, "[]\(space)]"),
        (#"[[:alpha:]\s]x\s"#, "[[:alpha:]\(space)]x[\(space)]"),
        (#"\h\H"#, "[0-9a-fA-F][^0-9a-fA-F]"),
        (#"(?i:'s|'t)\p{N}{1,3}"#, #"(?i:'s|'t)\p{N}{1,3}"#),
    ]

    @Test("patterns are rewritten", arguments: cases.indices)
    func rewrite(index: Int) {
        #expect(OnigurumaSyntax.translate(Self.cases[index].0) == Self.cases[index].1)
    }

    @Test("U+180E is not a space and marks are word characters, as in Oniguruma")
    func matches() throws {
        let scratch = RegexScratch()
        func matches(_ pattern: String, _ text: String) throws -> [String] {
            let regex = try Regex(pattern, literal: false, what: "test")
            var out: [String] = []
            var text = text
            try text.withUTF8 { u in
                let raw = UnsafeRawBufferPointer(u)
                try regex.forEachMatch(in: raw, scratch: scratch) { s, e in
                    out.append(String(decoding: UnsafeRawBufferPointer(rebasing: raw[s..<e]), as: UTF8.self))
                }
            }
            return out
        }
        #expect(try matches(#"\s+"#, "a \u{180E}\u{3000}b") == [" ", "\u{3000}"])
        #expect(try matches(#"\w+"#, "e\u{301}x\u{B2}_") == ["e\u{301}x", "_"])
        #expect(try matches("", "ab") == ["", "", ""])
    }
}
