// `moert quantize`: a copy of a checkpoint with its weights in another storage type.

#if canImport(Glibc)
import Glibc
#endif
import MoertCore
import MoertFormats
import MoertTensor
import MoertText

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
    do {
        options.rules = try args.strings("--tensor-type").map(TensorTypeRule.init)
    } catch let e as MoertError {
        throw UsageError(e.message)
    }
    var notes: [String: JSON] = ["type": .string(main.rawValue)]
    for (flag, key) in [("--attention", "attention"), ("--experts", "experts"), ("--shared", "shared"), ("--output-type", "output_type")] {
        if let t = args.string(flag) { notes[key] = .string(t) }
    }
    if !options.rules.isEmpty { notes["tensor_types"] = .array(options.rules.map { .string($0.text) }) }
    var bitPlan: (ExpertBitPlan, ExpertUsage)?
    switch (args.string("--calibration"), args.string("--bits")) {
    case (nil, nil): break
    case (let file?, let bits?):
        guard options.experts == nil else { throw UsageError("--bits chooses the experts' types; do not also give --experts") }
        guard let average = Double(bits) else { throw UsageError("--bits must be a number, got '\(bits)'") }
        let plan = try expertBitPlan(model: model, calibration: file, averageBits: average)
        options.tensors = plan.2
        notes["bits"] = .double(plan.0.averageBits)
        notes["calibration_tokens"] = .int(Int64(plan.1.tokens))
        bitPlan = (plan.0, plan.1)
    default: throw UsageError("--calibration and --bits go together")
    }
    var quantizer = try Quantizer(directory: model, options: options)
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
    if let (plan, usage) = bitPlan { printBitPlan(plan, usage) }
}

/// Runs the model over the calibration file (token ids: integers separated by commas or white space; anything else
/// is text, tokenized without special tokens) and plans q8_0/q4_0/q3_0 per routed expert at `averageBits` (q4_k for
/// q4_0 where an expert's rows are whole super-blocks); returns the plan, the usage it came from, and the type of each
/// routed-expert tensor.
private func expertBitPlan(model path: String, calibration file: String, averageBits: Double)
    throws -> (ExpertBitPlan, ExpertUsage, [String: WeightStorage]) {
    let text = try readTextArgument(file, option: "--calibration", limit: 64 << 20)
    let model = try Model(path: path)
    var tokens: [Int32]
    let words = text.split { $0 == "," || $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
    if !words.isEmpty, words.allSatisfy({ Int32($0) != nil }) {
        tokens = words.map { Int32($0)! }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= model.config.vocabSize }) {
            throw UsageError("--calibration: token id \(bad) is outside the vocabulary (0 to \(model.config.vocabSize - 1))")
        }
    } else {
        tokens = try ModelText(path: path).tokenizer.encode(text, addSpecialTokens: false)
    }
    let cap = 1 << 16
    if tokens.count > cap {
        printError("calibration: using the first \(cap) of \(tokens.count) tokens")
        tokens = Array(tokens[..<cap])
    }
    let window = min(model.contextLength, 2048)
    printError("calibration: \(tokens.count) tokens in windows of up to \(window)")
    let usage = try ExpertUsage.measure(model: model, tokens: tokens, window: window)
    let plan = try ExpertBitPlan(usage: usage, averageBits: averageBits).preferringQ4K(model.checkpoint)
    return (plan, usage, plan.tensorTypes(model.checkpoint))
}

/// Per MoE layer: the experts given each type, most bits first, with their share of the layer's routing-weight mass.
private func printBitPlan(_ plan: ExpertBitPlan, _ usage: ExpertUsage) {
    print("per-expert bits: \(oneDecimal(plan.averageBits)) bits per routed-expert weight on average, from \(usage.tokens) calibration tokens")
    for layer in plan.types.keys.sorted() {
        let types = plan.types[layer]!, mass = usage.mass[layer] ?? [], total = max(mass.reduce(0, +), 1e-30)
        let kinds = Set(types).sorted { ($0.bitsPerWeight, $0.rawValue) > ($1.bitsPerWeight, $1.rawValue) }
        let groups = kinds.compactMap { type -> String? in
            let members = types.indices.filter { types[$0] == type }
            guard !members.isEmpty else { return nil }
            let share = members.reduce(0.0) { $0 + (($1 < mass.count) ? mass[$1] : 0) } / total
            return "\(type.rawValue) experts \(members.map(String.init).joined(separator: ",")) (\(oneDecimal(share * 100))% of the routing weight)"
        }
        print("  layer \(layer): " + groups.joined(separator: "; "))
    }
}

/// `n` right-aligned to the width of `widest`.
private func pad(_ n: Int, _ widest: Int) -> String {
    let s = String(n), w = String(widest).count
    return String(repeating: " ", count: max(0, w - s.count)) + s
}

/// Per class: tensors, types written and bytes before/after; then the tensors that kept their type and why.
private func printSummary(_ plan: QuantizePlan, source: String, out: String) {
    func mib(_ bytes: Int) -> String {
        bytes < 1 << 20 ? oneDecimal(Double(bytes) / 1024) + " KiB" : oneDecimal(Double(bytes) / 1048576) + " MiB"
    }
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
    for f in fallbacks.prefix(20) { print("  not as asked: \(f.name): \(f.fallback!)") }
    if fallbacks.count > 20 { print("  not as asked: ... and \(fallbacks.count - 20) more") }
}
