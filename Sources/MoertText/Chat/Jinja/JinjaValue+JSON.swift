// JinjaValue+JSON: values from moert's JSON, and the `tojson` text Python's json.dumps writes (transformers' filter).

import MoertFormats

extension JinjaValue {
    /// The template value of a JSON value. `JSON` objects keep no key order, so their keys are taken sorted (by code
    /// point); `JinjaJSONReader` keeps the order of a document instead.
    init(json: JSON) throws {
        switch json {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i):
            guard let v = Int(exactly: i) else { throw JinjaFailure.type("integer \(i) out of range") }
            self = .int(v)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = try .list(a.map { try JinjaValue(json: $0) })
        case .object(let o):
            let keys = o.keys.sorted(by: PythonText.less)
            self = .dict(try JinjaDict(keys.map { (.string($0), try JinjaValue(json: o[$0]!)) }))
        }
    }

    /// Python's `json.dumps(value, ensure_ascii=, indent=, separators=, sort_keys=)`, which transformers installs
    /// as the `tojson` filter (`chat_template_utils.py`, `_cached_compile_jinja_template`).
    /// - Parameters:
    ///   - indent: nil for one line; otherwise the text of one indentation level (Python's `indent`).
    ///   - separators: item and key separators; nil for Python's default (`", "`, `": "`; `","` when indenting).
    /// - Throws: a type error for values json.dumps cannot write (Undefined, namespaces, functions).
    func toJSON(ensureASCII: Bool = false, indent: String? = nil, separators: (String, String)? = nil,
                sortKeys: Bool = false) throws -> String {
        var writer = JinjaJSONWriter(ensureASCII: ensureASCII, indent: indent,
                                     itemSeparator: separators?.0 ?? (indent == nil ? ", " : ","),
                                     keySeparator: separators?.1 ?? ": ", sortKeys: sortKeys)
        try writer.write(self, level: 0)
        return writer.out
    }
}

/// The state of one json.dumps call (Python's `json.encoder._make_iterencode`).
private struct JinjaJSONWriter {
    let ensureASCII: Bool
    let indent: String?
    let itemSeparator: String
    let keySeparator: String
    let sortKeys: Bool
    var out = ""

    mutating func write(_ value: JinjaValue, level: Int) throws {
        try JinjaLimits.checkText(out.utf8.count)
        switch value {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += Self.float(d)
        case .string(let s): writeString(s)
        case .list(let l) where l.kind == .list || l.kind == .tuple:
            guard !l.items.isEmpty else { out += "[]"; return }
            try JinjaLimits.checkText((indent?.utf8.count ?? 0) * (level + 1))
            out += "["
            for (i, item) in l.items.enumerated() {
                out += i == 0 ? newline(level + 1) : itemSeparator + newline(level + 1)
                try write(item, level: level + 1)
            }
            out += newline(level) + "]"
        case .dict(let d):
            guard d.count > 0 else { out += "{}"; return }
            try JinjaLimits.checkText((indent?.utf8.count ?? 0) * (level + 1))
            var order = Array(0..<d.count)
            if sortKeys { order = try Self.sorted(d.keys, order) }
            out += "{"
            for (n, i) in order.enumerated() {
                out += n == 0 ? newline(level + 1) : itemSeparator + newline(level + 1)
                writeString(try Self.key(d.keys[i]))
                out += keySeparator
                try write(d.values[i], level: level + 1)
            }
            out += newline(level) + "}"
        default:
            throw JinjaFailure.type("Object of type \(value.typeName) is not JSON serializable")
        }
    }

    /// A line break and `level` indentations, or nothing on one line.
    func newline(_ level: Int) -> String {
        guard let indent else { return "" }
        return "\n" + String(repeating: indent, count: level)
    }

    /// float.__repr__, with JavaScript's names for the values JSON lacks (json.dumps's allow_nan default).
    static func float(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        return PythonText.floatRepr(d)
    }

    /// json.dumps turns keys into strings: str as is, numbers by their JSON text, True "true", None "null".
    static func key(_ k: JinjaValue) throws -> String {
        switch k {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return float(d)
        case .bool(let b): return b ? "true" : "false"
        case .none: return "null"
        default: throw JinjaFailure.type("keys must be str, int, float, bool or None, not \(k.typeName)")
        }
    }

    /// Python's `sorted(dct.items())`: keys of one kind only (str with str, numbers with numbers).
    static func sorted(_ keys: [JinjaValue], _ order: [Int]) throws -> [Int] {
        var failure: JinjaFailure?
        let result = order.sorted { a, b in
            do { return try JinjaCompare.less(keys[a], keys[b]) } catch {
                failure = error as? JinjaFailure ?? .type("unorderable keys")
                return false
            }
        }
        if let failure { throw failure }
        return result
    }

    /// A JSON string literal as json.dumps escapes it: quote, backslash and the C0 controls; with ensureASCII every
    /// code point above 0x7E as \uXXXX (astral ones as a surrogate pair).
    mutating func writeString(_ s: String) {
        out += "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if c.value < 0x20 {
                    out += "\\u" + PythonText.hex(c.value, 4)
                } else if ensureASCII && c.value > 0x7E {
                    if c.value > 0xFFFF {
                        let v = c.value - 0x10000
                        out += "\\u" + PythonText.hex(0xD800 + (v >> 10), 4) + "\\u" + PythonText.hex(0xDC00 + (v & 0x3FF), 4)
                    } else {
                        out += "\\u" + PythonText.hex(c.value, 4)
                    }
                } else {
                    out.unicodeScalars.append(c)
                }
            }
        }
        out += "\""
    }
}
