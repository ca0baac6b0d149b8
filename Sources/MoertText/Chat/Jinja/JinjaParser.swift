// JinjaParser: tokens to statements and expressions, with Jinja2's grammar and precedence (jinja2/parser.py).

import MoertTensor

/// Parses the tokens of one template. Errors are `.format` (syntax, naming line:column), `.unsupported` (a
/// construct Jinja2 has and moert does not) or `.outOfRange` (nesting beyond `JinjaLimits.maxSourceNesting`).
struct JinjaParser {
    private let lexer: JinjaLexer
    private var tokens: [JinjaToken] { lexer.tokens }
    private var index = 0
    private var depth = 0
    /// Loops around the current statement (reset inside macros, as Python's `break` cannot leave a function).
    private var loopDepth = 0
    private let stack = JinjaStackGuard()

    init(lexer: JinjaLexer) {
        self.lexer = lexer
    }

    /// Parses the whole template.
    mutating func parseTemplate() throws -> [JinjaNode] {
        let (body, _) = try subparse(until: [])
        try checkNames(body, soft: false)
        return body
    }

    // MARK: Unknown filters and tests

    /// Refuses unknown filter and test names outside `if` blocks and inline `if`s, as Jinja2 3.x compiles them:
    /// inside those ("soft" frames) they fail only when evaluated. Loops, macros, calls, `with` and block bodies
    /// get frames of their own, which are not soft.
    private func checkNames(_ nodes: [JinjaNode], soft: Bool) throws {
        for node in nodes {
            switch node {
            case .text, .breakLoop, .continueLoop: break
            case .output(let e, _), .set(_, let e, _): try checkNames(e, soft: soft)
            case .conditional(let branches, let otherwise, _):
                for (test, body) in branches {
                    try checkNames(test, soft: true)
                    try checkNames(body, soft: true)
                }
                try checkNames(otherwise, soft: true)
            case .loop(let l):
                try checkNames(l.iterable, soft: soft)
                if let c = l.condition { try checkNames(c, soft: false) }
                try checkNames(l.body, soft: false)
                try checkNames(l.otherwise, soft: false)
            case .setBlock(_, _, let body, _), .filterBlock(_, let body, _), .generation(let body):
                try checkNames(body, soft: false)
            case .macro(let d):
                for (_, e) in d.parameters { if let e { try checkNames(e, soft: false) } }
                try checkNames(d.body, soft: false)
            case .callBlock(let call, let caller, _):
                try checkNames(call, soft: soft)
                try checkNames(caller.body, soft: false)
            case .with(let assignments, let body, _):
                for (_, e) in assignments { try checkNames(e, soft: false) }
                try checkNames(body, soft: false)
            }
        }
    }

    private func checkNames(_ e: JinjaExpr, soft: Bool) throws {
        switch e {
        case .unknown(let kind, let name, let value, let offset):
            guard soft else { throw lexer.fail("No \(kind) named '\(name)'.", at: offset) }
            try checkNames(value, soft: soft)
        case .conditional(let test, let then, let otherwise):
            try checkNames(test, soft: true)
            try checkNames(then, soft: true)
            if let otherwise { try checkNames(otherwise, soft: true) }
        case .constant, .name: break
        case .list(let items, _), .concat(let items): for i in items { try checkNames(i, soft: soft) }
        case .dict(let pairs): for (k, v) in pairs { try checkNames(k, soft: soft); try checkNames(v, soft: soft) }
        case .attribute(let o, _), .negative(let o), .positive(let o), .not(let o): try checkNames(o, soft: soft)
        case .item(let a, let b), .and(let a, let b), .or(let a, let b), .binary(_, let a, let b):
            try checkNames(a, soft: soft)
            try checkNames(b, soft: soft)
        case .slice(let o, let a, let b, let c):
            try checkNames(o, soft: soft)
            for x in [a, b, c] { if let x { try checkNames(x, soft: soft) } }
        case .call(let f, let args), .filter(let f, _, let args), .test(let f, _, let args, _):
            try checkNames(f, soft: soft)
            for x in args.positional { try checkNames(x, soft: soft) }
            for (_, x) in args.keyword { try checkNames(x, soft: soft) }
        case .compare(let first, let ops):
            try checkNames(first, soft: soft)
            for (_, x) in ops { try checkNames(x, soft: soft) }
        }
    }

    // MARK: Tokens

    private var current: JinjaToken { tokens[index] }
    private func peek(_ n: Int = 1) -> JinjaToken { tokens[min(index + n, tokens.count - 1)] }
    private mutating func advance() { if index < tokens.count - 1 { index += 1 } }

    private func line(_ token: JinjaToken) -> Int { lexer.location(token.offset).line }

    private func fail(_ message: String, _ token: JinjaToken? = nil) -> MoertError {
        lexer.fail(message, at: (token ?? current).offset)
    }

    private func unsupported(_ what: String, _ token: JinjaToken? = nil) -> MoertError {
        let (l, c) = lexer.location((token ?? current).offset)
        return .unsupported("chat template:\(l):\(c): \(what) is not supported")
    }

    /// Jinja2's `describe_token`, for "expected ..., got ..." messages.
    private func describe(_ token: JinjaToken) -> String {
        switch token.kind {
        case .text: return "template data"
        case .blockBegin: return "begin of statement block"
        case .blockEnd: return "end of statement block"
        case .variableBegin: return "begin of print statement"
        case .variableEnd: return "end of print statement"
        case .name(let n): return n
        case .string(let s): return PythonText.repr(s)
        case .integer(let i): return String(i)
        case .float(let d): return PythonText.floatRepr(d)
        case .op(let o): return o
        case .end: return "end of template"
        }
    }

    private func isName(_ name: String, _ token: JinjaToken? = nil) -> Bool {
        if case .name(let n) = (token ?? current).kind { return n == name }
        return false
    }

    private func isOp(_ op: String, _ token: JinjaToken? = nil) -> Bool {
        if case .op(let o) = (token ?? current).kind { return o == op }
        return false
    }

    private mutating func skipName(_ name: String) -> Bool {
        guard isName(name) else { return false }
        advance()
        return true
    }

    private mutating func skipOp(_ op: String) -> Bool {
        guard isOp(op) else { return false }
        advance()
        return true
    }

    private mutating func expectOp(_ op: String) throws {
        guard skipOp(op) else { throw fail("expected token '\(op)', got '\(describe(current))'") }
    }

    private mutating func expectName() throws -> String {
        guard case .name(let n) = current.kind else { throw fail("expected token 'name', got '\(describe(current))'") }
        advance()
        return n
    }

    private mutating func expectBlockEnd() throws {
        guard current.kind == .blockEnd else {
            throw fail("expected token 'end of statement block', got '\(describe(current))'")
        }
        advance()
    }

    /// Counts nesting for `JinjaLimits.maxSourceNesting` (and checks the stack, which a small thread may run out of
    /// first).
    private mutating func enter() throws {
        depth += 1
        let (l, c) = (depth > JinjaLimits.maxSourceNesting || (try? stack.check()) == nil) ? lexer.location(current.offset) : (0, 0)
        guard depth <= JinjaLimits.maxSourceNesting else {
            throw MoertError(.outOfRange, "chat template:\(l):\(c): blocks or expressions nested deeper than \(JinjaLimits.maxSourceNesting)")
        }
        guard l == 0 else { throw MoertError(.outOfRange, "chat template:\(l):\(c): the template nests too deeply for this thread's stack") }
    }

    // MARK: Statements

    /// Parses until a block tag named in `ends` (left unconsumed, positioned at its name) or the end of the template.
    private mutating func subparse(until ends: Set<String>) throws -> ([JinjaNode], String?) {
        var body: [JinjaNode] = []
        while true {
            let token = current
            switch token.kind {
            case .text(let s):
                body.append(.text(s))
                advance()
            case .variableBegin:
                advance()
                let e = try parseTuple()
                guard current.kind == .variableEnd else {
                    throw fail("expected token 'end of print statement', got '\(describe(current))'")
                }
                advance()
                body.append(.output(e, line: line(token)))
            case .blockBegin:
                advance()
                if case .name(let n) = current.kind, ends.contains(n) { return (body, n) }
                body.append(try parseStatement())
                try expectBlockEnd()
            case .end:
                guard ends.isEmpty else {
                    throw fail("Unexpected end of template. Jinja was looking for the following tags: "
                               + ends.sorted().map { "'\($0)'" }.joined(separator: " or ") + ".")
                }
                return (body, nil)
            default:
                throw fail("unexpected '\(describe(token))'")
            }
        }
    }

    /// The body of a block up to one of `ends`; consumes the end tag's name and returns it.
    private mutating func statements(until ends: Set<String>) throws -> ([JinjaNode], String) {
        try expectBlockEnd()
        try enter()
        defer { depth -= 1 }
        let (body, end) = try subparse(until: ends)
        advance()
        return (body, end ?? "")
    }

    private mutating func parseStatement() throws -> JinjaNode {
        let token = current
        guard case .name(let tag) = token.kind else { throw fail("tag name expected") }
        advance()
        switch tag {
        case "for": return try parseFor(token)
        case "if": return try parseIf(token)
        case "set": return try parseSet(token)
        case "macro": return try parseMacro(token)
        case "call": return try parseCallBlock(token)
        case "filter":
            let filters = try parseFilterChain(inline: true)
            let (body, _) = try statements(until: ["endfilter"])
            return .filterBlock(filters: filters, body: body, line: line(token))
        case "with": return try parseWith(token)
        case "print": return .output(try parseTuple(), line: line(token))
        case "generation":
            let (body, _) = try statements(until: ["endgeneration"])
            return .generation(body)
        case "break", "continue":
            guard loopDepth > 0 else { throw fail("'\(tag)' outside loop", token) }
            return tag == "break" ? .breakLoop : .continueLoop
        case "extends", "include", "import", "from", "block", "autoescape":
            throw unsupported("the '\(tag)' tag", token)
        default:
            throw fail("Encountered unknown tag '\(tag)'.", token)
        }
    }

    private mutating func parseFor(_ token: JinjaToken) throws -> JinjaNode {
        let target = try parseAssignTarget(extraEnd: "in")
        guard skipName("in") else { throw fail("expected token 'in', got '\(describe(current))'") }
        let iterable = try parseTuple(withConditional: false, extraEnd: "recursive")
        var condition: JinjaExpr?
        if skipName("if") { condition = try parseExpression() }
        if isName("recursive") { throw unsupported("a recursive loop") }
        loopDepth += 1
        let (body, end) = try statements(until: ["endfor", "else"])
        loopDepth -= 1
        var otherwise: [JinjaNode] = []
        if end == "else" { (otherwise, _) = try statements(until: ["endfor"]) }
        return .loop(JinjaLoopStatement(target: target, iterable: iterable, condition: condition, body: body,
                                        otherwise: otherwise, line: line(token)))
    }

    private mutating func parseIf(_ token: JinjaToken) throws -> JinjaNode {
        var branches: [(JinjaExpr, [JinjaNode])] = []
        var test = try parseTuple(withConditional: false)
        while true {
            let (body, end) = try statements(until: ["elif", "else", "endif"])
            branches.append((test, body))
            switch end {
            case "elif":
                test = try parseTuple(withConditional: false)
            case "else":
                let (otherwise, _) = try statements(until: ["endif"])
                return .conditional(branches, otherwise: otherwise, line: line(token))
            default:
                return .conditional(branches, otherwise: [], line: line(token))
            }
        }
    }

    private mutating func parseSet(_ token: JinjaToken) throws -> JinjaNode {
        let target = try parseAssignTarget(withNamespace: true)
        if skipOp("=") { return .set(target, try parseTuple(), line: line(token)) }
        guard case .name = target else { throw fail("expected token '=', got '\(describe(current))'") }
        let filters = try parseFilterChain(inline: false)
        let (body, _) = try statements(until: ["endset"])
        return .setBlock(target, filters: filters, body: body, line: line(token))
    }

    private mutating func parseMacro(_ token: JinjaToken) throws -> JinjaNode {
        let name = try expectName()
        let parameters = try parseSignature()
        let savedLoops = loopDepth
        loopDepth = 0
        let (body, _) = try statements(until: ["endmacro"])
        loopDepth = savedLoops
        return .macro(Self.macro(name, parameters, body, line: line(token)))
    }

    /// `(a, b=default, ...)` of a macro or caller.
    private mutating func parseSignature() throws -> [(String, JinjaExpr?)] {
        var parameters: [(String, JinjaExpr?)] = []
        try expectOp("(")
        while !isOp(")") {
            if !parameters.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            let nameToken = current
            let name = try expectName()
            if skipOp("=") {
                parameters.append((name, try parseExpression()))
            } else {
                guard parameters.allSatisfy({ $0.1 == nil }) else {
                    throw fail("non-default argument follows default argument", nameToken)
                }
                parameters.append((name, nil))
            }
        }
        advance()
        return parameters
    }

    private static func macro(_ name: String, _ parameters: [(String, JinjaExpr?)], _ body: [JinjaNode],
                              line: Int) -> JinjaMacroDefinition {
        var names = Set<String>()
        JinjaNames.collect(body, into: &names)
        return JinjaMacroDefinition(name: name, parameters: parameters, body: body,
                                    takesVarargs: names.contains("varargs"), takesKwargs: names.contains("kwargs"),
                                    line: line)
    }

    private mutating func parseCallBlock(_ token: JinjaToken) throws -> JinjaNode {
        let parameters = isOp("(") ? try parseSignature() : []
        let call = try parseExpression()
        guard case .call = call else { throw fail("expected call", token) }
        let savedLoops = loopDepth
        loopDepth = 0
        let (body, _) = try statements(until: ["endcall"])
        loopDepth = savedLoops
        return .callBlock(call: call, caller: Self.macro("caller", parameters, body, line: line(token)),
                          line: line(token))
    }

    private mutating func parseWith(_ token: JinjaToken) throws -> JinjaNode {
        var assignments: [(JinjaTarget, JinjaExpr)] = []
        while current.kind != .blockEnd {
            if !assignments.isEmpty { try expectOp(",") }
            let target = try parseAssignTarget()
            try expectOp("=")
            assignments.append((target, try parseExpression()))
        }
        let (body, _) = try statements(until: ["endwith"])
        return .with(assignments, body: body, line: line(token))
    }

    /// A name, `a, b` (optionally parenthesized, nested), or with `withNamespace` `ns.attr`.
    private mutating func parseAssignTarget(withNamespace: Bool = false, extraEnd: String? = nil) throws -> JinjaTarget {
        if withNamespace, case .name(let ns) = current.kind, isOp(".", peek()) {
            advance()
            advance()
            return .attribute(ns, try expectName())
        }
        var items: [JinjaTarget] = []
        var isTuple = false
        while true {
            if !items.isEmpty { try expectOp(",") }
            if current.kind == .blockEnd || isOp(")") || isOp("=") || (extraEnd.map { isName($0) } ?? false) { break }
            items.append(try parseTargetElement())
            if isOp(",") { isTuple = true } else { break }
        }
        guard let first = items.first else { throw fail("expected a name to assign to, got '\(describe(current))'") }
        return isTuple ? .tuple(items) : first
    }

    private mutating func parseTargetElement() throws -> JinjaTarget {
        if skipOp("(") {
            try enter()
            defer { depth -= 1 }
            var items: [JinjaTarget] = []
            while !isOp(")") {
                if !items.isEmpty { try expectOp(",") }
                if isOp(")") { break }
                items.append(try parseTargetElement())
            }
            advance()
            return .tuple(items)
        }
        let token = current
        let name = try expectName()
        if ["true", "false", "none", "True", "False", "None"].contains(name) {
            throw fail("can't assign to '\(name)'", token)
        }
        return .name(name)
    }

    // MARK: Expressions

    mutating func parseExpression(withConditional: Bool = true) throws -> JinjaExpr {
        withConditional ? try parseConditional() : try parseOr()
    }

    private mutating func parseConditional() throws -> JinjaExpr {
        var e = try parseOr()
        while skipName("if") {
            let test = try parseOr()
            let otherwise = skipName("else") ? try parseConditional() : nil
            e = .conditional(test: test, then: e, otherwise: otherwise)
        }
        return e
    }

    private mutating func parseOr() throws -> JinjaExpr {
        var left = try parseAnd()
        while skipName("or") { left = .or(left, try parseAnd()) }
        return left
    }

    private mutating func parseAnd() throws -> JinjaExpr {
        var left = try parseNot()
        while skipName("and") { left = .and(left, try parseNot()) }
        return left
    }

    private mutating func parseNot() throws -> JinjaExpr {
        if skipName("not") {
            try enter()
            defer { depth -= 1 }
            return .not(try parseNot())
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> JinjaExpr {
        let first = try parseMath1()
        var ops: [(String, JinjaExpr)] = []
        while true {
            if case .op(let o) = current.kind, ["==", "!=", "<", "<=", ">", ">="].contains(o) {
                advance()
                ops.append((o, try parseMath1()))
            } else if skipName("in") {
                ops.append(("in", try parseMath1()))
            } else if isName("not") && isName("in", peek()) {
                advance()
                advance()
                ops.append(("notin", try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? first : .compare(first, ops)
    }

    private mutating func parseMath1() throws -> JinjaExpr {
        var left = try parseConcat()
        while case .op(let o) = current.kind, o == "+" || o == "-" {
            advance()
            left = .binary(o, left, try parseConcat())
        }
        return left
    }

    private mutating func parseConcat() throws -> JinjaExpr {
        var parts = [try parseMath2()]
        while skipOp("~") { parts.append(try parseMath2()) }
        return parts.count == 1 ? parts[0] : .concat(parts)
    }

    private mutating func parseMath2() throws -> JinjaExpr {
        var left = try parsePow()
        while case .op(let o) = current.kind, ["*", "/", "//", "%"].contains(o) {
            advance()
            left = .binary(o, left, try parsePow())
        }
        return left
    }

    private mutating func parsePow() throws -> JinjaExpr {
        var left = try parseUnary()
        while skipOp("**") { left = .binary("**", left, try parseUnary()) }
        return left
    }

    private mutating func parseUnary(withFilter: Bool = true) throws -> JinjaExpr {
        try enter()
        defer { depth -= 1 }
        var node: JinjaExpr
        if skipOp("-") {
            node = .negative(try parseUnary(withFilter: false))
        } else if skipOp("+") {
            node = .positive(try parseUnary(withFilter: false))
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterExpression(node) }
        return node
    }

    private mutating func parsePrimary() throws -> JinjaExpr {
        let token = current
        switch token.kind {
        case .name(let n):
            advance()
            switch n {
            case "true", "True": return .constant(.bool(true))
            case "false", "False": return .constant(.bool(false))
            case "none", "None": return .constant(.none)
            default: return .name(n)
            }
        case .string(var s):
            advance()
            // Adjacent string literals concatenate, as in Python.
            while case .string(let more) = current.kind {
                s += more
                advance()
            }
            return .constant(.string(s))
        case .integer(let i):
            advance()
            return .constant(.int(i))
        case .float(let d):
            advance()
            return .constant(.double(d))
        case .op("("):
            advance()
            let e = try parseTuple(explicitParentheses: true)
            try expectOp(")")
            return e
        case .op("["):
            return try parseList()
        case .op("{"):
            return try parseDict()
        default:
            throw fail("unexpected '\(describe(token))'")
        }
    }

    /// Comma-separated expressions: a tuple when a comma appears, else the one expression (Jinja2's
    /// `parse_tuple`, used for `{{ }}`, `set` values, loop iterables and parentheses).
    private mutating func parseTuple(withConditional: Bool = true, extraEnd: String? = nil,
                                     explicitParentheses: Bool = false) throws -> JinjaExpr {
        var items: [JinjaExpr] = []
        var isTuple = false
        while true {
            if !items.isEmpty { try expectOp(",") }
            if current.kind == .variableEnd || current.kind == .blockEnd || isOp(")")
                || (extraEnd.map { isName($0) } ?? false) { break }
            items.append(try parseExpression(withConditional: withConditional))
            if isOp(",") { isTuple = true } else { break }
        }
        if !isTuple {
            if let first = items.first { return first }
            if !explicitParentheses { throw fail("Expected an expression, got '\(describe(current))'") }
        }
        return .list(items, tuple: true)
    }

    private mutating func parseList() throws -> JinjaExpr {
        try expectOp("[")
        var items: [JinjaExpr] = []
        while !isOp("]") {
            if !items.isEmpty { try expectOp(",") }
            if isOp("]") { break }
            items.append(try parseExpression())
        }
        advance()
        return .list(items, tuple: false)
    }

    private mutating func parseDict() throws -> JinjaExpr {
        try expectOp("{")
        var items: [(JinjaExpr, JinjaExpr)] = []
        while !isOp("}") {
            if !items.isEmpty { try expectOp(",") }
            if isOp("}") { break }
            let key = try parseExpression()
            try expectOp(":")
            items.append((key, try parseExpression()))
        }
        advance()
        return .dict(items)
    }

    private mutating func parsePostfix(_ node: JinjaExpr) throws -> JinjaExpr {
        var node = node
        while true {
            if isOp(".") || isOp("[") {
                node = try parseSubscript(node)
            } else if isOp("(") {
                node = .call(node, try parseCallArguments())
            } else {
                return node
            }
        }
    }

    private mutating func parseFilterExpression(_ node: JinjaExpr) throws -> JinjaExpr {
        var node = node
        while true {
            if isOp("|") {
                node = try parseFilter(node)
            } else if isName("is") {
                node = try parseTest(node)
            } else if isOp("(") {
                node = .call(node, try parseCallArguments())
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscript(_ node: JinjaExpr) throws -> JinjaExpr {
        if skipOp(".") {
            switch current.kind {
            case .name(let n):
                advance()
                return .attribute(node, n)
            case .integer(let i):
                advance()
                return .item(node, .constant(.int(i)))
            default:
                throw fail("expected name or number")
            }
        }
        try expectOp("[")
        var keys: [JinjaExpr] = []
        var slice: (JinjaExpr?, JinjaExpr?, JinjaExpr?)?
        while !isOp("]") {
            if !keys.isEmpty || slice != nil { try expectOp(",") }
            if isOp(":") || slice == nil && keys.isEmpty && isSliceAhead() {
                guard keys.isEmpty && slice == nil else { throw unsupported("a slice inside a tuple subscript") }
                slice = try parseSlice()
            } else {
                guard slice == nil else { throw unsupported("a slice inside a tuple subscript") }
                keys.append(try parseExpression())
            }
        }
        advance()
        if let (start, stop, step) = slice { return .slice(node, start, stop, step) }
        guard !keys.isEmpty else { throw fail("expected an expression, got ']'") }
        return keys.count == 1 ? .item(node, keys[0]) : .item(node, .list(keys, tuple: true))
    }

    /// True when the subscript starting here is `expression:`...: scans to the `:` or `]` at this bracket level.
    private func isSliceAhead() -> Bool {
        var level = 0
        var k = index
        while k < tokens.count {
            switch tokens[k].kind {
            case .op("("), .op("["), .op("{"): level += 1
            case .op(")"), .op("}"): level -= 1
            case .op("]"):
                if level == 0 { return false }
                level -= 1
            case .op(":"): if level == 0 { return true }
            case .op(","): if level == 0 { return false }
            case .variableEnd, .blockEnd, .end: return false
            default: break
            }
            k += 1
        }
        return false
    }

    /// `start:stop:step`, each part optional.
    private mutating func parseSlice() throws -> (JinjaExpr?, JinjaExpr?, JinjaExpr?) {
        var start: JinjaExpr?, stop: JinjaExpr?, step: JinjaExpr?
        if !isOp(":") { start = try parseExpression() }
        try expectOp(":")
        if !isOp("]") && !isOp(",") && !isOp(":") { stop = try parseExpression() }
        if skipOp(":") && !isOp("]") && !isOp(",") { step = try parseExpression() }
        return (start, stop, step)
    }

    private mutating func parseCallArguments() throws -> JinjaArguments {
        try expectOp("(")
        try enter()
        defer { depth -= 1 }
        var args = JinjaArguments()
        var first = true
        while !isOp(")") {
            if !first { try expectOp(",") }
            first = false
            if isOp(")") { break }
            if isOp("*") || isOp("**") { throw unsupported("'*' and '**' in call arguments") }
            if case .name(let key) = current.kind, isOp("=", peek()) {
                advance()
                advance()
                args.keyword.append((key, try parseExpression()))
            } else {
                guard args.keyword.isEmpty else { throw fail("invalid syntax for function call expression") }
                args.positional.append(try parseExpression())
            }
        }
        advance()
        return args
    }

    /// A filter name, dotted parts joined.
    private mutating func parseDottedName() throws -> String {
        var name = try expectName()
        while isOp("."), case .name(let more) = peek().kind {
            advance()
            advance()
            name += "." + more
        }
        return name
    }

    private mutating func parseFilter(_ node: JinjaExpr) throws -> JinjaExpr {
        advance()
        let token = current
        let name = try parseDottedName()
        let args = isOp("(") ? try parseCallArguments() : .none
        guard JinjaFilters.exists(name) else { return .unknown(kind: "filter", name: name, value: node, offset: token.offset) }
        return .filter(node, name, args)
    }

    /// `| a | b(x)` after `set name` or `filter`: the filters of a block.
    private mutating func parseFilterChain(inline: Bool) throws -> [(String, JinjaArguments)] {
        var filters: [(String, JinjaArguments)] = []
        var first = inline
        while first || isOp("|") {
            if !first { advance() }
            first = false
            let token = current
            let name = try parseDottedName()
            try JinjaFilters.check(name, at: { self.fail($0, token) })
            filters.append((name, isOp("(") ? try parseCallArguments() : .none))
        }
        return filters
    }

    private mutating func parseTest(_ node: JinjaExpr) throws -> JinjaExpr {
        advance()
        let negated = skipName("not")
        let token = current
        let name = try parseDottedName()
        var args = JinjaArguments()
        if isOp("(") {
            args = try parseCallArguments()
        } else {
            switch current.kind {
            case .name("else"), .name("or"), .name("and"):
                break
            case .name("is"):
                throw fail("You cannot chain multiple tests with is")
            case .name, .string, .integer, .float, .op("("), .op("["), .op("{"):
                try enter()
                defer { depth -= 1 }
                args.positional = [try parsePostfix(try parsePrimary())]
            default:
                break
            }
        }
        guard JinjaTests.exists(name) else { return .unknown(kind: "test", name: name, value: node, offset: token.offset) }
        return .test(node, name, args, negated: negated)
    }
}

/// The names a macro body refers to (for `varargs` and `kwargs`).
enum JinjaNames {
    static func collect(_ nodes: [JinjaNode], into names: inout Set<String>) {
        for node in nodes { collect(node, into: &names) }
    }

    static func collect(_ node: JinjaNode, into names: inout Set<String>) {
        switch node {
        case .text, .breakLoop, .continueLoop, .macro: break
        case .output(let e, _): collect(e, into: &names)
        case .conditional(let branches, let otherwise, _):
            for (t, b) in branches { collect(t, into: &names); collect(b, into: &names) }
            collect(otherwise, into: &names)
        case .loop(let l):
            collect(l.iterable, into: &names)
            if let c = l.condition { collect(c, into: &names) }
            collect(l.body, into: &names)
            collect(l.otherwise, into: &names)
        case .set(_, let e, _): collect(e, into: &names)
        case .setBlock(_, let filters, let body, _), .filterBlock(let filters, let body, _):
            for (_, a) in filters { collect(a, into: &names) }
            collect(body, into: &names)
        case .callBlock(let call, let caller, _):
            collect(call, into: &names)
            collect(caller.body, into: &names)
        case .with(let assignments, let body, _):
            for (_, e) in assignments { collect(e, into: &names) }
            collect(body, into: &names)
        case .generation(let body): collect(body, into: &names)
        }
    }

    static func collect(_ args: JinjaArguments, into names: inout Set<String>) {
        for e in args.positional { collect(e, into: &names) }
        for (_, e) in args.keyword { collect(e, into: &names) }
    }

    static func collect(_ e: JinjaExpr, into names: inout Set<String>) {
        switch e {
        case .constant: break
        case .name(let n): names.insert(n)
        case .list(let items, _), .concat(let items): for i in items { collect(i, into: &names) }
        case .dict(let pairs): for (k, v) in pairs { collect(k, into: &names); collect(v, into: &names) }
        case .attribute(let o, _), .negative(let o), .positive(let o), .not(let o): collect(o, into: &names)
        case .item(let a, let b), .and(let a, let b), .or(let a, let b), .binary(_, let a, let b):
            collect(a, into: &names)
            collect(b, into: &names)
        case .slice(let o, let a, let b, let c):
            collect(o, into: &names)
            for x in [a, b, c] { if let x { collect(x, into: &names) } }
        case .call(let f, let args), .filter(let f, _, let args), .test(let f, _, let args, _):
            collect(f, into: &names)
            collect(args, into: &names)
        case .compare(let first, let ops):
            collect(first, into: &names)
            for (_, x) in ops { collect(x, into: &names) }
        case .conditional(let t, let a, let b):
            collect(t, into: &names)
            collect(a, into: &names)
            if let b { collect(b, into: &names) }
        case .unknown(_, _, let value, _):
            collect(value, into: &names)
        }
    }
}
