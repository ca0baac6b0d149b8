// `moert quantize`: a copy of a checkpoint with its weights in another storage type.

#if canImport(Glibc)
import Glibc
#endif
import MoertCore
import MoertFormats
import MoertTensor

/// `moert quantize`.
func quantizeCommand(_ args: Arguments) throws {
    func type(_ flag: String) throws -> WeightStorage? {
        guard let text = args.string(flag) else { return nil }
        guard let t = WeightStorage(rawValue: text.lowercased()) else {
            throw UsageError("\(flag): unknown type '\(text)' (known: \(WeightStorage.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return t
    }
    let model = try args.required("--model"), out = try args.required("--out")
    guard let main = try type("--type") else { throw UsageError("missing --type") }
    var options = QuantizeOptions(type: main)
    options.attention = try type("--attention")
    options.experts = try type("--experts")
    options.shared = try type("--shared")
    options.outputType = try type("--output-type")
    var quantizer = try Quantizer(directory: model, options: options)
    var notes: [String: JSON] = ["type": .string(main.rawValue)]
    for (flag, key) in [("--attention", "attention"), ("--experts", "experts"), ("--shared", "shared"), ("--output-type", "output_type")] {
        if let t = args.string(flag) { notes[key] = .string(t) }
    }
    quantizer.notes = notes

    let count = quantizer.plan.tensors.count
    var index = 0
    try quantizer.write(to: out, overwrite: args.has("--force")) { done, total, tensor in
        index += 1
        let percent = total > 0 ? done * 100 / total : 100
        let type = tensor.target.map(\.rawValue) ?? tensor.sourceDType.rawValue.lowercased()
        printError("[\(pad(index, count))/\(count)] \(pad(percent, 100))% \(tensor.name) \(tensor.shape) -> \(type)")
    }
    printSummary(quantizer.plan, source: model, out: out)
}

/// `n` right-aligned to the width of `widest`.
private func pad(_ n: Int, _ widest: Int) -> String {
    let s = String(n), w = String(widest).count
    return String(repeating: " ", count: max(0, w - s.count)) + s
}

/// One line to stderr.
private func printError(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}

/// Per class: tensors, types written and bytes before/after; then the tensors that kept their type and why.
private func printSummary(_ plan: QuantizePlan, source: String, out: String) {
    func mib(_ bytes: Int) -> String { oneDecimal(Double(bytes) / 1048576) + " MiB" }
    var totalIn = 0, totalOut = 0
    print("wrote \(out) from \(source)")
    for cls in TensorClass.allCases {
        let members = plan.tensors.filter { $0.cls == cls }
        guard !members.isEmpty else { continue }
        let bytesIn = members.reduce(0) { $0 + $1.sourceBytes }
        let bytesOut = members.reduce(0) { $0 + $1.outputBytes }
        totalIn += bytesIn
        totalOut += bytesOut
        var types: [String: Int] = [:]
        for m in members { types[m.target?.rawValue ?? m.sourceDType.rawValue.lowercased(), default: 0] += 1 }
        let typeText = types.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        print("  \(cls.rawValue): \(members.count) tensors (\(typeText)), \(mib(bytesIn)) -> \(mib(bytesOut))")
    }
    print("  total: \(mib(totalIn)) -> \(mib(totalOut))")
    let fallbacks = plan.tensors.filter { $0.fallback != nil }
    for f in fallbacks.prefix(20) { print("  kept: \(f.name): \(f.fallback!)") }
    if fallbacks.count > 20 { print("  kept: ... and \(fallbacks.count - 20) more") }
}
