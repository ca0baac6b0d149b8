// RoutingConfig+Checks: whether a routing can select k experts of a layer, with messages naming the config keys.

import MoertTensor

extension RoutingConfig {
    /// The groups and kept groups of a group-limited selection; nil for greedy selection.
    public var groups: (groups: Int, keptGroups: Int)? {
        switch selection {
        case .greedy: return nil
        case .groupLimited(let g, let kept), .correctedGroupLimited(let g, let kept): return (g, kept)
        }
    }

    /// Checks that this routing can select `topK` of `experts` experts, as transformers would run it without
    /// failing or picking masked-out experts.
    /// - Parameters:
    ///   - experts: the layer's routed experts.
    ///   - topK: experts selected per token.
    ///   - topKName: the key or parameter `topK` came from, for messages (`num_experts_per_tok`, `top_k`).
    /// - Throws: `MoertError` (`.format`) naming the key: n_group not dividing the experts, topk_group outside
    ///   [1, n_group], a group of one expert under noaux_tc (it ranks groups by their two best scores), more
    ///   experts per token than the kept groups hold, or a routed_scaling_factor that is not finite and positive.
    public func check(experts: Int, topK: Int, topKName: String = "num_experts_per_tok") throws {
        guard scalingFactor.isFinite, scalingFactor > 0 else {
            throw MoertError.format("routed_scaling_factor must be finite and positive, got \(scalingFactor)")
        }
        guard topK >= 1, topK <= experts else {
            throw MoertError.format("\(topKName) \(topK) must be in [1, \(experts)] (the layer's experts)")
        }
        guard let (g, kept) = groups else { return }
        guard g >= 1, experts % g == 0 else {
            throw MoertError.format("n_group \(g) must be >= 1 and divide the \(experts) experts")
        }
        guard kept >= 1, kept <= g else {
            throw MoertError.format("topk_group \(kept) must be in [1, n_group \(g)]")
        }
        let perGroup = experts / g
        if case .correctedGroupLimited = selection, perGroup < 2 {
            throw MoertError.format("n_group \(g) leaves \(perGroup) expert per group; noaux_tc ranks groups by the sum of their two best scores and needs at least 2")
        }
        guard topK <= kept * perGroup else {
            throw MoertError.format("\(topKName) \(topK) exceeds the \(kept * perGroup) experts of the topk_group \(kept) kept groups (n_group \(g), \(perGroup) experts each)")
        }
    }
}
