// ModelConfig+GLM: the keys of Glm4MoeConfig (transformers 5.25 configuration_glm4_moe.py) that shape the MLPs and
// the routing; attention keys (attention_bias, use_qk_norm, partial_rotary_factor) are read with the others.

import MoertTensor

extension ModelConfig {
    /// What the GLM-4.5 MoE keys decide, for `init(json:source:)` to store.
    struct GLMKeys {
        var numExperts: Int
        var intermediateSize: Int
        var moeIntermediateSize: Int
        var sharedExpertIntermediateSize: Int
        var denseLayers: Set<Int>
        var routing: RoutingConfig
        var numNextnPredictLayers: Int
    }

    /// Reads the GLM-4.5 MoE keys: DeepSeek-V3's routing (`Glm4MoeTopkRouter`: sigmoid scores,
    /// e_score_correction_bias, groups ranked by their two best scores), shared experts and dense first layers.
    /// Sizes must be present; the routing keys default as Glm4MoeConfig defaults them (n_group and topk_group 1,
    /// routed_scaling_factor 1, norm_topk_prob true), as do the multi-token-prediction layers it skips (1).
    /// - Throws: `MoertError` (`.format`) naming the key.
    static func glm4Moe(_ keys: _ConfigReader, layers: Int, source: String) throws -> GLMKeys {
        let experts = try keys.int(keys.raw("n_routed_experts") == nil ? "num_local_experts" : "n_routed_experts", min: 1)
        let moeWidth = try keys.int("moe_intermediate_size", min: 1)
        let shared = try keys.int("n_shared_experts", min: 0)
        let (sharedWidth, overflow) = moeWidth.multipliedReportingOverflow(by: shared)
        guard !overflow, sharedWidth <= Int(Int32.max) else {
            throw MoertError.format("\(source): n_shared_experts \(shared) × moe_intermediate_size \(moeWidth) is too large")
        }
        let groups = try keys.int("n_group", min: 1, default: 1), kept = try keys.int("topk_group", min: 1, default: 1)
        var routing = RoutingConfig()
        routing.scoring = .sigmoid
        routing.selection = .correctedGroupLimited(groups: groups, keptGroups: kept)
        routing.normalizeTopK = try keys.bool("norm_topk_prob", default: true)
        routing.scalingFactor = Float(try keys.double("routed_scaling_factor", default: 1))
        do {
            try routing.check(experts: experts, topK: try keys.int("num_experts_per_tok", min: 1))
        } catch let e as MoertError {
            throw MoertError.format("\(source): \(e.message)")
        }
        let firstDense = try keys.int("first_k_dense_replace", min: 0)
        let mtpKey = keys.raw("num_nextn_predict_layers") != nil ? "num_nextn_predict_layers" : "num_mtp_layers"
        return GLMKeys(numExperts: experts, intermediateSize: try keys.int("intermediate_size", min: 1),
                       moeIntermediateSize: moeWidth, sharedExpertIntermediateSize: sharedWidth,
                       denseLayers: Set(0..<min(firstDense, layers)), routing: routing,
                       numNextnPredictLayers: try keys.int(mtpKey, min: 0, default: 1))
    }
}
