// Attention: causal attention of a prefill chunk, on moert's AVX-512 kernel or through OpenBLAS (attention.prefill).

import CKernels
import COpenBLAS

/// Causal attention of `n` new positions at `position ..< position + n` against float32 keys and values that already
/// hold them ([position + n, kvHeads · headDim] each): for each query head h (key/value head h / (heads / kvHeads))
/// and new position t, out[t, h] = softmax(scale · q[t, h] · keys[j] for j <= position + t) · values. q and out are
/// [n, heads · headDim]. `scores` holds `scoresCount` floats: at least min(n, 64) · (position + n) per thread. Runs on
/// `kernel`, or the one chosen for attention.prefill: avx512 (heads split among the threads, causal blocks), else
/// blas (causal blocks, two sgemm calls per block and head).
package func attentionPrefill(q: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                              rows n: Int, position: Int, heads nh: Int, kvHeads nkv: Int, headDim hd: Int,
                              scale: Float, scores: UnsafeMutablePointer<Float>, scoresCount: Int,
                              into out: UnsafeMutablePointer<Float>, kernel: Kernel? = nil) {
    let k = kernel ?? KernelProduct.attentionPrefill.chosen
    if moert_attention_prefill_kernel(k.rawValue, q, keys, values, Int64(n), Int64(position), Int32(nh), Int32(nkv),
                                      Int32(hd), scale, scores, Int64(scoresCount), out) != 0 {
        return
    }
    // Blocks of query rows whose score products stop at the last key the block sees (which halves the work of a causal
    // prefill from an empty cache against full [n, position + n] products), two sgemm calls per block and head.
    let qw = nh * hd, kvw = nkv * hd, group = nh / nkv
    for head in 0..<nh {
        let kh = keys + (head / group) * hd, vh = values + (head / group) * hd
        for t0 in stride(from: 0, to: n, by: prefillBlockRows) {
            let rows = min(prefillBlockRows, n - t0), width = position + t0 + rows
            let qh = q + t0 * qw + head * hd, oh = out + t0 * qw + head * hd
            // S = q_h K^T · scale: [rows, hd] x [width, hd]^T -> [rows, width]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(width), Int32(hd), scale,
                        qh, Int32(qw), kh, Int32(kvw), 0, scores, Int32(width))
            for r in 0..<rows {
                let row = scores + r * width, visible = position + t0 + r + 1  // causal: position p sees 0 ... p
                softmaxInPlace(row, count: visible)
                (row + visible).update(repeating: 0, count: width - visible)
            }
            // O_h = S V: [rows, width] x [width, hd] -> [rows, hd], written into the head's columns of out
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(hd), Int32(width), 1,
                        scores, Int32(width), vh, Int32(kvw), 0, oh, Int32(qw))
        }
    }
}

/// Query rows per block of the blas kernel.
private let prefillBlockRows = 64
