// JinjaFailure: the errors of a template render before they become a MoertError, and the limits that stop one.

import MoertTensor

/// An error raised while rendering, named after the Python exception Jinja2 would raise. `JinjaRenderer` turns it
/// into a `MoertError` that names the template line.
enum JinjaFailure: Error {
    /// `TypeError`, `ValueError`, `ZeroDivisionError` and the like: the template did something Python refuses.
    case type(String)
    /// `UndefinedError`: an undefined value used for more than rendering, testing or iterating.
    case undefined(String)
    /// `SecurityError`: the sandbox refused an attribute (`list.append`, `_private` names).
    case security(String)
    /// A construct Jinja2 has that moert does not, named (" is not supported" follows).
    case unsupported(String)
    /// `raise_exception(message)` was called: the message is the whole error.
    case raised(String)
    /// A limit of `JinjaLimits` was reached.
    case limit(String)

    /// The error as moert reports it; `line` is the template line of the statement that failed (0 when unknown).
    func moertError(line: Int) -> MoertError {
        let at = line > 0 ? "chat template line \(line): " : "chat template: "
        switch self {
        case .raised(let m): return .invalid(m)
        case .type(let m), .undefined(let m), .security(let m): return .invalid(at + m)
        case .unsupported(let m): return .unsupported(at + m + " is not supported")
        case .limit(let m): return MoertError(.outOfRange, at + m)
        }
    }
}

/// The bounds every render stays within, so that a template that loops forever, recurses without end or builds
/// huge text is stopped with an error instead of hanging or exhausting memory. Real chat templates stay far below
/// each one: a long conversation renders to a few MB, and their loops run a few times per message.
enum JinjaLimits {
    /// Longest text a render may build, its output or any string along the way: 64 MiB (UTF-8 bytes).
    static let maxTextBytes = 64 << 20
    /// Longest list a render may build (`[x] * n`, `range` is capped lower, at Jinja2's sandbox limit).
    static let maxListCount = 1 << 22
    /// Work units per render: one per loop iteration, macro call and element a filter visits. An empty loop iteration
    /// takes about 4 µs in a debug build, so the budget stops a runaway template within about 20 s there (sooner in
    /// a release build); Qwen3's template spends about two per message, gpt-oss's up to one per pair of messages
    /// after a tool call.
    static let maxSteps = 5_000_000
    /// Depth of nested macro calls (recursion): Python would stop Jinja2 somewhat above this.
    static let maxCallDepth = 100
    /// Nesting of blocks and expressions in the source, checked while parsing.
    static let maxSourceNesting = 100
    /// Nesting of lists and dicts in values (JSON input is parsed to at most 64).
    static let maxNesting = 128
    /// Jinja2's sandbox refuses `range()` longer than this (`jinja2.sandbox.MAX_RANGE`).
    static let maxRange = 100_000

    static func nestingError() -> JinjaFailure {
        .limit("lists and dicts nested deeper than \(maxNesting)")
    }

    /// Fails when a string of `bytes` UTF-8 bytes would exceed `maxTextBytes`.
    static func checkText(_ bytes: Int) throws {
        guard bytes <= maxTextBytes else { throw JinjaFailure.limit("text longer than \(maxTextBytes) bytes") }
    }

    /// Fails when `parts` joined by `separator` would exceed `maxTextBytes` (checked before joining them).
    static func checkJoined(_ parts: [String], _ separator: String) throws {
        var total = separator.utf8.count * max(0, parts.count - 1)
        for p in parts {
            total += p.utf8.count
            try checkText(total)
        }
        try checkText(total)
    }

    /// Fails when a list of `count` items would exceed `maxListCount`.
    static func checkList(_ count: Int) throws {
        guard count <= maxListCount else { throw JinjaFailure.limit("list longer than \(maxListCount) items") }
    }
}
