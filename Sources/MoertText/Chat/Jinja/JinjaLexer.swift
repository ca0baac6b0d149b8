// JinjaLexer: template source to tokens, with Jinja2's whitespace rules as transformers sets them up
// (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False; jinja2/lexer.py, Lexer.tokeniter).

import MoertTensor

/// One token of a template.
struct JinjaToken {
    enum Kind: Equatable {
        /// Literal text between tags, whitespace control already applied.
        case text(String)
        case blockBegin, blockEnd, variableBegin, variableEnd
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        /// An operator or punctuation: `+ - * / // % ** ~ ( ) [ ] { } == != < <= > >= = . : | , ;`.
        case op(String)
        case end
    }

    let kind: Kind
    /// Byte offset in the normalized source, for line:column in errors.
    let offset: Int
}

/// Splits a template into tokens. The source is first normalized as Jinja2 does: "\r\n" and "\r" become "\n", and
/// one trailing newline is dropped.
struct JinjaLexer {
    let bytes: [UInt8]
    /// Byte offset of the start of each line, for line:column of an offset in O(log n).
    private let lineStarts: [Int]
    private(set) var tokens: [JinjaToken] = []
    private var pos = 0
    /// Jinja2's `line_starting`: the previous match ended with a newline (true at the start).
    private var lineStarting = true
    /// Brackets open inside the current tag; a closing delimiter ends the tag only when none are.
    private var brackets: [UInt8] = []

    /// The normalized source: "\r\n" and "\r" as "\n", one final newline removed.
    static func normalize(_ source: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(source.utf8.count)
        var previousCR = false
        for b in source.utf8 {
            if b == 0x0D { out.append(0x0A); previousCR = true; continue }
            if b == 0x0A && previousCR { previousCR = false; continue }
            previousCR = false
            out.append(b)
        }
        if out.last == 0x0A { out.removeLast() }
        return out
    }

    init(source: String) throws {
        let normalized = Self.normalize(source)
        bytes = normalized
        lineStarts = [0] + normalized.indices.filter { normalized[$0] == 0x0A }.map { $0 + 1 }
        try run()
    }

    // MARK: Positions

    /// 1-based line and column (in code points) of a byte offset.
    func location(_ offset: Int) -> (line: Int, column: Int) {
        let offset = min(offset, bytes.count)
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        let column = bytes[lineStarts[lo]..<offset].reduce(1) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
        return (lo + 1, column)
    }

    func fail(_ message: String, at offset: Int) -> MoertError {
        let (line, column) = location(offset)
        return .format("chat template:\(line):\(column): \(message)")
    }

    // MARK: Root state

    private func starts(with literal: String, at i: Int) -> Bool {
        var k = i
        for b in literal.utf8 {
            guard k < bytes.count, bytes[k] == b else { return false }
            k += 1
        }
        return true
    }

    /// The code point at byte offset `i` and its length in bytes.
    private func scalar(at i: Int) -> (Unicode.Scalar, Int) {
        let b = bytes[i]
        let length = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
        let end = min(i + length, bytes.count)
        if let s = String(validating: bytes[i..<end], as: UTF8.self), let c = s.unicodeScalars.first { return (c, end - i) }
        return ("\u{FFFD}", 1)
    }

    /// Skips Python whitespace (`\s*`) from `i`; returns the new offset.
    private func skipSpace(_ i: Int) -> Int {
        var i = i
        while i < bytes.count {
            let (c, n) = scalar(at: i)
            guard PythonText.isSpace(c) else { break }
            i += n
        }
        return i
    }

    private mutating func run() throws {
        while pos < bytes.count {
            guard let tag = nextTag(from: pos) else {
                emitText(pos, bytes.count)
                break
            }
            let kind = bytes[tag + 1]
            var after = tag + 2
            var sign: UInt8 = 0
            if after < bytes.count, bytes[after] == UInt8(ascii: "-") || bytes[after] == UInt8(ascii: "+") {
                sign = bytes[after]
                after += 1
            }
            let raw = kind == UInt8(ascii: "%") ? rawBegin(after) : nil
            emitData(from: pos, to: tag, sign: sign, lstripAllowed: kind != UInt8(ascii: "{"))
            if let rawEnd = raw {
                try lexRaw(from: rawEnd)
            } else if kind == UInt8(ascii: "#") {
                try lexComment(from: after, begin: tag)
            } else {
                try lexTag(from: after, begin: tag, block: kind == UInt8(ascii: "%"))
            }
        }
        tokens.append(JinjaToken(kind: .end, offset: bytes.count))
    }

    /// The offset of the next `{%`, `{{` or `{#`.
    private func nextTag(from i: Int) -> Int? {
        var i = i
        while i + 1 < bytes.count {
            if bytes[i] == UInt8(ascii: "{") {
                let n = bytes[i + 1]
                if n == UInt8(ascii: "%") || n == UInt8(ascii: "{") || n == UInt8(ascii: "#") { return i }
            }
            i += 1
        }
        return nil
    }

    private mutating func emitText(_ from: Int, _ to: Int) {
        guard to > from else { return }
        tokens.append(JinjaToken(kind: .text(PythonText.string(bytes[from..<to])), offset: from))
    }

    /// Emits the text before a tag after whitespace control: `-` strips all whitespace before the tag; otherwise
    /// (unless `+`) lstrip_blocks removes spaces between the line start and a block or comment tag.
    private mutating func emitData(from: Int, to: Int, sign: UInt8, lstripAllowed: Bool) {
        var end = to
        if sign == UInt8(ascii: "-") {
            let stripped = PythonText.strip(PythonText.string(bytes[from..<to]), nil, left: false)
            end = from + stripped.utf8.count
        } else if sign != UInt8(ascii: "+") && lstripAllowed {
            var lineStart = from
            var k = to
            while k > from {
                if bytes[k - 1] == 0x0A { lineStart = k; break }
                k -= 1
            }
            if (lineStart > from || lineStarting) && lineStart < to && skipSpace(lineStart) == to {
                end = lineStart
            }
        }
        emitText(from, end)
    }

    // MARK: Raw, comments, tags

    /// When `{%` + sign at `after - 2` opens `raw` (`{% raw %}`, `{% raw -%}`), the offset after it.
    private func rawBegin(_ after: Int) -> Int? {
        var i = skipSpace(after)
        guard starts(with: "raw", at: i) else { return nil }
        i = skipSpace(i + 3)
        if starts(with: "-%}", at: i) { return skipSpace(i + 3) }
        if starts(with: "%}", at: i) { return i + 2 }
        return nil
    }

    private mutating func lexRaw(from start: Int) throws {
        var i = start
        while let tag = nextTag(from: i) {
            guard bytes[tag + 1] == UInt8(ascii: "%") else { i = tag + 1; continue }
            var k = tag + 2
            var sign: UInt8 = 0
            if k < bytes.count, bytes[k] == UInt8(ascii: "-") || bytes[k] == UInt8(ascii: "+") { sign = bytes[k]; k += 1 }
            k = skipSpace(k)
            guard starts(with: "endraw", at: k) else { i = tag + 1; continue }
            k = skipSpace(k + 6)
            guard let end = blockEnd(at: k, close: "%}") else { i = tag + 1; continue }
            emitData(from: start, to: tag, sign: sign, lstripAllowed: true)
            pos = end
            lineStarting = end > 0 && bytes[end - 1] == 0x0A
            return
        }
        throw fail("Missing end of raw directive", at: start)
    }

    /// The end of a block or comment closer at `i` (`+%}`, `-%}` and following whitespace, `%}` and one newline),
    /// or nil when none is there.
    private func blockEnd(at i: Int, close: String) -> Int? {
        if starts(with: "+" + close, at: i) { return i + 3 }
        if starts(with: "-" + close, at: i) { return skipSpace(i + 3) }
        if starts(with: close, at: i) {
            let k = i + 2
            return k < bytes.count && bytes[k] == 0x0A ? k + 1 : k
        }
        return nil
    }

    private mutating func lexComment(from start: Int, begin: Int) throws {
        var i = start
        while i < bytes.count {
            if let end = blockEnd(at: i, close: "#}") {
                pos = end
                lineStarting = bytes[end - 1] == 0x0A
                return
            }
            i += 1
        }
        throw fail("Missing end of comment tag", at: begin)
    }

    private mutating func lexTag(from start: Int, begin: Int, block: Bool) throws {
        tokens.append(JinjaToken(kind: block ? .blockBegin : .variableBegin, offset: begin))
        brackets.removeAll()
        var i = start
        while i < bytes.count {
            if brackets.isEmpty {
                let end: Int?
                if block {
                    end = blockEnd(at: i, close: "%}")
                } else if starts(with: "-}}", at: i) {
                    end = skipSpace(i + 3)
                } else {
                    end = starts(with: "}}", at: i) ? i + 2 : nil
                }
                if let end {
                    tokens.append(JinjaToken(kind: block ? .blockEnd : .variableEnd, offset: i))
                    pos = end
                    lineStarting = bytes[end - 1] == 0x0A
                    return
                }
            }
            i = try lexToken(at: i)
        }
        // Unterminated: the parser reports the unexpected end.
        pos = bytes.count
    }

    /// Lexes one token inside a tag at `i` (whitespace is skipped); returns the offset after it.
    private mutating func lexToken(at i: Int) throws -> Int {
        let b = bytes[i]
        let (c, n) = scalar(at: i)
        if PythonText.isSpace(c) { return i + n }
        if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") { return try lexNumber(at: i) }
        if b == UInt8(ascii: "_") || (b | 0x20 >= UInt8(ascii: "a") && b | 0x20 <= UInt8(ascii: "z"))
            || (b >= 0x80 && c.properties.isXIDStart) {
            var k = i
            while k < bytes.count {
                let (d, m) = scalar(at: k)
                let isNameChar = d.isASCII ? d == "_" || (d.value >= 0x30 && d.value <= 0x39) || (d.value | 0x20 >= 0x61 && d.value | 0x20 <= 0x7A)
                    : d.properties.isXIDContinue
                guard isNameChar else { break }
                k += m
            }
            tokens.append(JinjaToken(kind: .name(PythonText.string(bytes[i..<k])), offset: i))
            return k
        }
        if b == UInt8(ascii: "'") || b == UInt8(ascii: "\"") { return try lexString(at: i) }
        return try lexOperator(at: i)
    }

    private static let twoCharOperators: Set<String> = ["//", "**", "==", "!=", ">=", "<="]
    private static let oneCharOperators: Set<UInt8> = Set("+-/*%~()[]{}<>=.:|,;".utf8)

    private mutating func lexOperator(at i: Int) throws -> Int {
        if i + 1 < bytes.count {
            let two = PythonText.string(bytes[i..<i + 2])
            if Self.twoCharOperators.contains(two) {
                tokens.append(JinjaToken(kind: .op(two), offset: i))
                return i + 2
            }
        }
        let b = bytes[i]
        guard Self.oneCharOperators.contains(b) else {
            let (c, _) = scalar(at: i)
            throw fail("unexpected char \(PythonText.repr(String(c)))", at: i)
        }
        switch b {
        case UInt8(ascii: "("): brackets.append(UInt8(ascii: ")"))
        case UInt8(ascii: "["): brackets.append(UInt8(ascii: "]"))
        case UInt8(ascii: "{"): brackets.append(UInt8(ascii: "}"))
        case UInt8(ascii: ")"), UInt8(ascii: "]"), UInt8(ascii: "}"):
            guard let expected = brackets.popLast() else { throw fail("unexpected '\(Character(Unicode.Scalar(b)))'", at: i) }
            guard expected == b else {
                throw fail("unexpected '\(Character(Unicode.Scalar(b)))', expected '\(Character(Unicode.Scalar(expected)))'", at: i)
            }
        default: break
        }
        tokens.append(JinjaToken(kind: .op(String(Character(Unicode.Scalar(b)))), offset: i))
        return i + 1
    }

    /// Digits with optional single `_` separators from `i`; returns the end offset and the digits.
    private func digitRun(_ i: Int, isDigit: (UInt8) -> Bool) -> (Int, String) {
        var k = i, text = ""
        while k < bytes.count {
            if isDigit(bytes[k]) {
                text.append(Character(Unicode.Scalar(bytes[k])))
                k += 1
            } else if bytes[k] == UInt8(ascii: "_") && k + 1 < bytes.count && isDigit(bytes[k + 1]) && !text.isEmpty {
                k += 1
            } else {
                break
            }
        }
        return (k, text)
    }

    /// Integers (decimal, 0b, 0o, 0x, `_` separators) and floats (`1.5`, `1e3`, `1.5e-3`), as Jinja2's
    /// `integer_re` and `float_re` read them. A float may not follow a `.` (so `a.0.1` is two subscripts).
    private mutating func lexNumber(at i: Int) throws -> Int {
        let isDecimal: (UInt8) -> Bool = { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        let afterDot = i > 0 && bytes[i - 1] == UInt8(ascii: ".")
        if !afterDot {
            let (intEnd, whole) = digitRun(i, isDigit: isDecimal)
            var k = intEnd, text = whole, isFloat = false
            if k + 1 < bytes.count, bytes[k] == UInt8(ascii: "."), isDecimal(bytes[k + 1]) {
                let (fracEnd, fraction) = digitRun(k + 1, isDigit: isDecimal)
                k = fracEnd
                text += "." + fraction
                isFloat = true
            }
            if k < bytes.count, bytes[k] | 0x20 == UInt8(ascii: "e") {
                var e = k + 1
                var sign = ""
                if e < bytes.count, bytes[e] == UInt8(ascii: "+") || bytes[e] == UInt8(ascii: "-") {
                    sign = String(Character(Unicode.Scalar(bytes[e])))
                    e += 1
                }
                if e < bytes.count, isDecimal(bytes[e]) {
                    let (expEnd, exponent) = digitRun(e, isDigit: isDecimal)
                    k = expEnd
                    text += "e" + sign + exponent
                    isFloat = true
                }
            }
            if isFloat {
                guard let d = Double(text) else { throw fail("invalid number", at: i) }
                tokens.append(JinjaToken(kind: .float(d), offset: i))
                return k
            }
        }
        // Integers: 0b/0o/0x prefixes, or decimal without leading zeros ("0", "0_0").
        if bytes[i] == UInt8(ascii: "0"), i + 1 < bytes.count {
            let p = bytes[i + 1] | 0x20
            let radix = p == UInt8(ascii: "b") ? 2 : p == UInt8(ascii: "o") ? 8 : p == UInt8(ascii: "x") ? 16 : 0
            if radix != 0 {
                var k = i + 2, digits = ""
                while k < bytes.count {
                    if bytes[k] == UInt8(ascii: "_"), k + 1 < bytes.count, Int(String(UnicodeScalar(bytes[k + 1])), radix: radix) != nil {
                        k += 1
                        continue
                    }
                    guard Int(String(UnicodeScalar(bytes[k])), radix: radix) != nil else { break }
                    digits.append(Character(Unicode.Scalar(bytes[k])))
                    k += 1
                }
                if !digits.isEmpty {
                    guard let v = Int(digits, radix: radix) else { throw fail("integer literal too large", at: i) }
                    tokens.append(JinjaToken(kind: .integer(v), offset: i))
                    return k
                }
            }
            let (k, _) = digitRun(i, isDigit: { $0 == UInt8(ascii: "0") })
            tokens.append(JinjaToken(kind: .integer(0), offset: i))
            return k
        }
        let (k, digits) = digitRun(i, isDigit: isDecimal)
        guard let v = Int(digits) else { throw fail("integer literal too large", at: i) }
        tokens.append(JinjaToken(kind: .integer(v), offset: i))
        return k
    }

    /// A quoted string with Python's escapes (Jinja2 decodes it with `unicode-escape`); newlines may appear raw.
    private mutating func lexString(at i: Int) throws -> Int {
        let quote = bytes[i]
        var k = i + 1
        var out: [UInt8] = []
        while true {
            guard k < bytes.count else { throw fail("unexpected char \(PythonText.repr(String(UnicodeScalar(quote))))", at: i) }
            let b = bytes[k]
            if b == quote { k += 1; break }
            if b != UInt8(ascii: "\\") { out.append(b); k += 1; continue }
            guard k + 1 < bytes.count else { throw fail("unexpected char \(PythonText.repr(String(UnicodeScalar(quote))))", at: i) }
            let e = bytes[k + 1]
            k += 2
            switch e {
            case 0x0A: break  // a backslash before a newline joins the lines
            case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): out.append(e)
            case UInt8(ascii: "a"): out.append(0x07)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "v"): out.append(0x0B)
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var value = UInt32(e - UInt8(ascii: "0"))
                var digits = 1
                while digits < 3, k < bytes.count, bytes[k] >= UInt8(ascii: "0"), bytes[k] <= UInt8(ascii: "7") {
                    value = value * 8 + UInt32(bytes[k] - UInt8(ascii: "0"))
                    k += 1
                    digits += 1
                }
                out += Array(String(Character(Unicode.Scalar(value)!)).utf8)
            case UInt8(ascii: "x"), UInt8(ascii: "u"), UInt8(ascii: "U"):
                let width = e == UInt8(ascii: "x") ? 2 : e == UInt8(ascii: "u") ? 4 : 8
                guard k + width <= bytes.count, let v = UInt32(PythonText.string(bytes[k..<k + width]), radix: 16),
                      bytes[k..<k + width].allSatisfy({ Character(Unicode.Scalar($0)).isHexDigit }) else {
                    throw fail("truncated \\\(Character(Unicode.Scalar(e)))XXXX escape", at: k - 2)
                }
                guard let scalar = Unicode.Scalar(v) else {
                    throw fail("illegal Unicode character \\\(Character(Unicode.Scalar(e)))\(PythonText.string(bytes[k..<k + width]))", at: k - 2)
                }
                out += Array(String(Character(scalar)).utf8)
                k += width
            case UInt8(ascii: "N"):
                let (line, column) = location(k - 2)
                throw MoertError.unsupported("chat template:\(line):\(column): \\N{...} escapes are not supported")
            default:
                // Python keeps an unknown escape as written.
                out.append(UInt8(ascii: "\\"))
                out.append(e)
            }
        }
        tokens.append(JinjaToken(kind: .string(PythonText.string(out)), offset: i))
        return k
    }
}
