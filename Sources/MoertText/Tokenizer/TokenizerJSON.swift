// TokenizerJSON: tokenizer.json parsed into a flat tape of nodes whose strings stay bytes of the file until read.

import MoertFormats
import MoertTensor

/// A parsed tokenizer.json: one array of nodes (a "tape", as simdjson calls it) over the file's bytes.
///
/// Two reasons not to use MoertFormats' `JSON` tree here. Swift compares Strings by canonical equivalence, so in a
/// `[String: JSON]` dictionary "ί" (U+1F77) and "ί" (U+03AF), two tokens of Llama's vocabulary, are one key; here
/// objects are lists of pairs and tokens stay bytes. And a tree of 300,000 Strings costs more to build and to free
/// than everything else in loading: on Qwen2's 7 MB file (150k tokens, 151k merges) building, reading and freeing
/// the tree took 1.4 G instructions (callgrind), two thirds of them in String validation and in releasing nodes;
/// the tape is a few arrays of integers, and the vocabulary reads its tokens straight from the file's bytes.
final class JSONTape {
    enum Kind: UInt8 { case null, bool, int, double, string, array, object }

    /// The document's bytes (valid UTF-8, checked once before parsing).
    let bytes: UnsafeRawBufferPointer
    /// Per node: its kind; for strings whether it holds escapes.
    let kinds: [Kind]
    let escaped: [Bool]
    /// Per node: strings and numbers: byte range (a string's without its quotes); booleans: 0 or 1 in `a`;
    /// arrays and objects: `a` = number of children (pairs count twice), `b` = index of the node after the subtree.
    /// Constants once parsed (the parser fills its own arrays), so reads need no exclusivity checks.
    let a: [UInt32]
    let b: [UInt32]

    /// Set when the tape owns `bytes` (made by `init(copying:what:)`), which it then frees.
    private let owned: UnsafeMutableRawBufferPointer?

    /// Parses a copy of `text`, kept as long as the tape.
    convenience init(copying text: [UInt8], what: String) throws {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(text.count, 1), alignment: 1)
        copy.copyBytes(from: text)
        try self.init(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(copy)[0..<text.count]), what: what, owned: copy)
    }

    /// Parses `bytes`, which must stay valid while the tape is used.
    /// - Throws: `.format` naming `what` and the byte offset of the problem.
    init(_ bytes: UnsafeRawBufferPointer, what: String, maxDepth: Int = 64, owned: UnsafeMutableRawBufferPointer? = nil) throws {
        self.bytes = bytes
        self.owned = owned
        guard bytes.count < Int(UInt32.max) else {
            owned?.deallocate()
            throw MoertError.format("\(what): too large for JSON")
        }
        var parser = JSONTapeParser(bytes: bytes, what: what, maxDepth: maxDepth)
        do {
            let bad = UTF8Text.firstInvalidOffset(bytes)
            guard bad == bytes.count else { throw MoertError.format("\(what): invalid JSON at byte \(bad): invalid UTF-8") }
            parser.skipSpace()
            try parser.value(depth: 0)
            parser.skipSpace()
            if parser.pos != bytes.count { throw parser.fail("unexpected data after the JSON value") }
        } catch {
            owned?.deallocate()
            throw error
        }
        kinds = parser.kinds
        escaped = parser.escaped
        a = parser.a
        b = parser.b
    }

    deinit { owned?.deallocate() }

    /// The index of the node after `node` and its subtree.
    @inline(__always)
    func next(_ node: Int) -> Int {
        kinds[node] == .array || kinds[node] == .object ? Int(b[node]) : node + 1
    }

    /// Calls `body` with the UTF-8 of string node `node` (escapes decoded into `scratch` when it has any).
    @inline(__always)
    func withString<R>(_ node: Int, scratch: inout [UInt8], _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let range = UnsafeRawBufferPointer(rebasing: bytes[Int(a[node])..<Int(b[node])])
        if !escaped[node] { return try body(range) }
        scratch.removeAll(keepingCapacity: true)
        JSONTapeParser.unescape(range, into: &scratch)
        return try scratch.withUnsafeBytes { try body($0) }
    }
}

/// A value of a `JSONTape`.
struct TokenizerJSON {
    let tape: JSONTape
    let node: Int

    var kind: JSONTape.Kind { tape.kinds[node] }
    var isNull: Bool { kind == .null }
    var bool: Bool? { kind == .bool ? tape.a[node] != 0 : nil }
    var string: String? {
        guard kind == .string else { return nil }
        var scratch: [UInt8] = []
        return tape.withString(node, scratch: &scratch) { String(decoding: $0, as: UTF8.self) }
    }
    /// An exact integer (a double only when integral and in range).
    var int: Int64? {
        switch kind {
        case .int: return JSONTapeParser.integer(UnsafeRawBufferPointer(rebasing: tape.bytes[Int(tape.a[node])..<Int(tape.b[node])]))
        case .double:
            guard let d = double, d.rounded() == d, abs(d) < 9.0e15 else { return nil }
            return Int64(d)
        default: return nil
        }
    }
    var double: Double? { kind == .int || kind == .double ? Double(text) : nil }
    /// The elements of an array.
    var array: [TokenizerJSON]? {
        guard kind == .array else { return nil }
        var items: [TokenizerJSON] = []
        items.reserveCapacity(Int(tape.a[node]))
        var i = node + 1
        let end = Int(tape.b[node])
        while i < end {
            items.append(TokenizerJSON(tape: tape, node: i))
            i = tape.next(i)
        }
        return items
    }
    /// The members of an object, in file order.
    var object: JSONObject? {
        guard kind == .object else { return nil }
        var members: [(key: Int, value: TokenizerJSON)] = []
        members.reserveCapacity(Int(tape.a[node]) / 2)
        forEachMember { members.append(($0, $1)) }
        return JSONObject(tape: tape, members: members)
    }

    /// Calls `body` with the key node and the value of each member of an object.
    func forEachMember(_ body: (_ key: Int, _ value: TokenizerJSON) throws -> Void) rethrows {
        var i = node + 1
        let end = Int(tape.b[node])
        while i < end {
            let value = i + 1
            try body(i, TokenizerJSON(tape: tape, node: value))
            i = tape.next(value)
        }
    }

    /// A number's text.
    private var text: Substring {
        Substring(String(decoding: UnsafeRawBufferPointer(rebasing: tape.bytes[Int(tape.a[node])..<Int(tape.b[node])]), as: UTF8.self))
    }
}

/// An object's members, in file order. A key repeated keeps its last value, as serde_json's maps do; keys are
/// compared as bytes and become Strings only when iterated.
struct JSONObject: Sequence {
    let tape: JSONTape
    let members: [(key: Int, value: TokenizerJSON)]

    var count: Int { members.count }
    var first: (key: String, value: TokenizerJSON)? { members.first.map { (key(of: $0.key), $0.value) } }

    func makeIterator() -> LazyMapSequence<[(key: Int, value: TokenizerJSON)], (key: String, value: TokenizerJSON)>.Iterator {
        members.lazy.map { (key: self.key(of: $0.key), value: $0.value) }.makeIterator()
    }

    private func key(of node: Int) -> String { TokenizerJSON(tape: tape, node: node).string ?? "" }

    /// The value of `key` (the last one when repeated).
    subscript(key: String) -> TokenizerJSON? {
        let wanted = Array(key.utf8)
        var scratch: [UInt8] = []
        for (k, value) in members.reversed() where tape.withString(k, scratch: &scratch, { $0.elementsEqual(wanted) }) {
            return value
        }
        return nil
    }

    /// Calls `body` with each member's key as bytes and its value, without making Strings of the keys.
    func forEachRawMember(_ body: (UnsafeRawBufferPointer, TokenizerJSON) throws -> Void) rethrows {
        var scratch: [UInt8] = []
        for (key, value) in members {
            try tape.withString(key, scratch: &scratch) { try body($0, value) }
        }
    }
}

/// Recursive descent over the bytes, writing nodes; every read is bounds-checked.
struct JSONTapeParser {
    let bytes: UnsafeRawBufferPointer
    let what: String
    let maxDepth: Int
    var pos = 0
    /// The nodes, as `JSONTape` keeps them.
    var kinds: [JSONTape.Kind] = []
    var escaped: [Bool] = []
    var a: [UInt32] = []
    var b: [UInt32] = []

    init(bytes: UnsafeRawBufferPointer, what: String, maxDepth: Int) {
        self.bytes = bytes
        self.what = what
        self.maxDepth = maxDepth
        let estimate = bytes.count / 12
        kinds.reserveCapacity(estimate)
        escaped.reserveCapacity(estimate)
        a.reserveCapacity(estimate)
        b.reserveCapacity(estimate)
    }

    mutating func append(_ kind: JSONTape.Kind, _ x: Int, _ y: Int, escaped e: Bool = false) -> Int {
        kinds.append(kind)
        escaped.append(e)
        a.append(UInt32(truncatingIfNeeded: x))
        b.append(UInt32(truncatingIfNeeded: y))
        return kinds.count - 1
    }

    mutating func close(_ node: Int, children: Int) {
        a[node] = UInt32(truncatingIfNeeded: children)
        b[node] = UInt32(truncatingIfNeeded: kinds.count)
    }

    func fail(_ reason: String) -> MoertError { .format("\(what): invalid JSON at byte \(pos): \(reason)") }

    mutating func skipSpace() {
        while pos < bytes.count {
            let c = bytes[pos]
            guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { return }
            pos += 1
        }
    }

    mutating func literal(_ text: StaticString) throws {
        let n = text.utf8CodeUnitCount
        guard bytes.count - pos >= n else { throw fail("truncated literal") }
        for i in 0..<n where bytes[pos + i] != text.utf8Start[i] { throw fail("unknown literal") }
        pos += n
    }

    mutating func value(depth: Int) throws {
        guard depth < maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
        guard pos < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[pos] {
        case UInt8(ascii: "{"):
            pos += 1
            let node = append(.object, 0, 0)
            var children = 0
            skipSpace()
            if pos < bytes.count && bytes[pos] == UInt8(ascii: "}") { pos += 1; close(node, children: 0); return }
            while true {
                skipSpace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                try string()
                skipSpace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                pos += 1
                skipSpace()
                try value(depth: depth + 1)
                children += 2
                skipSpace()
                guard pos < bytes.count else { throw fail("unterminated object") }
                let c = bytes[pos]
                pos += 1
                if c == UInt8(ascii: "}") { close(node, children: children); return }
                guard c == UInt8(ascii: ",") else { throw fail("expected ',' or '}'") }
            }
        case UInt8(ascii: "["):
            pos += 1
            let node = append(.array, 0, 0)
            var children = 0
            skipSpace()
            if pos < bytes.count && bytes[pos] == UInt8(ascii: "]") { pos += 1; close(node, children: 0); return }
            while true {
                skipSpace()
                try value(depth: depth + 1)
                children += 1
                skipSpace()
                guard pos < bytes.count else { throw fail("unterminated array") }
                let c = bytes[pos]
                pos += 1
                if c == UInt8(ascii: "]") { close(node, children: children); return }
                guard c == UInt8(ascii: ",") else { throw fail("expected ',' or ']'") }
            }
        case UInt8(ascii: "\""): try string()
        case UInt8(ascii: "t"): try literal("true"); _ = append(.bool, 1, 0)
        case UInt8(ascii: "f"): try literal("false"); _ = append(.bool, 0, 0)
        case UInt8(ascii: "n"): try literal("null"); _ = append(.null, 0, 0)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
        default: throw fail("unexpected character")
        }
    }

    /// A string: checks its escapes and records its range; the text is decoded only when read.
    mutating func string() throws {
        pos += 1
        let start = pos
        var hasEscape = false
        while true {
            guard pos < bytes.count else { throw fail("unterminated string") }
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw fail("control character in string") }
            pos += 1
            if c != UInt8(ascii: "\\") { continue }
            hasEscape = true
            guard pos < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                 UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"): break
            case UInt8(ascii: "u"):
                let scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard bytes.count - pos >= 2, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                        throw fail("lone leading surrogate")
                    }
                    pos += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low < 0xE000 else { throw fail("bad trailing surrogate") }
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw fail("lone trailing surrogate")
                }
            default: throw fail("unknown escape")
            }
        }
        _ = append(.string, start, pos, escaped: hasEscape)
        pos += 1
    }

    mutating func hex4() throws -> UInt32 {
        guard bytes.count - pos >= 4 else { throw fail("truncated \\u escape") }
        guard let v = Self.hex(UnsafeRawBufferPointer(rebasing: bytes[pos..<pos + 4])) else { throw fail("bad hex digit in \\u escape") }
        pos += 4
        return v
    }

    static func hex(_ digits: UnsafeRawBufferPointer) -> UInt32? {
        var v: UInt32 = 0
        for c in digits {
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: return nil
            }
            v = v * 16 + d
        }
        return v
    }

    /// The text of a string checked by `string(_:)`, escapes decoded.
    static func unescape(_ raw: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        var i = 0
        while i < raw.count {
            let c = raw[i]
            i += 1
            if c != UInt8(ascii: "\\") { out.append(c); continue }
            let e = raw[i]
            i += 1
            switch e {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hex(UnsafeRawBufferPointer(rebasing: raw[i..<i + 4])) ?? 0xFFFD
                i += 4
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    let low = hex(UnsafeRawBufferPointer(rebasing: raw[i + 2..<i + 6])) ?? 0xDC00
                    i += 6
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                UTF8Scalar.append(scalar, to: &out)
            default: out.append(e)
            }
        }
    }

    mutating func number() throws {
        let start = pos
        var isInteger = true
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        var digits = 0
        while pos < bytes.count, bytes[pos] >= UInt8(ascii: "0"), bytes[pos] <= UInt8(ascii: "9") { pos += 1; digits += 1 }
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
        guard pos - start <= 64 else { throw fail("number literal too long") }
        // An integer too large for Int64 is kept as a double, as serde_json keeps it as a float.
        let integral = isInteger && Self.integer(UnsafeRawBufferPointer(rebasing: bytes[start..<pos])) != nil
        _ = append(integral ? .int : .double, start, pos)
    }

    /// The value of an integer literal (`-`? digits), or nil when it does not fit in Int64.
    static func integer(_ raw: UnsafeRawBufferPointer) -> Int64? {
        let negative = raw.first == UInt8(ascii: "-")
        var v: Int64 = 0
        for c in raw.dropFirst(negative ? 1 : 0) {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (r, o2) = negative ? m.subtractingReportingOverflow(Int64(c &- 0x30)) : m.addingReportingOverflow(Int64(c &- 0x30))
            if o1 || o2 { return nil }
            v = r
        }
        return v
    }
}
