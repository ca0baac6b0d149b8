// LatentAttention: the absorbed form of multi-head latent attention (DeepSeek-V2 paper, section 2.1.2): queries
// moved into the latent space, attention over the cached latents, values moved out of it.

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

/// Attention of one position's `heads` absorbed queries over `positions` cached rows: each query row is
/// [q_lat (rank), q_pe (width - rank)] and each cached row [latent (rank), k_pe (width - rank)], so one product
/// gives q_nope·k_nope + q_pe·k_pe per head and position.
/// scores = softmax(scale · Q C^T) ([heads, width] x [positions, width]^T -> [heads, positions]), then
/// out = scores · C[:, :rank] ([heads, positions] x [positions, rank] -> [heads, rank]).
/// `scores` holds heads × positions floats.
package func latentAttentionRow(query q: UnsafePointer<Float>, cache c: UnsafePointer<Float>, positions total: Int,
                             heads nh: Int, rank: Int, width w: Int, scale: Float,
                             scores: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(nh), Int32(total), Int32(w), scale,
                q, Int32(w), c, Int32(w), 0, scores, Int32(total))
    for h in 0..<nh { softmaxInPlace(scores + h * total, count: total) }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(nh), Int32(rank), Int32(total), 1,
                scores, Int32(total), c, Int32(w), 0, out, Int32(rank))
}
