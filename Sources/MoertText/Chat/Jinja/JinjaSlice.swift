// JinjaSlice: Python's `sequence[start:stop:step]` on lists, tuples and strings.

enum JinjaSlice {
    /// The positions `slice(start, stop, step)` selects in a sequence of `count` items (Python's
    /// `slice.indices`, Objects/sliceobject.c).
    static func positions(count n: Int, _ start: Int?, _ stop: Int?, _ step: Int) -> [Int] {
        let lower = step > 0 ? 0 : -1
        let upper = step > 0 ? n : n - 1
        func clamp(_ v: Int?, _ missing: Int) -> Int {
            guard var v else { return missing }
            if v < 0 {
                v += n
                if v < lower { v = lower }
            } else if v > upper {
                v = upper
            }
            return v
        }
        let begin = clamp(start, step < 0 ? upper : lower)
        let end = clamp(stop, step < 0 ? lower : upper)
        var result: [Int] = []
        var i = begin
        while step > 0 ? i < end : i > end {
            result.append(i)
            let (next, overflow) = i.addingReportingOverflow(step)
            if overflow { break }
            i = next
        }
        return result
    }

    /// `object[start:stop:step]`; undefined where Jinja2's sandbox swallows Python's TypeError (a dict, a
    /// non-integer bound).
    static func apply(_ object: JinjaValue, _ start: JinjaValue?, _ stop: JinjaValue?, _ step: JinjaValue?) throws -> JinjaValue {
        func bound(_ v: JinjaValue?) -> Int?? {
            guard let v else { return .some(nil) }
            if case .none = v { return .some(nil) }
            if let (i, _) = JinjaCompare.number(v), let i { return .some(i) }
            return nil
        }
        let missing = JinjaValue.undefined(JinjaUndefined(message: "\(object.objectTypeRepr) has no element slice"))
        guard let a = bound(start), let b = bound(stop), let c = bound(step) else { return missing }
        let stride = c ?? 1
        guard stride != 0 else { throw JinjaFailure.type("slice step cannot be zero") }
        switch object {
        case .list(let l) where l.kind.isIndexable:
            let items = positions(count: l.items.count, a, b, stride).map { l.items[$0] }
            return .list(try JinjaList(items, kind: l.kind == .tuple ? .tuple : .list))
        case .string(let s):
            let scalars = Array(s.unicodeScalars)
            return .string(PythonText.string(positions(count: scalars.count, a, b, stride).map { scalars[$0] }))
        default:
            return missing
        }
    }
}
