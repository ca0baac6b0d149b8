// Attention: causal attention of a prefill chunk, on moert's AVX-512 or AVX2 kernel or through OpenBLAS
// (attention.prefill).

import CKernels
import COpenBLAS

/// Causal attention of `n` new positions at `position ..< position + n` against float32 keys and values that already
/// hold them ([position + n, kvHeads · headDim] each): for each query head h (key/value head h / (heads / kvHeads))
/// and new position t, out[t, h] = softmax(scale · q[t, h] · keys[j] for lo <= j <= position + t) · values, where lo
/// is 0, or with a sliding `window` max(0, position + t - window + 1) (transformers' `sliding_window_overlay`:
/// kv_idx > q_idx - window). `sinks` ([heads], nil: none) adds one logit per head to each softmax's denominator
/// (gpt-oss `eager_attention_forward`). q is [n, heads · headDim]; values are the first `valueDim` (default headDim)
/// of each value head's row, and out is [n, heads · valueDim]. `scores` holds `scoresCount` floats: at
/// least min(n, 64) · (position + n) per thread. Runs on `kernel`, or the one chosen for attention.prefill: avx512 or
/// avx2 (heads split among the threads, causal blocks), else blas (causal blocks, two sgemm calls per block and head).
package func attentionPrefill(q: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                              rows n: Int, position: Int, window: Int? = nil, sinks: UnsafePointer<Float>? = nil,
                              heads nh: Int, kvHeads nkv: Int, headDim hd: Int, valueDim: Int? = nil,
                              scale: Float, scores: UnsafeMutablePointer<Float>, scoresCount: Int,
                              into out: UnsafeMutablePointer<Float>, kernel: Kernel? = nil) {
    let k = kernel ?? KernelProduct.attentionPrefill.chosen, vd = valueDim ?? hd
    if moert_attention_prefill_values(k.rawValue, q, keys, values, Int64(n), Int64(position), Int64(window ?? 0), sinks,
                                      Int32(nh), Int32(nkv), Int32(hd), Int32(vd), scale, scores, Int64(scoresCount),
                                      out) != 0 {
        return
    }
    // Blocks of query rows whose score products span only the keys the block sees (which halves the work of a causal
    // prefill from an empty cache against full [n, position + n] products), two sgemm calls per block and head.
    let qw = nh * hd, kvw = nkv * hd, ow = nh * vd, group = nh / nkv
    // The first key position p sees.
    func start(_ p: Int) -> Int { window.map { max(0, p - $0 + 1) } ?? 0 }
    for head in 0..<nh {
        let kh = keys + (head / group) * hd, vh = values + (head / group) * hd
        for t0 in stride(from: 0, to: n, by: prefillBlockRows) {
            let rows = min(prefillBlockRows, n - t0), first = start(position + t0), width = position + t0 + rows - first
            let qh = q + t0 * qw + head * hd, oh = out + t0 * ow + head * vd
            // S = q_h K[first...]^T · scale: [rows, hd] x [width, hd]^T -> [rows, width]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(width), Int32(hd), scale,
                        qh, Int32(qw), kh + first * kvw, Int32(kvw), 0, scores, Int32(width))
            for r in 0..<rows {
                // position p sees start(p) ... p
                let row = scores + r * width, p = position + t0 + r, lo = start(p) - first, hi = p + 1 - first
                (row).update(repeating: 0, count: lo)
                softmaxInPlace(row + lo, count: hi - lo, sink: sinks?[head])
                (row + hi).update(repeating: 0, count: width - hi)
            }
            // O_h = S V[first...]: [rows, width] x [width, vd] -> [rows, vd], written into the head's columns of out
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(vd), Int32(width), 1,
                        scores, Int32(width), vh + first * kvw, Int32(kvw), 0, oh, Int32(ow))
        }
    }
}

/// Query rows per block of the blas kernel.
private let prefillBlockRows = 64
