// JinjaOperators: Python's comparison, membership and arithmetic on template values.

import Glibc

/// Python's `==`, `<` and `in` as Jinja2 templates see them.
enum JinjaCompare {
    /// The number a bool, int or float stands for (Python's bool is an int).
    static func number(_ v: JinjaValue) -> (Int?, Double)? {
        switch v {
        case .bool(let b): return (b ? 1 : 0, b ? 1 : 0)
        case .int(let i): return (i, Double(i))
        case .double(let d): return (nil, d)
        default: return nil
        }
    }

    /// Python's `a == b`: numbers across int, float and bool; strings by code point; lists with lists and tuples with
    /// tuples item by item; dicts by their pairs; Jinja2's Undefined equals any Undefined.
    static func equal(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let x), .string(let y)): return PythonText.equal(x, y)
        case (.list(let x), .list(let y)):
            guard x.kind == y.kind || (x.kind.isRange && y.kind.isRange), x.items.count == y.items.count else { return false }
            if x.kind == .iterator { return x === y }
            return zip(x.items, y.items).allSatisfy { equal($0, $1) }
        case (.dict(let x), .dict(let y)):
            guard x.count == y.count else { return false }
            for i in 0..<x.count {
                guard let other = y.value(for: x.keys[i]), equal(x.values[i], other) else { return false }
            }
            return true
        case (.namespace(let x), .namespace(let y)): return x === y
        case (.loop(let x), .loop(let y)): return x === y
        default:
            if let (xi, xd) = number(a), let (yi, yd) = number(b) {
                if let xi, let yi { return xi == yi }
                return xd == yd
            }
            return false
        }
    }

    /// Python's `a < b`.
    /// - Throws: a type error for kinds Python does not order, an undefined error for Undefined.
    static func less(_ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)): return PythonText.less(x, y)
        case (.list(let x), .list(let y)) where x.kind == y.kind && (x.kind == .list || x.kind == .tuple):
            for (p, q) in zip(x.items, y.items) where !equal(p, q) { return try less(p, q) }
            return x.items.count < y.items.count
        default:
            try JinjaRenderer.failIfUndefined(a)
            try JinjaRenderer.failIfUndefined(b)
            if let (xi, xd) = number(a), let (yi, yd) = number(b) {
                if let xi, let yi { return xi < yi }
                return xd < yd
            }
            throw JinjaFailure.type("'<' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
        }
    }

    /// One comparison operator of a chain (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `notin`).
    static func compare(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
        switch op {
        case "==": return equal(a, b)
        case "!=": return !equal(a, b)
        case "<": return try less(a, b)
        case ">": return try less(b, a)
        case "<=": return try less(a, b) || equal(a, b)
        case ">=": return try less(b, a) || equal(a, b)
        case "in": return try contains(b, a)
        case "notin": return try !contains(b, a)
        default: throw JinjaFailure.unsupported("the operator '\(op)'")
        }
    }

    /// Python's `needle in container`.
    static func contains(_ container: JinjaValue, _ needle: JinjaValue) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let n) = needle else {
                try JinjaRenderer.failIfUndefined(needle)
                throw JinjaFailure.type("'in <string>' requires string as left operand, not \(needle.typeName)")
            }
            return PythonText.contains(s, n)
        case .list(let l):
            return l.items.contains { equal($0, needle) }
        case .dict(let d):
            _ = try JinjaKey(needle)
            return d.value(for: needle) != nil
        case .undefined:
            // Jinja2's Undefined iterates as empty.
            return false
        case .loop(let loop):
            return loop.items.contains { equal($0, needle) }
        default:
            throw JinjaFailure.type("argument of type '\(container.typeName)' is not iterable")
        }
    }
}

extension JinjaList.Kind {
    var isRange: Bool { if case .range = self { return true }; return false }
}

/// Python's arithmetic on template values.
enum JinjaArithmetic {
    static func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        try JinjaRenderer.failIfUndefined(a)
        try JinjaRenderer.failIfUndefined(b)
        if let (ai, ad) = JinjaCompare.number(a), let (bi, bd) = JinjaCompare.number(b) {
            if let ai, let bi { return try integer(op, ai, bi) }
            return try float(op, ad, bd)
        }
        switch (op, a, b) {
        case ("+", .string(let x), .string(let y)):
            try JinjaLimits.checkText(x.utf8.count + y.utf8.count)
            return .string(x + y)
        case ("+", .list(let x), .list(let y)) where x.kind == y.kind && (x.kind == .list || x.kind == .tuple):
            return .list(try JinjaList(x.items + y.items, kind: x.kind))
        case ("*", .string, _), ("*", _, .string), ("*", .list, _), ("*", _, .list):
            return try repeatSequence(a, b)
        case ("+", .string, _):
            throw JinjaFailure.type("can only concatenate str (not \"\(b.typeName)\") to str")
        case ("+", .list(let x), _) where x.kind == .list:
            throw JinjaFailure.type("can only concatenate list (not \"\(b.typeName)\") to list")
        case ("%", .string, _):
            throw JinjaFailure.unsupported("printf-style string formatting ('%')")
        default:
            let symbol = op == "**" ? "** or pow()" : op
            throw JinjaFailure.type("unsupported operand type(s) for \(symbol): '\(a.typeName)' and '\(b.typeName)'")
        }
    }

    /// `"ab" * 3`, `[1] * 2` (a count below one gives an empty sequence).
    private static func repeatSequence(_ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        let (sequence, times): (JinjaValue, JinjaValue) = JinjaCompare.number(a) == nil ? (a, b) : (b, a)
        guard let (n, _) = JinjaCompare.number(times), let count = n else {
            throw JinjaFailure.type("can't multiply sequence by non-int of type '\(times.typeName)'")
        }
        let k = max(0, count)
        switch sequence {
        case .string(let s):
            let (bytes, overflow) = s.utf8.count.multipliedReportingOverflow(by: k)
            guard !overflow else { throw JinjaFailure.limit("text longer than \(JinjaLimits.maxTextBytes) bytes") }
            try JinjaLimits.checkText(bytes)
            return .string(String(repeating: s, count: k))
        case .list(let l) where l.kind == .list || l.kind == .tuple:
            let (total, overflow) = l.items.count.multipliedReportingOverflow(by: k)
            guard !overflow else { throw JinjaFailure.limit("list longer than \(JinjaLimits.maxListCount) items") }
            try JinjaLimits.checkList(total)
            var items: [JinjaValue] = []
            items.reserveCapacity(total)
            for _ in 0..<k { items += l.items }
            return .list(try JinjaList(items, kind: l.kind))
        default:
            throw JinjaFailure.type("unsupported operand type(s) for *: '\(sequence.typeName)' and '\(times.typeName)'")
        }
    }

    private static func overflow() -> JinjaFailure {
        .unsupported("arithmetic beyond 64-bit integers")
    }

    static func integer(_ op: String, _ a: Int, _ b: Int) throws -> JinjaValue {
        switch op {
        case "+":
            let (r, o) = a.addingReportingOverflow(b)
            guard !o else { throw overflow() }
            return .int(r)
        case "-":
            let (r, o) = a.subtractingReportingOverflow(b)
            guard !o else { throw overflow() }
            return .int(r)
        case "*":
            let (r, o) = a.multipliedReportingOverflow(by: b)
            guard !o else { throw overflow() }
            return .int(r)
        case "/":
            guard b != 0 else { throw JinjaFailure.type("division by zero") }
            return .double(Double(a) / Double(b))
        case "//", "%":
            guard b != 0 else { throw JinjaFailure.type("integer division or modulo by zero") }
            guard !(a == Int.min && b == -1) else { throw overflow() }
            // Python rounds the quotient down, so the remainder takes the divisor's sign.
            var q = a / b, r = a % b
            if r != 0 && (r < 0) != (b < 0) { q -= 1; r += b }
            return .int(op == "//" ? q : r)
        case "**":
            if b < 0 {
                guard a != 0 else { throw JinjaFailure.type("0.0 cannot be raised to a negative power") }
                return .double(pow(Double(a), Double(b)))
            }
            var result = 1, base = a, e = b
            while e > 0 {
                if e & 1 == 1 {
                    let (r, o) = result.multipliedReportingOverflow(by: base)
                    guard !o else { throw overflow() }
                    result = r
                }
                e >>= 1
                if e > 0 {
                    let (sq, o) = base.multipliedReportingOverflow(by: base)
                    guard !o else { throw overflow() }
                    base = sq
                }
            }
            return .int(result)
        default:
            throw JinjaFailure.unsupported("the operator '\(op)'")
        }
    }

    static func float(_ op: String, _ a: Double, _ b: Double) throws -> JinjaValue {
        switch op {
        case "+": return .double(a + b)
        case "-": return .double(a - b)
        case "*": return .double(a * b)
        case "/":
            guard b != 0 else { throw JinjaFailure.type("float division by zero") }
            return .double(a / b)
        case "//":
            guard b != 0 else { throw JinjaFailure.type("float floor division by zero") }
            return .double((a / b).rounded(.down))
        case "%":
            guard b != 0 else { throw JinjaFailure.type("float modulo") }
            var r = fmod(a, b)
            if r != 0 && (r < 0) != (b < 0) { r += b }
            return .double(r)
        case "**":
            if a == 0 && b < 0 { throw JinjaFailure.type("0.0 cannot be raised to a negative power") }
            return .double(pow(a, b))
        default:
            throw JinjaFailure.unsupported("the operator '\(op)'")
        }
    }

    /// Unary minus and plus.
    static func negate(_ v: JinjaValue, plus: Bool = false) throws -> JinjaValue {
        try JinjaRenderer.failIfUndefined(v)
        switch v {
        case .bool(let b): return .int(plus || !b ? (b ? 1 : 0) : -1)
        case .int(let i):
            if plus { return v }
            guard i != Int.min else { throw overflow() }
            return .int(-i)
        case .double(let d): return .double(plus ? d : -d)
        default: throw JinjaFailure.type("bad operand type for unary \(plus ? "+" : "-"): '\(v.typeName)'")
        }
    }
}
