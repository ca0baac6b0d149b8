// Arguments: a small `--flag value` parser with typed accessors and one-line errors.

import MoertFormats

/// A command-line usage error; printed as one line, exit status 2.
struct UsageError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// Parsed `--name value` options and `--switch` flags of one command.
struct Arguments {
    private var values: [String: String] = [:]
    private var lists: [String: [String]] = [:]
    private var switches: Set<String> = []

    /// Parses `args`; `valued` names options that take a value, `flags` those that do not.
    init(_ args: ArraySlice<String>, valued: Set<String>, flags: Set<String>) throws {
        var i = args.startIndex
        while i < args.endIndex {
            let a = args[i]
            var name = a, inline: String?
            if let eq = a.firstIndex(of: "="), a.hasPrefix("--") {
                name = String(a[..<eq])
                inline = String(a[a.index(after: eq)...])
            }
            if flags.contains(name) && inline == nil {
                switches.insert(name)
            } else if valued.contains(name) {
                if let inline {
                    values[name] = inline
                } else {
                    i += 1
                    guard i < args.endIndex else { throw UsageError("\(name) needs a value") }
                    values[name] = args[i]
                }
                lists[name, default: []].append(values[name]!)
            } else {
                throw UsageError("unknown argument '\(a)'")
            }
            i += 1
        }
    }

    /// True when the switch was given.
    func has(_ name: String) -> Bool { switches.contains(name) }

    /// The option's text, if given (the last one when given several times).
    func string(_ name: String) -> String? { values[name] }

    /// Every value of an option that may be given several times, in order.
    func strings(_ name: String) -> [String] { lists[name] ?? [] }

    /// The option's text, required.
    func required(_ name: String) throws -> String {
        guard let v = values[name] else { throw UsageError("missing \(name)") }
        return v
    }

    /// An integer option, or `def` when absent.
    func int(_ name: String, default def: Int) throws -> Int {
        guard let s = values[name] else { return def }
        guard let v = Int(s) else { throw UsageError("\(name) must be an integer, got '\(s)'") }
        return v
    }

    /// A float option, or `def` when absent.
    func float(_ name: String, default def: Float) throws -> Float {
        guard let s = values[name] else { return def }
        guard let v = Float(s), v.isFinite else { throw UsageError("\(name) must be a number, got '\(s)'") }
        return v
    }

    /// A comma-separated list of token ids.
    func tokens(_ name: String) throws -> [Int32] {
        let s = try required(name)
        let parts = s.split(separator: ",", omittingEmptySubsequences: false)
        guard !parts.isEmpty, !s.isEmpty else { throw UsageError("\(name) needs at least one token id") }
        return try parts.map {
            guard let v = Int32($0.trimmingSpaces) else { throw UsageError("\(name): '\($0)' is not a token id") }
            return v
        }
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return s
    }
}

/// The text of the UTF-8 file an option names (`option`, for messages), of at most `limit` bytes.
/// - Throws: `UsageError` for a file too large or not UTF-8; `MoertError` (`.io`) when it cannot be read.
func readTextArgument(_ path: String, option: String, limit: Int) throws -> String {
    let file = try MappedFile(path: path)
    guard file.size <= limit else { throw UsageError("\(option): \(path) is larger than \(limit >> 20) MiB") }
    guard let text = String(validating: file.bytes, as: UTF8.self) else { throw UsageError("\(option): \(path) is not valid UTF-8") }
    return text
}
