// ExpertBits: bit widths per routed expert from how the router uses each expert on calibration input (the idea of
// MC-MoE, "Mixture Compressor for MoE LLMs": experts routed more often and with more weight get more bits).

import MoertFormats
import MoertTensor

/// How often, and with how much routing weight, each routed expert was chosen on some input.
public struct ExpertUsage: Sendable {
    /// Tokens evaluated.
    public var tokens = 0
    /// Decoder layer → expert → times chosen.
    public var counts: [Int: [Int]] = [:]
    /// Decoder layer → expert → sum of its routing weights over the tokens that chose it.
    public var mass: [Int: [Double]] = [:]

    /// Runs `model` over `tokens` in consecutive windows of at most `window` tokens, each from an empty cache, and
    /// records every routing decision.
    /// - Throws: the errors of evaluation; `MoertError` (`.invalidArgument`) for no tokens.
    public static func measure(model: Model, tokens: [Int32], window: Int) throws -> ExpertUsage {
        guard !tokens.isEmpty else { throw MoertError.invalid("calibration: no tokens") }
        var usage = ExpertUsage()
        for block in model.moeBlocks {
            usage.counts[block.layer.layer] = [Int](repeating: 0, count: block.experts.count)
            usage.mass[block.layer.layer] = [Double](repeating: 0, count: block.experts.count)
        }
        let span = max(1, min(window, model.contextLength))
        var start = 0
        while start < tokens.count {
            let chunk = Array(tokens[start..<min(tokens.count, start + span)])
            let session = try Session(model: model)
            session.isTracing = true
            try chunk.withUnsafeBufferPointer { try session.evaluate($0, mode: .none, logits: nil, capacity: 0) }
            let t = session.trace
            for r in 0..<t.count {
                let layer = Int(t.layers[r])
                for i in Int(t.offsets[r])..<Int(t.offsets[r + 1]) {
                    let e = Int(t.expertIds[i])
                    guard e >= 0, e < usage.counts[layer]?.count ?? 0 else { continue }
                    usage.counts[layer]![e] += 1
                    usage.mass[layer]![e] += Double(t.weights[i])
                }
            }
            usage.tokens += chunk.count
            start += span
        }
        return usage
    }
}

/// A choice of storage type per routed expert at a requested average number of bits per weight.
public struct ExpertBitPlan: Sendable {
    /// Decoder layer → expert → its type.
    public var types: [Int: [WeightStorage]]
    /// The average bits per routed-expert weight the plan reaches.
    public var averageBits: Double

    /// Gives each layer's most used experts (by routing-weight mass, then by count) `high` and the others `low`, as
    /// many at `high` in every layer as brings the average bits per weight of the routed experts closest to
    /// `averageBits` (all experts of a model have the same size).
    /// - Throws: `MoertError` (`.invalidArgument`) when `averageBits` is outside [low, high].
    public init(usage: ExpertUsage, averageBits asked: Double, high: WeightStorage = .q8_0, low: WeightStorage = .q4_0) throws {
        let lo = low.bitsPerWeight, hi = high.bitsPerWeight
        guard asked.isFinite, asked >= lo - 1e-9, asked <= hi + 1e-9 else {
            throw MoertError.invalid("--bits \(asked): must be between \(lo) (every expert \(low.rawValue)) and \(hi) (every expert \(high.rawValue))")
        }
        let fraction = (asked - lo) / (hi - lo)
        var types: [Int: [WeightStorage]] = [:]
        var highCount = 0, total = 0
        for (layer, mass) in usage.mass {
            let n = mass.count
            let recorded = usage.counts[layer] ?? []
            let counts = recorded.count == n ? recorded : [Int](repeating: 0, count: n)
            let k = Int((fraction * Double(n)).rounded())
            let order = (0..<n).sorted { (a: Int, b: Int) -> Bool in
                if mass[a] != mass[b] { return mass[a] > mass[b] }
                if counts[a] != counts[b] { return counts[a] > counts[b] }
                return a < b
            }
            var chosen = [WeightStorage](repeating: low, count: n)
            for e in order.prefix(k) { chosen[e] = high }
            types[layer] = chosen
            highCount += min(k, n)
            total += n
        }
        self.types = types
        averageBits = total == 0 ? lo : lo + (hi - lo) * Double(highCount) / Double(total)
    }

    /// The per-tensor types of QuantizeOptions for the routed-expert tensors of `checkpoint` ("…layers.<l>.…
    /// experts.<e>.…").
    public func tensorTypes(_ checkpoint: Checkpoint) -> [String: WeightStorage] {
        var map: [String: WeightStorage] = [:]
        for name in checkpoint.tensorNames where TensorClass.of(name) == .experts {
            guard let (layer, e) = TensorClass.routedExpert(name), let type = types[layer], e < type.count else { continue }
            map[name] = type[e]
        }
        return map
    }
}
