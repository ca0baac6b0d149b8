// JinjaSyntax: the parsed form of a template: statements and expressions, as jinja2/nodes.py names them.

/// An expression. Its runtime errors name the line of the statement it belongs to.
indirect enum JinjaExpr {
    /// A literal: string, number, true/false/none.
    case constant(JinjaValue)
    case name(String)
    /// `[a, b]`, or `(a, b)` when `tuple`.
    case list([JinjaExpr], tuple: Bool)
    case dict([(JinjaExpr, JinjaExpr)])
    /// `object.name` (attribute first, then item, as Jinja2's `getattr`).
    case attribute(JinjaExpr, String)
    /// `object[key]` (item first, then attribute, as Jinja2's `getitem`).
    case item(JinjaExpr, JinjaExpr)
    /// `object[start:stop:step]`.
    case slice(JinjaExpr, JinjaExpr?, JinjaExpr?, JinjaExpr?)
    case call(JinjaExpr, JinjaArguments)
    /// `value | name(arguments)`.
    case filter(JinjaExpr, String, JinjaArguments)
    /// `value is [not] name(arguments)`.
    case test(JinjaExpr, String, JinjaArguments, negated: Bool)
    /// `-x`, `+x`.
    case negative(JinjaExpr)
    case positive(JinjaExpr)
    case not(JinjaExpr)
    case and(JinjaExpr, JinjaExpr)
    case or(JinjaExpr, JinjaExpr)
    /// `+ - * / // % **`.
    case binary(String, JinjaExpr, JinjaExpr)
    /// `a ~ b ~ c`.
    case concat([JinjaExpr])
    /// `a < b == c`: Python's chained comparison (each link evaluated once, stopping at the first false).
    case compare(JinjaExpr, [(String, JinjaExpr)])
    /// `then if test else otherwise` (`otherwise` nil: undefined when the test fails).
    case conditional(test: JinjaExpr, then: JinjaExpr, otherwise: JinjaExpr?)
    /// A filter or test Jinja2 does not know, applied to `value`: an error when evaluated. Jinja2 3.x refuses such a
    /// name when compiling unless it stands inside an `if` block or an inline `if`, where it fails only when run
    /// (`CodeGenerator._filter_test_common`); `JinjaParser` applies that rule. `offset` locates it in the source.
    case unknown(kind: String, name: String, value: JinjaExpr, offset: Int)
}

/// Call arguments: positional, then keyword.
struct JinjaArguments {
    var positional: [JinjaExpr] = []
    var keyword: [(String, JinjaExpr)] = []

    static var none: JinjaArguments { JinjaArguments() }
}

/// The left side of an assignment or a loop variable.
indirect enum JinjaTarget {
    case name(String)
    /// `a, b` unpacking.
    case tuple([JinjaTarget])
    /// `ns.attr` (only namespaces accept attributes).
    case attribute(String, String)
}

/// A statement. Each carries the line it starts on.
indirect enum JinjaNode {
    case text(String)
    /// `{{ expression }}`.
    case output(JinjaExpr, line: Int)
    /// `if`/`elif` branches, then `else`.
    case conditional([(JinjaExpr, [JinjaNode])], otherwise: [JinjaNode], line: Int)
    case loop(JinjaLoopStatement)
    /// `{% set target = value %}`.
    case set(JinjaTarget, JinjaExpr, line: Int)
    /// `{% set name | filters %}body{% endset %}`: the rendered body, filtered, assigned.
    case setBlock(JinjaTarget, filters: [(String, JinjaArguments)], body: [JinjaNode], line: Int)
    case macro(JinjaMacroDefinition)
    /// `{% call(params) macro(args) %}body{% endcall %}`: calls the macro with `caller` rendering the body.
    case callBlock(call: JinjaExpr, caller: JinjaMacroDefinition, line: Int)
    /// `{% filter name %}body{% endfilter %}`.
    case filterBlock(filters: [(String, JinjaArguments)], body: [JinjaNode], line: Int)
    /// `{% with a = 1 %}body{% endwith %}`: a scope of its own.
    case with([(JinjaTarget, JinjaExpr)], body: [JinjaNode], line: Int)
    /// transformers' `{% generation %}` block (its AssistantTracker extension): renders its body.
    case generation([JinjaNode])
    case breakLoop
    case continueLoop
}

/// `{% for target in iterable if condition %}body{% else %}otherwise{% endfor %}`.
struct JinjaLoopStatement {
    let target: JinjaTarget
    let iterable: JinjaExpr
    let condition: JinjaExpr?
    let body: [JinjaNode]
    let otherwise: [JinjaNode]
    let line: Int
}

/// A macro (or the `caller` of a call block): parameters with defaults, and what the body refers to.
final class JinjaMacroDefinition {
    let name: String
    let parameters: [(String, JinjaExpr?)]
    let body: [JinjaNode]
    /// Jinja2 accepts extra positional or keyword arguments only when the body mentions `varargs` or `kwargs`.
    let takesVarargs: Bool
    let takesKwargs: Bool
    let line: Int

    init(name: String, parameters: [(String, JinjaExpr?)], body: [JinjaNode], takesVarargs: Bool, takesKwargs: Bool,
         line: Int) {
        self.name = name
        self.parameters = parameters
        self.body = body
        self.takesVarargs = takesVarargs
        self.takesKwargs = takesKwargs
        self.line = line
    }
}
