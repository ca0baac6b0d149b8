// SoftmaxTopKRouter: the learned gate of Mixtral, Qwen2/3-MoE and OLMoE — softmax, top-k, optional renormalisation.

import MoertTensor

/// p = softmax(Wg x) in float32; keep the k largest (lower expert index first on ties); if `normalize`,
/// divide them by their sum (`MixtralSparseMoeBlock.forward`, `Qwen2MoeSparseMoeBlock.forward`,
/// `OlmoeSparseMoeBlock.route_tokens_to_experts`). With `firstRank` r > 0 the r most probable are dropped from the
/// k: ranks r ..< k are kept (SCMoE's weak "rank-r routing" keeps rank r alone: r = k - 1).
public final class SoftmaxTopKRouter: Router {
    /// The gate, [experts, hidden].
    public let gate: Linear
    /// Experts kept per token.
    public let topK: Int
    /// Renormalise the kept probabilities to sum to one.
    public let normalize: Bool
    /// Ranks (0-based) before this one are not kept.
    public let firstRank: Int

    /// Experts the gate scores.
    public var expertCount: Int { gate.outFeatures }
    public var kind: String { BuiltinKind.router }
    public var stateSize: Int { 0 }

    /// Creates the router; `topK` must be in 1...experts and `firstRank` in 0..<topK.
    public init(gate: Linear, topK: Int, normalize: Bool, firstRank: Int = 0) {
        precondition(topK >= 1 && topK <= gate.outFeatures && firstRank >= 0 && firstRank < topK)
        self.gate = gate
        self.topK = topK
        self.normalize = normalize
        self.firstRank = firstRank
    }

    /// One row of probabilities, then the kept ids and weights: e + 2k floats whatever the batch.
    public func scratchCount(tokens n: Int) -> Int { expertCount + 2 * topK }

    public func route(_ input: RouterInput, into table: inout RoutingTable, logits: UnsafeMutablePointer<Float>,
                      scratch: UnsafeMutablePointer<Float>) throws {
        let e = expertCount, n = input.count, k = topK
        let p = scratch, weights = scratch + e
        // [n, H] x [E, H]^T -> [n, E]
        gate.applyGEMM(input.x, rows: n, into: logits)
        try (scratch + e + k).withMemoryRebound(to: Int32.self, capacity: k) { ids in
            for t in 0..<n {
                let row = logits + t * e
                guard (0..<e).allSatisfy({ row[$0].isFinite }) else {
                    throw MoertError(.numeric, "layer \(input.layer): router logits are not finite (the weights or the hidden states hold NaN or infinity)")
                }
                p.update(from: row, count: e)
                softmaxInPlace(p, count: e)
                selectTopK(p, count: e, k: k, ids: ids, weights: weights)
                let kept = firstRank..<k
                if normalize {
                    var sum: Float = 0
                    for j in kept { sum += weights[j] }
                    for j in kept { weights[j] /= sum }
                }
                table.append(experts: UnsafeBufferPointer(start: ids + firstRank, count: kept.count),
                             weights: UnsafeBufferPointer(start: weights + firstRank, count: kept.count))
            }
        }
    }
}

/// The k largest of `count` values into `ids` and `weights` (k each), largest first; among equal values the lower
/// index comes first.
package func selectTopK(_ p: UnsafePointer<Float>, count: Int, k: Int, ids: UnsafeMutablePointer<Int32>,
                        weights: UnsafeMutablePointer<Float>) {
    var filled = 0
    for i in 0..<count {
        let v = p[i]
        // Insertion into a sorted list of at most k; strict > keeps the earlier index ahead on ties.
        var pos = filled
        while pos > 0 && v > weights[pos - 1] { pos -= 1 }
        guard pos < k else { continue }
        var j = min(filled, k - 1)
        while j > pos { weights[j] = weights[j - 1]; ids[j] = ids[j - 1]; j -= 1 }
        weights[pos] = v
        ids[pos] = Int32(i)
        if filled < k { filled += 1 }
    }
}
