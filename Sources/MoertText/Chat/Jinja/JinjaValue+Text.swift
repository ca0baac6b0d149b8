// JinjaValue+Text: how values become text, as Python's str() and repr() write them (Jinja2 renders with str()).

extension JinjaValue {
    /// Python's `str(value)`: what `{{ value }}` writes. None is "None", True "True", floats keep a ".0".
    /// - Throws: `.unsupported` for functions and macros, whose Python text holds a memory address.
    func str() throws -> String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return try repr()
        }
    }

    /// Python's `repr(value)`: strings quoted, as lists and dicts show their items.
    func repr() throws -> String {
        var out = ""
        try appendRepr(to: &out, depth: 0)
        return out
    }

    /// `depth` counts enclosing values: a namespace can hold itself, so nesting is bounded here too.
    private func appendRepr(to out: inout String, depth: Int) throws {
        try JinjaLimits.checkText(out.utf8.count)
        guard depth <= JinjaLimits.maxNesting else { throw JinjaLimits.nestingError() }
        switch self {
        case .undefined: out += "Undefined"
        case .none: out += "None"
        case .bool(let b): out += b ? "True" : "False"
        case .int(let i): out += String(i)
        case .double(let d): out += PythonText.floatRepr(d)
        case .string(let s): out += PythonText.repr(s)
        case .list(let l):
            switch l.kind {
            case .iterator:
                throw JinjaFailure.unsupported("writing a generator as text (Python writes its memory address)")
            case .range(let start, let stop, let step):
                out += "range(\(start), \(stop)" + (step == 1 ? ")" : ", \(step))")
                return
            case .view(let name):
                out += name + "("
                try JinjaValue.list(l.items).appendRepr(to: &out, depth: depth + 1)
                out += ")"
                return
            case .list, .tuple:
                break
            }
            out += l.isTuple ? "(" : "["
            for (i, item) in l.items.enumerated() {
                if i > 0 { out += ", " }
                try item.appendRepr(to: &out, depth: depth + 1)
            }
            if l.isTuple && l.items.count == 1 { out += "," }
            out += l.isTuple ? ")" : "]"
        case .dict(let d):
            out += "{"
            for i in 0..<d.count {
                if i > 0 { out += ", " }
                try d.keys[i].appendRepr(to: &out, depth: depth + 1)
                out += ": "
                try d.values[i].appendRepr(to: &out, depth: depth + 1)
            }
            out += "}"
        case .namespace(let ns):
            // jinja2.utils.Namespace.__repr__: f"<Namespace {self.__attrs!r}>"
            out += "<Namespace {"
            for (i, name) in ns.names.enumerated() {
                if i > 0 { out += ", " }
                out += PythonText.repr(name) + ": "
                try ns.values[name, default: .none].appendRepr(to: &out, depth: depth + 1)
            }
            out += "}>"
        case .loop(let loop):
            out += "<LoopContext \(loop.index0 + 1)/\(loop.items.count)>"
        case .callable(let c):
            throw JinjaFailure.unsupported("writing \(c.describe) as text (Python writes its memory address)")
        }
    }
}
