// Workspace: a session's scratch buffers, allocated once for its largest batch.

import CKernels
import MoertMoE
import MoertTensor

/// Everything a forward pass writes besides the KV cache and the caller's logits, sized once for batches of up to
/// `batch` tokens (as llama2.c's RunState), so that evaluating tokens allocates nothing.
final class Workspace {
    /// The residual stream, [batch, H].
    let x: FloatBuffer
    /// Normed input of a block, [batch, max(H, nh·hd)] (the whole-projection q/k norms of OLMoE use it too).
    let xn: FloatBuffer
    /// A block's output before the residual addition, [batch, H].
    let tmp: FloatBuffer
    /// Queries [batch, nh·hd], keys and values [batch, nkv·hd], attention output [batch, nh·hd].
    let q, k, v, ctx: FloatBuffer
    /// Attention scores, [batch, context].
    let scores: FloatBuffer
    /// Scratch of decode attention (`moert_attention_decode_scratch`), grouped-query or latent.
    let decodeScratch: FloatBuffer
    /// A layer's cached keys and values widened to float32 for prefill, [context, nkv·hd] each (with a float32 cache,
    /// which full layers read in place, only the window - 1 + batch rows a sliding-window layer's prefill gathers);
    /// nil with a float32 cache and no sliding-window layer.
    let widenedKV: (keys: FloatBuffer, values: FloatBuffer)?
    /// Scratch of the attention projections and the LM head (`Linear.scratchCount`).
    let products: FloatBuffer
    /// MoE dispatch, experts and dense MLPs.
    let moe: MoEWorkspace
    /// Multi-head latent attention's buffers; nil for grouped-query attention.
    let latent: LatentWorkspace?

    /// Buffers for `model` with batches of up to `batch` tokens whose queries attend over at most `context` positions
    /// of a cache of `kvType`, whose longest ring buffer (sliding-window layer) holds `longestRing` positions (nil:
    /// none).
    /// - Throws: `MoertError` (`.outOfMemory`).
    init(model: Model, batch: Int, context: Int, kvType: KVCacheType, longestRing: Int? = nil) throws {
        let c = model.config
        let h = c.hiddenSize, qw = c.numAttentionHeads * c.headDim, kvw = c.numKeyValueHeads * c.headDim
        x = try FloatBuffer(count: batch * h)
        xn = try FloatBuffer(count: batch * max(h, qw))
        tmp = try FloatBuffer(count: batch * h)
        q = try FloatBuffer(count: batch * qw)
        k = try FloatBuffer(count: batch * kvw)
        v = try FloatBuffer(count: batch * kvw)
        ctx = try FloatBuffer(count: batch * qw)
        scores = try FloatBuffer(count: batch * context)
        // (multi-head latent attention attends over rows of kv_lora_rank + qk_rope_head_dim)
        let attendedWidth = c.mla?.cacheWidth ?? c.headDim
        decodeScratch = try FloatBuffer(count: Int(moert_attention_decode_scratch(Int32(c.numAttentionHeads), Int32(attendedWidth), Int64(context))))
        let widenedRows = kvType != .f32 ? context : longestRing.map { min(context, $0 - 1 + batch) } ?? 0
        widenedKV = widenedRows == 0 || c.mla != nil ? nil
            : (try FloatBuffer(count: widenedRows * kvw), try FloatBuffer(count: widenedRows * kvw))
        latent = try c.mla.map { try LatentWorkspace(c, $0, batch: batch, context: context, kvType: kvType) }

        var products = model.lmHead.scratchCount(rows: batch)
        var expertScratch = 0, widestInput = 0
        for layer in model.layers {
            let linears: [Linear]
            switch layer.attention {
            case .grouped(let a): linears = [a.q, a.k, a.v, a.o]
            case .latent(let a):
                switch a.query {
                case .direct(let q): linears = [q, a.kvA, a.o]
                case .compressed(let qa, _, let qb): linears = [qa, qb, a.kvA, a.o]
                }
            }
            for linear in linears {
                products = max(products, linear.scratchCount(rows: batch))
                widestInput = max(widestInput, linear.inFeatures)
            }
            switch layer.mlp {
            case .moe(let block):
                expertScratch = max(expertScratch, block.scratchCount(tokens: batch))
                widestInput = max(widestInput, block.widestInput)
            case .dense(let mlp):
                expertScratch = max(expertScratch, mlp.scratchCount(tokens: batch))
                widestInput = max(widestInput, mlp.intermediate)
            }
        }
        self.products = try FloatBuffer(count: products)
        moe = try MoEWorkspace(batch: batch, hidden: h, maxExperts: model.moeBlocks.map(\.experts.count).max() ?? 0,
                               expertScratch: expertScratch, decodeCount: model.moeBlocks.map(\.decodeCount).max() ?? 0,
                               widestInput: widestInput)
    }

    /// The products' scratch as the kernels take it.
    var productScratch: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: products.pointer, count: products.count)
    }
}
