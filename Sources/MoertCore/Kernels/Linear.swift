// Linear: y = x W^T (+ b) through moert's kernels (or OpenBLAS), for weights stored as nn.Linear does ([out, in],
// row-major).

import CKernels
import COpenBLAS
#if canImport(Glibc)
import Glibc
#endif

/// A linear map with a weight of shape [out, in] and an optional bias of [out].
public struct Linear: Sendable {
    /// Weight [outFeatures, inFeatures].
    public let weight: Weight
    /// Optional bias [outFeatures].
    public let bias: Weight?

    /// Input width.
    public var inFeatures: Int { weight.shape[1] }
    /// Output width.
    public var outFeatures: Int { weight.shape[0] }

    /// Creates a linear map; `weight` must be two-dimensional and `bias` match its rows.
    public init(weight: Weight, bias: Weight? = nil) {
        precondition(weight.shape.count == 2 && (bias == nil || bias!.shape == [weight.shape[0]]))
        self.weight = weight
        self.bias = bias
    }

    /// y[n, out] = x[n, in] · W^T + b. `x` and `y` must not overlap.
    public func apply(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>) {
        let o = Int32(outFeatures), i = Int32(inFeatures)
        if weight.storage != .f32 {
            applyHalf(x, rows: n, into: y)
        } else if n == 1 {
            // [out, in] · [in] -> [out]
            if moert_gemv_f32(weight.data, x, y, Int64(o), Int64(i)) == 0 {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, o, i, 1, weight.data, i, x, 1, 0, y, 1)
            }
        } else if moert_gemm_nt(Int64(n), Int64(o), Int64(i), x, Int64(i), weight.raw, MOERT_GEMM_F32, Int64(i),
                                 y, Int64(o)) == 0 {
            // [n, in] x [out, in]^T -> [n, out]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), o, i, 1, x, i, weight.data, i, 0, y, o)
        }
        if let bias {
            for r in 0..<n { addInPlace(y + r * outFeatures, bias.data, count: outFeatures) }
        }
    }
}

extension Linear {
    /// y[n, out] = x[n, in] · W^T through sgemm for every n (no GEMV path), so that a plugin computing the same
    /// product with the host's sgemm gets bit-identical results. Used for router gates, where the cost is small.
    public func applyGEMM(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>) {
        let o = Int32(outFeatures), i = Int32(inFeatures)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), o, i, 1, x, i, weight.data, i, 0, y, o)
        if let bias {
            for r in 0..<n { addInPlace(y + r * outFeatures, bias.data, count: outFeatures) }
        }
    }
}

extension Linear {
    /// The product for f16/bf16 weights. One row (decode, bound by memory bandwidth): a GEMV that widens each
    /// weight in registers, so only 2 bytes per weight are read. Several rows (prefill, bound by compute): the
    /// AVX-512 GEMM, which widens weights while packing them, or else blocks of weight rows widened to float32, then
    /// sgemm. The bias is left to `apply`.
    func applyHalf(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>) {
        let out = outFeatures, inF = inFeatures
        let dtype = weight.storage == .f16 ? MOERT_HALF_F16 : MOERT_HALF_BF16
        if n == 1 {
            moert_gemv_half(weight.raw, dtype, x, y, Int64(out), Int64(inF))
        } else if moert_gemm_nt(Int64(n), Int64(out), Int64(inF), x, Int64(inF), weight.raw, dtype, Int64(inF), y,
                                Int64(out)) == 0 {
            // About 4 MiB of widened rows per block; the block is written into columns r0 ..< r1 of y.
            let blockRows = max(1, min(out, (1 << 20) / inF))
            let block = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * inF)
            defer { block.deallocate() }
            var r0 = 0
            while r0 < out {
                let rows = min(blockRows, out - r0)
                moert_half_to_float(weight.raw + r0 * inF * 2, dtype, block, Int64(rows * inF))
                // [n, in] x [rows, in]^T -> y[:, r0 ..< r0 + rows]
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(rows), Int32(inF), 1, x, Int32(inF),
                            block, Int32(inF), 0, y + r0, Int32(out))
                r0 += rows
            }
        }
    }
}

/// a[i] += b[i] for i in 0..<count.
@inline(__always)
func addInPlace(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { a[i] += b[i] }
}
