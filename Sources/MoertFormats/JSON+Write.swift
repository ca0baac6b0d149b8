// JSON+Write: JSON values written back as JSON text.

extension JSON {
    /// This value as JSON text (strings escaped as JSON requires; object keys in the dictionary's order).
    public var text: String {
        var out: [UInt8] = []
        write(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// This value as JSON text with object keys sorted: the same text for the same value in every run.
    public var sortedText: String {
        var out: [UInt8] = []
        write(to: &out, sorted: true, indent: nil)
        return String(decoding: out, as: UTF8.self)
    }

    /// This value as indented JSON text with object keys sorted, for files people read (config.json).
    public var prettyText: String {
        var out: [UInt8] = []
        write(to: &out, sorted: true, indent: 0)
        out.append(UInt8(ascii: "\n"))
        return String(decoding: out, as: UTF8.self)
    }

    /// `s` as a JSON string literal.
    public static func quote(_ s: String) -> String { JSON.string(s).text }

    /// Appends this value as JSON text (see `text`).
    public func write(to out: inout [UInt8]) { write(to: &out, sorted: false, indent: nil) }

    /// Appends this value as JSON text, object keys sorted when `sorted`, indented by two spaces per level from
    /// `indent` levels when it is not nil.
    private func write(to out: inout [UInt8], sorted: Bool, indent: Int?) {
        func newline(_ level: Int) {
            guard indent != nil else { return }
            out.append(UInt8(ascii: "\n"))
            out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * level))
        }
        let level = indent ?? 0, inner = indent.map { $0 + 1 }
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .double(let d): out.append(contentsOf: (d.isFinite ? "\(d)" : "null").utf8)
        case .string(let s): Self.writeString(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            let flat = items.allSatisfy { $0.array == nil && $0.object == nil }  // numbers stay on one line
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")); if flat && indent != nil { out.append(UInt8(ascii: " ")) } }
                if !flat { newline(level + 1) }
                item.write(to: &out, sorted: sorted, indent: inner)
            }
            if !flat && !items.isEmpty { newline(level) }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            let ordered = sorted ? members.sorted { $0.key < $1.key } : Array(members)
            for (i, (key, value)) in ordered.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(level + 1)
                Self.writeString(key, to: &out)
                out.append(contentsOf: indent == nil ? [UInt8(ascii: ":")] : Array(": ".utf8))
                value.write(to: &out, sorted: sorted, indent: inner)
            }
            if !members.isEmpty { newline(level) }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func writeString(_ s: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(b)
            case 0..<0x20: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 15)]])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
