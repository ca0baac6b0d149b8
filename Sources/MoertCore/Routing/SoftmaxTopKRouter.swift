// SoftmaxTopKRouter: the learned gate of Mixtral, Qwen2/3-MoE and OLMoE — softmax, top-k, optional renormalisation.

/// p = softmax(Wg x) in float32; keep the k largest (lower expert index first on ties); if `normalize`,
/// divide them by their sum (`MixtralSparseMoeBlock.forward`, `Qwen2MoeSparseMoeBlock.forward`,
/// `OlmoeSparseMoeBlock.route_tokens_to_experts`).
public final class SoftmaxTopKRouter: Router {
    /// The gate, [experts, hidden].
    public let gate: Linear
    /// Experts kept per token.
    public let topK: Int
    /// Renormalise the kept probabilities to sum to one.
    public let normalize: Bool

    public var expertCount: Int { gate.outFeatures }
    public var kind: String { BuiltinKind.router }
    public var stateSize: Int { 0 }

    /// Creates the router; `topK` must be in 1...experts.
    public init(gate: Linear, topK: Int, normalize: Bool) {
        precondition(topK >= 1 && topK <= gate.outFeatures)
        self.gate = gate
        self.topK = topK
        self.normalize = normalize
    }

    public func route(_ input: RouterInput, into table: inout RoutingTable, logits: UnsafeMutablePointer<Float>,
                      scratch: inout [Float]) throws {
        let e = expertCount, n = input.count
        if scratch.count < e { scratch = [Float](repeating: 0, count: e) }
        var ids = [Int32](repeating: 0, count: topK)
        var ws = [Float](repeating: 0, count: topK)
        // [n, H] x [E, H]^T -> [n, E]
        gate.applyGEMM(input.x, rows: n, into: logits)
        try scratch.withUnsafeMutableBufferPointer { buf in
            let p = buf.baseAddress!
            for t in 0..<n {
                let row = logits + t * e
                guard (0..<e).allSatisfy({ row[$0].isFinite }) else {
                    throw MoertError(.internal, "layer \(input.layer): router logits are not finite")
                }
                p.update(from: row, count: e)
                softmaxInPlace(p, count: e)
                selectTopK(p, count: e, k: topK, ids: &ids, weights: &ws)
                if normalize {
                    var sum: Float = 0
                    for j in 0..<topK { sum += ws[j] }
                    for j in 0..<topK { ws[j] /= sum }
                }
                table.append(experts: ids, weights: ws)
            }
        }
    }
}

/// The k largest of `count` values, largest first; among equal values the lower index comes first.
func selectTopK(_ p: UnsafePointer<Float>, count: Int, k: Int, ids: inout [Int32], weights: inout [Float]) {
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
