// Linear: y = x W^T (+ b) through moert's kernels (or OpenBLAS), for weights stored as nn.Linear stores them
// ([out, in], row-major).

import CKernels
import COpenBLAS

/// A linear map with a weight of shape [out, in] and an optional bias of [out].
public struct Linear: Sendable {
    /// Weight [outFeatures, inFeatures].
    public let weight: Weight
    /// Optional bias [outFeatures] (float32).
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

    /// Floats of scratch `apply` needs for `n` input rows: room to widen blocks of f16/bf16 weights to float32 for
    /// sgemm, on CPUs without moert's AVX-512 GEMM (which widens while packing); 0 otherwise.
    public func scratchCount(rows n: Int) -> Int {
        Self.scratchCount(storage: weight.storage, outFeatures: outFeatures, inFeatures: inFeatures, rows: n)
    }

    /// `scratchCount(rows:)` of a product with weights of `storage` and shape [outFeatures, inFeatures].
    public static func scratchCount(storage: WeightStorage, outFeatures: Int, inFeatures: Int, rows n: Int) -> Int {
        guard storage != .f32, n > 1, moert_kernels_have_avx512() == 0 else { return 0 }
        return widenedBlockRows(outFeatures: outFeatures, inFeatures: inFeatures) * inFeatures
    }

    /// Weight rows widened per block: about 4 MiB of float32.
    private static func widenedBlockRows(outFeatures: Int, inFeatures: Int) -> Int {
        max(1, min(outFeatures, (1 << 20) / inFeatures))
    }

    /// y[n, out] = x[n, in] · W^T + b. `x` and `y` must not overlap. `scratch` holds `scratchCount(rows: n)`
    /// floats (it may be empty when that is 0).
    public func apply(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                      scratch: UnsafeMutableBufferPointer<Float>) {
        let o = Int64(outFeatures), i = Int64(inFeatures)
        if n == 1 {
            // [out, in] · [in] -> [out]
            if weight.storage != .f32 {
                moert_gemv_half(weight.raw, weight.storage.kernelType, x, y, o, i)
            } else if moert_gemv_f32(weight.data, x, y, o, i) == 0 {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(o), Int32(i), 1, weight.data, Int32(i), x, 1, 0, y, 1)
            }
        } else if moert_gemm_nt(Int64(n), o, i, x, i, weight.raw, weight.storage.kernelType, i, y, o) == 0 {
            // [n, in] x [out, in]^T -> [n, out], through sgemm
            if weight.storage == .f32 {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(o), Int32(i), 1, x, Int32(i),
                            weight.data, Int32(i), 0, y, Int32(o))
            } else {
                applyWidened(x, rows: n, into: y, scratch: scratch)
            }
        }
        addBias(rows: n, to: y)
    }

    /// y[n, out] = x[n, in] · W^T (+ b) through sgemm for every n (no GEMV path), so that a plugin computing the
    /// same product with the host's sgemm gets bit-identical results. Used for router gates (float32 weights),
    /// where the cost is small.
    public func applyGEMM(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>) {
        let o = Int32(outFeatures), i = Int32(inFeatures)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), o, i, 1, x, i, weight.data, i, 0, y, o)
        addBias(rows: n, to: y)
    }

    /// The product for f16/bf16 weights and several rows without the AVX-512 GEMM: blocks of weight rows widened
    /// to float32 in `scratch`, then sgemm. Without enough scratch (the AVX-512 GEMM could not get memory for its
    /// buffers, so the caller reserved none) it falls back to one GEMV per row: slower, but correct and
    /// allocation-free.
    private func applyWidened(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                              scratch: UnsafeMutableBufferPointer<Float>) {
        let out = outFeatures, inF = inFeatures, type = weight.storage.kernelType
        let blockRows = Self.widenedBlockRows(outFeatures: out, inFeatures: inF)
        guard let block = scratch.baseAddress, scratch.count >= blockRows * inF else {
            for r in 0..<n { moert_gemv_half(weight.raw, type, x + r * inF, y + r * out, Int64(out), Int64(inF)) }
            return
        }
        var r0 = 0
        while r0 < out {
            let rows = min(blockRows, out - r0)
            moert_half_to_float(weight.raw + r0 * inF * 2, type, block, Int64(rows * inF))
            // [n, in] x [rows, in]^T -> y[:, r0 ..< r0 + rows]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(rows), Int32(inF), 1, x, Int32(inF),
                        block, Int32(inF), 0, y + r0, Int32(out))
            r0 += rows
        }
    }

    private func addBias(rows n: Int, to y: UnsafeMutablePointer<Float>) {
        guard let bias else { return }
        for r in 0..<n { addInPlace(y + r * outFeatures, bias.data, count: outFeatures) }
    }
}
