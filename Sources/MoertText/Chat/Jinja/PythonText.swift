// PythonText: Python's str methods and number formatting on Swift strings, by code point as Python counts.
//
// Swift compares and splits Strings by grapheme cluster and canonical equivalence ("\r\n" is one Character, "é" equals
// "e\u{301}"); Python works on code points. Everything here works on UTF-8 bytes or Unicode scalars instead, where
// searching and ordering agree with Python's (UTF-8 preserves code point order and never matches inside a character).

enum PythonText {
    // MARK: Character classes

    /// Python's `str.isspace` for one code point (the whitespace of `str.split()`, `str.strip()` and `\s`).
    static func isSpace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    /// Python's `str.isprintable` for one code point: what `repr()` leaves unescaped.
    static func isPrintable(_ c: Unicode.Scalar) -> Bool {
        if c == " " { return true }
        switch c.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator,
             .spaceSeparator:
            return false
        default:
            return true
        }
    }

    /// The line boundaries of Python's `str.splitlines` ("\r\n" is handled by the caller).
    static func isLineBreak(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x0A...0x0D, 0x1C...0x1E, 0x85, 0x2028, 0x2029: return true
        default: return false
        }
    }

    // MARK: Comparing and searching

    /// Code-point equality (Swift's `==` on String would also equate canonically equivalent text).
    static func equal(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

    /// Code-point order, as Python's `<` on str.
    static func less(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

    /// Number of code points: Python's `len(s)`.
    static func length(_ s: String) -> Int { s.unicodeScalars.count }

    /// Byte offset of the first occurrence of `needle` in `hay` at or after `from`, or nil.
    static func find(_ hay: [UInt8], _ needle: [UInt8], from: Int = 0) -> Int? {
        let n = needle.count, h = hay.count
        if n == 0 { return from <= h ? from : nil }
        guard h >= n, from <= h - n else { return nil }
        let first = needle[0]
        var i = from
        while i <= h - n {
            if hay[i] == first {
                var k = 1
                while k < n && hay[i + k] == needle[k] { k += 1 }
                if k == n { return i }
            }
            i += 1
        }
        return nil
    }

    /// Byte offset of the last occurrence of `needle` in `hay`, or nil.
    static func findLast(_ hay: [UInt8], _ needle: [UInt8]) -> Int? {
        let n = needle.count, h = hay.count
        guard h >= n else { return nil }
        var i = h - n
        while i >= 0 {
            if hay[i..<i + n].elementsEqual(needle) { return i }
            i -= 1
        }
        return nil
    }

    /// True when `needle` occurs in `hay` (Python's `needle in hay`).
    static func contains(_ hay: String, _ needle: String) -> Bool { find(Array(hay.utf8), Array(needle.utf8)) != nil }

    /// Python's `str.startswith` / `str.endswith` for one prefix or suffix.
    static func hasPrefix(_ s: String, _ p: String) -> Bool { s.utf8.starts(with: p.utf8) }
    static func hasSuffix(_ s: String, _ p: String) -> Bool { s.utf8.reversed().starts(with: p.utf8.reversed()) }

    /// Python's `str.find`, as a code-point index (-1 when absent).
    static func codePointIndex(of needle: String, in hay: String, last: Bool = false) -> Int {
        let h = Array(hay.utf8), n = Array(needle.utf8)
        guard let byte = last ? findLast(h, n) : find(h, n) else { return -1 }
        return h[0..<byte].reduce(0) { $0 + (($1 & 0xC0) == 0x80 ? 0 : 1) }
    }

    /// Python's `str.count` (non-overlapping).
    static func count(_ needle: String, in hay: String) -> Int {
        let h = Array(hay.utf8), n = Array(needle.utf8)
        if n.isEmpty { return length(hay) + 1 }
        var total = 0, i = 0
        while let at = find(h, n, from: i) { total += 1; i = at + n.count }
        return total
    }

    // MARK: Transforming

    static func string(_ bytes: some Collection<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

    static func string(_ scalars: some Sequence<Unicode.Scalar>) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }

    /// Python's `str.strip(chars)`, `lstrip` and `rstrip`: whitespace when `chars` is nil.
    static func strip(_ s: String, _ chars: String?, left: Bool = true, right: Bool = true) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        func strippable(_ c: Unicode.Scalar) -> Bool { set?.contains(c) ?? isSpace(c) }
        let scalars = Array(s.unicodeScalars)
        var lo = 0, hi = scalars.count
        if left { while lo < hi && strippable(scalars[lo]) { lo += 1 } }
        if right { while hi > lo && strippable(scalars[hi - 1]) { hi -= 1 } }
        if lo == 0 && hi == scalars.count { return s }
        return string(scalars[lo..<hi])
    }

    /// Python's `str.split(sep, maxsplit)` (`rsplit` when `fromRight`); `sep` nil splits on whitespace runs.
    static func split(_ s: String, _ sep: String?, maxSplit: Int = -1, fromRight: Bool = false) throws -> [String] {
        guard let sep else { return splitOnWhitespace(s, maxSplit: maxSplit, fromRight: fromRight) }
        let h = Array(s.utf8), n = Array(sep.utf8)
        guard !n.isEmpty else { throw JinjaFailure.type("empty separator") }
        var cuts: [Int] = []
        if fromRight {
            var end = h.count
            while maxSplit < 0 || cuts.count < maxSplit {
                guard end >= n.count, let at = findLast(Array(h[0..<end]), n) else { break }
                cuts.append(at)
                end = at
            }
            cuts.reverse()
        } else {
            var i = 0
            while maxSplit < 0 || cuts.count < maxSplit {
                guard let at = find(h, n, from: i) else { break }
                cuts.append(at)
                i = at + n.count
            }
        }
        var parts: [String] = []
        var start = 0
        for c in cuts {
            parts.append(string(h[start..<c]))
            start = c + n.count
        }
        parts.append(string(h[start...]))
        return parts
    }

    private static func splitOnWhitespace(_ s: String, maxSplit: Int, fromRight: Bool) -> [String] {
        var scalars = Array(s.unicodeScalars)
        if fromRight { scalars.reverse() }
        var parts: [[Unicode.Scalar]] = []
        var i = 0
        let n = scalars.count
        while i < n {
            while i < n && isSpace(scalars[i]) { i += 1 }
            if i == n { break }
            if maxSplit >= 0 && parts.count == maxSplit {
                // The rest stays whole, only its leading whitespace dropped.
                parts.append(Array(scalars[i...]))
                break
            }
            let start = i
            while i < n && !isSpace(scalars[i]) { i += 1 }
            parts.append(Array(scalars[start..<i]))
        }
        if fromRight { return parts.reversed().map { string($0.reversed()) } }
        return parts.map { string($0) }
    }

    /// Python's `str.splitlines()` (line ends dropped).
    static func splitLines(_ s: String) -> [String] {
        let scalars = Array(s.unicodeScalars)
        var lines: [String] = []
        var start = 0, i = 0
        while i < scalars.count {
            let c = scalars[i]
            if isLineBreak(c) {
                lines.append(string(scalars[start..<i]))
                if c == "\r" && i + 1 < scalars.count && scalars[i + 1] == "\n" { i += 1 }
                start = i + 1
            }
            i += 1
        }
        if start < scalars.count { lines.append(string(scalars[start...])) }
        return lines
    }

    /// Python's `str.replace(old, new, count)`.
    static func replace(_ s: String, _ old: String, _ new: String, count: Int = -1) throws -> String {
        if count == 0 { return s }
        let h = Array(s.utf8), o = Array(old.utf8), w = Array(new.utf8)
        var out: [UInt8] = []
        var done = 0
        if o.isEmpty {
            // Python inserts `new` before every code point and at the end.
            for c in s.unicodeScalars {
                if count < 0 || done < count { out += w; done += 1 }
                out += Array(String(c).utf8)
                try JinjaLimits.checkText(out.count)
            }
            if count < 0 || done < count { out += w }
            return string(out)
        }
        var i = 0
        while count < 0 || done < count, let at = find(h, o, from: i) {
            out += h[i..<at]
            out += w
            try JinjaLimits.checkText(out.count)
            i = at + o.count
            done += 1
        }
        out += h[i...]
        return string(out)
    }

    /// Python's `str.lower` / `str.upper` (Unicode full case mappings).
    static func lower(_ s: String) -> String { s.lowercased() }
    static func upper(_ s: String) -> String { s.uppercased() }

    /// Python's `str.capitalize`: the first code point in title case, the rest lower case.
    static func capitalize(_ s: String) -> String {
        guard let first = s.unicodeScalars.first else { return s }
        return first.properties.titlecaseMapping + lower(string(s.unicodeScalars.dropFirst()))
    }

    /// Python's `str.title`: a code point after a cased one is lower-cased, any other title-cased.
    static func title(_ s: String) -> String {
        var out = ""
        var previousCased = false
        for c in s.unicodeScalars {
            out += previousCased ? c.properties.lowercaseMapping : c.properties.titlecaseMapping
            previousCased = c.properties.isCased
        }
        return out
    }

    // MARK: repr

    /// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote.
    static func repr(_ s: String) -> String {
        let quote: Unicode.Scalar = s.unicodeScalars.contains("'") && !s.unicodeScalars.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case quote: out += "\\" + String(quote)
            default:
                if c.value < 0x7F ? c.value >= 0x20 : isPrintable(c) {
                    out.unicodeScalars.append(c)
                } else if c.value <= 0xFF {
                    out += "\\x" + hex(c.value, 2)
                } else if c.value <= 0xFFFF {
                    out += "\\u" + hex(c.value, 4)
                } else {
                    out += "\\U" + hex(c.value, 8)
                }
            }
        }
        out.unicodeScalars.append(quote)
        return out
    }

    /// `value` in lower-case hexadecimal, zero-padded to `width` digits.
    static func hex(_ value: UInt32, _ width: Int) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    // MARK: Numbers

    /// Python's `repr(float)`: the shortest digits that read back as `d`, in positional notation when the decimal
    /// exponent is in [-4, 16) and in scientific notation (`1e+16`, `1e-05`) otherwise; `inf`, `-inf`, `nan`.
    static func floatRepr(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description also prints the shortest round-trip digits; only the layout differs.
        var text = Substring(d.magnitude.description)
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = Int(text[text.index(after: e)...]) ?? 0
            text = text[..<e]
        }
        var digits = "", pointAt = text.count
        for (i, ch) in text.enumerated() {
            if ch == "." { pointAt = i } else { digits.append(ch) }
        }
        // Position of the first significant digit relative to the decimal point.
        let leadingZeros = digits.prefix { $0 == "0" }.count
        digits.removeFirst(leadingZeros)
        while digits.last == "0" { digits.removeLast() }
        let exp10 = pointAt - 1 - leadingZeros + exponent
        var out = d.sign == .minus ? "-" : ""
        if exp10 >= -4 && exp10 < 16 {
            if exp10 >= 0 {
                let whole = digits.count > exp10 ? String(digits.prefix(exp10 + 1))
                    : digits + String(repeating: "0", count: exp10 + 1 - digits.count)
                let fraction = digits.count > exp10 + 1 ? String(digits.dropFirst(exp10 + 1)) : "0"
                out += whole + "." + fraction
            } else {
                out += "0." + String(repeating: "0", count: -exp10 - 1) + digits
            }
        } else {
            out += String(digits.prefix(1))
            if digits.count > 1 { out += "." + digits.dropFirst() }
            out += exp10 < 0 ? "e-" : "e+"
            let e = String(abs(exp10))
            out += e.count < 2 ? "0" + e : e
        }
        return out
    }
}
