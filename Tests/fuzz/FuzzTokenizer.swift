// FuzzTokenizer: libFuzzer target for tokenizer.json loading, and for encoding arbitrary bytes with fixed tokenizers.

import MoertTensor
import MoertText
#if canImport(Glibc)
import Glibc
#endif

/// The tokenizers of Tests/fixtures/tokenizers that inputs not starting with `{` are encoded with: the two real
/// vocabularies and the small ones that cover the components (loaded on first use; fuzz.sh runs from the
/// repository root).
nonisolated(unsafe) var fixedTokenizerStorage: [Tokenizer]?

func fixedTokenizers() -> [Tokenizer] {
    if let loaded = fixedTokenizerStorage { return loaded }
    let loaded = ["qwen2", "llama-spm", "bytelevel", "bytelevel-split", "metaspace-first", "metaspace-always", "splits-invert"].map {
        do {
            return try Tokenizer(path: "Tests/fixtures/tokenizers/\($0)/tokenizer.json")
        } catch {
            fatalError("fuzz harness: cannot load the \($0) fixture: \(error)")
        }
    }
    fixedTokenizerStorage = loaded
    // Released before LeakSanitizer's check at exit (registered earlier, so it runs later): Swift keeps enum
    // payload pointers with tag bits set, which LeakSanitizer cannot follow, so live tokenizers look leaked.
    atexit { fixedTokenizerStorage = nil }
    return loaded
}

/// Two kinds of input:
/// - starting with `{`: a tokenizer.json document and a text, joined by the line `#moert-fuzz-text#` (a newline on
///   each side; without it the text is empty). A document that loads must encode the text (or refuse invalid
///   UTF-8) into ids the tokenizer knows, decode them, and stream them;
/// - anything else: the first byte picks one of `fixedTokenizers()`, the rest is the text, exercised the same way.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard size > 0, let data else { return 0 }
    if data[0] != UInt8(ascii: "{") {
        let fixed = fixedTokenizers()
        exerciseTokenizer(fixed[Int(data[0]) % fixed.count],
                          text: UnsafeRawBufferPointer(start: data + 1, count: size - 1))
        return 0
    }
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let separator = Array("\n#moert-fuzz-text#\n".utf8)
    var cut = size
    if size >= separator.count {
        for i in 0...(size - separator.count) where bytes[i] == separator[0] {
            if bytes[i..<i + separator.count].elementsEqual(separator) { cut = i; break }
        }
    }
    let document = UnsafeRawBufferPointer(rebasing: bytes[0..<cut])
    let text = cut == size ? UnsafeRawBufferPointer(rebasing: bytes[size...]) : UnsafeRawBufferPointer(rebasing: bytes[(cut + separator.count)...])
    expectingMoertError {
        let tokenizer = try Tokenizer(bytes: document, source: "tokenizer.json")
        exerciseTokenizer(tokenizer, text: text)
    }
    return 0
}

/// Encodes `text` with and without special tokens, checks every id of the model and added vocabulary is one the
/// tokenizer can name, then decodes (both ways), streams, and decodes ids made from the text's bytes.
func exerciseTokenizer(_ tokenizer: Tokenizer, text: UnsafeRawBufferPointer) {
    expectingMoertError {
        let ids = try tokenizer.encode(bytes: text, addSpecialTokens: false)
        for id in ids {
            invariant(id >= 0 && Int(id) < tokenizer.vocabSize && tokenizer.token(for: id) != nil, "encode gave unknown id \(id)")
        }
        let decoded = try ids.withUnsafeBufferPointer { try tokenizer.decode($0, skipSpecialTokens: false) }
        _ = try ids.withUnsafeBufferPointer { try tokenizer.decode($0, skipSpecialTokens: true) }
        var stream = StreamingDetokenizer(tokenizer: tokenizer, skipSpecialTokens: false)
        var streamed = ""
        expectingMoertError {
            for id in ids { streamed += try stream.push(id) }
            streamed += stream.finish()
        }
        invariant(streamed.utf8.count <= decoded.utf8.count + 3 * ids.count + 3, "stream longer than the text")
        expectingMoertError { _ = try tokenizer.encode(bytes: text, addSpecialTokens: true) }
    }
    // Arbitrary ids: each pair of text bytes as an id below the vocabulary size.
    if tokenizer.vocabSize > 0 {
        var ids: [Int32] = []
        var i = 0
        while i + 1 < text.count && ids.count < 256 {
            ids.append(Int32((Int(text[i]) << 8 | Int(text[i + 1])) % tokenizer.vocabSize))
            i += 2
        }
        expectingMoertError {
            _ = try ids.withUnsafeBufferPointer { try tokenizer.decode($0, skipSpecialTokens: text.first.map { $0 & 1 == 0 } ?? false) }
        }
    }
}
