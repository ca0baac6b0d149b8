// FuzzRegressionTests+Tokenizer: replays inputs of the `tokenizer` fuzz target (Tests/fuzz/FuzzTokenizer.swift).

import Foundation
import MoertTensor
import MoertTestSupport
import MoertText
import Testing

/// The fixed tokenizers of FuzzTokenizer.swift, in its order, loaded once.
nonisolated(unsafe) private var replayTokenizers: [Tokenizer]?

/// Replays a `tokenizer` input as FuzzTokenizer.swift runs it: a document (starting with `{`) and a text after the
/// line `#moert-fuzz-text#`, or a byte choosing a fixed tokenizer and a text. Throws what loading or encoding
/// throws; decoding the ids encode gave must succeed.
func replayTokenizer(_ bytes: [UInt8]) throws {
    guard let first = bytes.first else { return }
    let tokenizer: Tokenizer
    let text: [UInt8]
    if first == UInt8(ascii: "{") {
        let parts = split(bytes, separator: Array("\n#moert-fuzz-text#\n".utf8), limit: 2)
        tokenizer = try parts[0].withUnsafeBytes { try Tokenizer(bytes: $0, source: "tokenizer.json") }
        text = parts.count > 1 ? parts[1] : []
    } else {
        if replayTokenizers == nil {
            replayTokenizers = try ["qwen2", "llama-spm", "bytelevel", "bytelevel-split", "metaspace-first",
                                    "metaspace-always", "splits-invert"].map {
                try Tokenizer(path: fixturesDirectory + "/tokenizers/\($0)/tokenizer.json")
            }
            // Released before LeakSanitizer's exit check, which cannot follow Swift's tagged enum payloads.
            atexit { replayTokenizers = nil }
        }
        tokenizer = replayTokenizers![Int(first) % replayTokenizers!.count]
        text = Array(bytes.dropFirst())
    }
    let ids = try text.withUnsafeBytes { try tokenizer.encode(bytes: $0, addSpecialTokens: false) }
    _ = try ids.withUnsafeBufferPointer { try tokenizer.decode($0, skipSpecialTokens: false) }
    _ = try text.withUnsafeBytes { try tokenizer.encode(bytes: $0, addSpecialTokens: true) }
}

extension FuzzRegressionTests {
    @Test("the tokenizer target's seeds replay without a crash")
    func tokenizerSeeds() throws {
        let corpus = fixturesDirectory + "/../fuzz/corpus/tokenizer"
        let names = try FileManager.default.contentsOfDirectory(atPath: corpus).sorted()
        #expect(!names.isEmpty)
        for name in names {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: corpus + "/" + name)))
            #expect(try replay(target: "tokenizer", bytes) == .accepted, "\(name)")
        }
    }
}
