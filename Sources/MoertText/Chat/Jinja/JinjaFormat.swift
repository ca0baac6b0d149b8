// JinjaFormat: Python's `str.format` for the replacement fields templates use: `{}`, `{0}`, `{name}`, `{x.attr}`,
// `{x[key]}`, `!s`/`!r`, and `{{`/`}}`; format specifications (`{:>8}`) are refused.

enum JinjaFormat {
    static func format(_ template: String, _ args: JinjaCallArguments, _ renderer: JinjaRenderer) throws -> String {
        let s = Array(template.unicodeScalars)
        var out = ""
        var i = 0
        var automatic = 0
        while i < s.count {
            let c = s[i]
            if c == "}" {
                guard i + 1 < s.count, s[i + 1] == "}" else { throw JinjaFailure.type("Single '}' encountered in format string") }
                out += "}"
                i += 2
                continue
            }
            guard c == "{" else {
                out.unicodeScalars.append(c)
                i += 1
                continue
            }
            if i + 1 < s.count, s[i + 1] == "{" {
                out += "{"
                i += 2
                continue
            }
            var k = i + 1
            while k < s.count && s[k] != "}" { k += 1 }
            guard k < s.count else { throw JinjaFailure.type("Single '{' encountered in format string") }
            var field = PythonText.string(s[(i + 1)..<k])
            i = k + 1
            if field.contains(":") { throw JinjaFailure.unsupported("format specifications in str.format") }
            var conversion: Character?
            if let bang = field.lastIndex(of: "!") {
                guard field.index(after: bang) < field.endIndex else { throw JinjaFailure.type("end of string while looking for conversion specifier") }
                conversion = field[field.index(after: bang)]
                field = String(field[..<bang])
            }
            var value = try lookup(field, args, &automatic, renderer)
            switch conversion {
            case nil, "s": break
            case "r": value = .string(try value.repr())
            default: throw JinjaFailure.unsupported("the '!\(conversion!)' conversion in str.format")
            }
            out += try value.str()
            try JinjaLimits.checkText(out.utf8.count)
        }
        return out
    }

    /// The argument a field names (`""`, `0`, `name`), followed by `.attr` and `[key]` parts.
    private static func lookup(_ field: String, _ args: JinjaCallArguments, _ automatic: inout Int,
                               _ renderer: JinjaRenderer) throws -> JinjaValue {
        let scalars = Array(field.unicodeScalars)
        var k = 0
        while k < scalars.count && scalars[k] != "." && scalars[k] != "[" { k += 1 }
        let head = PythonText.string(scalars[0..<k])
        var value: JinjaValue
        if head.isEmpty || Int(head) != nil {
            let index = head.isEmpty ? automatic : Int(head)!
            if head.isEmpty { automatic += 1 }
            guard index < args.positional.count else {
                throw JinjaFailure.type("Replacement index \(index) out of range for positional args tuple")
            }
            value = args.positional[index]
        } else {
            guard let v = args.keyword.first(where: { $0.0 == head })?.1 else { throw JinjaFailure.type("KeyError: '\(head)'") }
            value = v
        }
        while k < scalars.count {
            if scalars[k] == "." {
                var e = k + 1
                while e < scalars.count && scalars[e] != "." && scalars[e] != "[" { e += 1 }
                value = try renderer.attribute(value, PythonText.string(scalars[(k + 1)..<e]))
                k = e
            } else {
                var e = k + 1
                while e < scalars.count && scalars[e] != "]" { e += 1 }
                guard e < scalars.count else { throw JinjaFailure.type("Missing ']' in format string") }
                let key = PythonText.string(scalars[(k + 1)..<e])
                value = try renderer.item(value, Int(key).map { .int($0) } ?? .string(key))
                k = e + 1
            }
        }
        return value
    }
}
