// JinjaRenderer+Expressions: evaluating expressions, with the sandbox's attribute and item lookup and calls.

extension JinjaRenderer {
    func evaluate(_ e: JinjaExpr, _ scope: JinjaScope) throws -> JinjaValue {
        try stack.check()
        switch e {
        case .constant(let v):
            return v
        case .name(let n):
            return scope.lookup(n) ?? JinjaGlobals.value(n) ?? .undefined(.name(n))
        case .list(let items, let tuple):
            return try .list(items.map { try evaluate($0, scope) }, kind: tuple ? .tuple : .list)
        case .dict(let pairs):
            return .dict(try JinjaDict(pairs.map { (try evaluate($0.0, scope), try evaluate($0.1, scope)) }))
        case .attribute(let object, let name):
            return try attribute(try evaluate(object, scope), name)
        case .item(let object, let key):
            return try item(try evaluate(object, scope), try evaluate(key, scope))
        case .slice(let object, let start, let stop, let step):
            let o = try evaluate(object, scope)
            try JinjaRenderer.failIfUndefined(o)
            return try JinjaSlice.apply(o, try start.map { try evaluate($0, scope) }, try stop.map { try evaluate($0, scope) },
                                        try step.map { try evaluate($0, scope) })
        case .call(let callee, let args):
            return try call(try evaluate(callee, scope), try evaluateArguments(args, scope))
        case .filter(let value, let name, let args):
            return try JinjaFilters.apply(name, try evaluate(value, scope), try evaluateArguments(args, scope), self)
        case .test(let value, let name, let args, let negated):
            let result = try JinjaTests.apply(name, try evaluate(value, scope), try evaluateArguments(args, scope), self)
            return .bool(result != negated)
        case .negative(let x):
            return try JinjaArithmetic.negate(try evaluate(x, scope))
        case .positive(let x):
            return try JinjaArithmetic.negate(try evaluate(x, scope), plus: true)
        case .not(let x):
            return .bool(!(try evaluate(x, scope).truthy))
        case .and(let a, let b):
            let left = try evaluate(a, scope)
            return left.truthy ? try evaluate(b, scope) : left
        case .or(let a, let b):
            let left = try evaluate(a, scope)
            return left.truthy ? left : try evaluate(b, scope)
        case .binary(let op, let a, let b):
            let left = try evaluate(a, scope), right = try evaluate(b, scope)
            if op == "+", case .string(let l) = left, case .string(let r) = right, Self.isMarkup(a) || Self.isMarkup(b) {
                // markupsafe's Markup.__add__/__radd__ escape the plain string they are added to.
                let text = (Self.isMarkup(a) ? l : JinjaFilters.escapeHTML(l)) + (Self.isMarkup(b) ? r : JinjaFilters.escapeHTML(r))
                try JinjaLimits.checkText(text.utf8.count)
                return .string(text)
            }
            return try JinjaArithmetic.binary(op, left, right)
        case .concat(let parts):
            var s = ""
            for p in parts {
                s += try evaluate(p, scope).str()
                try JinjaLimits.checkText(s.utf8.count)
            }
            return .string(s)
        case .compare(let first, let ops):
            var left = try evaluate(first, scope)
            for (op, e) in ops {
                let right = try evaluate(e, scope)
                guard try JinjaCompare.compare(op, left, right) else { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .unknown(let kind, let name, let value, _):
            _ = try evaluate(value, scope)
            throw JinjaFailure.type("No \(kind) named '\(name)' found.")
        case .conditional(let test, let then, let otherwise):
            if try evaluate(test, scope).truthy { return try evaluate(then, scope) }
            if let otherwise { return try evaluate(otherwise, scope) }
            return .undefined(JinjaUndefined(message: "the inline if-expression evaluated to false and no else section was defined."))
        }
    }

    /// Whether an expression yields markupsafe's `Markup` (the `safe` and `escape` filters, and `+` on one), as far
    /// as its form shows: Markup kept in a variable is a plain string here.
    static func isMarkup(_ e: JinjaExpr) -> Bool {
        switch e {
        case .filter(_, let name, _): return ["safe", "e", "escape", "forceescape"].contains(name)
        case .binary("+", let a, let b): return isMarkup(a) || isMarkup(b)
        default: return false
        }
    }

    func evaluateArguments(_ args: JinjaArguments, _ scope: JinjaScope) throws -> JinjaCallArguments {
        JinjaCallArguments(positional: try args.positional.map { try evaluate($0, scope) },
                           keyword: try args.keyword.map { ($0.0, try evaluate($0.1, scope)) })
    }

    // MARK: Lookup

    /// `object.name`: the sandbox's `getattr` (jinja2/sandbox.py): a Python attribute (a method) first, then the
    /// item of that name; attributes that could modify an object or reach Python internals are refused.
    func attribute(_ object: JinjaValue, _ name: String) throws -> JinjaValue {
        switch object {
        case .undefined:
            try JinjaRenderer.failIfUndefined(object)
            return object
        case .namespace(let ns):
            return ns.values[name] ?? .undefined(.attribute(name, of: object))
        case .loop(let loop):
            return loop.attribute(name) ?? .undefined(.attribute(name, of: object))
        case .bool, .int, .double:
            // The number attributes of Python's int and float.
            switch name {
            case "real": return JinjaCompare.number(object).map { $0.0.map { .int($0) } ?? .double($0.1) } ?? object
            case "imag": if case .double = object { return .double(0) } else { return .int(0) }
            default: return .undefined(.attribute(name, of: object))
            }
        case .dict(let d):
            if let method = JinjaMethods.lookup(object, name) { return method }
            return d[name] ?? .undefined(.attribute(name, of: object))
        default:
            return JinjaMethods.lookup(object, name) ?? .undefined(.attribute(name, of: object))
        }
    }

    /// `object[key]`: the sandbox's `getitem`: the item first, then (for a string key) the attribute.
    func item(_ object: JinjaValue, _ key: JinjaValue) throws -> JinjaValue {
        switch object {
        case .undefined:
            try JinjaRenderer.failIfUndefined(object)
            return object
        case .dict(let d):
            if let v = d.value(for: key) { return v }
        case .list(let l) where l.kind.isIndexable:
            if let position = Self.position(key, count: l.items.count) {
                return position.map { l.items[$0] } ?? .undefined(.element(key, of: object))
            }
        case .string(let s):
            let scalars = s.unicodeScalars
            if let position = Self.position(key, count: scalars.count) {
                return position.map { .string(String(scalars[scalars.index(scalars.startIndex, offsetBy: $0)])) }
                    ?? .undefined(.element(key, of: object))
            }
        default:
            break
        }
        if case .string(let name) = key { return try attribute(object, name) }
        return .undefined(.element(key, of: object))
    }

    /// Where an integer key points in a sequence of `count` items (negative from the end): nil when the key is
    /// not an integer, `.some(nil)` when it is out of range.
    private static func position(_ key: JinjaValue, count n: Int) -> Int?? {
        guard let (index, _) = JinjaCompare.number(key), let i = index else { return nil }
        let k = i < 0 ? i + n : i
        return .some(k >= 0 && k < n ? k : nil)
    }

    // MARK: Calls

    func call(_ callee: JinjaValue, _ args: JinjaCallArguments) throws -> JinjaValue {
        switch callee {
        case .callable(.macro(let m)): return try callMacro(m, args)
        case .callable(.function(let name)): return try JinjaGlobals.call(name, args, self)
        case .callable(.method(let object, let name)): return try JinjaMethods.call(object, name, args, self)
        case .undefined:
            try JinjaRenderer.failIfUndefined(callee)
            return callee
        default:
            throw JinjaFailure.type("'\(callee.typeName)' object is not callable")
        }
    }

    /// Calls a macro: parameters bound as Jinja2 binds them (missing ones without a default are undefined; extra
    /// positional or keyword arguments only when the body uses `varargs` or `kwargs`), the body rendered in a new
    /// frame over the macro's defining frame, and the text returned.
    private func callMacro(_ m: JinjaMacro, _ args: JinjaCallArguments) throws -> JinjaValue {
        let d = m.definition
        guard let closure = m.closure else { throw JinjaFailure.type("macro '\(d.name)' called after its template ended") }
        callDepth += 1
        defer { callDepth -= 1 }
        guard callDepth <= JinjaLimits.maxCallDepth else {
            throw JinjaFailure.limit("macro calls nested deeper than \(JinjaLimits.maxCallDepth)")
        }
        try step()
        let frame = JinjaScope(parent: closure)
        var keyword = args.keyword
        var extraKeyword: [(JinjaValue, JinjaValue)] = []
        for (i, (name, defaultValue)) in d.parameters.enumerated() {
            let value: JinjaValue
            if i < args.positional.count {
                value = args.positional[i]
                if keyword.contains(where: { $0.0 == name }) {
                    throw JinjaFailure.type("macro '\(d.name)' got multiple values for argument '\(name)'")
                }
            } else if let k = keyword.firstIndex(where: { $0.0 == name }) {
                value = keyword.remove(at: k).1
            } else if let defaultValue {
                value = try evaluate(defaultValue, frame)
            } else {
                value = .undefined(JinjaUndefined(message: "parameter '\(name)' was not provided"))
            }
            frame.variables[name] = value
        }
        if let k = keyword.firstIndex(where: { $0.0 == "caller" }) {
            frame.variables["caller"] = keyword.remove(at: k).1
        }
        for (name, value) in keyword {
            guard d.takesKwargs else { throw JinjaFailure.type("macro '\(d.name)' takes no keyword argument '\(name)'") }
            extraKeyword.append((.string(name), value))
        }
        let extra = args.positional.count > d.parameters.count ? Array(args.positional[d.parameters.count...]) : []
        guard extra.isEmpty || d.takesVarargs else {
            throw JinjaFailure.type("macro '\(d.name)' takes not more than \(d.parameters.count) argument(s)")
        }
        if d.takesVarargs { frame.variables["varargs"] = try .list(extra, kind: .tuple) }
        if d.takesKwargs { frame.variables["kwargs"] = .dict(try JinjaDict(extraKeyword)) }
        var out = ""
        _ = try execute(d.body, frame, &out)
        return .string(out)
    }
}
