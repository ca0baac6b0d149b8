// TopPRouter: router kind `topp` — top-p (cumulative-probability) dynamic routing.
//
// Source: Huang et al., "Harder Tasks Need More Experts: Dynamic Routing in MoE Models" (ACL 2024); reference
// code ZhenweiAn/Dynamic_MoE @ f56bc20db1, `modeling/modeling_moe.py` (`SwitchMLP`,
// `top_p_sampling_batched_all_sequence`), as restated in ALGORITHMS.md section 7.
//
// Math, per token x in R^H with E experts:
//   p = softmax(W x)                      float32, maximum subtracted; W = `gate.weight` [E, H]
//   sort p descending (ties: lower expert index first): p_(1) >= p_(2) >= ...
//   c_i = p_(1) + ... + p_(i)             float32, in rank order
//   keep ranks 1 ... i*, i* = the first i with c_i > p* (strictly); all E when no c_i exceeds p*
//   at most `max_experts` ranks are kept (a moert cap; the reference has none)
//   weights = the kept p_(i) themselves, NOT renormalised
// The threshold is compared in float32, as PyTorch compares a float32 tensor with a Python float. The router
// writes W x to the output logits.
//
// Params: `threshold` p* (a number in [0, 1], default 0.4: p* = 0 keeps the top-1, p* = 1 keeps all E);
// `max_experts` (integer in [1, E], default E; declared as max_experts_per_token).
// Tensors: `P gate.weight` [E, H] (the model's own gate, so `topp` can replace the router of any checkpoint).
//
// Threads: instances are immutable after create; route keeps its scratch in a per-call temporary allocation, so
// it may run concurrently on one instance.

import CMoert

/// The `topp` router of one MoE layer.
final class TopPRouter: DynamicRouter {
    static let kind = "topp"

    let experts: Int
    let hidden: Int
    /// p*, in float32.
    let threshold: Float
    /// The cap on kept experts.
    let maxExperts: Int
    /// W [E, H], borrowed from the host until destroy.
    let gate: UnsafePointer<Float>
    let setError: SetErrorFunction?

    var maxPerToken: Int { maxExperts }

    init(host: HostAccess, context: OpaquePointer?, layer: LayerFacts) throws(PluginFailure) {
        experts = layer.experts
        hidden = layer.hidden
        setError = host.setError
        let p = try host.number(context, "threshold") ?? 0.4
        guard p.isFinite, p >= 0, p <= 1 else {
            throw .invalid("topp: parameter threshold = \(p): expected a number in [0, 1]")
        }
        threshold = Float(p)
        maxExperts = try host.integer(context, "max_experts", default: experts, in: 1...experts)
        gate = try host.tensor(context, "gate.weight", shape: [experts, hidden])
    }

    func route(_ batch: RouterBatch) throws(PluginFailure) {
        let e = experts, h = hidden, k = maxExperts
        // scratch: p [E] | ranked probabilities [k]; ranked ids [k]
        try withUnsafeTemporaryAllocation(of: Float.self, capacity: e + k) { (f) throws(PluginFailure) in
            try withUnsafeTemporaryAllocation(of: Int32.self, capacity: k) { (ids) throws(PluginFailure) in
                guard let p = f.baseAddress, let ranked = ids.baseAddress else { return }
                let values = p + e
                for t in 0..<batch.count {
                    // [E, H] x [H] -> [E]
                    GateMath.matvec(gate, batch.x + t * h, rows: e, cols: h, into: p)
                    guard GateMath.allFinite(p, count: e) else {
                        throw .invalid("topp: router logits of token \(t) are not finite")
                    }
                    if let logits = batch.logits { (logits + t * e).update(from: p, count: e) }
                    GateMath.softmax(p, count: e)
                    // Only the first k ranks can be kept, so a top-k is as good as the full sort.
                    GateMath.topK(p, count: e, k: k, ids: ranked, values: values)
                    var kept = k
                    var cumulative: Float = 0
                    for i in 0..<k {
                        cumulative += values[i]
                        if cumulative > threshold { kept = i + 1; break }
                    }
                    (batch.ids + t * batch.rowCapacity).update(from: ranked, count: kept)
                    (batch.weights + t * batch.rowCapacity).update(from: values, count: kept)
                    batch.counts[t] = Int32(kept)
                }
            }
        }
    }

    /// The `topp` ops table (name filled in by the plugin's entry point).
    static func ops() -> moert_router_ops {
        var ops = moert_router_ops()
        ops.struct_size = UInt32(MemoryLayout<moert_router_ops>.size)
        ops.abi_version = UInt32(MOERT_PLUGIN_ABI_VERSION)
        ops.create = { RouterEntry.create(TopPRouter.self, $0, $1, $2, $3, $4) }
        ops.route = { RouterEntry.route(TopPRouter.self, $0, $1, $2) }
        ops.destroy = { RouterEntry.destroy(TopPRouter.self, $0) }
        return ops
    }
}
