// TokenizerFixtures: the tokenizer fixtures of Tests/fixtures/tokenizers and their expected results, for the tests.

import Foundation
import MoertFormats
import MoertTestSupport
@testable import MoertText

/// Tests/fixtures/tokenizers, made by tools/make_tokenizer_fixtures.py.
let tokenizerFixtures = fixturesDirectory + "/tokenizers"

/// One expected result of `tokenizers` 0.23.3 (a line of a fixture's cases.jsonl).
struct TokenizerCase: Sendable, CustomStringConvertible {
    let fixture: String
    let line: Int
    /// The input as bytes (`text` of the case, UTF-8); nil for a decode-only case (ids chosen by hand).
    let text: [UInt8]?
    let ids: [Int32]
    let idsSpecial: [Int32]
    /// The ids with special-token text in the input encoded as text (`encode_special_tokens`), when present.
    let idsPlain: [Int32]?
    let decoded: String
    /// `decode(ids, skip_special_tokens=True)`, when the case has it.
    let decodedSkip: String?
    /// The pieces `DecodeStream(skip_special_tokens=False).step` gave for each id (empty for None), when present.
    let stream: [String]?

    var description: String { "\(fixture):\(line)" }
}

/// Loaded tokenizers, by fixture name (each file read once per test process).
nonisolated(unsafe) private var loaded: [String: Tokenizer] = [:]
private let loadedLock = NSLock()

/// The tokenizer of fixture `name`.
func fixtureTokenizer(_ name: String) throws -> Tokenizer {
    loadedLock.lock()
    defer { loadedLock.unlock() }
    if let t = loaded[name] { return t }
    let t = try Tokenizer(path: "\(tokenizerFixtures)/\(name)/tokenizer.json")
    // Released at exit before LeakSanitizer looks (its check was registered first, so it runs last): Swift keeps
    // enum payload pointers with tag bits set, which it cannot follow, so live tokenizers would look leaked.
    if loaded.isEmpty { atexit { loaded.removeAll() } }
    loaded[name] = t
    return t
}

/// The fixtures that have a cases.jsonl.
let tokenizerFixtureNames: [String] = {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: tokenizerFixtures)) ?? []
    return names.filter { FileManager.default.fileExists(atPath: "\(tokenizerFixtures)/\($0)/cases.jsonl") }.sorted()
}()

/// Every case of fixture `name`.
func tokenizerCases(_ name: String) -> [TokenizerCase] {
    guard let text = try? String(contentsOfFile: "\(tokenizerFixtures)/\(name)/cases.jsonl", encoding: .utf8) else {
        return []
    }
    var cases: [TokenizerCase] = []
    // MoertFormats' parser, not JSONSerialization: Foundation's drops U+FEFF inside strings.
    for (n, line) in text.split(separator: "\n").enumerated() {
        guard let object = (try? JSON.parse(String(line), what: name))?.object else { continue }
        let bytes = object["decode_only"]?.bool == true ? nil : Array((object["text"]?.string ?? "").utf8)
        func ints(_ key: String) -> [Int32] { (object[key]?.array ?? []).compactMap { $0.int.map { Int32($0) } } }
        cases.append(TokenizerCase(fixture: name, line: n + 1, text: bytes, ids: ints("ids"),
                                   idsSpecial: object["ids_special"] == nil ? ints("ids") : ints("ids_special"),
                                   idsPlain: object["ids_plain"] == nil ? nil : ints("ids_plain"),
                                   decoded: object["decoded"]?.string ?? "",
                                   decodedSkip: object["decoded_skip"]?.string,
                                   stream: object["stream"]?.array?.map { $0.string ?? "" }))
    }
    return cases
}

/// Every case of every fixture.
let allTokenizerCases: [TokenizerCase] = tokenizerFixtureNames.flatMap { tokenizerCases($0) }
