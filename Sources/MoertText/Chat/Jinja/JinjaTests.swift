// JinjaTests: Jinja2's built-in tests (`x is defined`, `x is string`; jinja2/tests.py).

enum JinjaTests {
    private static let names: Set<String> = [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "filter", "float",
        "ge", "greaterthan", "gt", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none",
        "number", "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper",
        "==", "!=", "<", "<=", ">", ">=",
    ]

    static func exists(_ name: String) -> Bool { names.contains(name) }

    static func apply(_ name: String, _ value: JinjaValue, _ args: JinjaCallArguments, _ r: JinjaRenderer) throws -> Bool {
        /// The one argument of a comparison test.
        func other() throws -> JinjaValue {
            guard let v = try args.bind(["other"], name)[0] else { throw JinjaFailure.type("test '\(name)' needs an argument") }
            return v
        }
        switch name {
        case "defined": try args.none(name); return !value.isUndefined
        case "undefined": try args.none(name); return value.isUndefined
        case "none": try args.none(name); return value.isNone
        case "boolean": try args.none(name); if case .bool = value { return true }; return false
        case "true": try args.none(name); if case .bool(true) = value { return true }; return false
        case "false": try args.none(name); if case .bool(false) = value { return true }; return false
        case "integer": try args.none(name); if case .int = value { return true }; return false
        case "float": try args.none(name); if case .double = value { return true }; return false
        case "number": try args.none(name); return JinjaCompare.number(value) != nil
        case "string": try args.none(name); if case .string = value { return true }; return false
        case "mapping": try args.none(name); if case .dict = value { return true }; return false
        case "iterable":
            try args.none(name)
            switch value {
            case .undefined, .string, .list, .dict, .loop: return true
            default: return false
            }
        case "sequence":
            // Python: len() and __getitem__ both exist (Undefined has both).
            try args.none(name)
            switch value {
            case .undefined, .string, .dict: return true
            case .list(let l): return l.kind.isIndexable
            default: return false
            }
        case "callable":
            try args.none(name)
            switch value {
            case .callable, .undefined, .loop: return true
            default: return false
            }
        case "escaped": try args.none(name); return false
        case "lower", "upper":
            try args.none(name)
            let s = try value.str()
            let scalars = s.unicodeScalars
            guard scalars.contains(where: { $0.properties.isCased }) else { return false }
            if name == "lower" { return !scalars.contains(where: { $0.properties.isUppercase || $0.properties.generalCategory == .titlecaseLetter }) }
            return !scalars.contains(where: { $0.properties.isLowercase || $0.properties.generalCategory == .titlecaseLetter })
        case "odd", "even":
            try args.none(name)
            let remainder = try JinjaArithmetic.binary("%", value, .int(2))
            return JinjaCompare.equal(remainder, .int(name == "odd" ? 1 : 0))
        case "divisibleby":
            let n = try args.bind(["num"], name)[0] ?? .undefined(.name("num"))
            return JinjaCompare.equal(try JinjaArithmetic.binary("%", value, n), .int(0))
        case "sameas":
            let o = try other()
            // Python's `is`: containers by identity; equal scalars of one type are one object in CPython (small
            // ints and the constants of one template are shared).
            switch (value, o) {
            case (.none, .none), (.undefined, .undefined): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.int(let a), .int(let b)): return a == b
            case (.double(let a), .double(let b)): return a == b
            case (.string(let a), .string(let b)): return PythonText.equal(a, b)
            case (.list(let a), .list(let b)): return a === b
            case (.dict(let a), .dict(let b)): return a === b
            case (.namespace(let a), .namespace(let b)): return a === b
            default: return false
            }
        case "in":
            guard let seq = try args.bind(["seq"], name)[0] else { throw JinjaFailure.type("test 'in' needs an argument") }
            return try JinjaCompare.contains(seq, value)
        case "eq", "equalto", "==": return JinjaCompare.equal(value, try other())
        case "ne", "!=": return !JinjaCompare.equal(value, try other())
        case "lt", "lessthan", "<": return try JinjaCompare.compare("<", value, try other())
        case "le", "<=": return try JinjaCompare.compare("<=", value, try other())
        case "gt", "greaterthan", ">": return try JinjaCompare.compare(">", value, try other())
        case "ge", ">=": return try JinjaCompare.compare(">=", value, try other())
        case "filter", "test":
            try args.none(name)
            guard case .string(let n) = value else { return false }
            return name == "filter" ? JinjaFilters.exists(n) : exists(n)
        default:
            throw JinjaFailure.unsupported("the test '\(name)'")
        }
    }
}
