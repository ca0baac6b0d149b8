// RoutingConfig: how an architecture's built-in router scores and selects experts, as config.json describes it.

/// The built-in routing of a model, as plain values read from config.json (the routers that apply it live in
/// MoertMoE). The defaults describe Mixtral, Qwen2/3-MoE and OLMoE: softmax over every expert, the k best.
public struct RoutingConfig: Sendable, Equatable {
    /// How router logits become scores.
    public enum Scoring: String, Sendable {
        /// softmax over all experts (Mixtral, Qwen, OLMoE, DeepSeek-V2 `scoring_func: softmax`).
        case softmax
        /// an independent sigmoid per expert (DeepSeek-V3, GLM-4.5 `scoring_func: sigmoid`).
        case sigmoid
        /// top-k on the raw logits, then softmax over the k kept (gpt-oss `GptOssTopKRouter`).
        case softmaxOfTopK
    }

    /// How the k experts are selected from the scores.
    public enum Selection: Sendable, Equatable {
        /// The k best scores (`topk_method: greedy`).
        case greedy
        /// Experts form `groups` equal groups; only the `keptGroups` groups with the best maximum score compete
        /// (DeepSeek-V2 `topk_method: group_limited_greedy`, `n_group`, `topk_group`).
        case groupLimited(groups: Int, keptGroups: Int)
        /// Selection on scores plus the layer's `e_score_correction_bias`; groups ranked by the sum of their two
        /// best corrected scores (DeepSeek-V3 / GLM-4.5 `topk_method: noaux_tc`, `n_group`, `topk_group`). The
        /// weights are the uncorrected scores.
        case correctedGroupLimited(groups: Int, keptGroups: Int)
    }

    /// How logits become scores.
    public var scoring: Scoring = .softmax
    /// How experts are selected.
    public var selection: Selection = .greedy
    /// Divide the kept weights by their sum (`norm_topk_prob`).
    public var normalizeTopK: Bool = false
    /// Multiply the kept weights by this (`routed_scaling_factor`; 1 when absent).
    public var scalingFactor: Float = 1
    /// The gate has a bias (gpt-oss `router.bias`).
    public var gateBias: Bool = false
    /// The gate's module under the MoE block's prefix: its tensors are `<prefix><gate>.weight`, `.bias` and
    /// `.e_score_correction_bias`. `gate` in every architecture but gpt-oss (`router`).
    public var gate: String = "gate"

    /// The defaults: softmax, the k best, no renormalisation, no scaling, no bias.
    public init() {}
}
