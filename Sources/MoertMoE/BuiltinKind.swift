// BuiltinKind: the names of the router and expert kinds every model can use without plugins.

/// Kinds every model can use without plugins; a plugin may not register these names.
public enum BuiltinKind {
    /// The architecture's own router as config.json describes it: softmax top-k (`SoftmaxTopKRouter`) for
    /// Mixtral, Qwen2/3-MoE and OLMoE, the routing of `RoutingConfig` (`ScoredTopKRouter`) for the others.
    public static let router = "topk"
    /// DeepSeek-V2's router (softmax; greedy or group-limited greedy; `routed_scaling_factor`).
    public static let deepseekV2Router = "deepseek_v2"
    /// DeepSeek-V3's router, also GLM-4.5's (sigmoid; `e_score_correction_bias` for selection; group top-k).
    public static let deepseekV3Router = "deepseek_v3"
    /// gpt-oss's router (gate with bias; top-k of the logits; softmax over the k).
    public static let gptOssRouter = "gpt_oss"
    /// Every built-in router kind, the architecture's own first.
    public static let routers = [router, deepseekV2Router, deepseekV3Router, gptOssRouter]
    /// The architecture's SwiGLU expert (`StoredExpert`).
    public static let expert = "ffn"
}
