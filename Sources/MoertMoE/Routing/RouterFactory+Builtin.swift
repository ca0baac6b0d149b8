// RouterFactory+Builtin: the built-in router kinds — the architecture's own (`topk`), deepseek_v2, deepseek_v3 and
// gpt_oss — their parameters, the defaults they take from the layer's RoutingConfig, and the tensors they read.

import MoertFormats
import MoertTensor

extension RouterFactory {
    /// The built-in kind `kind` (one of `BuiltinKind.routers`) for `layer`.
    ///
    /// Every kind takes `top_k` (default num_experts_per_tok) and `rank` (keep only the expert at this 0-based rank
    /// of the selection; excludes `top_k`); a group-limited selection keeps its groups whatever k is, so k must fit
    /// in the experts of the kept groups.
    /// - `topk`: the layer's routing as config.json describes it, plus `normalize` (default norm_topk_prob; refused
    ///   for gpt-oss routing, whose softmax over the kept always sums to one).
    /// - `deepseek_v2`: softmax scores; `topk_method` (`greedy` or `group_limited_greedy`; default the layer's),
    ///   `n_group` and `topk_group` (group_limited_greedy only; default the layer's groups, else 1),
    ///   `normalize`, `routed_scaling_factor` (defaults the layer's).
    /// - `deepseek_v3`: sigmoid scores and `<gate>.e_score_correction_bias` for selection, groups ranked by their
    ///   two best; `n_group`, `topk_group`, `normalize`, `routed_scaling_factor` (defaults the layer's, groups
    ///   1 when the layer has none).
    /// - `gpt_oss`: the gate's logits with `<gate>.bias`, top-k, softmax over the k.
    ///
    /// The gate is `<prefix><gate>.weight` [experts, hidden] (`gate` from the layer's routing), with `<gate>.bias`
    /// when the routing (or gpt_oss) has one.
    /// - Throws: `MoertError`: an unknown parameter (`.format` from a checkpoint, `.invalidArgument` from a caller),
    ///   a bad parameter value (`.invalidArgument`), routing the layer cannot run or a missing correction bias or
    ///   gate bias (`.format` from a checkpoint, `.invalidArgument` from a caller), a missing gate (`.format`).
    static func makeBuiltin(_ kind: String, _ params: [String: JSON], for layer: MoELayerContext,
                            origin: Origin) throws -> Router {
        let p = BuiltinRouterParams(kind: kind, params: params, layer: layer, origin: origin)
        var routing = layer.routing
        let common = ["top_k", "normalize", "rank"], deepseek = ["routed_scaling_factor", "n_group", "topk_group"]
        switch kind {
        case BuiltinKind.deepseekV2Router:
            try p.allow(common + ["topk_method"] + deepseek)
            routing.scoring = .softmax
            var layerMethod = "greedy"
            if case .groupLimited = layer.routing.selection { layerMethod = "group_limited_greedy" }
            let method = try p.string("topk_method", oneOf: ["greedy", "group_limited_greedy"]) ?? layerMethod
            if method == "greedy" {
                guard params["n_group"] == nil, params["topk_group"] == nil else {
                    throw MoertError.invalid("layer \(layer.layer): n_group and topk_group apply only with topk_method group_limited_greedy")
                }
                routing.selection = .greedy
            } else {
                let (g, kept) = try p.groups()
                routing.selection = .groupLimited(groups: g, keptGroups: kept)
            }
            try p.normalizeAndScaling(&routing)
        case BuiltinKind.deepseekV3Router:
            try p.allow(common + deepseek)
            routing.scoring = .sigmoid
            let (g, kept) = try p.groups()
            routing.selection = .correctedGroupLimited(groups: g, keptGroups: kept)
            try p.normalizeAndScaling(&routing)
        case BuiltinKind.gptOssRouter:
            try p.allow(["top_k", "rank"])
            routing.scoring = .softmaxOfTopK
            routing.selection = .greedy
            routing.normalizeTopK = false
            routing.scalingFactor = 1
            routing.gateBias = true
        default:
            try p.allow(common)
            if routing.scoring == .softmaxOfTopK, params["normalize"] != nil {
                throw MoertError.invalid("layer \(layer.layer): normalize does not apply to this layer's routing (a softmax over the kept experts, which always sums to one)")
            }
            if let normalize = try p.bool("normalize") { routing.normalizeTopK = normalize }
        }
        guard params["rank"] == nil || params["top_k"] == nil else {
            throw MoertError.invalid("layer \(layer.layer): \(kind) router takes top_k or rank, not both")
        }
        let rank = try p.int("rank", in: 0...max(layer.experts - 1, 0), text: "[0, \(layer.experts))")
        let k = try p.int("top_k", in: 1...layer.experts, text: "[1, \(layer.experts)]") ?? rank.map { $0 + 1 }
            ?? min(layer.topK, layer.experts)
        let topKName = rank.map { "rank \($0) + 1 =" } ?? (params["top_k"] != nil ? "top_k" : "num_experts_per_tok")

        let gatePrefix = layer.prefix + routing.gate
        let weight = try layer.checkpoint.finiteWeight(gatePrefix + ".weight", shape: [layer.experts, layer.hidden])
        let bias = routing.gateBias ? try p.tensor(gatePrefix + ".bias", what: "the gate's bias") : nil
        if kind == BuiltinKind.router, routing.scoring == .softmax, routing.selection == .greedy,
           routing.scalingFactor == 1, bias == nil {
            // Mixtral, Qwen2/3-MoE, OLMoE: the plain softmax top-k.
            return SoftmaxTopKRouter(gate: Linear(weight: weight), topK: k, normalize: routing.normalizeTopK,
                                     firstRank: rank ?? 0)
        }
        var correction: Weight?
        if case .correctedGroupLimited = routing.selection {
            correction = try p.tensor(gatePrefix + ".e_score_correction_bias", what: "e_score_correction_bias")
        }
        do {
            return try ScoredTopKRouter(kind: kind, gate: Linear(weight: weight, bias: bias), correctionBias: correction,
                                        routing: routing, topK: k, firstRank: rank ?? 0, topKName: topKName)
        } catch let e as MoertError {
            throw p.refusal("cannot run: \(e.message)")
        }
    }
}

/// Reads the parameters of a built-in router kind for one layer, with messages naming the layer and the kind.
private struct BuiltinRouterParams {
    let kind: String
    let params: [String: JSON]
    let layer: MoELayerContext
    let origin: RouterFactory.Origin

    /// A refusal of routing the layer cannot run: a malformed file from a checkpoint, a bad argument from a caller.
    func refusal(_ message: String) -> MoertError {
        let text = "layer \(layer.layer): \(kind) router \(message)"
        return origin == .checkpoint ? MoertError.format(text) : MoertError.invalid(text)
    }

    /// Refuses a parameter outside `allowed`.
    func allow(_ allowed: [String]) throws {
        if let bad = params.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw refusal("has no parameter \(bad) (\(allowed.joined(separator: ", ")))")
        }
    }

    /// Integer parameter `name` in `range` (`text` shows the range), nil when absent.
    func int(_ name: String, in range: ClosedRange<Int>, text: String) throws -> Int? {
        try params[name].map { v in
            guard let i = v.int, i >= Int64(range.lowerBound), i <= Int64(range.upperBound) else {
                throw MoertError.invalid("layer \(layer.layer): \(name) must be an integer in \(text)")
            }
            return Int(i)
        }
    }

    /// Boolean parameter `name`, nil when absent.
    func bool(_ name: String) throws -> Bool? {
        try params[name].map { v in
            guard let b = v.bool else { throw MoertError.invalid("layer \(layer.layer): \(name) must be true or false") }
            return b
        }
    }

    /// String parameter `name`, one of `values`; nil when absent.
    func string(_ name: String, oneOf values: [String]) throws -> String? {
        try params[name].map { v in
            guard let s = v.string, values.contains(s) else {
                throw MoertError.invalid("layer \(layer.layer): \(name) must be one of \(values.joined(separator: ", "))")
            }
            return s
        }
    }

    /// `n_group` and `topk_group`: the parameters, else the layer's groups, else 1 (one group: no group limit).
    func groups() throws -> (Int, Int) {
        let layerGroups = layer.routing.groups
        let g = try int("n_group", in: 1...layer.experts, text: "[1, \(layer.experts)]") ?? layerGroups?.groups ?? 1
        let kept = try int("topk_group", in: 1...layer.experts, text: "[1, \(layer.experts)]")
            ?? layerGroups?.keptGroups ?? 1
        return (g, kept)
    }

    /// `normalize` and `routed_scaling_factor` into `routing` (absent: the layer's).
    func normalizeAndScaling(_ routing: inout RoutingConfig) throws {
        if let normalize = try bool("normalize") { routing.normalizeTopK = normalize }
        if let v = params["routed_scaling_factor"] {
            guard let d = v.double, d.isFinite, d > 0, Float(d).isFinite else {
                throw MoertError.invalid("layer \(layer.layer): routed_scaling_factor must be a finite positive number")
            }
            routing.scalingFactor = Float(d)
        }
    }

    /// The finite float vector `name` of the layer's experts, which this kind needs.
    /// - Throws: `refusal` when the checkpoint lacks it; `MoertError` (`.format`) for a wrong shape or a
    ///   non-finite value.
    func tensor(_ name: String, what: String) throws -> Weight {
        guard layer.checkpoint.contains(name) else {
            throw refusal("needs \(what), tensor \(name), which the checkpoint does not have")
        }
        return try layer.checkpoint.finiteWeight(name, shape: [layer.experts])
    }
}
