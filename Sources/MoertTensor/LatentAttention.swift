// LatentAttention: the per-head products of multi-head latent attention's absorbed form (DeepSeek-V2 paper, section
// 2.1.2) for several positions: queries moved into the latent space, attention outputs moved out of it (the attention
// over the cached latents between them is `attentionPrefill`'s; one position runs all three in latent.c and
// attention_decode.c).

import COpenBLAS

/// Moves the non-rope part of `n` query rows into the latent space of one head: q_lat = q_nope · W_UK
/// ([n, nope] x [nope, rank] -> [n, rank]), so that q_lat · latent equals q_nope · (W_UK · latent), the key part
/// `kv_b_proj` would have expanded. `qNope` rows are `qStride` apart, `out` rows `outStride` apart; `wUK` is the
/// head's key rows of kv_b_proj, [nope, rank] row-major.
package func latentQuery(_ qNope: UnsafePointer<Float>, rows n: Int, qStride: Int, wUK: UnsafePointer<Float>,
                         nope: Int, rank: Int, into out: UnsafeMutablePointer<Float>, outStride: Int) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(rank), Int32(nope), 1,
                qNope, Int32(qStride), wUK, Int32(rank), 0, out, Int32(outStride))
}

/// Moves `n` attention outputs of one head out of the latent space: o = ctx_lat · W_UV^T
/// ([n, rank] x [v, rank]^T -> [n, v]), the value `kv_b_proj` would have expanded, weighted as attention weighted
/// the latents. `ctxLat` rows are `ctxStride` apart, `out` rows `outStride` apart; `wUV` is the head's value rows
/// of kv_b_proj, [v, rank] row-major.
package func latentOutput(_ ctxLat: UnsafePointer<Float>, rows n: Int, ctxStride: Int, wUV: UnsafePointer<Float>,
                          valueDim v: Int, rank: Int, into out: UnsafeMutablePointer<Float>, outStride: Int) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(v), Int32(rank), 1,
                ctxLat, Int32(ctxStride), wUV, Int32(rank), 0, out, Int32(outStride))
}
