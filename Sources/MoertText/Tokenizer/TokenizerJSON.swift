// TokenizerJSON: tokenizer.json parsed with its keys kept byte for byte and in order (objects are not dictionaries).

import MoertFormats
import MoertTensor

/// A JSON value of tokenizer.json.
///
/// The vocabulary is an object whose keys are tokens, and Swift compares Strings by canonical equivalence: in a
/// `[String: JSON]` dictionary "ί" (U+1F77) and "ί" (U+03AF), two tokens of Llama's vocabulary, are one key. So
/// objects here are lists of pairs, and tokens are found by their bytes (`TokenTable`). A key repeated in an
/// object keeps its last value, as serde_json's maps do.
indirect enum TokenizerJSON {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([TokenizerJSON])
    case object(JSONObject)

    var isNull: Bool { if case .null = self { return true }; return false }
    var string: String? { if case .string(let s) = self { return s }; return nil }
    var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    var array: [TokenizerJSON]? { if case .array(let a) = self { return a }; return nil }
    var object: JSONObject? { if case .object(let o) = self { return o }; return nil }
    /// An exact integer (a double only when integral and in range).
    var int: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9.0e15: return Int64(d)
        default: return nil
        }
    }
    var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// The same value from MoertFormats' `JSON` (whose objects have already merged canonically equal keys).
    init(_ json: JSON) {
        switch json {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .array(a.map(TokenizerJSON.init))
        case .object(let o): self = .object(JSONObject(pairs: o.map { (key: $0.key, value: TokenizerJSON($0.value)) }))
        }
    }
}

/// An object's pairs, in file order. A key repeated keeps its last value, compared as bytes.
struct JSONObject: Sequence {
    var pairs: [(key: String, value: TokenizerJSON)]

    var count: Int { pairs.count }
    var first: (key: String, value: TokenizerJSON)? { pairs.first }
    func makeIterator() -> IndexingIterator<[(key: String, value: TokenizerJSON)]> { pairs.makeIterator() }

    /// The value of `key` (the last one when repeated; compared as bytes).
    subscript(key: String) -> TokenizerJSON? {
        let k = Array(key.utf8)
        for pair in pairs.reversed() where pair.key.utf8.elementsEqual(k) { return pair.value }
        return nil
    }
}

extension TokenizerJSON {
    /// Parses a JSON document: strict (no trailing data, no control characters in strings, valid UTF-8 and
    /// surrogate pairs), at most `maxDepth` levels deep.
    /// - Throws: `MoertError` (`.format`) naming `what` and the byte offset.
    static func parse(_ bytes: UnsafeRawBufferPointer, what: String, maxDepth: Int = 64) throws -> TokenizerJSON {
        var parser = TokenizerJSONParser(bytes: bytes, what: what, maxDepth: maxDepth)
        parser.skipSpace()
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        if parser.pos != bytes.count { throw parser.fail("unexpected data after the JSON value") }
        return value
    }
}

/// Recursive descent over the bytes; every read is bounds-checked.
private struct TokenizerJSONParser {
    let bytes: UnsafeRawBufferPointer
    let what: String
    let maxDepth: Int
    var pos = 0

    init(bytes: UnsafeRawBufferPointer, what: String, maxDepth: Int) {
        self.bytes = bytes
        self.what = what
        self.maxDepth = maxDepth
    }

    func fail(_ reason: String) -> MoertError { .format("\(what): invalid JSON at byte \(pos): \(reason)") }

    mutating func skipSpace() {
        while pos < bytes.count {
            let c = bytes[pos]
            guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { return }
            pos += 1
        }
    }

    mutating func literal(_ text: StaticString, _ value: TokenizerJSON) throws -> TokenizerJSON {
        let n = text.utf8CodeUnitCount
        guard bytes.count - pos >= n else { throw fail("truncated literal") }
        for i in 0..<n where bytes[pos + i] != text.utf8Start[i] { throw fail("unknown literal") }
        pos += n
        return value
    }

    mutating func value(depth: Int) throws -> TokenizerJSON {
        guard depth < maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
        guard pos < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[pos] {
        case UInt8(ascii: "{"):
            pos += 1
            var pairs: [(key: String, value: TokenizerJSON)] = []
            skipSpace()
            if pos < bytes.count && bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(JSONObject(pairs: pairs)) }
            while true {
                skipSpace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let key = try string()
                skipSpace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                pos += 1
                skipSpace()
                pairs.append((key, try value(depth: depth + 1)))
                skipSpace()
                guard pos < bytes.count else { throw fail("unterminated object") }
                let c = bytes[pos]
                pos += 1
                if c == UInt8(ascii: "}") { return .object(JSONObject(pairs: pairs)) }
                guard c == UInt8(ascii: ",") else { throw fail("expected ',' or '}'") }
            }
        case UInt8(ascii: "["):
            pos += 1
            var items: [TokenizerJSON] = []
            skipSpace()
            if pos < bytes.count && bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard pos < bytes.count else { throw fail("unterminated array") }
                let c = bytes[pos]
                pos += 1
                if c == UInt8(ascii: "]") { return .array(items) }
                guard c == UInt8(ascii: ",") else { throw fail("expected ',' or ']'") }
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail("unexpected character")
        }
    }

    mutating func string() throws -> String {
        pos += 1
        // Most strings have no escape: their text is the bytes up to the closing quote.
        var end = pos
        while end < bytes.count {
            let c = bytes[end]
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") || c < 0x20 { break }
            end += 1
        }
        if end < bytes.count && bytes[end] == UInt8(ascii: "\"") {
            guard let s = String(validating: UnsafeRawBufferPointer(rebasing: bytes[pos..<end]), as: UTF8.self) else {
                throw fail("invalid UTF-8 in string")
            }
            pos = end + 1
            return s
        }
        var utf8 = Array(UnsafeRawBufferPointer(rebasing: bytes[pos..<end]))
        pos = end
        while true {
            guard pos < bytes.count else { throw fail("unterminated string") }
            let c = bytes[pos]
            pos += 1
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") { utf8.append(c); continue }
            guard pos < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(e)
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard bytes.count - pos >= 2, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                        throw fail("lone leading surrogate")
                    }
                    pos += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low < 0xE000 else { throw fail("bad trailing surrogate") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw fail("lone trailing surrogate")
                }
                UTF8Scalar.append(scalar, to: &utf8)
            default: throw fail("unknown escape")
            }
        }
        guard let s = String(validating: utf8, as: UTF8.self) else { throw fail("invalid UTF-8 in string") }
        return s
    }

    mutating func hex4() throws -> UInt32 {
        guard bytes.count - pos >= 4 else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            pos += 1
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("bad hex digit in \\u escape")
            }
            v = v * 16 + d
        }
        return v
    }

    mutating func number() throws -> TokenizerJSON {
        let start = pos
        var isInteger = true
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        var digits = 0
        var value: Int64 = 0
        var overflow = false
        while pos < bytes.count, bytes[pos] >= UInt8(ascii: "0"), bytes[pos] <= UInt8(ascii: "9") {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(bytes[pos] - UInt8(ascii: "0")))
            overflow = overflow || o1 || o2
            value = a
            pos += 1
            digits += 1
        }
        guard digits > 0 else { throw fail("expected digits") }
        if pos < bytes.count && bytes[pos] == UInt8(ascii: ".") {
            isInteger = false
            pos += 1
            var frac = 0
            while pos < bytes.count, bytes[pos] >= UInt8(ascii: "0"), bytes[pos] <= UInt8(ascii: "9") { pos += 1; frac += 1 }
            guard frac > 0 else { throw fail("expected digits after '.'") }
        }
        if pos < bytes.count && (bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E")) {
            isInteger = false
            pos += 1
            if pos < bytes.count && (bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-")) { pos += 1 }
            var exp = 0
            while pos < bytes.count, bytes[pos] >= UInt8(ascii: "0"), bytes[pos] <= UInt8(ascii: "9") { pos += 1; exp += 1 }
            guard exp > 0 else { throw fail("expected exponent digits") }
        }
        if isInteger && !overflow { return .int(bytes[start] == UInt8(ascii: "-") ? -value : value) }
        guard pos - start <= 64 else { throw fail("number literal too long") }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
        guard let d = Double(text), d.isFinite else { throw fail("unparsable number") }
        return .double(d)
    }
}
