// Session+MLA: multi-head latent attention (DeepSeek-V2/V3) over the latent cache, in the absorbed form.

import CKernels
import MoertTensor

/// `DeepseekV2RMSNorm`'s default epsilon, which `q_a_layernorm` and `kv_a_layernorm` keep (transformers builds them
/// without `config.rms_norm_eps`).
private let latentNormEps: Float = 1e-6

extension Session {
    /// Multi-head latent attention of `n` new tokens against the latent cache (`DeepseekV2Attention.forward`), in
    /// the absorbed form: each head's query is moved into the latent space through kv_b_proj's key rows, attends
    /// over the cached rows [latent, k_pe] directly, and the result leaves the latent space through kv_b_proj's
    /// value rows, so that nothing per head is expanded for the cached positions. Prefill and decode run the same
    /// steps. Writes [n, H] into `out`.
    func latentAttention(_ a: LatentAttentionWeights, layer l: Int, _ xn: UnsafePointer<Float>, count n: Int,
                         into out: UnsafeMutablePointer<Float>) {
        let c = model.config, mla = c.mla!, m = ws.latent!, cache = latentCache!
        let nh = c.numAttentionHeads, qk = mla.qkHeadDim, nope = mla.qkNopeHeadDim, ropeDim = mla.qkRopeHeadDim
        let rank = mla.kvLoraRank, w = mla.cacheWidth, vd = mla.vHeadDim
        let q = ws.q.pointer, kv = m.kv.pointer, query = m.query.pointer, ctxLat = m.ctxLatent.pointer
        // The products of xn: the queries [n, H] -> [n, nh·qk] (or the compressed query [n, q_lora]), and the latent
        // and shared rope key [n, H] -> [n, rank + rope]; for one position as one job on the worker pool.
        let queryProduct: Linear, queryOut: UnsafeMutablePointer<Float>
        switch a.query {
        case .direct(let proj): (queryProduct, queryOut) = (proj, q)
        case .compressed(let qa, _, _): (queryProduct, queryOut) = (qa, m.qa.pointer)
        }
        if n == 1 {
            ws.moe.batch.add(queryProduct, xn, into: queryOut)
            ws.moe.batch.add(a.kvA, xn, into: kv)
            ws.moe.batch.run()
        } else {
            queryProduct.apply(xn, rows: n, into: queryOut, scratch: ws.productScratch)
            a.kvA.apply(xn, rows: n, into: kv, scratch: ws.productScratch)
        }
        if case .compressed(let qa, let norm, let qb) = a.query {
            rmsNorm(m.qa.pointer, weight: norm.data, rows: n, dim: qa.outFeatures, eps: latentNormEps, into: m.qa.pointer)
            qb.apply(m.qa.pointer, rows: n, into: q, scratch: ws.productScratch)        // [n, q_lora] -> [n, nh·qk]
        }
        // the latent normalised, k_pe and q_pe rotated
        for t in 0..<n {
            let row = kv + t * w
            rmsNorm(row, weight: a.kvANorm.data, rows: 1, dim: rank, eps: latentNormEps, into: row)
            model.rope.apply(row + rank, heads: 1, stride: w, position: position + t)
            model.rope.apply(q + t * nh * qk + nope, heads: nh, stride: qk, position: position + t)
        }
        cache.store(layer: l, position: position, rows: kv, count: n)

        // absorbed queries: per head q_nope [n, nope] x W_UK [nope, rank] -> [n, rank], then q_pe beside it; one
        // position reads kv_b_proj as stored, the heads split among the threads
        let kvB = a.kvB, direct = n == 1 && !kvB.storage.isQuantized
        let kernel = KernelProduct.gemv(kvB.storage).chosen.rawValue
        if direct {
            moert_latent_query(kernel, kvB.raw, kvB.storage.kernelType, q, Int64(qk), Int32(nh), Int64(nope), Int64(vd),
                               Int64(rank), query, Int64(w))
        } else {
            for h in 0..<nh {
                let wh = kvBHead(kvB, head: h, rows: nope + vd, rank: rank, scratch: m.head.pointer)
                latentQuery(q + h * qk, rows: n, qStride: nh * qk, wUK: wh, nope: nope, rank: rank,
                            into: query + h * w, outStride: nh * w)
            }
        }
        for t in 0..<n {
            for h in 0..<nh {
                (query + (t * nh + h) * w + rank).update(from: q + t * nh * qk + h * qk + nope, count: ropeDim)
            }
        }
        // attention of each new position over the positions up to itself (causal): [nh, w] -> [nh, rank]; one
        // position reads the cache as stored, several read it widened to float32
        let total = position + n
        if n == 1 {
            timingDecodeAttention {
                moert_latent_attention_decode(KernelProduct.attentionDecode.chosen.rawValue, query, cache.rows(layer: l),
                                              cache.type.code, Int32(nh), Int32(w), Int32(rank), Int64(total),
                                              mla.softmaxScale, ws.decodeScratch.pointer, ctxLat)
            }
        } else {
            let rows: UnsafePointer<Float>
            if let widened = m.widened {
                cache.load(layer: l, count: total, into: widened.pointer)
                rows = UnsafePointer(widened.pointer)
            } else {
                rows = UnsafePointer(cache.rows(layer: l).assumingMemoryBound(to: Float.self))
            }
            attentionPrefill(q: query, keys: rows, values: rows, rows: n, position: position, heads: nh, kvHeads: 1,
                             headDim: w, valueDim: rank, scale: mla.softmaxScale, scores: ws.scores.pointer,
                             scoresCount: ws.scores.count, into: ctxLat)
        }
        // values: per head ctx_lat [n, rank] x W_UV^T [rank, v] -> [n, v]
        if direct {
            moert_latent_output(kernel, kvB.raw, kvB.storage.kernelType, ctxLat, Int32(nh), Int64(nope), Int64(vd),
                                Int64(rank), m.ctx.pointer)
        } else {
            for h in 0..<nh {
                let wh = kvBHead(kvB, head: h, rows: nope + vd, rank: rank, scratch: m.head.pointer)
                latentOutput(ctxLat + h * rank, rows: n, ctxStride: nh * rank, wUV: wh + nope * rank, valueDim: vd,
                             rank: rank, into: m.ctx.pointer + h * vd, outStride: nh * vd)
            }
        }
        a.o.apply(m.ctx.pointer, rows: n, into: out, scratch: ws.productScratch)  // [n, nh·v] -> [n, H]
    }

    /// Head `h`'s rows of kv_b_proj ([nope + v, rank]) as float32: in place for a float32 weight, else widened
    /// into `scratch`.
    private func kvBHead(_ w: Weight, head h: Int, rows: Int, rank: Int,
                         scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        if w.storage == .f32 { return w.data + h * rows * rank }
        w.rows(h * rows, count: rows, into: scratch)
        return UnsafePointer(scratch)
    }
}
