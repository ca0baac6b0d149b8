// TraceCommand: `moert trace` — routing decisions as JSON and a per-layer load summary.

import MoertCore
import MoertFormats
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// `moert trace`.
func traceCommand(_ args: Arguments) throws {
    let tokens = try args.tokens("--tokens")
    let out = try args.required("--out")
    let maxNew = try args.int("--max-new", default: 0)
    guard maxNew >= 0 else { throw UsageError("--max-new must be >= 0") }
    let m = try loadModel(args)
    let s = try makeSession(m, args)
    s.isTracing = true
    var sampler = try Sampler(options: SamplerOptions())
    var all = tokens
    if maxNew > 0 {
        all += try s.generate(prompt: tokens, maxNewTokens: maxNew, ignoreEOS: true, sampler: &sampler)
    } else {
        try tokens.withUnsafeBufferPointer { try s.evaluate($0, mode: .none, logits: nil, capacity: 0) }
    }
    let trace = s.trace
    let (counts, layers, width) = s.expertCounts
    let blocks = m.moeBlocks
    let moeLayerIndex = m.layers.indices.filter { if case .moe = m.layers[$0].mlp { return true }; return false }

    var json = "{\n  \"model\": \(JSON.quote(try args.required("--model"))),\n  \"tokens\": [\(all.map(String.init).joined(separator: ", "))],\n"
    json += "  \"layers\": [\(moeLayerIndex.map(String.init).joined(separator: ", "))],\n"
    json += "  \"expert_kinds\": [\(blocks.map { "[" + $0.experts.map { JSON.quote($0.kind) }.joined(separator: ", ") + "]" }.joined(separator: ", "))],\n"
    json += "  \"counts\": [\((0..<layers).map { l in "[" + (0..<blocks[l].experts.count).map { String(counts[l * width + $0]) }.joined(separator: ", ") + "]" }.joined(separator: ", "))],\n"
    json += "  \"records\": [\n"
    for r in 0..<trace.count {
        let lo = Int(trace.offsets[r]), hi = Int(trace.offsets[r + 1])
        json += "    {\"position\": \(trace.positions[r]), \"layer\": \(trace.layers[r]), \"token\": \(trace.tokens[r]), "
        json += "\"experts\": [\(trace.expertIds[lo..<hi].map(String.init).joined(separator: ", "))], "
        json += "\"weights\": [\(trace.weights[lo..<hi].map { String(describing: $0) }.joined(separator: ", "))]}"
        json += r + 1 < trace.count ? ",\n" : "\n"
    }
    json += "  ]\n}\n"
    try writeText(path: out, json)

    print("layer  tokens  routed  zero-compute  cv     tokens per expert")
    for l in 0..<layers {
        let row = (0..<blocks[l].experts.count).map { counts[l * width + $0] }
        let total = row.reduce(0, +)
        let zero = zip(row, blocks[l].experts).filter { $0.1.isZeroCompute }.map(\.0).reduce(0, +)
        let mean = Double(total) / Double(max(row.count, 1))
        let variance = row.map { (Double($0) - mean) * (Double($0) - mean) }.reduce(0, +) / Double(max(row.count, 1))
        let cv = mean > 0 ? variance.squareRoot() / mean : 0
        let share = total > 0 ? Double(zero) / Double(total) : 0
        let tokensSeen = trace.layers.filter { Int($0) == moeLayerIndex[l] }.count
        print(pad(String(moeLayerIndex[l]), 7) + pad(String(tokensSeen), 8) + pad(String(total), 8) + pad(percent(share), 14) + pad(fixed(cv), 7)
              + row.map(String.init).joined(separator: " "))
    }
}

/// Writes `text` to `path`.
/// - Throws: `MoertError` (`.io`).
func writeText(path: String, _ text: String) throws {
    guard let f = fopen(path, "wb") else { throw MoertError(.io, "\(path): cannot open for writing: \(String(cString: strerror(errno)))") }
    defer { fclose(f) }
    let ok = text.withCString { fputs($0, f) >= 0 }
    guard ok else { throw MoertError(.io, "\(path): write failed") }
}

func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count) }
func fixed(_ v: Double) -> String {
    let r = Int((v * 1000).rounded())
    return "\(r / 1000).\(String(repeating: "0", count: 3 - String(r % 1000).count))\(r % 1000)"
}
func percent(_ v: Double) -> String {
    let tenths = Int((v * 1000).rounded())
    return "\(tenths / 10).\(tenths % 10)%"
}
