// DecoderLayer: the weights of one decoder layer — attention and an MLP that is a mixture of experts or dense.

import MoertMoE
import MoertTensor

/// Attention weights of one decoder layer.
public struct AttentionWeights: Sendable {
    /// The q, k, v and output projections.
    public let q: Linear, k: Linear, v: Linear, o: Linear
    /// q/k RMSNorm weights (per head [headDim], or over the projection), when the architecture has them.
    public let qNorm: Weight?, kNorm: Weight?
    /// One learned logit per query head [heads] that joins each softmax's denominator (`self_attn.sinks`, gpt-oss),
    /// when `ModelConfig.attentionSinks`.
    public var sinks: Weight? = nil
}

/// The attention of one decoder layer.
public enum LayerAttention: Sendable {
    /// Grouped-query attention (Mixtral, Qwen, OLMoE): q, k, v and output projections.
    case grouped(AttentionWeights)
    /// Multi-head latent attention (DeepSeek-V2/V3).
    case latent(LatentAttentionWeights)
}

/// The MLP of one decoder layer: a mixture of experts or a dense SwiGLU.
public enum LayerMLP: @unchecked Sendable {
    case moe(MoEBlock)
    case dense(SwiGLUExpert)
}

/// One decoder layer.
public struct DecoderLayer: @unchecked Sendable {
    /// RMSNorm before attention [hidden].
    public let inputNorm: Weight
    /// The attention projections.
    public let attention: LayerAttention
    /// RMSNorm before the MLP [hidden].
    public let postAttentionNorm: Weight
    /// The MLP.
    public let mlp: LayerMLP
}
