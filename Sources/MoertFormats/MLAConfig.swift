// MLAConfig: the sizes of DeepSeek's multi-head latent attention as config.json gives them.

/// Multi-head latent attention (DeepSeek-V2 paper, section 2.1; `DeepseekV2Attention` in transformers): queries
/// from `q_proj`, or compressed to `qLoraRank` by `q_a_proj` and expanded by `q_b_proj`; keys and values compressed
/// into one latent of `kvLoraRank` per position plus a shared rope key of `qkRopeHeadDim`, expanded per head by
/// `kv_b_proj` into a key part of `qkNopeHeadDim` and a value of `vHeadDim`.
public struct MLAConfig: Sendable, Equatable {
    /// `q_lora_rank`: the width of the compressed query; nil when queries come from `q_proj` directly.
    public var qLoraRank: Int?
    /// `kv_lora_rank`: the width of the key/value latent.
    public var kvLoraRank: Int
    /// `qk_nope_head_dim`: the part of each query/key head without position.
    public var qkNopeHeadDim: Int
    /// `qk_rope_head_dim`: the rotated part of each query head and of the key shared by all heads.
    public var qkRopeHeadDim: Int
    /// `v_head_dim`: the width of each value head.
    public var vHeadDim: Int
    /// `attention_bias`: biases on q_a_proj, kv_a_proj_with_mqa and o_proj.
    public var attentionBias: Bool
    /// The attention softmax scale: qk_head_dim^-1/2, times YaRN's mscale(factor, mscale_all_dim)² when the rope
    /// is scaled (`yarn_apply_mscale`).
    public var softmaxScale: Float

    /// The width of a query/key head (`qk_head_dim`).
    public var qkHeadDim: Int { qkNopeHeadDim + qkRopeHeadDim }
    /// Values cached per position and layer: the normalised latent and the rotated shared key.
    public var cacheWidth: Int { kvLoraRank + qkRopeHeadDim }

    /// The sizes as named; `softmaxScale` starts at qk_head_dim^-1/2.
    public init(qLoraRank: Int?, kvLoraRank: Int, qkNopeHeadDim: Int, qkRopeHeadDim: Int, vHeadDim: Int,
                attentionBias: Bool) {
        self.qLoraRank = qLoraRank
        self.kvLoraRank = kvLoraRank
        self.qkNopeHeadDim = qkNopeHeadDim
        self.qkRopeHeadDim = qkRopeHeadDim
        self.vHeadDim = vHeadDim
        self.attentionBias = attentionBias
        softmaxScale = Float(1 / Double(qkNopeHeadDim + qkRopeHeadDim).squareRoot())
    }
}
