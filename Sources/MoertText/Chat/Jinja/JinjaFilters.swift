// JinjaFilters: Jinja2's built-in filters (jinja2/filters.py) as chat templates use them, with transformers' `tojson`.

import Glibc
import MoertTensor

enum JinjaFilters {
    /// Filters Jinja2 defines that moert does not implement: refused when run, so a template that only uses them
    /// on a branch it never takes still renders.
    private static let refused: Set<String> = [
        "batch", "filesizeformat", "format", "groupby", "pprint", "random", "slice", "striptags", "truncate",
        "urlencode", "urlize", "wordwrap", "xmlattr",
    ]
    private static let implemented: Set<String> = [
        "abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
        "forceescape", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min",
        "reject", "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum",
        "title", "tojson", "trim", "unique", "upper", "wordcount",
    ]

    /// Checks the name of a block's filter (`{% filter x %}`, `{% set v | x %}`) while parsing: Jinja2 refuses an
    /// unknown one when compiling, as those blocks are never "soft" frames (see `JinjaExpr.unknown`).
    static func check(_ name: String, at fail: (String) -> MoertError) throws {
        guard implemented.contains(name) || refused.contains(name) else { throw fail("No filter named '\(name)'.") }
    }

    static func exists(_ name: String) -> Bool { implemented.contains(name) || refused.contains(name) }

    /// `str()` of a value, "" for Undefined (Jinja2's `soft_str`).
    private static func soft(_ v: JinjaValue) throws -> String { try v.str() }

    static func apply(_ name: String, _ value: JinjaValue, _ args: JinjaCallArguments, _ r: JinjaRenderer) throws -> JinjaValue {
        if case .undefined(let u) = value, u.unsafe { throw JinjaFailure.security(u.message) }
        let f = name
        switch name {
        case "default", "d":
            let a = try args.bind(["default_value", "boolean"], f)
            if value.isUndefined || (a[1]?.truthy ?? false) && !value.truthy { return a[0] ?? .emptyString }
            return value
        case "length", "count":
            try args.none(f)
            return .int(try length(value))
        case "string", "safe":
            try args.none(f)
            return .string(try soft(value))
        case "lower", "upper", "capitalize", "title":
            try args.none(f)
            let s = try soft(value)
            switch name {
            case "lower": return .string(PythonText.lower(s))
            case "upper": return .string(PythonText.upper(s))
            case "capitalize": return .string(PythonText.capitalize(s))
            default: return .string(title(s))
            }
        case "trim":
            let chars = try args.bind(["chars"], f)[0]
            return .string(PythonText.strip(try soft(value), try chars.map { try soft($0) }))
        case "replace":
            let a = try args.bind(["old", "new", "count"], f)
            guard let old = a[0], let new = a[1] else { throw JinjaFailure.type("do_replace() missing required arguments") }
            let count = try a[2].map { v -> Int in
                guard let (i, _) = JinjaCompare.number(v), let i else { throw JinjaFailure.type("'\(v.typeName)' object cannot be interpreted as an integer") }
                return i
            } ?? -1
            return .string(try PythonText.replace(try soft(value), try soft(old), try soft(new), count: count))
        case "tojson":
            return .string(try tojson(value, args))
        case "join":
            let a = try args.bind(["d", "attribute"], f)
            var items = try r.iterate(value)
            if let attribute = a[1] { items = try items.map { try attributeGetter(attribute, $0, r) } }
            try r.step(items.count)
            let parts = try items.map { try soft($0) }
            let separator = try soft(a[0] ?? .emptyString)
            try JinjaLimits.checkJoined(parts, separator)
            return .string(parts.joined(separator: separator))
        case "first":
            try args.none(f)
            return try r.iterate(value).first ?? .undefined(JinjaUndefined(message: "No first item, sequence was empty."))
        case "last":
            try args.none(f)
            if case .list(let l) = value, l.kind == .iterator {
                throw JinjaFailure.type("'generator' object is not reversible")
            }
            return try r.iterate(value).last ?? .undefined(JinjaUndefined(message: "No last item, sequence was empty."))
        case "list":
            try args.none(f)
            return try .list(try r.iterate(value))
        case "items":
            try args.none(f)
            if value.isUndefined { return try .list([], kind: .iterator) }
            guard case .dict(let d) = value else { throw JinjaFailure.type("Can only get item pairs from a mapping.") }
            return try .list((0..<d.count).map { try .list([d.keys[$0], d.values[$0]], kind: .tuple) }, kind: .iterator)
        case "reverse":
            try args.none(f)
            if case .string(let s) = value { return .string(PythonText.string(s.unicodeScalars.reversed())) }
            return try .list(try r.iterate(value).reversed(), kind: .iterator)
        case "map":
            // jinja2's do_map and select_or_reject start with `if value:`: None and empty values give nothing.
            return try .list(value.truthy ? try map(value, args, r) : [], kind: .iterator)
        case "select", "reject", "selectattr", "rejectattr":
            guard value.truthy else { return try .list([], kind: .iterator) }
            return try .list(try select(value, args, r, keep: name.hasPrefix("select"), attribute: name.hasSuffix("attr")),
                             kind: .iterator)
        case "unique":
            return try .list(try unique(value, args, r), kind: .iterator)
        case "sort":
            return try .list(try sort(value, args, r))
        case "dictsort":
            return try .list(try dictsort(value, args, r))
        case "min", "max":
            let a = try args.bind(["case_sensitive", "attribute"], f)
            let items = try r.iterate(value)
            guard var best = items.first else {
                return .undefined(JinjaUndefined(message: "No aggregated item, sequence was empty."))
            }
            var bestKey = try sortKey(best, a[1], caseSensitive: a[0]?.truthy ?? false, r)
            for item in items.dropFirst() {
                let key = try sortKey(item, a[1], caseSensitive: a[0]?.truthy ?? false, r)
                if name == "max" ? try JinjaCompare.less(bestKey, key) : try JinjaCompare.less(key, bestKey) {
                    best = item
                    bestKey = key
                }
            }
            return best
        case "sum":
            let a = try args.bind(["attribute", "start"], f)
            var total = a[1] ?? .int(0)
            for item in try r.iterate(value) {
                try r.step()
                total = try JinjaArithmetic.binary("+", total, try a[0].map { try attributeGetter($0, item, r) } ?? item)
            }
            return total
        case "abs":
            try args.none(f)
            switch value {
            case .bool(let b): return .int(b ? 1 : 0)
            case .int(let i):
                guard i != Int.min else { throw JinjaFailure.unsupported("arithmetic beyond 64-bit integers") }
                return .int(abs(i))
            case .double(let d): return .double(abs(d))
            default: throw JinjaFailure.type("bad operand type for abs(): '\(value.typeName)'")
            }
        case "int":
            let a = try args.bind(["default", "base"], f)
            return try toInt(value, a[0] ?? .int(0), a[1])
        case "float":
            let a = try args.bind(["default"], f)
            return toFloat(value).map { .double($0) } ?? a[0] ?? .double(0)
        case "round":
            return try round(value, args)
        case "indent":
            return .string(try indent(value, args))
        case "center":
            let width = try args.bind(["width"], f)[0] ?? .int(80)
            return try JinjaMethods.call(.string(try soft(value)), "center", JinjaCallArguments(positional: [width]), r)
        case "escape", "e", "forceescape":
            try args.none(f)
            return .string(escapeHTML(try soft(value)))
        case "wordcount":
            try args.none(f)
            var words = 0, inWord = false
            for c in try soft(value).unicodeScalars {
                let isWord = c == "_" || c.properties.isAlphabetic || c.properties.numericType != nil
                if isWord && !inWord { words += 1 }
                inWord = isWord
            }
            return .int(words)
        case "attr":
            guard case .string(let n)? = try args.bind(["name"], f)[0] else { throw JinjaFailure.type("attr() needs a name") }
            switch value {
            case .dict, .string, .list: return JinjaMethods.lookup(value, n) ?? .undefined(.attribute(n, of: value))
            default: return try r.attribute(value, n)
            }
        default:
            throw JinjaFailure.unsupported("the filter '\(name)'")
        }
    }

    /// markupsafe's `escape` of a string: `& < > " '` as HTML entities.
    static func escapeHTML(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Python's `len()`; Undefined has length 0.
    static func length(_ v: JinjaValue) throws -> Int {
        switch v {
        case .undefined: return 0
        case .string(let s): return PythonText.length(s)
        case .list(let l) where l.kind != .iterator: return l.items.count
        case .dict(let d): return d.count
        case .loop(let loop): return loop.items.count
        default: throw JinjaFailure.type("object of type '\(v.typeName)' has no len()")
        }
    }

    /// Jinja2's `title` filter: each piece after a run of `-`, whitespace or an opening bracket starts upper-case,
    /// the rest lower (`_word_beginning_split_re`), unlike Python's str.title.
    static func title(_ s: String) -> String {
        var out = ""
        var startOfWord = true
        for c in s.unicodeScalars {
            let separator = c == "-" || c == "(" || c == "{" || c == "[" || c == "<" || PythonText.isSpace(c)
            if separator {
                out.unicodeScalars.append(c)
                startOfWord = true
            } else {
                out += startOfWord ? c.properties.uppercaseMapping : c.properties.lowercaseMapping
                startOfWord = false
            }
        }
        return out
    }

    /// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
    private static func tojson(_ value: JinjaValue, _ args: JinjaCallArguments) throws -> String {
        let a = try args.bind(["ensure_ascii", "indent", "separators", "sort_keys"], "tojson")
        var indent: String?
        switch a[1] {
        case nil, .none?: indent = nil
        case .string(let s)?: indent = s
        case let v?:
            guard let (i, _) = JinjaCompare.number(v), let n = i else { throw JinjaFailure.type("indent must be an int or a string") }
            indent = String(repeating: " ", count: max(0, min(n, 1 << 12)))
        }
        var separators: (String, String)?
        if let s = a[2], !s.isNone {
            guard case .list(let l) = s, l.items.count == 2, case .string(let item) = l.items[0], case .string(let key) = l.items[1] else {
                throw JinjaFailure.type("separators must be a pair of strings")
            }
            separators = (item, key)
        }
        return try value.toJSON(ensureASCII: a[0]?.truthy ?? false, indent: indent, separators: separators,
                                sortKeys: a[3]?.truthy ?? false)
    }

    /// Jinja2's `make_attrgetter`: `attribute` split on dots, each part an item lookup (integers as indices).
    static func attributeGetter(_ attribute: JinjaValue, _ item: JinjaValue, _ r: JinjaRenderer,
                                default fallback: JinjaValue? = nil) throws -> JinjaValue {
        var v = item
        let parts: [JinjaValue]
        if case .string(let s) = attribute {
            parts = try PythonText.split(s, ".").map { p in Int(p).map { .int($0) } ?? .string(p) }
        } else {
            parts = [attribute]
        }
        for p in parts {
            v = try r.item(v, p)
            if v.isUndefined, let fallback { return fallback }
        }
        return v
    }

    /// The value sorting compares: the attribute when given, lower-cased when a string and not case-sensitive.
    private static func sortKey(_ item: JinjaValue, _ attribute: JinjaValue?, caseSensitive: Bool, _ r: JinjaRenderer) throws -> JinjaValue {
        var v = item
        if let attribute { v = try attributeGetter(attribute, item, r) }
        if !caseSensitive, case .string(let s) = v { return .string(PythonText.lower(s)) }
        return v
    }

    /// `items` sorted stably by `keys` (Python's `sorted`, `reverse` keeping equal items in order).
    static func stableSort(_ items: [JinjaValue], keys: [JinjaValue], reverse: Bool, _ r: JinjaRenderer) throws -> [JinjaValue] {
        try r.step(items.count)
        var failure: Error?
        let order = items.indices.sorted { a, b in
            if failure != nil { return a < b }
            do {
                if try JinjaCompare.less(keys[a], keys[b]) { return !reverse }
                if try JinjaCompare.less(keys[b], keys[a]) { return reverse }
            } catch {
                failure = error
            }
            return a < b
        }
        if let failure { throw failure }
        return order.map { items[$0] }
    }

    private static func sort(_ value: JinjaValue, _ args: JinjaCallArguments, _ r: JinjaRenderer) throws -> [JinjaValue] {
        let a = try args.bind(["reverse", "case_sensitive", "attribute"], "sort")
        let items = try r.iterate(value)
        let caseSensitive = a[1]?.truthy ?? false
        var keys: [JinjaValue]
        if case .string(let names)? = a[2], names.contains(",") {
            let parts = try PythonText.split(names, ",").map { JinjaValue.string($0) }
            keys = try items.map { item in try .list(try parts.map { try sortKey(item, $0, caseSensitive: caseSensitive, r) }) }
        } else {
            keys = try items.map { try sortKey($0, a[2], caseSensitive: caseSensitive, r) }
        }
        return try stableSort(items, keys: keys, reverse: a[0]?.truthy ?? false, r)
    }

    private static func dictsort(_ value: JinjaValue, _ args: JinjaCallArguments, _ r: JinjaRenderer) throws -> [JinjaValue] {
        let a = try args.bind(["case_sensitive", "by", "reverse"], "dictsort")
        try JinjaRenderer.failIfUndefined(value)
        guard case .dict(let d) = value else { throw JinjaFailure.type("'\(value.typeName)' object has no attribute 'items'") }
        let position: Int
        switch a[1] {
        case nil: position = 0
        case .string("key")?: position = 0
        case .string("value")?: position = 1
        default: throw JinjaFailure.type("You can only sort by either \"key\" or \"value\"")
        }
        let pairs = try (0..<d.count).map { try JinjaValue.list([d.keys[$0], d.values[$0]], kind: .tuple) }
        let caseSensitive = a[0]?.truthy ?? false
        let keys = try (0..<d.count).map { i -> JinjaValue in
            let v = position == 0 ? d.keys[i] : d.values[i]
            if !caseSensitive, case .string(let s) = v { return .string(PythonText.lower(s)) }
            return v
        }
        return try stableSort(pairs, keys: keys, reverse: a[2]?.truthy ?? false, r)
    }

    private static func map(_ value: JinjaValue, _ args: JinjaCallArguments, _ r: JinjaRenderer) throws -> [JinjaValue] {
        let items = try r.iterate(value)
        try r.step(items.count)
        if args.positional.isEmpty, let attribute = args.keyword.first(where: { $0.0 == "attribute" })?.1 {
            let fallback = args.keyword.first(where: { $0.0 == "default" })?.1
            if let extra = args.keyword.first(where: { $0.0 != "attribute" && $0.0 != "default" }) {
                throw JinjaFailure.type("Unexpected keyword argument '\(extra.0)'")
            }
            return try items.map { try attributeGetter(attribute, $0, r, default: fallback ?? .none) }
        }
        guard case .string(let filter)? = args.positional.first else { throw JinjaFailure.type("map requires a filter argument") }
        guard exists(filter) else { throw JinjaFailure.type("No filter named '\(filter)'.") }
        let rest = JinjaCallArguments(positional: Array(args.positional.dropFirst()), keyword: args.keyword)
        return try items.map { try apply(filter, $0, rest, r) }
    }

    private static func select(_ value: JinjaValue, _ args: JinjaCallArguments, _ r: JinjaRenderer, keep: Bool,
                               attribute: Bool) throws -> [JinjaValue] {
        var positional = args.positional
        var getter: JinjaValue?
        if attribute {
            guard !positional.isEmpty else { throw JinjaFailure.type("Missing parameter for attribute name") }
            getter = positional.removeFirst()
        }
        var test: String?
        if !positional.isEmpty {
            guard case .string(let t) = positional.removeFirst() else { throw JinjaFailure.type("the test name must be a string") }
            guard JinjaTests.exists(t) else { throw JinjaFailure.type("No test named '\(t)'.") }
            test = t
        }
        let rest = JinjaCallArguments(positional: positional, keyword: args.keyword)
        let items = try r.iterate(value)
        try r.step(items.count)
        return try items.filter { item in
            let v = try getter.map { try attributeGetter($0, item, r) } ?? item
            let passed = try test.map { try JinjaTests.apply($0, v, rest, r) } ?? v.truthy
            return passed == keep
        }
    }

    private static func unique(_ value: JinjaValue, _ args: JinjaCallArguments, _ r: JinjaRenderer) throws -> [JinjaValue] {
        let a = try args.bind(["case_sensitive", "attribute"], "unique")
        var seen = Set<JinjaKey>()
        var out: [JinjaValue] = []
        let items = try r.iterate(value)
        try r.step(items.count)
        for item in items {
            let key = try JinjaKey(try sortKey(item, a[1], caseSensitive: a[0]?.truthy ?? false, r))
            if seen.insert(key).inserted { out.append(item) }
        }
        return out
    }

    /// Jinja2's `int` filter: int(value) (a string in `base`), else int(float(value)), else the default.
    private static func toInt(_ value: JinjaValue, _ fallback: JinjaValue, _ base: JinjaValue?) throws -> JinjaValue {
        switch value {
        case .undefined: try JinjaRenderer.failIfUndefined(value)
        case .bool(let b): return .int(b ? 1 : 0)
        case .int: return value
        case .double(let d): return integral(d) ?? fallback
        case .string(let s):
            var radix = 10
            if let base { guard let (b, _) = JinjaCompare.number(base), let bb = b else { return fallback }; radix = bb }
            var text = try PythonText.replace(PythonText.strip(s, nil), "_", "")
            if radix == 16 || radix == 8 || radix == 2 {
                let prefix = radix == 16 ? "0x" : radix == 8 ? "0o" : "0b"
                if text.lowercased().hasPrefix(prefix) { text = String(text.dropFirst(2)) }
            }
            if (2...36).contains(radix), !text.isEmpty, let i = Int(text, radix: radix) { return .int(i) }
            if let d = toFloat(value) { return integral(d) ?? fallback }
        default: break
        }
        return fallback
    }

    /// A float truncated to an int (Python's `int(float)`), nil when it is not finite or out of range.
    private static func integral(_ d: Double) -> JinjaValue? {
        guard d.isFinite, abs(d) < 9.2e18 else { return nil }
        return .int(Int(d.rounded(.towardZero)))
    }

    /// Python's `float(value)` for the values the `float` filter accepts, nil otherwise.
    static func toFloat(_ value: JinjaValue) -> Double? {
        switch value {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .string(let s):
            let t = PythonText.strip(s, nil).lowercased()
            var body = Substring(t)
            if body.first == "+" || body.first == "-" { body = body.dropFirst() }
            if ["inf", "infinity", "nan"].contains(String(body)) { return Double((try? PythonText.replace(t, "infinity", "inf")) ?? t) }
            // Digits with '_' only between digits, an optional fraction and exponent: what float() reads.
            let allowed = body.allSatisfy { $0.isASCII && ($0.isNumber || $0 == "." || $0 == "e" || $0 == "+" || $0 == "-" || $0 == "_") }
            guard allowed, body.contains(where: { $0.isNumber }), !t.contains("__"), !t.hasPrefix("_"), !t.hasSuffix("_") else { return nil }
            return Double((try? PythonText.replace(t, "_", "")) ?? t)
        default:
            return nil
        }
    }

    /// Jinja2's `round(value, precision=0, method='common')`; 'common' is Python's round (half to even on the
    /// exact binary value, which glibc's correctly rounded printf reproduces).
    private static func round(_ value: JinjaValue, _ args: JinjaCallArguments) throws -> JinjaValue {
        let a = try args.bind(["precision", "method"], "round")
        var precision = 0
        if let p = a[0] {
            guard let (i, _) = JinjaCompare.number(p), let pi = i else { throw JinjaFailure.type("precision must be an integer") }
            precision = max(-400, min(pi, 400))
        }
        let method: String
        switch a[1] {
        case nil: method = "common"
        case .string(let m)? where ["common", "ceil", "floor"].contains(m): method = m
        default: throw JinjaFailure.type("method must be common, ceil or floor")
        }
        try JinjaRenderer.failIfUndefined(value)
        guard let (asInt, d) = JinjaCompare.number(value) else {
            throw JinjaFailure.type("type \(value.typeName) doesn't define __round__ method")
        }
        if method != "common" {
            let scale = pow(10.0, Double(precision))
            let r = method == "ceil" ? (d * scale).rounded(.up) : (d * scale).rounded(.down)
            return .double(r / scale)
        }
        if let i = asInt {
            guard precision < 0 else { return .int(i) }
            let scale = pow(10.0, Double(-precision))
            guard let rounded = Int(exactly: (Double(i) / scale).rounded(.toNearestOrEven) * scale) else {
                throw JinjaFailure.unsupported("arithmetic beyond 64-bit integers")
            }
            return .int(rounded)
        }
        guard d.isFinite else { return .double(d) }
        if precision < 0 {
            let scale = pow(10.0, Double(-precision))
            return .double((d / scale).rounded(.toNearestOrEven) * scale)
        }
        var buffer = [CChar](repeating: 0, count: 512)
        let n = withVaList([Int32(precision), d]) { vsnprintf(&buffer, buffer.count, "%.*f", $0) }
        guard n > 0 && Int(n) < buffer.count else { return .double(d) }
        return .double(strtod(buffer, nil))
    }

    /// Jinja2's `indent(width=4, first=False, blank=False)`: lines after the first indented, blank ones only with
    /// `blank`.
    private static func indent(_ value: JinjaValue, _ args: JinjaCallArguments) throws -> String {
        let a = try args.bind(["width", "first", "blank"], "indent")
        try JinjaRenderer.failIfUndefined(value)
        let indention: String
        switch a[0] {
        case nil: indention = "    "
        case .string(let s)?: indention = s
        case let w?:
            guard let (i, _) = JinjaCompare.number(w), let n = i else { throw JinjaFailure.type("width must be an int or a string") }
            indention = String(repeating: " ", count: max(0, min(n, 1 << 12)))
        }
        guard case .string(var s) = value else { throw JinjaFailure.type("can only concatenate \(value.typeName) and str") }
        s += "\n"
        let lines = PythonText.splitLines(s)
        try JinjaLimits.checkText(s.utf8.count + lines.count * indention.utf8.count)
        var out: String
        if a[2]?.truthy ?? false {
            out = lines.joined(separator: "\n" + indention)
        } else {
            out = lines.first ?? ""
            if lines.count > 1 { out += "\n" + lines.dropFirst().map { $0.isEmpty ? $0 : indention + $0 }.joined(separator: "\n") }
        }
        if a[1]?.truthy ?? false { out = indention + out }
        return out
    }
}
