// JinjaJSONReader: JSON text straight to template values, keeping the key order of objects as Python's json module
// does (moert's `JSON` keeps none, and `tojson` and `.items()` write keys in that order).

import MoertFormats
import MoertTensor

/// Reads one JSON document into a `JinjaValue`. Strict like `JSON.parse`: no trailing data, no duplicate keys,
/// nesting up to 64. The text is first validated by `JSON.parse`, so this reader only lays the values out.
struct JinjaJSONReader {
    private let bytes: [UInt8]
    private var at = 0

    /// Parses `text`; `what` names it in errors.
    static func read(_ text: String, what: String) throws -> JinjaValue {
        // JSON.parse gives the error messages (with byte offsets) and rejects what Python's json would not write.
        _ = try JSON.parse(text, what: what)
        var reader = JinjaJSONReader(bytes: Array(text.utf8))
        do {
            return try reader.value()
        } catch let f as JinjaFailure {
            throw f.moertError(line: 0)
        }
    }

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    private mutating func blank() {
        while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x0A || bytes[at] == 0x0D || bytes[at] == 0x09 { at += 1 }
    }

    /// The text of the value starting here up to its end, for scalars; the validated document guarantees the shape.
    private mutating func value() throws -> JinjaValue {
        blank()
        switch bytes[at] {
        case UInt8(ascii: "{"):
            at += 1
            var pairs: [(JinjaValue, JinjaValue)] = []
            blank()
            while bytes[at] != UInt8(ascii: "}") {
                if !pairs.isEmpty { at += 1; blank() }
                let key = try value()
                blank()
                at += 1  // ':'
                pairs.append((key, try value()))
                blank()
            }
            at += 1
            return .dict(try JinjaDict(pairs))
        case UInt8(ascii: "["):
            at += 1
            var items: [JinjaValue] = []
            blank()
            while bytes[at] != UInt8(ascii: "]") {
                if !items.isEmpty { at += 1 }
                items.append(try value())
                blank()
            }
            at += 1
            return try .list(items)
        default:
            // A scalar: its extent, then the validated parser's reading of it.
            let start = at
            if bytes[at] == UInt8(ascii: "\"") {
                at += 1
                while bytes[at] != UInt8(ascii: "\"") { at += bytes[at] == UInt8(ascii: "\\") ? 2 : 1 }
                at += 1
            } else {
                while at < bytes.count, !",]} \n\r\t".utf8.contains(bytes[at]) { at += 1 }
            }
            let scalar = try JSON.parse(PythonText.string(bytes[start..<at]), what: "value")
            return try JinjaValue(json: scalar)
        }
    }
}
