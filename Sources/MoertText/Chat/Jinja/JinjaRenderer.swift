// JinjaRenderer: runs the statements of a parsed template for one render, within the limits of JinjaLimits.

import MoertTensor

/// The state of one render. A template is parsed once and each render gets its own renderer, so renders of one
/// template on several threads share nothing mutable.
final class JinjaRenderer {
    /// What a statement asks of the loop around it.
    enum Flow {
        case normal, breakLoop, continueLoop
    }

    /// Work done so far, against `maxSteps`.
    private var steps = 0
    /// The budget of work units (`JinjaLimits.maxSteps` unless a test or the fuzzer sets a smaller one).
    let maxSteps: Int
    /// Macro calls in progress, against `JinjaLimits.maxCallDepth`.
    var callDepth = 0
    /// Checked at every nested statement and expression (a render runs on the thread that made its renderer).
    let stack = JinjaStackGuard()
    /// Seconds since the epoch that `strftime_now` formats (in UTC), or nil for the local time now.
    let fixedTime: Int?
    /// Objects whose references may form cycles (a macro's frame holds the macro; a namespace can hold itself);
    /// emptied when the render ends so that they are freed.
    private var macros: [JinjaMacro] = []
    private var namespaces: [JinjaNamespace] = []

    init(fixedTime: Int?, maxSteps: Int = JinjaLimits.maxSteps) {
        self.fixedTime = fixedTime
        self.maxSteps = maxSteps
    }

    /// Renders `nodes` with `scope` as the outermost frame.
    func render(_ nodes: [JinjaNode], scope: JinjaScope) throws -> String {
        defer { releaseCycles() }
        var out = ""
        _ = try execute(nodes, scope, &out)
        return out
    }

    private func releaseCycles() {
        for m in macros { m.closure = nil }
        for ns in namespaces { ns.values.removeAll() }
        macros.removeAll()
        namespaces.removeAll()
    }

    /// Counts `n` units of work.
    func step(_ n: Int = 1) throws {
        steps += n
        guard steps <= maxSteps else {
            throw JinjaFailure.limit("more than \(maxSteps) steps (loop iterations, macro calls, filtered items)")
        }
    }

    /// A new namespace, tracked for release.
    func makeNamespace() -> JinjaNamespace {
        let ns = JinjaNamespace()
        namespaces.append(ns)
        return ns
    }

    /// A macro bound to `scope`, tracked for release.
    func makeMacro(_ definition: JinjaMacroDefinition, _ scope: JinjaScope) -> JinjaMacro {
        let m = JinjaMacro(definition: definition, closure: scope)
        macros.append(m)
        return m
    }

    /// Throws Jinja2's UndefinedError (or the sandbox's SecurityError) for an undefined value.
    static func failIfUndefined(_ v: JinjaValue) throws {
        if case .undefined(let u) = v {
            throw u.unsafe ? JinjaFailure.security(u.message) : JinjaFailure.undefined(u.message)
        }
    }

    // MARK: Statements

    func execute(_ nodes: [JinjaNode], _ scope: JinjaScope, _ out: inout String) throws -> Flow {
        for node in nodes {
            let flow = try execute(node, scope, &out)
            if case .normal = flow { continue }
            return flow
        }
        return .normal
    }

    /// Runs one statement; a failure is reported with the statement's line.
    private func execute(_ node: JinjaNode, _ scope: JinjaScope, _ out: inout String) throws -> Flow {
        try stack.check()
        switch node {
        case .text(let s):
            out += s
            try JinjaLimits.checkText(out.utf8.count)
            return .normal
        case .breakLoop: return .breakLoop
        case .continueLoop: return .continueLoop
        case .generation(let body): return try execute(body, scope, &out)
        case .output(_, let line), .conditional(_, _, let line), .set(_, _, let line), .setBlock(_, _, _, let line),
             .callBlock(_, _, let line), .filterBlock(_, _, let line), .with(_, _, let line):
            do { return try executeChecked(node, scope, &out) } catch let f as JinjaFailure { throw f.moertError(line: line) }
        case .loop(let l):
            do { return try executeChecked(node, scope, &out) } catch let f as JinjaFailure { throw f.moertError(line: l.line) }
        case .macro(let definition):
            scope.variables[definition.name] = .callable(.macro(makeMacro(definition, scope)))
            return .normal
        }
    }

    private func executeChecked(_ node: JinjaNode, _ scope: JinjaScope, _ out: inout String) throws -> Flow {
        switch node {
        case .output(let e, _):
            out += try evaluate(e, scope).str()
            try JinjaLimits.checkText(out.utf8.count)
        case .conditional(let branches, let otherwise, _):
            for (test, body) in branches where try evaluate(test, scope).truthy {
                return try execute(body, scope, &out)
            }
            return try execute(otherwise, scope, &out)
        case .loop(let l):
            return try loop(l, scope, &out)
        case .set(let target, let e, _):
            try assign(target, try evaluate(e, scope), scope)
        case .setBlock(let target, let filters, let body, _):
            var text = ""
            _ = try execute(body, JinjaScope(parent: scope), &text)
            try assign(target, try applyFilters(filters, .string(text), scope), scope)
        case .filterBlock(let filters, let body, _):
            var text = ""
            _ = try execute(body, JinjaScope(parent: scope), &text)
            out += try applyFilters(filters, .string(text), scope).str()
            try JinjaLimits.checkText(out.utf8.count)
        case .with(let assignments, let body, _):
            let inner = JinjaScope(parent: scope)
            for (target, e) in assignments { try assign(target, try evaluate(e, scope), inner) }
            return try execute(body, inner, &out)
        case .callBlock(let call, let caller, _):
            guard case .call(let callee, let args) = call else { throw JinjaFailure.unsupported("a call block without a call") }
            var arguments = try evaluateArguments(args, scope)
            arguments.keyword.append(("caller", .callable(.macro(makeMacro(caller, scope)))))
            out += try self.call(try evaluate(callee, scope), arguments).str()
            try JinjaLimits.checkText(out.utf8.count)
        case .text, .macro, .generation, .breakLoop, .continueLoop:
            return try execute(node, scope, &out)
        }
        return .normal
    }

    private func applyFilters(_ filters: [(String, JinjaArguments)], _ value: JinjaValue, _ scope: JinjaScope) throws -> JinjaValue {
        var v = value
        for (name, args) in filters { v = try JinjaFilters.apply(name, v, try evaluateArguments(args, scope), self) }
        return v
    }

    /// A `for` block: the iterable's items, filtered by the loop's `if`, each run in a fresh frame with `loop`.
    private func loop(_ l: JinjaLoopStatement, _ scope: JinjaScope, _ out: inout String) throws -> Flow {
        var items = try iterate(try evaluate(l.iterable, scope))
        if let condition = l.condition {
            var kept: [JinjaValue] = []
            for item in items {
                try step()
                let frame = JinjaScope(parent: scope)
                try assign(l.target, item, frame)
                if try evaluate(condition, frame).truthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty { return try execute(l.otherwise, JinjaScope(parent: scope), &out) }
        let state = JinjaLoop(items: items)
        for (i, item) in items.enumerated() {
            try step()
            state.index0 = i
            let frame = JinjaScope(parent: scope)
            frame.variables["loop"] = .loop(state)
            try assign(l.target, item, frame)
            if case .breakLoop = try execute(l.body, frame, &out) { break }
        }
        return .normal
    }

    /// The items a `for` loop (or `list()`) visits: a string's code points, a dict's keys.
    func iterate(_ v: JinjaValue) throws -> [JinjaValue] { try Self.items(v) }

    /// Python's `list(v)`: a string's code points, a dict's keys; Undefined iterates as empty.
    static func items(_ v: JinjaValue) throws -> [JinjaValue] {
        switch v {
        case .list(let l): return l.items
        case .dict(let d): return d.keys
        case .string(let s):
            try JinjaLimits.checkList(s.utf8.count > JinjaLimits.maxListCount ? s.unicodeScalars.count : 0)
            return s.unicodeScalars.map { .string(String($0)) }
        case .undefined(let u):
            if u.unsafe { throw JinjaFailure.security(u.message) }
            return []
        case .loop(let loop): return loop.items
        default: throw JinjaFailure.type("'\(v.typeName)' object is not iterable")
        }
    }

    /// Binds a value to a name, unpacks it into a tuple of targets, or sets a namespace attribute.
    func assign(_ target: JinjaTarget, _ value: JinjaValue, _ scope: JinjaScope) throws {
        switch target {
        case .name(let n):
            scope.variables[n] = value
        case .tuple(let targets):
            let items = try iterate(value)
            guard items.count == targets.count else {
                if items.count > targets.count {
                    throw JinjaFailure.type("too many values to unpack (expected \(targets.count))")
                }
                throw JinjaFailure.type("not enough values to unpack (expected \(targets.count), got \(items.count))")
            }
            for (t, v) in zip(targets, items) { try assign(t, v, scope) }
        case .attribute(let object, let name):
            guard case .namespace(let ns)? = scope.lookup(object) ?? JinjaGlobals.value(object) else {
                throw JinjaFailure.type("cannot assign attribute on non-namespace object")
            }
            guard !name.hasPrefix("_") else {
                throw JinjaFailure.security("Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(name)'. Please rename the attribute.")
            }
            ns.set(name, value)
        }
    }
}
