// TokenizerErrorTests: malformed, unsupported and lying tokenizer.json pieces, each refused with its code and key.

import MoertFormats
import MoertTensor
import MoertTestSupport
@testable import MoertText
import Testing

/// A small valid tokenizer.json with `model`, `extra` top-level members and `added` tokens spliced in.
func tokenizerJSON(model: String = #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<s>": 3}, "merges": ["a b"]}"#,
                   extra: String = "", added: String = #"[{"id": 3, "content": "<s>", "special": true, "normalized": false}]"#) -> String {
    #"{"version": "1.0", "added_tokens": \#(added), "model": \#(model)\#(extra.isEmpty ? "" : ", " + extra)}"#
}

@Suite("Tokenizer errors")
struct TokenizerErrorTests {
    /// tokenizer.json text, expected code, a substring of the message.
    static let cases: [(String, MoertError.Code, String)] = [
        ("{", .format, "invalid JSON at byte 1"),
        ("[]", .format, "tokenizer.json: expected an object, found an array"),
        (tokenizerJSON() + " x", .format, "unexpected data after the JSON value"),
        (String(repeating: "[", count: 100), .format, "nesting deeper than 64"),
        (tokenizerJSON().replacingOccurrences(of: "\"1.0\"", with: "\"2.0\""), .unsupported, "version \"2.0\""),
        (#"{"version": "1.0"}"#, .format, "model: missing"),
        (tokenizerJSON(model: #"{"type": "WordPiece", "vocab": {}}"#), .unsupported, "model type \"WordPiece\" is not supported"),
        (tokenizerJSON(model: #"{"type": "Unigram", "vocab": []}"#), .unsupported, "model type \"Unigram\""),
        (tokenizerJSON(model: #"{"type": "BPE", "dropout": 0.1, "vocab": {}, "merges": []}"#), .unsupported, "model.dropout: BPE dropout 0.1"),
        (tokenizerJSON(model: #"{"type": "BPE", "dropout": 2, "vocab": {}, "merges": []}"#), .format, "model.dropout"),
        (tokenizerJSON(model: #"{"type": "BPE", "merges": []}"#), .format, "model.vocab: missing"),
        (tokenizerJSON(model: #"{"type": "BPE", "vocab": {}}"#), .format, "model.merges: missing"),
        (tokenizerJSON(model: #"{"type": "BPE", "vocab": {"a": -1}, "merges": []}"#), .format, "model.vocab.\"a\": -1 is outside"),
        (tokenizerJSON(model: #"{"type": "BPE", "vocab": {"a": 1099511627776}, "merges": []}"#), .format, "model.vocab.\"a\""),
        (tokenizerJSON(model: #"{"type": "BPE", "vocab": {"a": "0"}, "merges": []}"#), .format, "expected an integer, found a string"),
        (tokenizerJSON(model: #"{"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}"#), .format, "share id 0"),
        (tokenizerJSON(model: #"{"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]}"#), .format, "model.merges[0]: token \"c\" is not in the vocabulary"),
        (tokenizerJSON(model: #"{"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}"#), .format, "the merged token \"ab\" is not in the vocabulary"),
        (tokenizerJSON(model: #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a  b"]}"#), .format, "model.merges[0]: expected two tokens separated by one space"),
        (tokenizerJSON(model: #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"], "a b"]}"#), .format, "model.merges[1]: expected a pair"),
        (tokenizerJSON(model: #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a"]]}"#), .format, "model.merges[0]: expected a pair"),
        (tokenizerJSON(model: #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [7]}"#), .format, "model.merges[0]"),
        (tokenizerJSON(extra: #""normalizer": {"type": "BertNormalizer"}"#), .unsupported, "normalizer: normalizer type \"BertNormalizer\" is not supported"),
        (tokenizerJSON(extra: #""normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Precompiled"}]}"#), .unsupported, "normalizer.normalizers[1]"),
        (tokenizerJSON(extra: #""normalizer": {"strip_left": true}"#), .format, "normalizer.type: missing"),
        (tokenizerJSON(extra: #""normalizer": {"type": "Replace", "pattern": {"Regex": "("}, "content": ""}"#), .format, "normalizer.pattern: cannot compile the pattern \"(\""),
        (tokenizerJSON(extra: #""normalizer": {"type": "Replace", "pattern": {"Glob": "*"}, "content": ""}"#), .format, "normalizer.pattern: expected {\"String\": ...} or {\"Regex\": ...}"),
        (tokenizerJSON(extra: #""pre_tokenizer": {"type": "UnicodeScripts"}"#), .unsupported, "pre-tokenizer type \"UnicodeScripts\""),
        (tokenizerJSON(extra: #""pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways", "invert": false}"#), .format, "pre_tokenizer.behavior: unknown split behavior \"Sideways\""),
        (tokenizerJSON(extra: #""pre_tokenizer": {"type": "Metaspace", "replacement": "__"}"#), .format, "pre_tokenizer.replacement: expected one character"),
        (tokenizerJSON(extra: #""pre_tokenizer": {"type": "Metaspace", "replacement": "_", "prepend_scheme": "first", "add_prefix_space": false}"#), .format, "add_prefix_space false does not match"),
        (tokenizerJSON(extra: #""pre_tokenizer": {"type": "Metaspace", "replacement": "_", "prepend_scheme": "sometimes"}"#), .format, "unknown scheme \"sometimes\""),
        (tokenizerJSON(extra: #""decoder": {"type": "WordPiece"}"#), .unsupported, "decoder type \"WordPiece\""),
        (tokenizerJSON(extra: #""decoder": {"type": "Strip", "content": " ", "stop": 0}"#), .format, "decoder.start: missing"),
        (tokenizerJSON(extra: #""post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}], "pair": [], "special_tokens": {}}"#), .format, "post_processor.single[0]: special token \"<s>\" is not in special_tokens"),
        (tokenizerJSON(extra: #""post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "B", "type_id": 0}}], "pair": [], "special_tokens": {}}"#), .format, "post_processor.single: uses sequence B"),
        (tokenizerJSON(extra: #""post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "C", "type_id": 0}}], "pair": [], "special_tokens": {}}"#), .format, "expected \"A\" or \"B\""),
        (tokenizerJSON(extra: #""post_processor": {"type": "TemplateProcessing", "single": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [-3], "tokens": ["<s>"]}}}"#), .format, "post_processor.special_tokens.<s>.ids[0]"),
        (tokenizerJSON(extra: #""post_processor": {"type": "Whatever"}"#), .unsupported, "post-processor type \"Whatever\""),
        (tokenizerJSON(added: #"[{"id": "3", "content": "<s>"}]"#), .format, "added_tokens[0].id: expected an integer"),
        (tokenizerJSON(added: #"[{"id": 3}]"#), .format, "added_tokens[0].content: missing"),
        (tokenizerJSON(added: #"{}"#), .format, "added_tokens: expected an array"),
        (tokenizerJSON(extra: #""normalizer": {"type": "Lowercase"}"#,
                       added: #"[{"id": 4, "content": "X", "normalized": true}, {"id": 5, "content": "x", "normalized": true}]"#),
         .format, "two normalized added tokens match \"x\""),
    ]

    @Test("each malformed or unsupported piece is refused naming its key", arguments: cases.indices)
    func refused(index: Int) {
        let (text, code, message) = Self.cases[index]
        let e = moertError {
            var text = text
            _ = try text.withUTF8 { try Tokenizer(bytes: UnsafeRawBufferPointer($0), source: "tokenizer.json") }
        }
        #expect(e?.code == code, "\(e?.message ?? "no error")")
        #expect(e?.message.contains(message) == true, "\(e?.message ?? "no error")")
        #expect(e?.message.hasPrefix("tokenizer.json") == true)
    }

    @Test("invalid UTF-8 in the file is refused at its offset")
    func invalidFile() {
        var bytes = Array(tokenizerJSON().utf8)
        bytes[30] = 0xFF
        let e = moertError { _ = try bytes.withUnsafeBytes { try Tokenizer(bytes: $0, source: "t.json") } }
        #expect(e?.code == .format && e?.message == "t.json: invalid JSON at byte 30: invalid UTF-8")
    }

    @Test("a missing file is an I/O error naming it")
    func missingFile() {
        let e = moertError { _ = try Tokenizer(path: "/nonexistent/tokenizer.json") }
        #expect(e?.code == .io && e?.message.contains("/nonexistent/tokenizer.json") == true)
    }

    @Test("an unk_token missing from the vocabulary fails only when a character needs it, as in tokenizers")
    func missingUnk() throws {
        let t = try Tokenizer(json: try JSON.parse(tokenizerJSON(model: #"{"type": "BPE", "unk_token": "<unk>", "vocab": {"a": 0}, "merges": []}"#), what: "t"), source: "t")
        #expect(try t.encode("aa", addSpecialTokens: false) == [0, 0])
        let e = moertError { _ = try t.encode("ab", addSpecialTokens: false) }
        #expect(e?.code == .format && e?.message.contains("unk_token \"<unk>\" is not in the vocabulary") == true)
    }
}
