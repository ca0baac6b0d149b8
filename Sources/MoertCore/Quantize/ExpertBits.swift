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

    /// The types a plan chooses from, fewest bits first.
    public static let ladder: [WeightStorage] = [.q3_0, .q4_0, .q8_0]

    /// The expected squared error of a weight stored as `type`, relative to its block's largest magnitude squared:
    /// the square of the step between two quants (1/4 for q3_0, 1/8 for q4_0, 1/127 for q8_0). Rounding error is
    /// uniform over a step, so its variance is proportional to it.
    static func relativeNoise(_ type: WeightStorage) -> Double {
        let steps: Double = type == .q8_0 ? 127 : type == .q4_0 ? 8 : 4
        return 1 / (steps * steps)
    }

    /// Chooses a type of `ladder` for each routed expert so that the expected error of the routed experts' outputs
    /// is smallest at the average bits per weight closest to `averageBits` (all experts of a model have the same
    /// size): an expert's error counts as its routing-weight mass times its type's `relativeNoise`. Starting from
    /// every expert at the fewest bits, the upgrades to the next type that remove the most error per bit added are
    /// made first (mass, then count, then layer and expert order break ties), while they bring the average closer
    /// to the one asked for. Experts of equal use thus get equal bits (an expert moves from q4_0 to q8_0 before
    /// another leaves q3_0 only if it carries 12 times its routing weight), and the most used get more.
    /// - Throws: `MoertError` (`.invalidArgument`) when `averageBits` is outside the ladder's range.
    public init(usage: ExpertUsage, averageBits asked: Double) throws {
        let ladder = Self.ladder, lo = ladder.first!.bitsPerWeight, hi = ladder.last!.bitsPerWeight
        guard asked.isFinite, asked >= lo - 1e-9, asked <= hi + 1e-9 else {
            throw MoertError.invalid("--bits \(asked): must be between \(lo) (every expert \(ladder.first!.rawValue)) and \(hi) (every expert \(ladder.last!.rawValue))")
        }
        struct Step { var layer: Int, expert: Int, level: Int, gainPerBit: Double, mass: Double, count: Int }
        var steps: [Step] = [], level: [Int: [Int]] = [:], experts = 0
        for (layer, mass) in usage.mass {
            let recorded = usage.counts[layer] ?? []
            level[layer] = [Int](repeating: 0, count: mass.count)
            experts += mass.count
            for e in mass.indices {
                for j in 1..<ladder.count {
                    let bits = ladder[j].bitsPerWeight - ladder[j - 1].bitsPerWeight
                    let gain = mass[e] * (Self.relativeNoise(ladder[j - 1]) - Self.relativeNoise(ladder[j]))
                    steps.append(Step(layer: layer, expert: e, level: j, gainPerBit: gain / bits, mass: mass[e],
                                      count: e < recorded.count ? recorded[e] : 0))
                }
            }
        }
        steps.sort {
            if $0.gainPerBit != $1.gainPerBit { return $0.gainPerBit > $1.gainPerBit }
            if $0.level != $1.level { return $0.level < $1.level }
            if $0.mass != $1.mass { return $0.mass > $1.mass }
            if $0.count != $1.count { return $0.count > $1.count }
            return ($0.layer, $0.expert) < ($1.layer, $1.expert)
        }
        var total = lo * Double(experts)
        let budget = asked * Double(experts)
        for s in steps where level[s.layer]![s.expert] == s.level - 1 {
            let cost = ladder[s.level].bitsPerWeight - ladder[s.level - 1].bitsPerWeight
            guard cost < 2 * (budget - total) else { continue }  // the average would move no closer to the one asked
            level[s.layer]![s.expert] = s.level
            total += cost
        }
        types = level.mapValues { $0.map { ladder[$0] } }
        averageBits = experts == 0 ? lo : total / Double(experts)
    }

    /// The plan with q4_k in place of q4_0 for every routed expert of `checkpoint` whose projections all have rows
    /// of whole q4_k super-blocks: the same bits per weight, closer to the weights (docs/quality.md, "q4_k against
    /// q4_0 at the same size"). Other experts keep q4_0.
    public func preferringQ4K(_ checkpoint: Checkpoint) throws -> ExpertBitPlan {
        var misfits = Set<[Int]>()
        for name in checkpoint.tensorNames where TensorClass.of(name) == .experts {
            guard let (layer, e) = TensorClass.routedExpert(name) else { continue }
            let shape = try checkpoint.logicalShape(name)
            if shape.count != 2 || !WeightStorage.q4_k.fits(columns: shape[1]) { misfits.insert([layer, e]) }
        }
        var plan = self
        for (layer, types) in types {
            plan.types[layer] = types.enumerated().map { e, t in t == .q4_0 && !misfits.contains([layer, e]) ? .q4_k : t }
        }
        return plan
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
