// JinjaMethods: the Python methods of str, dict and list that templates call (`content.split('</think>')`,
// `message.get('tool_calls')`), as bound methods; the sandbox refuses the ones that modify an object.

enum JinjaMethods {
    /// Methods of each type, those implemented here and those refused.
    private static let stringMethods: Set<String> = [
        "capitalize", "casefold", "center", "count", "endswith", "find", "format", "index", "isalnum", "isalpha",
        "isascii", "isdigit", "islower", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip",
        "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit",
        "rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper", "zfill",
    ]
    private static let otherStringMethods: Set<String> = [
        "encode", "expandtabs", "format_map", "isdecimal", "isidentifier", "isnumeric", "isprintable", "maketrans",
        "translate",
    ]
    private static let dictMethods: Set<String> = ["copy", "get", "items", "keys", "values"]
    /// jinja2/sandbox.py `_mutable_spec`: what ImmutableSandboxedEnvironment refuses.
    private static let dictMutators: Set<String> = ["clear", "pop", "popitem", "setdefault", "update"]
    private static let listMethods: Set<String> = ["copy", "count", "index"]
    private static let listMutators: Set<String> = ["append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"]

    /// `object.name` when it names a method: a bound method, or an undefined value that raises the sandbox's
    /// SecurityError when used (a method that would modify the object). Nil when the type has no such method.
    static func lookup(_ object: JinjaValue, _ name: String) -> JinjaValue? {
        let known: Bool, mutator: Bool
        switch object {
        case .string:
            known = stringMethods.contains(name) || otherStringMethods.contains(name)
            mutator = false
        case .dict:
            known = dictMethods.contains(name) || name == "fromkeys"
            mutator = dictMutators.contains(name)
        case .list(let l) where l.kind == .list:
            known = listMethods.contains(name)
            mutator = listMutators.contains(name)
        case .list(let l) where l.kind == .tuple:
            known = name == "count" || name == "index"
            mutator = false
        default:
            return nil
        }
        if mutator {
            return .undefined(JinjaUndefined(message: "access to attribute '\(name)' of '\(object.typeName)' object is unsafe.",
                                             unsafe: true))
        }
        return known ? .callable(.method(object, name)) : nil
    }

    static func call(_ object: JinjaValue, _ name: String, _ args: JinjaCallArguments, _ renderer: JinjaRenderer) throws -> JinjaValue {
        switch object {
        case .string(let s): return try string(s, name, args, renderer)
        case .dict(let d): return try dict(d, name, args)
        case .list(let l): return try list(l, name, args)
        case .loop(let loop): return try loopMethod(loop, name, args)
        default: throw JinjaFailure.unsupported("the method '\(name)' of '\(object.typeName)'")
        }
    }

    // MARK: str

    /// A string argument, or a type error naming the method.
    private static func text(_ v: JinjaValue?, _ method: String) throws -> String? {
        guard let v else { return nil }
        switch v {
        case .string(let s): return s
        case .none: return nil
        default:
            try JinjaRenderer.failIfUndefined(v)
            throw JinjaFailure.type("\(method)() argument must be str or None, not \(v.typeName)")
        }
    }

    private static func integer(_ v: JinjaValue?, _ otherwise: Int) throws -> Int {
        guard let v else { return otherwise }
        guard let (i, _) = JinjaCompare.number(v), let i else {
            throw JinjaFailure.type("'\(v.typeName)' object cannot be interpreted as an integer")
        }
        return i
    }

    private static func string(_ s: String, _ name: String, _ args: JinjaCallArguments, _ renderer: JinjaRenderer) throws -> JinjaValue {
        let method = "str." + name
        switch name {
        case "strip", "lstrip", "rstrip":
            let chars = try text(try args.bind(["chars"], method)[0], method)
            return .string(PythonText.strip(s, chars, left: name != "rstrip", right: name != "lstrip"))
        case "split", "rsplit":
            let a = try args.bind(["sep", "maxsplit"], method)
            let parts = try PythonText.split(s, try text(a[0], method), maxSplit: try integer(a[1], -1), fromRight: name == "rsplit")
            return try .list(parts.map { .string($0) })
        case "splitlines":
            if try args.bind(["keepends"], method)[0]?.truthy ?? false { throw JinjaFailure.unsupported("str.splitlines(keepends=True)") }
            return try .list(PythonText.splitLines(s).map { .string($0) })
        case "startswith", "endswith":
            let a = try args.bind(["prefix", "start", "end"], method)
            guard a[1] == nil && a[2] == nil else { throw JinjaFailure.unsupported("\(method) with start or end") }
            let candidates: [JinjaValue]
            switch a[0] {
            case .string?: candidates = [a[0]!]
            case .list(let l)? where l.isTuple: candidates = l.items
            default:
                throw JinjaFailure.type("\(name) first arg must be str or a tuple of str, not \(a[0]?.typeName ?? "nothing")")
            }
            for c in candidates {
                guard case .string(let p) = c else { throw JinjaFailure.type("tuple for \(name) must only contain str") }
                if name == "startswith" ? PythonText.hasPrefix(s, p) : PythonText.hasSuffix(s, p) { return .bool(true) }
            }
            return .bool(false)
        case "upper": try args.none(method); return .string(PythonText.upper(s))
        case "lower", "casefold": try args.none(method); return .string(PythonText.lower(s))
        case "title": try args.none(method); return .string(PythonText.title(s))
        case "capitalize": try args.none(method); return .string(PythonText.capitalize(s))
        case "swapcase":
            try args.none(method)
            return .string(PythonText.string(s.unicodeScalars.flatMap { c -> [Unicode.Scalar] in
                let p = c.properties
                let mapped = p.isUppercase ? p.lowercaseMapping : p.isLowercase ? p.uppercaseMapping : String(c)
                return Array(mapped.unicodeScalars)
            }))
        case "replace":
            let a = try args.bind(["old", "new", "count"], method)
            guard let old = try text(a[0], method), let new = try text(a[1], method) else {
                throw JinjaFailure.type("replace expected 2 arguments")
            }
            return .string(try PythonText.replace(s, old, new, count: try integer(a[2], -1)))
        case "find", "rfind", "index", "rindex", "count":
            let a = try args.bind(["sub", "start", "end"], method)
            guard a[1] == nil && a[2] == nil else { throw JinjaFailure.unsupported("\(method) with start or end") }
            guard let sub = try text(a[0], method) else { throw JinjaFailure.type("\(name)() argument must be str") }
            if name == "count" { return .int(PythonText.count(sub, in: s)) }
            let at = PythonText.codePointIndex(of: sub, in: s, last: name.hasPrefix("r"))
            if at < 0 && name.hasSuffix("index") { throw JinjaFailure.type("substring not found") }
            return .int(at)
        case "join":
            guard let iterable = try args.bind(["iterable"], method)[0] else { throw JinjaFailure.type("join() takes exactly one argument") }
            var parts: [String] = []
            for (i, item) in try JinjaRenderer.items(iterable).enumerated() {
                guard case .string(let p) = item else {
                    throw JinjaFailure.type("sequence item \(i): expected str instance, \(item.typeName) found")
                }
                parts.append(p)
            }
            try JinjaLimits.checkJoined(parts, s)
            return .string(parts.joined(separator: s))
        case "removeprefix", "removesuffix":
            guard let affix = try text(try args.bind(["affix"], method)[0], method) else { throw JinjaFailure.type("\(name)() argument must be str") }
            if name == "removeprefix" {
                return .string(PythonText.hasPrefix(s, affix) ? PythonText.string(s.utf8.dropFirst(affix.utf8.count)) : s)
            }
            return .string(PythonText.hasSuffix(s, affix) ? PythonText.string(s.utf8.dropLast(affix.utf8.count)) : s)
        case "partition", "rpartition":
            guard let sep = try text(try args.bind(["sep"], method)[0], method) else { throw JinjaFailure.type("must be str") }
            let parts = try PythonText.split(s, sep, maxSplit: 1, fromRight: name == "rpartition")
            if parts.count == 2 { return try .list([.string(parts[0]), .string(sep), .string(parts[1])], kind: .tuple) }
            return try .list(name == "partition" ? [.string(s), .emptyString, .emptyString] : [.emptyString, .emptyString, .string(s)],
                             kind: .tuple)
        case "center", "ljust", "rjust", "zfill":
            let a = try args.bind(name == "zfill" ? ["width"] : ["width", "fillchar"], method)
            let width = try integer(a[0], 0)
            let fill = try text(a.count > 1 ? a[1] : nil, method) ?? (name == "zfill" ? "0" : " ")
            return .string(try pad(s, width, fill, name))
        case "isdigit", "isalpha", "isalnum", "isspace", "isascii", "isupper", "islower", "istitle":
            try args.none(method)
            return .bool(classify(s, name))
        case "format":
            return .string(try JinjaFormat.format(s, args, renderer))
        default:
            throw JinjaFailure.unsupported("the method '\(name)' of 'str'")
        }
    }

    /// str.center, ljust, rjust and zfill (zfill keeps a sign in front).
    private static func pad(_ s: String, _ width: Int, _ fill: String, _ how: String) throws -> String {
        let n = PythonText.length(s)
        guard width > n else { return s }
        guard fill.unicodeScalars.count == 1 else { throw JinjaFailure.type("The fill character must be exactly one character long") }
        try JinjaLimits.checkText(width)
        try JinjaLimits.checkText(width * fill.utf8.count)
        let total = width - n
        switch how {
        case "ljust": return s + String(repeating: fill, count: total)
        case "rjust": return String(repeating: fill, count: total) + s
        case "zfill":
            if let first = s.unicodeScalars.first, first == "+" || first == "-" {
                return String(first) + String(repeating: "0", count: total) + String(s.unicodeScalars.dropFirst())
            }
            return String(repeating: "0", count: total) + s
        default:
            // CPython's centering puts the odd extra fill on the right unless both the text and width are odd.
            let left = total / 2 + (total & width & 1)
            return String(repeating: fill, count: left) + s + String(repeating: fill, count: total - left)
        }
    }

    private static func classify(_ s: String, _ name: String) -> Bool {
        let scalars = Array(s.unicodeScalars)
        switch name {
        case "isascii": return scalars.allSatisfy { $0.isASCII }
        case "isupper", "islower":
            let cased = scalars.filter { $0.properties.isCased }
            guard !cased.isEmpty else { return false }
            return name == "isupper" ? !scalars.contains { $0.properties.isLowercase } : !scalars.contains { $0.properties.isUppercase }
        case "istitle":
            return !scalars.isEmpty && PythonText.equal(PythonText.title(s), s) && scalars.contains { $0.properties.isCased }
        default:
            guard !scalars.isEmpty else { return false }
            return scalars.allSatisfy { c in
                switch name {
                case "isdigit": return c.properties.numericType == .digit || c.properties.numericType == .decimal
                case "isalpha": return c.properties.isAlphabetic && c.properties.generalCategory.isLetter
                case "isalnum": return c.properties.generalCategory.isLetter || c.properties.numericType != nil
                default: return PythonText.isSpace(c)
                }
            }
        }
    }

    // MARK: dict, list, loop

    private static func dict(_ d: JinjaDict, _ name: String, _ args: JinjaCallArguments) throws -> JinjaValue {
        let method = "dict." + name
        switch name {
        case "get":
            let a = try args.bind(["key", "default"], method)
            guard let key = a[0] else { throw JinjaFailure.type("get expected at least 1 argument, got 0") }
            _ = try JinjaKey(key)
            return d.value(for: key) ?? a[1] ?? .none
        case "items":
            try args.none(method)
            return try .list((0..<d.count).map { try .list([d.keys[$0], d.values[$0]], kind: .tuple) }, kind: .view("dict_items"))
        case "keys": try args.none(method); return try .list(d.keys, kind: .view("dict_keys"))
        case "values": try args.none(method); return try .list(d.values, kind: .view("dict_values"))
        case "copy": try args.none(method); return .dict(d)
        default: throw JinjaFailure.unsupported("the method '\(name)' of 'dict'")
        }
    }

    private static func list(_ l: JinjaList, _ name: String, _ args: JinjaCallArguments) throws -> JinjaValue {
        let method = l.kind.typeName + "." + name
        switch name {
        case "count":
            guard let x = try args.bind(["value"], method)[0] else { throw JinjaFailure.type("count() takes exactly one argument") }
            return .int(l.items.filter { JinjaCompare.equal($0, x) }.count)
        case "index":
            guard let x = try args.bind(["value"], method)[0] else { throw JinjaFailure.type("index expected at least 1 argument") }
            guard let i = l.items.firstIndex(where: { JinjaCompare.equal($0, x) }) else {
                throw JinjaFailure.type("\((try? x.repr()) ?? "value") is not in \(l.kind.typeName)")
            }
            return .int(i)
        case "copy": try args.none(method); return .list(l)
        default: throw JinjaFailure.unsupported("the method '\(name)' of '\(l.kind.typeName)'")
        }
    }

    /// `loop.cycle(a, b, ...)` and `loop.changed(value)`.
    private static func loopMethod(_ loop: JinjaLoop, _ name: String, _ args: JinjaCallArguments) throws -> JinjaValue {
        if name == "cycle" {
            guard !args.positional.isEmpty else { throw JinjaFailure.type("no items for cycling given") }
            return args.positional[loop.index0 % args.positional.count]
        }
        let values = args.positional
        if let last = loop.lastChanged, last.count == values.count, zip(last, values).allSatisfy({ JinjaCompare.equal($0, $1) }) {
            return .bool(false)
        }
        loop.lastChanged = values
        return .bool(true)
    }
}

private extension Unicode.GeneralCategory {
    var isLetter: Bool {
        switch self {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }
}
