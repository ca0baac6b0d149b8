// GateMath: the small kernels of the routers — gate products, float32 softmax, and top-k with a fixed tie rule.
//
// Part of the `dynamic` plugin (router kinds `topp` and `adamoe`; their sources, params and tensors at the top of
// TopPRouter.swift and AdaMoERouter.swift). Math: y = W x with W row-major [rows, cols], accumulated in double;
// softmax(v)_i = exp(v_i − max v) / Σ_j exp(v_j − max v) in float32; top-k returns the k largest values, largest
// first, lower index first among equal values (the tie rule of docs/model-format.md; ALGORITHMS.md section 0).
// Threads: pure functions on caller-owned buffers.

#if canImport(Glibc)
import Glibc
#endif

/// Kernels on raw rows. Callers guarantee the counts: every pointer covers the elements it is given.
enum GateMath {
    /// y[rows] = W[rows, cols] · x[cols], accumulated in double and rounded to float (router logits decide
    /// rankings, so their rounding is kept small and independent of the summation order of a BLAS).
    static func matvec(_ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, cols: Int,
                       into y: UnsafeMutablePointer<Float>) {
        for i in 0..<rows {
            let row = w + i * cols
            var acc = 0.0
            for j in 0..<cols { acc += Double(row[j]) * Double(x[j]) }
            y[i] = Float(acc)
        }
    }

    /// In-place softmax over `count` values, in float32 with the maximum subtracted.
    static func softmax(_ v: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        var maximum = v[0]
        for i in 1..<count where v[i] > maximum { maximum = v[i] }
        var sum: Float = 0
        for i in 0..<count {
            v[i] = expf(v[i] - maximum)
            sum += v[i]
        }
        for i in 0..<count { v[i] /= sum }
    }

    /// The `k` largest of `count` values, largest first, into `ids` and `values`; among equal values the lower
    /// index comes first (the documented tie rule). `k` is at most `count`.
    static func topK(_ v: UnsafePointer<Float>, count: Int, k: Int, ids: UnsafeMutablePointer<Int32>,
                     values: UnsafeMutablePointer<Float>) {
        var filled = 0
        for i in 0..<count {
            let x = v[i]
            // Insertion into a sorted list of at most k; strict > keeps the earlier index ahead on ties.
            var position = filled
            while position > 0 && x > values[position - 1] { position -= 1 }
            guard position < k else { continue }
            var j = min(filled, k - 1)
            while j > position {
                values[j] = values[j - 1]
                ids[j] = ids[j - 1]
                j -= 1
            }
            values[position] = x
            ids[position] = Int32(i)
            if filled < k { filled += 1 }
        }
    }

    /// Whether all `count` values are finite.
    static func allFinite(_ v: UnsafePointer<Float>, count: Int) -> Bool {
        for i in 0..<count where !v[i].isFinite { return false }
        return true
    }
}
