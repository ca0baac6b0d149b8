// ConfigReader: typed reads of tokenizer.json values, with messages naming the file and the key path.

import MoertFormats
import MoertTensor

/// Reads values out of a parsed tokenizer.json. Every failure names the file and the path of the value
/// (`tokenizer.json: model.merges[12]: expected ...`): `.format` for malformed values, `.unsupported` for
/// components moert does not implement. Paths are autoclosures: a vocabulary has 150,000 entries, and building
/// their paths eagerly took most of the loading time.
struct ConfigReader {
    /// The file, for messages.
    let source: String

    func malformed(_ path: String, _ what: String) -> MoertError {
        .format("\(source): \(path): \(what)")
    }

    func unsupported(_ path: String, _ what: String) -> MoertError {
        .unsupported("\(source): \(path): \(what)")
    }

    func object(_ value: TokenizerJSON, _ path: @autoclosure () -> String) throws -> JSONObject {
        guard let o = value.object else { throw malformed(path(), "expected an object, found \(Self.kind(value))") }
        return o
    }

    func array(_ value: TokenizerJSON?, _ path: @autoclosure () -> String) throws -> [TokenizerJSON] {
        guard let value else { throw malformed(path(), "missing") }
        guard let a = value.array else { throw malformed(path(), "expected an array, found \(Self.kind(value))") }
        return a
    }

    func string(_ value: TokenizerJSON?, _ path: @autoclosure () -> String) throws -> String {
        guard let value else { throw malformed(path(), "missing") }
        guard let s = value.string else { throw malformed(path(), "expected a string, found \(Self.kind(value))") }
        return s
    }

    /// A string, or nil when missing or null.
    func optionalString(_ value: TokenizerJSON?, _ path: @autoclosure () -> String) throws -> String? {
        guard let value, !value.isNull else { return nil }
        return try string(value, path())
    }

    /// A boolean; `fallback` when missing or null.
    func bool(_ value: TokenizerJSON?, _ path: @autoclosure () -> String, default fallback: Bool) throws -> Bool {
        guard let value, !value.isNull else { return fallback }
        guard let b = value.bool else { throw malformed(path(), "expected true or false, found \(Self.kind(value))") }
        return b
    }

    /// An integer in `range`.
    func int(_ value: TokenizerJSON?, _ path: @autoclosure () -> String, in range: ClosedRange<Int64>) throws -> Int64 {
        guard let value else { throw malformed(path(), "missing") }
        guard let i = value.int else { throw malformed(path(), "expected an integer, found \(Self.kind(value))") }
        guard range.contains(i) else { throw malformed(path(), "\(i) is outside \(range.lowerBound)...\(range.upperBound)") }
        return i
    }

    /// A token id: an integer from 0 to `maxTokenId`.
    func tokenId(_ value: TokenizerJSON?, _ path: @autoclosure () -> String) throws -> Int32 {
        Int32(try int(value, path(), in: 0...Int64(maxTokenId)))
    }

    /// A string of exactly one character (Rust's `char`), as its scalar.
    func character(_ value: TokenizerJSON?, _ path: @autoclosure () -> String) throws -> Unicode.Scalar {
        let s = try string(value, path())
        guard s.unicodeScalars.count == 1, let c = s.unicodeScalars.first else {
            throw malformed(path(), "expected one character, found \"\(s)\"")
        }
        return c
    }

    /// The `type` of a component.
    func type(_ o: JSONObject, _ path: String) throws -> String {
        try string(o["type"], path + ".type")
    }

    /// The name of a JSON value's kind, for messages.
    static func kind(_ value: TokenizerJSON) -> String {
        switch value.kind {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// The largest token id a tokenizer may use: 2^24 - 1. Tables are indexed by id, so this bounds what a file that
/// lies about its ids can make moert allocate (64 MiB per table); real vocabularies stay under 2^18.
let maxTokenId = (1 << 24) - 1
