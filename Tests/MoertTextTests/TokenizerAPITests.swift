// TokenizerAPITests: the public surface — vocabulary queries, argument errors, streaming and sharing across threads.

import Foundation
import Synchronization
import MoertFormats
import MoertTensor
import MoertTestSupport
@testable import MoertText
import Testing

@Suite("Tokenizer API")
struct TokenizerAPITests {
    @Test("vocabulary queries on Qwen2: size, tokens, ids and special tokens")
    func vocabulary() throws {
        let t = try fixtureTokenizer("qwen2")
        #expect(t.vocabSize == 151_646)
        #expect(t.token(for: 151_643) == "<|endoftext|>")
        #expect(t.token(for: 785) == "The")
        #expect(t.token(for: 220) == "Ġ")
        #expect(t.token(for: -1) == nil && t.token(for: 151_646) == nil)
        #expect(t.id(for: "<|im_start|>") == 151_644)
        #expect(t.id(for: "The") == 785)
        #expect(t.id(for: "not a token at all") == nil)
        #expect(t.isSpecial(151_645) && !t.isSpecial(785) && !t.isSpecial(-5) && !t.isSpecial(1 << 30))
    }

    @Test("Llama's two canonically equivalent tokens keep their own ids")
    func canonicallyEquivalentTokens() throws {
        let t = try fixtureTokenizer("llama-spm")
        let (a, b) = (t.id(for: "\u{1F77}"), t.id(for: "\u{03AF}"))
        #expect(a != nil && b != nil && a != b)
        #expect(t.token(for: a!)?.unicodeScalars.first?.value == 0x1F77)
        #expect(t.token(for: b!)?.unicodeScalars.first?.value == 0x03AF)
    }

    @Test("invalid UTF-8 input is refused at its offset")
    func invalidInput() throws {
        let t = try fixtureTokenizer("qwen2")
        let bytes: [UInt8] = [0x61, 0x62, 0xE2, 0x28, 0xA1]
        let e = moertError { _ = try bytes.withUnsafeBytes { try t.encode(bytes: $0, addSpecialTokens: false) } }
        #expect(e?.code == .invalidArgument && e?.message == "text: invalid UTF-8 at byte 2")
    }

    @Test("decoding an id outside the vocabulary names it", arguments: [Int32(-1), 151_646, Int32.max])
    func outOfRange(id: Int32) throws {
        let t = try fixtureTokenizer("qwen2")
        let e = moertError { _ = try [785, id].withUnsafeBufferPointer { try t.decode($0, skipSpecialTokens: false) } }
        #expect(e?.code == .outOfRange && e?.message == "token id \(id) is not in the vocabulary of 151646 ids")
    }

    @Test("a stream refuses an id outside the vocabulary and goes on unchanged")
    func streamOutOfRange() throws {
        let t = try fixtureTokenizer("llama-spm")
        let ids = try t.encode("Hello wonderful world", addSpecialTokens: false)
        var stream = StreamingDetokenizer(tokenizer: t, skipSpecialTokens: false)
        var text = try stream.push(ids[0])
        #expect(moertError { _ = try stream.push(99_999) }?.code == .outOfRange)
        for id in ids.dropFirst() { text += try stream.push(id) }
        text += stream.finish()
        #expect(text == "Hello wonderful world")
        // After finish the stream starts over.
        #expect(try stream.push(ids[0]) == "Hello")
    }

    @Test("an added token declared with an id tokenizers would not give it gets tokenizers' id")
    func addedTokenIds() throws {
        let text = tokenizerJSON(added: #"[{"id": 9, "content": "<s>", "special": true}, {"id": 4, "content": "<new>", "special": false}, {"id": 2, "content": "<x>"}]"#)
        let t = try Tokenizer(json: try JSON.parse(text, what: "t"), source: "t")
        // "<s>" is in the model vocabulary (3); "<new>" and "<x>" take the next ids from the vocabulary's size (4).
        #expect(t.id(for: "<s>") == 3 && t.id(for: "<new>") == 4 && t.id(for: "<x>") == 5)
        #expect(t.vocabSize == 6)
        #expect(try t.encode("ab<new><x><s>", addSpecialTokens: false) == [2, 4, 5, 3])
    }

    @Test("Tokenizer(json:) and Tokenizer(path:) agree")
    func jsonInitializer() throws {
        let path = tokenizerFixtures + "/bytelevel/tokenizer.json"
        let fromJSON = try Tokenizer(json: try JSON.parse(try String(contentsOfFile: path, encoding: .utf8), what: path), source: path)
        let fromPath = try Tokenizer(path: path)
        let text = "Hello <|user|> [MASK] world 123"
        #expect(try fromJSON.encode(text, addSpecialTokens: true) == fromPath.encode(text, addSpecialTokens: true))
        #expect(fromJSON.vocabSize == fromPath.vocabSize)
    }

    @Test("one tokenizer encodes from many threads at once with the same results")
    func threads() throws {
        let t = try fixtureTokenizer("qwen2")
        let texts = allTokenizerCases.filter { $0.fixture == "qwen2" }
        let failures = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: texts.count * 4) { i in
            let c = texts[i % texts.count]
            if (try? c.text!.withUnsafeBytes { try t.encode(bytes: $0, addSpecialTokens: false) }) != c.ids {
                failures.withLock { $0 += 1 }
            }
        }
        #expect(failures.withLock { $0 } == 0)
    }

    @Test("empty input gives no ids and no ids decode to empty text")
    func empty() throws {
        for name in ["qwen2", "llama-spm", "metaspace-first"] {
            let t = try fixtureTokenizer(name)
            #expect(try t.encode("", addSpecialTokens: false) == [])
            #expect(try [Int32]().withUnsafeBufferPointer { try t.decode($0, skipSpecialTokens: true) } == "")
        }
    }
}
