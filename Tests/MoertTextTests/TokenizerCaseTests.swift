// TokenizerCaseTests: every case of every tokenizer fixture against what `tokenizers` 0.23.3 gave for it.

import MoertTensor
import MoertTestSupport
@testable import MoertText
import Testing

@Suite("Tokenizer cases from tokenizers")
struct TokenizerCaseTests {
    @Test("encode, decode and stream as tokenizers", arguments: allTokenizerCases)
    func matches(_ c: TokenizerCase) throws {
        let tokenizer = try fixtureTokenizer(c.fixture)
        if let text = c.text {
            let ids = try text.withUnsafeBytes { try tokenizer.encode(bytes: $0, addSpecialTokens: false) }
            #expect(ids == c.ids, "ids")
            let idsSpecial = try text.withUnsafeBytes { try tokenizer.encode(bytes: $0, addSpecialTokens: true) }
            #expect(idsSpecial == c.idsSpecial, "ids_special")
            if let plain = c.idsPlain {
                let ids = try text.withUnsafeBytes { try tokenizer.encode(bytes: $0, addSpecialTokens: false, parseSpecialTokens: false) }
                #expect(ids == plain, "ids_plain")
            }
            // The String entry point agrees with the bytes one.
            #expect(try tokenizer.encode(String(decoding: text, as: UTF8.self), addSpecialTokens: false) == ids)
        }
        let decoded = try c.ids.withUnsafeBufferPointer { try tokenizer.decode($0, skipSpecialTokens: false) }
        #expect(decoded == c.decoded, "decoded")
        if let skip = c.decodedSkip {
            #expect(try c.ids.withUnsafeBufferPointer { try tokenizer.decode($0, skipSpecialTokens: true) } == skip)
        }
        // Streaming: the pieces tokenizers' DecodeStream gave when the case has them, and pieces that add up to the
        // decoded text wherever tokenizers' own pieces do (a broken byte sequence followed by more bytes makes
        // decode rewrite text the stream already gave, in tokenizers as here).
        var stream = StreamingDetokenizer(tokenizer: tokenizer, skipSpecialTokens: false)
        var pieces: [String] = []
        for id in c.ids { pieces.append(try stream.push(id)) }
        let rest = stream.finish()
        if let expected = c.stream { #expect(pieces == expected, "stream") }
        if c.stream.map({ c.decoded.hasPrefix($0.joined()) }) ?? true {
            #expect(pieces.joined() + rest == c.decoded, "stream total")
        }
    }
}
