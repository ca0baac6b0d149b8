// JinjaRuntime: the objects that live only while a template renders: scopes, the `loop` variable, callables.

/// Variables of one frame. A lookup falls through to the enclosing frame, so a frame sees its parent's values until
/// it assigns its own, the way Jinja2's frames resolve names: a loop iteration, macro call or `with` block starts
/// from the outer values, and what it sets stays inside it (jinja2/idtracking.py).
final class JinjaScope {
    let parent: JinjaScope?
    var variables: [String: JinjaValue] = [:]

    init(parent: JinjaScope?) {
        self.parent = parent
    }

    func lookup(_ name: String) -> JinjaValue? {
        var scope: JinjaScope? = self
        while let s = scope {
            if let v = s.variables[name] { return v }
            scope = s.parent
        }
        return nil
    }
}

/// The `loop` variable: one object per `for` block, advanced in place each iteration (as Jinja2's LoopContext).
final class JinjaLoop {
    /// The items after the loop's `if` filter.
    let items: [JinjaValue]
    var index0 = 0
    /// The arguments of the last `loop.changed(...)` call.
    var lastChanged: [JinjaValue]?

    init(items: [JinjaValue]) {
        self.items = items
    }

    /// `loop.<name>`, or nil for a name LoopContext lacks.
    func attribute(_ name: String) -> JinjaValue? {
        let n = items.count
        switch name {
        case "index": return .int(index0 + 1)
        case "index0": return .int(index0)
        case "revindex": return .int(n - index0)
        case "revindex0": return .int(n - index0 - 1)
        case "first": return .bool(index0 == 0)
        case "last": return .bool(index0 == n - 1)
        case "length": return .int(n)
        case "depth": return .int(1)
        case "depth0": return .int(0)
        case "previtem":
            return index0 > 0 ? items[index0 - 1] : .undefined(JinjaUndefined(message: "there is no previous item"))
        case "nextitem":
            return index0 + 1 < n ? items[index0 + 1] : .undefined(JinjaUndefined(message: "there is no next item"))
        case "cycle", "changed":
            return .callable(.method(.loop(self), name))
        default:
            return nil
        }
    }
}

/// A macro bound to the frame it was defined in (Jinja2 macros read outer names when called, not when defined).
final class JinjaMacro {
    let definition: JinjaMacroDefinition
    /// Cleared when the render ends, which breaks the cycle frame → macro → frame.
    var closure: JinjaScope?

    init(definition: JinjaMacroDefinition, closure: JinjaScope) {
        self.definition = definition
        self.closure = closure
    }
}

/// Something a template can call.
indirect enum JinjaCallable {
    case macro(JinjaMacro)
    /// A global function: `range`, `namespace`, `dict`, `raise_exception`, `strftime_now` (and Jinja2's `cycler`,
    /// `joiner` and `lipsum`, refused when called).
    case function(String)
    /// A method bound to its object: `text.split`, `message.get`, `loop.cycle`.
    case method(JinjaValue, String)

    var typeName: String {
        switch self {
        case .macro: return "Macro"
        case .function: return "function"
        case .method: return "builtin_function_or_method"
        }
    }

    /// How errors name it.
    var describe: String {
        switch self {
        case .macro(let m): return "macro '\(m.definition.name)'"
        case .function(let name): return "function '\(name)'"
        case .method(let object, let name): return "method '\(name)' of '\(object.typeName)' object"
        }
    }
}

/// Positional and keyword arguments of a call, bound to parameter names the way Python binds them.
struct JinjaCallArguments {
    var positional: [JinjaValue] = []
    var keyword: [(String, JinjaValue)] = []

    /// The values of `parameters` in order (nil for those not given).
    /// - Throws: a type error for too many positional arguments, an unknown keyword or a repeated one.
    func bind(_ parameters: [String], _ function: String) throws -> [JinjaValue?] {
        guard positional.count <= parameters.count else {
            throw JinjaFailure.type("\(function)() takes at most \(parameters.count) argument(s) (\(positional.count) given)")
        }
        var bound = [JinjaValue?](repeating: nil, count: parameters.count)
        for (i, v) in positional.enumerated() { bound[i] = v }
        for (name, v) in keyword {
            guard let i = parameters.firstIndex(of: name) else {
                throw JinjaFailure.type("\(function)() got an unexpected keyword argument '\(name)'")
            }
            guard bound[i] == nil else { throw JinjaFailure.type("\(function)() got multiple values for argument '\(name)'") }
            bound[i] = v
        }
        return bound
    }

    /// Fails unless the call has no arguments.
    func none(_ function: String) throws {
        guard positional.isEmpty && keyword.isEmpty else { throw JinjaFailure.type("\(function)() takes no arguments") }
    }
}
