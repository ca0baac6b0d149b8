// JinjaGlobals: the functions every template can call: Jinja2's `range`, and what transformers adds
// (`raise_exception`, `strftime_now`, its `namespace` and `dict`; chat_template_utils.py).

import Glibc

enum JinjaGlobals {
    /// Names Jinja2 defines but moert refuses when called (they hold state or randomness chat templates do not use).
    private static let refused: Set<String> = ["cycler", "joiner", "lipsum"]
    private static let provided: Set<String> = ["range", "namespace", "dict", "raise_exception", "strftime_now"]

    /// The global named `name`, or nil. Variables of the render shadow these, as in Jinja2.
    static func value(_ name: String) -> JinjaValue? {
        provided.contains(name) || refused.contains(name) ? .callable(.function(name)) : nil
    }

    static func call(_ name: String, _ args: JinjaCallArguments, _ renderer: JinjaRenderer) throws -> JinjaValue {
        switch name {
        case "range": return try range(args)
        case "namespace":
            let ns = renderer.makeNamespace()
            for (key, value) in try pairs(args, "namespace") {
                guard case .string(let k) = key else { throw JinjaFailure.type("namespace keywords must be strings") }
                guard !k.hasPrefix("_") else {
                    throw JinjaFailure.security("Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(k)'. Please rename the attribute.")
                }
                ns.set(k, value)
            }
            return .namespace(ns)
        case "dict":
            return .dict(try JinjaDict(try pairs(args, "dict")))
        case "raise_exception":
            let message = try args.bind(["message"], name)[0] ?? .undefined(.name("message"))
            throw JinjaFailure.raised(try message.str())
        case "strftime_now":
            guard case .string(let format)? = try args.bind(["format"], name)[0] else {
                throw JinjaFailure.type("strftime_now() argument must be str")
            }
            return .string(try strftime(format, renderer.fixedTime))
        default:
            throw JinjaFailure.unsupported("the global function '\(name)'")
        }
    }

    /// Python's `dict(mapping_or_pairs, **kwargs)` as key/value pairs.
    private static func pairs(_ args: JinjaCallArguments, _ function: String) throws -> [(JinjaValue, JinjaValue)] {
        guard args.positional.count <= 1 else {
            throw JinjaFailure.type("\(function) expected at most 1 argument, got \(args.positional.count)")
        }
        var result: [(JinjaValue, JinjaValue)] = []
        if let first = args.positional.first {
            switch first {
            case .dict(let d):
                for i in 0..<d.count { result.append((d.keys[i], d.values[i])) }
            case .namespace(let ns):
                for n in ns.names { result.append((.string(n), ns.values[n] ?? .none)) }
            default:
                for item in try JinjaRenderer.items(first) {
                    guard case .list(let pair) = item, pair.items.count == 2 else {
                        throw JinjaFailure.type("dictionary update sequence element has the wrong length; 2 is required")
                    }
                    result.append((pair.items[0], pair.items[1]))
                }
            }
        }
        for (k, v) in args.keyword { result.append((.string(k), v)) }
        return result
    }

    /// Python's `range(stop)`, `range(start, stop[, step])`, limited like Jinja2's sandbox `safe_range`.
    private static func range(_ args: JinjaCallArguments) throws -> JinjaValue {
        guard args.keyword.isEmpty else { throw JinjaFailure.type("range() takes no keyword arguments") }
        let ints = try args.positional.map { v -> Int in
            guard let (i, _) = JinjaCompare.number(v), let i else {
                try JinjaRenderer.failIfUndefined(v)
                throw JinjaFailure.type("'\(v.typeName)' object cannot be interpreted as an integer")
            }
            return i
        }
        let start, stop, step: Int
        switch ints.count {
        case 1: (start, stop, step) = (0, ints[0], 1)
        case 2: (start, stop, step) = (ints[0], ints[1], 1)
        case 3: (start, stop, step) = (ints[0], ints[1], ints[2])
        default: throw JinjaFailure.type("range expected 1 to 3 arguments, got \(ints.count)")
        }
        guard step != 0 else { throw JinjaFailure.type("range() arg 3 must not be zero") }
        // len(range) = ceil((stop - start) / step) when positive, computed without overflow in Double first.
        let span = (Double(stop) - Double(start)) / Double(step)
        guard span <= Double(JinjaLimits.maxRange) else {
            throw JinjaFailure.limit("Range too big. The sandbox blocks ranges larger than MAX_RANGE (\(JinjaLimits.maxRange)).")
        }
        var items: [JinjaValue] = []
        var i = start
        while step > 0 ? i < stop : i > stop {
            items.append(.int(i))
            let (next, overflow) = i.addingReportingOverflow(step)
            if overflow { break }
            i = next
        }
        guard items.count <= JinjaLimits.maxRange else {
            throw JinjaFailure.limit("Range too big. The sandbox blocks ranges larger than MAX_RANGE (\(JinjaLimits.maxRange)).")
        }
        return .list(try JinjaList(items, kind: .range(start, stop, step)))
    }

    /// `datetime.now().strftime(format)`: each `%` conversion goes through the C library's strftime (as CPython's
    /// does on Linux), except those Python handles itself for a naive datetime: `%f` (microseconds), and `%z`, `%Z`
    /// (empty without a time zone).
    /// - Parameter fixedTime: seconds since the epoch to format as UTC, or nil for the local time now.
    static func strftime(_ format: String, _ fixedTime: Int?) throws -> String {
        var now = timespec()
        if let fixedTime {
            now.tv_sec = time_t(fixedTime)
        } else {
            clock_gettime(CLOCK_REALTIME, &now)
        }
        var seconds = now.tv_sec
        var broken = tm()
        if fixedTime != nil { gmtime_r(&seconds, &broken) } else { localtime_r(&seconds, &broken) }
        let scalars = Array(format.unicodeScalars)
        var out = ""
        var i = 0
        while i < scalars.count {
            guard scalars[i] == "%", i + 1 < scalars.count else {
                out.unicodeScalars.append(scalars[i])
                i += 1
                continue
            }
            // %[flags][width][E|O]conversion, as glibc reads it.
            var k = i + 1
            while k < scalars.count, "_-0^#".unicodeScalars.contains(scalars[k]) { k += 1 }
            var width = 0
            while k < scalars.count, let d = Int(String(scalars[k])), scalars[k].isASCII { width = min(width * 10 + d, 999); k += 1 }
            if k < scalars.count, scalars[k] == "E" || scalars[k] == "O" { k += 1 }
            guard k < scalars.count else {
                out += PythonText.string(scalars[i...])
                break
            }
            let spec = PythonText.string(scalars[i...k])
            switch scalars[k] {
            case "f": out += sixDigits(Int(now.tv_nsec / 1000))
            case "z", "Z": break
            default:
                var buffer = [CChar](repeating: 0, count: 1100 + width)
                let n = spec.withCString { Glibc.strftime(&buffer, buffer.count, $0, &broken) }
                out += PythonText.string(buffer[0..<n].map { UInt8(bitPattern: $0) })
            }
            try JinjaLimits.checkText(out.utf8.count)
            i = k + 1
        }
        return out
    }
}

/// `value` as six digits (Python's `%f`).
private func sixDigits(_ value: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, 6 - digits.count)) + digits
}
