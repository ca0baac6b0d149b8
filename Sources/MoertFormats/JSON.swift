// JSON: a small, strict, bounded JSON parser for config files and safetensors headers (no Foundation).

import MoertTensor

/// A parsed JSON value. Integers without fraction or exponent are kept exact as `Int64`.
public enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    /// The value as an object, or nil.
    public var object: [String: JSON]? { if case .object(let o) = self { return o }; return nil }
    /// The value as an array, or nil.
    public var array: [JSON]? { if case .array(let a) = self { return a }; return nil }
    /// The value as a string, or nil.
    public var string: String? { if case .string(let s) = self { return s }; return nil }
    /// The value as a Bool, or nil.
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    /// The value as an exact integer (a double only when it is integral and in range), or nil.
    public var int: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9.0e15: return Int64(d)
        default: return nil
        }
    }
    /// The value as a Double (integers convert), or nil.
    public var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    /// True for `null`.
    public var isNull: Bool { self == .null }
}

extension JSON {
    /// The default of `maxValues`: far more than any config file holds, and parsed in well under a second.
    public static let defaultMaxValues = 1 << 20

    /// Parses one JSON document. Rejects trailing data, duplicate keys, nesting deeper than `maxDepth`, more than
    /// `maxValues` values (objects, arrays and scalars; this bounds the time and memory a file can make moert spend
    /// before it is refused), invalid UTF-8 and non-finite numbers.
    /// - Throws: `MoertError` (`.format`) naming `what` and the byte offset of the problem.
    public static func parse(_ bytes: UnsafeRawBufferPointer, what: String, maxDepth: Int = 64,
                             maxValues: Int = defaultMaxValues) throws -> JSON {
        var parser = _JSONParser(bytes: bytes, what: what, maxDepth: maxDepth, maxValues: maxValues)
        parser.skipSpace()
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        if parser.pos != bytes.count { throw parser.fail("unexpected data after the JSON value") }
        return value
    }

    /// Parses JSON text (see `parse(_:what:maxDepth:maxValues:)`).
    public static func parse(_ text: String, what: String, maxValues: Int = defaultMaxValues) throws -> JSON {
        var text = text
        return try text.withUTF8 { try parse(UnsafeRawBufferPointer($0), what: what, maxValues: maxValues) }
    }
}

/// Recursive-descent parser over a byte buffer. Every read is bounds-checked.
struct _JSONParser {
    let bytes: UnsafeRawBufferPointer
    let what: String
    let maxDepth: Int
    /// The most values the document may hold, and how many are still allowed.
    let maxValues: Int
    var valuesLeft: Int
    var pos = 0

    init(bytes: UnsafeRawBufferPointer, what: String, maxDepth: Int, maxValues: Int) {
        self.bytes = bytes
        self.what = what
        self.maxDepth = maxDepth
        self.maxValues = maxValues
        valuesLeft = maxValues
    }

    func fail(_ reason: String) -> MoertError {
        .format("\(what): invalid JSON at byte \(pos): \(reason)")
    }

    mutating func skipSpace() {
        while pos < bytes.count {
            let c = bytes[pos]
            guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { return }
            pos += 1
        }
    }

    func peek() -> UInt8? { pos < bytes.count ? bytes[pos] : nil }

    mutating func expectLiteral(_ literal: StaticString) throws {
        let n = literal.utf8CodeUnitCount
        guard bytes.count - pos >= n else { throw fail("truncated literal") }
        let p = literal.utf8Start
        for i in 0..<n where bytes[pos + i] != p[i] { throw fail("unknown literal") }
        pos += n
    }

    mutating func value(depth: Int) throws -> JSON {
        guard depth < maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
        valuesLeft -= 1
        guard valuesLeft >= 0 else {
            throw MoertError.format("\(what): more than \(maxValues) JSON values (at byte \(pos)), more than moert reads in this file")
        }
        guard let c = peek() else { throw fail("unexpected end of input") }
        switch c {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        // Python's json module writes these for non-finite floats; they are not JSON, but config files have them.
        case UInt8(ascii: "N"): try expectLiteral("NaN"); return .double(.nan)
        case UInt8(ascii: "I"): try expectLiteral("Infinity"); return .double(.infinity)
        default: throw fail("unexpected character")
        }
    }

    mutating func object(depth: Int) throws -> JSON {
        pos += 1
        var result: [String: JSON] = [:]
        skipSpace()
        if peek() == UInt8(ascii: "}") { pos += 1; return .object(result) }
        while true {
            skipSpace()
            guard peek() == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try string()
            skipSpace()
            guard peek() == UInt8(ascii: ":") else { throw fail("expected ':'") }
            pos += 1
            skipSpace()
            let v = try value(depth: depth + 1)
            if result.updateValue(v, forKey: key) != nil { throw fail("duplicate key \"\(key)\"") }
            skipSpace()
            guard let c = peek() else { throw fail("unterminated object") }
            pos += 1
            if c == UInt8(ascii: "}") { return .object(result) }
            guard c == UInt8(ascii: ",") else { throw fail("expected ',' or '}'") }
        }
    }

    mutating func array(depth: Int) throws -> JSON {
        pos += 1
        var result: [JSON] = []
        skipSpace()
        if peek() == UInt8(ascii: "]") { pos += 1; return .array(result) }
        while true {
            skipSpace()
            result.append(try value(depth: depth + 1))
            skipSpace()
            guard let c = peek() else { throw fail("unterminated array") }
            pos += 1
            if c == UInt8(ascii: "]") { return .array(result) }
            guard c == UInt8(ascii: ",") else { throw fail("expected ',' or ']'") }
        }
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

    mutating func string() throws -> String {
        pos += 1
        var utf8: [UInt8] = []
        while true {
            guard let c = peek() else { throw fail("unterminated string") }
            pos += 1
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") { utf8.append(c); continue }
            guard let e = peek() else { throw fail("unterminated escape") }
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
                    guard bytes.count - pos >= 2, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u")
                    else { throw fail("lone high surrogate") }
                    pos += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low < 0xE000 else { throw fail("bad low surrogate") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let u = Unicode.Scalar(scalar) else { throw fail("invalid unicode escape") }
                utf8.append(contentsOf: Array(String(Character(u)).utf8))
            default: throw fail("unknown escape")
            }
        }
        guard let s = String(validating: utf8, as: UTF8.self) else { throw fail("invalid UTF-8 in string") }
        return s
    }

    mutating func number() throws -> JSON {
        let start = pos
        var isInteger = true
        if peek() == UInt8(ascii: "-") { pos += 1 }
        if peek() == UInt8(ascii: "I") { try expectLiteral("Infinity"); return .double(-.infinity) }
        var digits = 0
        while let c = peek(), c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") { pos += 1; digits += 1 }
        guard digits > 0 else { throw fail("expected digits") }
        if peek() == UInt8(ascii: ".") {
            isInteger = false
            pos += 1
            var frac = 0
            while let c = peek(), c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") { pos += 1; frac += 1 }
            guard frac > 0 else { throw fail("expected digits after '.'") }
        }
        if let c = peek(), c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            isInteger = false
            pos += 1
            if let s = peek(), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { pos += 1 }
            var exp = 0
            while let c = peek(), c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") { pos += 1; exp += 1 }
            guard exp > 0 else { throw fail("expected exponent digits") }
        }
        guard pos - start <= 64 else { throw fail("number literal too long") }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
        if isInteger, let i = Int64(text) { return .int(i) }
        guard let d = Double(text) else { throw fail("unparsable number") }
        return .double(d)
    }
}
