// LatentAttentionWeights: the projections of one layer's multi-head latent attention (DeepSeek-V2/V3).

import MoertTensor

/// The weights of `DeepseekV2Attention` / `DeepseekV3Attention` (transformers), by their checkpoint names.
public struct LatentAttentionWeights: Sendable {
    /// Where queries come from.
    public enum Query: Sendable {
        /// `q_proj` [heads · qk_head_dim, hidden] (q_lora_rank null).
        case direct(Linear)
        /// `q_a_proj` [q_lora_rank, hidden] (bias with attention_bias), `q_a_layernorm` [q_lora_rank], `q_b_proj`
        /// [heads · qk_head_dim, q_lora_rank].
        case compressed(a: Linear, norm: Weight, b: Linear)
    }

    /// The query projection(s).
    public let query: Query
    /// `kv_a_proj_with_mqa` [kv_lora_rank + qk_rope_head_dim, hidden] (bias with attention_bias): the latent and
    /// the shared rope key of a position.
    public let kvA: Linear
    /// `kv_a_layernorm` [kv_lora_rank], applied to the latent.
    public let kvANorm: Weight
    /// `kv_b_proj` [heads · (qk_nope_head_dim + v_head_dim), kv_lora_rank]: per head, rows 0 ..< qk_nope_head_dim
    /// expand the latent into the key (W_UK), the next v_head_dim rows into the value (W_UV).
    public let kvB: Weight
    /// `o_proj` [hidden, heads · v_head_dim] (bias with attention_bias).
    public let o: Linear
}
