// AdaMoERouter: router kind `adamoe` — top-k over true and null experts, weights renormalised over the true ones.
//
// Source: Zeng et al., "AdaMoE: Token-Adaptive Routing with Null Experts for Mixture-of-Experts Language Models"
// (Findings of EMNLP 2024); reference code CengZihao/AdaMoE @ 180f1227fb,
// `exp_2/LLaMA_Factory/src/llamafactory/model/adaptive_moe_utils.py` (`CustomMixtralSparseMoeBlock.forward`), as
// restated in ALGORITHMS.md section 6.
//
// Math, per token x in R^H with E true experts and m null experts:
//   l = [W x ; W2 x] in R^(E+m)           W = `gate.weight` [E, H], W2 = `gate2.weight` [m, H]
//   p = softmax(l)                        float32, maximum subtracted, over all E + m
//   (v, S) = top-k of p                   ties: lower index first (true experts before null ones)
//   keep e in S with e < E (rank order); w_e = v_e / sum of the kept v  (null experts absorb no weight)
//   a token whose top-k holds only null experts gets count 0: its MoE output is 0 (reference: the
//   denominator becomes 1 and no expert runs)
// Null experts are never computed. The router writes W x (the E true-expert logits; the null ones have no slot)
// to the output logits.
//
// Params: `top_k` (integer in [1, E + m], default: the layer's top_k). Declares max_experts_per_token = min(k, E).
// Tensors: `P gate.weight` [E, H], `P gate2.weight` [m, H] with m >= 1.
//
// Threads: instances are immutable after create; route keeps its scratch in a per-call temporary allocation, so
// it may run concurrently on one instance.

import CMoert

/// The `adamoe` router of one MoE layer.
final class AdaMoERouter: DynamicRouter {
    static let kind = "adamoe"

    let experts: Int
    let hidden: Int
    /// m: null experts.
    let nullExperts: Int
    /// k, over all E + m candidates.
    let topK: Int
    /// W [E, H] and W2 [m, H], borrowed from the host until destroy.
    let gate: UnsafePointer<Float>
    let nullGate: UnsafePointer<Float>
    let setError: SetErrorFunction?

    var maxPerToken: Int { min(topK, experts) }

    init(host: HostAccess, context: OpaquePointer?, layer: LayerFacts) throws(PluginFailure) {
        experts = layer.experts
        hidden = layer.hidden
        setError = host.setError
        gate = try host.tensor(context, "gate.weight", shape: [experts, hidden])
        // gate2's row count is m; read it before checking the shape against it.
        nullExperts = try host.leadingDimension(context, "gate2.weight",
                                                what: "[m, \(layer.hidden)] with m >= 1 null experts")
        nullGate = try host.tensor(context, "gate2.weight", shape: [nullExperts, hidden])
        // Candidate ids are Int32 in the ranking.
        guard layer.experts + nullExperts <= Int(Int32.max) else {
            throw .format("adamoe: \(layer.experts) experts + \(nullExperts) null experts exceed the id range")
        }
        topK = try host.integer(context, "top_k", default: layer.topK, in: 1...(experts + nullExperts))
    }

    func route(_ batch: RouterBatch) throws(PluginFailure) {
        let e = experts, m = nullExperts, h = hidden, k = topK
        // scratch: l/p [E + m] | top-k values [k]; top-k ids [k]
        try withUnsafeTemporaryAllocation(of: Float.self, capacity: e + m + k) { (f) throws(PluginFailure) in
            try withUnsafeTemporaryAllocation(of: Int32.self, capacity: k) { (s) throws(PluginFailure) in
                guard let p = f.baseAddress, let ids = s.baseAddress else { return }
                let values = p + e + m
                for t in 0..<batch.count {
                    let x = batch.x + t * h
                    // [E, H] x [H] -> [E]; [m, H] x [H] -> [m]; concatenated -> [E + m]
                    GateMath.matvec(gate, x, rows: e, cols: h, into: p)
                    GateMath.matvec(nullGate, x, rows: m, cols: h, into: p + e)
                    guard GateMath.allFinite(p, count: e + m) else {
                        throw .invalid("adamoe: router logits of token \(t) are not finite")
                    }
                    if let logits = batch.logits { (logits + t * e).update(from: p, count: e) }
                    GateMath.softmax(p, count: e + m)
                    GateMath.topK(p, count: e + m, k: k, ids: ids, values: values)
                    // Keep the true experts in rank order; renormalise over them only.
                    let rowIds = batch.ids + t * batch.rowCapacity
                    let rowWeights = batch.weights + t * batch.rowCapacity
                    var kept = 0
                    var sum: Float = 0
                    for j in 0..<k where Int(ids[j]) < e {
                        rowIds[kept] = ids[j]
                        rowWeights[kept] = values[j]
                        sum += values[j]
                        kept += 1
                    }
                    if sum > 0 { for j in 0..<kept { rowWeights[j] /= sum } }
                    batch.counts[t] = Int32(kept)
                }
            }
        }
    }

    /// The `adamoe` ops table (name filled in by the plugin's entry point).
    static func ops() -> moert_router_ops {
        var ops = moert_router_ops()
        ops.struct_size = UInt32(MemoryLayout<moert_router_ops>.size)
        ops.abi_version = UInt32(MOERT_PLUGIN_ABI_VERSION)
        ops.create = { RouterEntry.create(AdaMoERouter.self, $0, $1, $2, $3, $4) }
        ops.route = { RouterEntry.route(AdaMoERouter.self, $0, $1, $2) }
        ops.destroy = { RouterEntry.destroy(AdaMoERouter.self, $0) }
        return ops
    }
}
