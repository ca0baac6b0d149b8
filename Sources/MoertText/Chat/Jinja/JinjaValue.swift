// JinjaValue: the values a chat template computes with, modelled on the Python objects Jinja2 hands templates.

/// A value inside a template. Lists and dicts are immutable once built (transformers renders in Jinja2's
/// `ImmutableSandboxedEnvironment`, where `append`, `update` and the like are refused), so they are shared classes;
/// a `namespace()` is the one mutable object.
enum JinjaValue {
    /// Jinja2's default `Undefined`: renders empty, is falsy, iterates as empty; most other uses fail with `why`.
    case undefined(JinjaUndefined)
    /// Python's `None`.
    case none
    case bool(Bool)
    /// Python `int`, held in 64 bits; arithmetic that leaves them fails instead of growing.
    case int(Int)
    case double(Double)
    case string(String)
    /// A Python list, tuple, range, dict view or iterator (see `JinjaList.Kind`).
    case list(JinjaList)
    /// A Python dict: keys in insertion order.
    case dict(JinjaDict)
    case namespace(JinjaNamespace)
    /// A macro, a global function, a bound method or `loop.cycle`: anything a template can call.
    case callable(JinjaCallable)
    /// The `loop` variable of a `for` block.
    case loop(JinjaLoop)

    /// The empty string.
    static var emptyString: JinjaValue { .string("") }

    /// A list value (checks nesting against `JinjaLimits.maxNesting`).
    static func list(_ items: [JinjaValue], kind: JinjaList.Kind = .list) throws -> JinjaValue {
        .list(try JinjaList(items, kind: kind))
    }

    /// Python truthiness, as `bool(value)`.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let l): return l.kind == .iterator || !l.items.isEmpty
        case .dict(let d): return !d.keys.isEmpty
        case .namespace, .callable, .loop: return true
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true }; return false }
    var isNone: Bool { if case .none = self { return true }; return false }

    /// How deeply containers nest inside this value (0 for a scalar).
    var depth: Int {
        switch self {
        case .list(let l): return l.depth
        case .dict(let d): return d.depth
        default: return 0
        }
    }

    /// Python's name of the value's type, as error messages write it (`'dict object' has no attribute ...`).
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list(let l): return l.kind.typeName
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .callable(let c): return c.typeName
        case .loop: return "LoopContext"
        }
    }

    /// Jinja2's `object_type_repr`: "None" for None, otherwise "<type> object".
    var objectTypeRepr: String { isNone ? "None" : typeName + " object" }
}

/// Why a value is undefined, for the error raised when a template uses it in a way Jinja2's `Undefined` refuses.
struct JinjaUndefined {
    /// The message `UndefinedError` carries (`'x' is undefined`, `'dict object' has no attribute 'y'`).
    let message: String
    /// True when the sandbox produced it (an unsafe attribute): using it raises a security error, as in Jinja2.
    var unsafe = false

    /// An undefined variable.
    static func name(_ name: String) -> JinjaUndefined { JinjaUndefined(message: "'\(name)' is undefined") }

    /// A missing attribute or string key of `object`.
    static func attribute(_ name: String, of object: JinjaValue) -> JinjaUndefined {
        JinjaUndefined(message: "'\(object.objectTypeRepr)' has no attribute '\(name)'")
    }

    /// A missing element of `object` (a non-string key or an index).
    static func element(_ key: JinjaValue, of object: JinjaValue) -> JinjaUndefined {
        JinjaUndefined(message: "\(object.objectTypeRepr) has no element \((try? key.repr()) ?? "?")")
    }
}

/// An immutable sequence: a list, a tuple, or one of the Python objects that iterate like one but differ elsewhere.
final class JinjaList {
    /// What Python object the items stand for.
    enum Kind: Equatable {
        case list
        case tuple
        /// A generator or iterator (what `map`, `select`, `reverse`, `unique` and the `items` filter return): always
        /// true, no `len()`, no indexing, and its text is a memory address.
        case iterator
        /// `range(start, stop, step)`: a sequence written as `range(0, 3)`.
        case range(Int, Int, Int)
        /// `dict.keys()`, `.values()`, `.items()`: sized, not indexable, written `dict_keys([...])`.
        case view(String)

        var typeName: String {
            switch self {
            case .list: return "list"
            case .tuple: return "tuple"
            case .iterator: return "generator"
            case .range: return "range"
            case .view(let name): return name
            }
        }

        /// True for the kinds Python can index and slice.
        var isIndexable: Bool {
            switch self {
            case .list, .tuple, .range: return true
            case .iterator, .view: return false
            }
        }
    }

    let items: [JinjaValue]
    let kind: Kind
    /// 1 + the deepest element's depth.
    let depth: Int

    var isTuple: Bool { kind == .tuple }

    init(_ items: [JinjaValue], kind: Kind = .list) throws {
        var deepest = 0
        for item in items { deepest = max(deepest, item.depth) }
        guard deepest < JinjaLimits.maxNesting else { throw JinjaLimits.nestingError() }
        try JinjaLimits.checkList(items.count)
        self.items = items
        self.kind = kind
        depth = deepest + 1
    }
}

/// An immutable dict with Python's insertion order.
final class JinjaDict {
    /// Keys in insertion order, and the value of each.
    let keys: [JinjaValue]
    let values: [JinjaValue]
    private let index: [JinjaKey: Int]
    let depth: Int

    /// Builds the dict as Python's `dict(pairs)` does: a repeated key keeps its first position and its last value.
    /// - Throws: a type error for a key Python cannot hash (a list, a dict).
    init(_ pairs: [(JinjaValue, JinjaValue)]) throws {
        var keys: [JinjaValue] = [], values: [JinjaValue] = []
        var index: [JinjaKey: Int] = [:]
        var deepest = 0
        keys.reserveCapacity(pairs.count)
        values.reserveCapacity(pairs.count)
        for (k, v) in pairs {
            let hk = try JinjaKey(k)
            deepest = max(deepest, v.depth)
            if let i = index[hk] {
                values[i] = v
            } else {
                index[hk] = keys.count
                keys.append(k)
                values.append(v)
            }
        }
        guard deepest < JinjaLimits.maxNesting else { throw JinjaLimits.nestingError() }
        self.keys = keys
        self.values = values
        self.index = index
        depth = deepest + 1
    }

    /// The value stored under `key`, or nil (also for an unhashable key, which no dict can hold).
    func value(for key: JinjaValue) -> JinjaValue? {
        guard let hk = try? JinjaKey(key), let i = index[hk] else { return nil }
        return values[i]
    }

    /// The value under a string key.
    subscript(key: String) -> JinjaValue? {
        guard let i = index[.string(key)] else { return nil }
        return values[i]
    }

    var count: Int { keys.count }
}

/// A dict key as Python hashes it: equal numbers are one key (`1`, `1.0` and `True` collide, as in Python).
enum JinjaKey: Hashable {
    case none
    case number(Double)
    case integer(Int)
    case string(String)
    case tuple([JinjaKey])

    init(_ value: JinjaValue) throws {
        switch value {
        case .none: self = .none
        case .bool(let b): self = .integer(b ? 1 : 0)
        case .int(let i): self = .integer(i)
        case .double(let d):
            if d.rounded() == d, abs(d) < 9.0e18 { self = .integer(Int(d)) } else { self = .number(d) }
        case .string(let s): self = .string(s)
        case .list(let l) where l.isTuple: self = .tuple(try l.items.map { try JinjaKey($0) })
        case .list(let l) where l.kind != .list:
            throw JinjaFailure.unsupported("a \(l.kind.typeName) as a dict key")
        default: throw JinjaFailure.type("unhashable type: '\(value.typeName)'")
        }
    }
}

/// The object `namespace(...)` makes: the one place a template can keep state across loop iterations.
final class JinjaNamespace {
    /// Attribute names in the order they were first set, with their values.
    var names: [String] = []
    var values: [String: JinjaValue] = [:]

    /// Sets an attribute.
    func set(_ name: String, _ value: JinjaValue) {
        if values.updateValue(value, forKey: name) == nil { names.append(name) }
    }
}
