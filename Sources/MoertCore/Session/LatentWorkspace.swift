// LatentWorkspace: the scratch buffers of multi-head latent attention, sized once for a session's largest batch.

import MoertFormats
import MoertTensor

/// The buffers `Session.latentAttention` writes besides the shared workspace's queries.
final class LatentWorkspace {
    /// The compressed query before q_b_proj, [batch, q_lora_rank] (empty without q_lora_rank).
    let qa: FloatBuffer
    /// The new positions' cache rows (latent, then rope key), [batch, kv_lora_rank + qk_rope_head_dim].
    let kv: FloatBuffer
    /// Absorbed queries (q_nope · W_UK, then q_pe), [batch, heads, kv_lora_rank + qk_rope_head_dim].
    let query: FloatBuffer
    /// Attention over the latents, [batch, heads, kv_lora_rank].
    let ctxLatent: FloatBuffer
    /// The heads' values, [batch, heads · v_head_dim].
    let ctx: FloatBuffer
    /// One head's rows of kv_b_proj widened to float32, [qk_nope_head_dim + v_head_dim, kv_lora_rank].
    let head: FloatBuffer
    /// A layer's cached rows widened to float32 for prefill, [context, width]; nil with a float32 cache, read in
    /// place (decode reads every cache type in place).
    let widened: FloatBuffer?

    /// Buffers for batches of up to `batch` tokens and `context` cached positions of `kvType`.
    /// - Throws: `MoertError` (`.outOfMemory`).
    init(_ c: ModelConfig, _ mla: MLAConfig, batch: Int, context: Int, kvType: KVCacheType) throws {
        let nh = c.numAttentionHeads, w = mla.cacheWidth
        qa = try FloatBuffer(count: batch * (mla.qLoraRank ?? 0))
        kv = try FloatBuffer(count: batch * w)
        query = try FloatBuffer(count: batch * nh * w)
        ctxLatent = try FloatBuffer(count: batch * nh * mla.kvLoraRank)
        ctx = try FloatBuffer(count: batch * nh * mla.vHeadDim)
        head = try FloatBuffer(count: (mla.qkNopeHeadDim + mla.vHeadDim) * mla.kvLoraRank)
        widened = kvType == .f32 ? nil : try FloatBuffer(count: context * w)
    }
}
