// ModelConfig+DeepSeek: the keys of DeepseekV2Config and DeepseekV3Config (transformers 5.25
// configuration_deepseek_v2.py / configuration_deepseek_v3.py) that change the computation.

import MoertTensor

extension ModelConfig {
    /// What the DeepSeek keys decide, for `init(json:source:)` to store.
    struct DeepSeekKeys {
        var mla: MLAConfig
        var ropePairing: RopePairing
        var routing: RoutingConfig
        var numExperts: Int
        var intermediateSize: Int
        var moeIntermediateSize: Int
        var sharedExpertIntermediateSize: Int
        var firstKDenseReplace: Int
        var numNextnPredictLayers: Int
    }

    /// Reads the DeepSeek-V2/V3 keys. Every size must be present (none is taken from a released model). Keys that
    /// transformers ignores but DeepSeek's own code reads (V2's `norm_topk_prob`, `moe_layer_freq`, V3's
    /// `topk_method`, `scoring_func`) are accepted only with the value both agree on, so that no checkpoint runs
    /// as a silently different model.
    /// - Throws: `MoertError` naming the key (`.format` for missing or ill-typed values, `.unsupported` for
    ///   options moert does not run).
    static func deepSeek(_ keys: _ConfigReader, arch: Architecture, heads: Int, source: String) throws -> DeepSeekKeys {
        let isV3 = arch == .deepseekV3
        func string(_ key: String) throws -> String? {
            guard let v = keys.raw(key), !v.isNull else { return nil }
            guard let s = v.string else { throw MoertError.format("\(source): \"\(key)\" must be a string") }
            return s
        }
        guard keys.raw("q_lora_rank") != nil else {
            throw MoertError.format("\(source): missing \"q_lora_rank\" (an integer, or null for q_proj)")
        }
        let qLoraRank = keys.raw("q_lora_rank")!.isNull ? nil : try keys.int("q_lora_rank", min: 1)
        var mla = MLAConfig(qLoraRank: qLoraRank, kvLoraRank: try keys.int("kv_lora_rank", min: 1),
                            qkNopeHeadDim: try keys.int("qk_nope_head_dim", min: 1),
                            qkRopeHeadDim: try keys.int("qk_rope_head_dim", min: 2),
                            vHeadDim: try keys.int("v_head_dim", min: 1),
                            attentionBias: try keys.bool("attention_bias", default: false))
        guard mla.qkRopeHeadDim % 2 == 0 else {
            throw MoertError.format("\(source): qk_rope_head_dim \(mla.qkRopeHeadDim) must be even for RoPE")
        }
        mla.softmaxScale = Float(1 / Double(mla.qkHeadDim).squareRoot())
        if try keys.bool("mlp_bias", default: false) {
            throw MoertError.unsupported("\(source): mlp_bias true is not supported (DeepSeek MLPs without biases)")
        }
        let freq = try keys.int("moe_layer_freq", min: 1, default: 1)
        guard freq == 1 else {
            throw MoertError.unsupported("\(source): moe_layer_freq \(freq) is not supported (transformers' DeepSeek models make every layer from first_k_dense_replace on a MoE layer: 1)")
        }

        let experts = try keys.int("n_routed_experts", min: 1)
        let moeWidth = try keys.int("moe_intermediate_size", min: 1)
        let shared = try keys.int("n_shared_experts", min: 0)
        let (sharedWidth, o) = moeWidth.multipliedReportingOverflow(by: shared)
        guard !o, sharedWidth <= Int(Int32.max) else {
            throw MoertError.format("\(source): n_shared_experts \(shared) × moe_intermediate_size \(moeWidth) is too large")
        }
        var routing = RoutingConfig()
        let scaling = try keys.double("routed_scaling_factor", default: isV3 ? .nan : 1)
        guard scaling.isFinite, scaling > 0 else {
            throw MoertError.format("\(source): \"routed_scaling_factor\" must be a positive number\(isV3 ? " (DeepSeek-V3 needs it)" : "")")
        }
        routing.scalingFactor = Float(scaling)
        func groups() throws -> (groups: Int, kept: Int) {
            let g = try keys.int("n_group", min: 1), kept = try keys.int("topk_group", min: 1)
            guard experts % g == 0 else {
                throw MoertError.format("\(source): n_routed_experts \(experts) is not a multiple of n_group \(g)")
            }
            guard kept <= g else { throw MoertError.format("\(source): topk_group \(kept) exceeds n_group \(g)") }
            return (g, kept)
        }
        let topK = try keys.int("num_experts_per_tok", min: 1)
        if isV3 {
            // DeepseekV3TopkRouter: sigmoid, e_score_correction_bias, groups ranked by their two best scores.
            if let m = try string("topk_method"), m != "noaux_tc" {
                throw MoertError.unsupported("\(source): topk_method \"\(m)\" is not supported for \(arch.rawValue) (only noaux_tc)")
            }
            if let f = try string("scoring_func"), f != "sigmoid" {
                throw MoertError.unsupported("\(source): scoring_func \"\(f)\" is not supported for \(arch.rawValue) (only sigmoid)")
            }
            let (g, kept) = try groups()
            guard experts / g >= 2 else {
                throw MoertError.format("\(source): n_group \(g) leaves fewer than two experts per group (groups are ranked by their two best scores)")
            }
            guard kept * (experts / g) >= topK else {
                throw MoertError.format("\(source): topk_group \(kept) groups of \(experts / g) experts hold fewer than num_experts_per_tok \(topK)")
            }
            routing.scoring = .sigmoid
            routing.selection = .correctedGroupLimited(groups: g, keptGroups: kept)
            routing.normalizeTopK = try keys.bool("norm_topk_prob", default: true)
        } else {
            // DeepseekV2TopkRouter: softmax, greedy or group-limited greedy, never renormalised.
            if let f = try string("scoring_func"), f != "softmax" {
                throw MoertError.unsupported("\(source): scoring_func \"\(f)\" is not supported for \(arch.rawValue) (only softmax)")
            }
            switch try string("topk_method") ?? "greedy" {
            case "greedy":
                routing.selection = .greedy
            case "group_limited_greedy":
                let (g, kept) = try groups()
                guard kept * (experts / g) >= topK else {
                    throw MoertError.format("\(source): topk_group \(kept) groups of \(experts / g) experts hold fewer than num_experts_per_tok \(topK)")
                }
                routing.selection = .groupLimited(groups: g, keptGroups: kept)
            case let m:
                throw MoertError.unsupported("\(source): topk_method \"\(m)\" is not supported for \(arch.rawValue) (supported: greedy, group_limited_greedy)")
            }
            if try keys.bool("norm_topk_prob", default: false) {
                throw MoertError.unsupported("\(source): norm_topk_prob true is not supported for \(arch.rawValue) (transformers' DeepseekV2TopkRouter never renormalises, DeepSeek's own code does)")
            }
            routing.scoring = .softmax
            routing.normalizeTopK = false
        }

        let pairing: RopePairing
        if isV3 {
            pairing = try keys.bool("rope_interleave", default: true) ? .interleaved : .halves
        } else {
            pairing = .interleaved  // apply_rotary_emb: complex multiplication of consecutive pairs
        }
        let mtpKey = keys.raw("num_nextn_predict_layers") != nil ? "num_nextn_predict_layers" : "num_mtp_layers"
        return DeepSeekKeys(mla: mla, ropePairing: pairing, routing: routing, numExperts: experts,
                            intermediateSize: try keys.int("intermediate_size", min: 1), moeIntermediateSize: moeWidth,
                            sharedExpertIntermediateSize: sharedWidth,
                            firstKDenseReplace: try keys.int("first_k_dense_replace", min: 0),
                            numNextnPredictLayers: try keys.int(mtpKey, min: 0, default: 0))
    }

    /// The softmax scale of multi-head latent attention: qk_head_dim^-1/2 (in double, as Python computes it), times
    /// mscale(factor, mscale_all_dim)² for YaRN (`yarn_apply_mscale`).
    static func latentSoftmaxScale(qkHeadDim: Int, rope: RopeConfig) -> Float {
        var scale = 1 / Double(qkHeadDim).squareRoot()
        if case .yarn(let y) = rope.scaling { scale *= y.softmaxScaleFactor }
        return Float(scale)
    }
}
