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

    /// Floats of scratch `apply` needs for `n` input rows: for quantized weights, room for the quantized input row
    /// of a GEMV; for several rows of f16/bf16 or quantized weights, room to widen blocks of weights to float32 for
    /// sgemm (moert's AVX-512 GEMM widens halves while packing and needs none, but the kernel choice may change). Never
    /// less for more rows, so that room for a batch also serves one row.
    public func scratchCount(rows n: Int) -> Int {
        Self.scratchCount(storage: weight.storage, outFeatures: outFeatures, inFeatures: inFeatures, rows: n)
    }

    /// `scratchCount(rows:)` of a product with weights of `storage` and shape [outFeatures, inFeatures].
    public static func scratchCount(storage: WeightStorage, outFeatures: Int, inFeatures: Int, rows n: Int) -> Int {
        let activation = storage.isQuantized ? activationScratchCount(inFeatures: inFeatures) : 0
        guard storage != .f32, n > 1 else { return activation }
        return activation + widenedBlockRows(outFeatures: outFeatures, inFeatures: inFeatures) * inFeatures
    }

    /// Floats holding the quantized input row of a GEMV on quantized weights.
    private static func activationScratchCount(inFeatures: Int) -> Int {
        (Int(moert_quant_activation_bytes(Int64(inFeatures))) + 3) / 4
    }

    /// Weight rows widened per block: about 4 MiB of float32.
    private static func widenedBlockRows(outFeatures: Int, inFeatures: Int) -> Int {
        max(1, min(outFeatures, (1 << 20) / inFeatures))
    }

    /// y[n, out] = x[n, in] · W^T + b. `x` and `y` must not overlap. `scratch` holds `scratchCount(rows: n)`
    /// floats (it may be empty when that is 0). The product runs on the kernel chosen for it (`KernelChoice`), or on
    /// `kernel` when given (measurements and tests).
    public func apply(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                      scratch: UnsafeMutableBufferPointer<Float>, kernel: Kernel? = nil) {
        let o = Int64(outFeatures), i = Int64(inFeatures), storage = weight.storage
        let gemm = (kernel ?? KernelProduct.gemm(storage).chosen).rawValue
        if n == 1 {
            gemv(x, into: y, scratch: scratch, kernel: kernel)    // [out, in] · [in] -> [out]
        } else if moert_gemm_nt_kernel(gemm, Int64(n), o, i, x, i, weight.raw, storage.kernelType, i, y, o) == 0 {
            // [n, in] x [out, in]^T -> [n, out] on a kernel that reads the weights as stored (avx2 for every type,
            // avx512 for float types, and for quantized types with VNNI) did not run: sgemm, on weights widened first
            // unless they are float32
            if storage.isQuantized {
                applyWidened(x, rows: n, into: y, scratch: scratch, kernel: gemm)
            } else if storage == .f32 {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(o), Int32(i), 1, x, Int32(i),
                            weight.data, Int32(i), 0, y, Int32(o))
            } else {
                applyWidened(x, rows: n, into: y, scratch: scratch, kernel: Kernel.blas.rawValue)
            }
        }
        addBias(rows: n, to: y)
    }

    /// y[out] = W x[in], without the bias, on `kernel` or the one chosen for the product.
    private func gemv(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                      scratch: UnsafeMutableBufferPointer<Float>, kernel: Kernel? = nil) {
        let o = Int64(outFeatures), i = Int64(inFeatures), storage = weight.storage
        let k = (kernel ?? KernelProduct.gemv(storage).chosen).rawValue
        switch storage {
        case .q8_0, .q4_0, .q3_0, .q4_k:
            if let xq = scratch.baseAddress, scratch.count >= Self.activationScratchCount(inFeatures: inFeatures) {
                moert_gemv_quant_kernel(k, weight.raw, storage.kernelType, x, xq, y, o, i)
            } else {
                gemvDequantizing(x, into: y)
            }
        case .f16, .bf16: moert_gemv_half_kernel(k, weight.raw, storage.kernelType, x, y, o, i)
        case .f32:
            if moert_gemv_f32_kernel(k, weight.data, x, y, o, i) == 0 {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(o), Int32(i), 1, weight.data, Int32(i), x, 1, 0, y, 1)
            }
        }
    }

    /// The GEMV on quantized weights for a caller that reserved no scratch: each block read back to float32 on the
    /// stack in turn (a temporary of one block's floats, at most 1 KiB, which Swift places on the stack). Slower, but correct and
    /// allocation-free.
    private func gemvDequantizing(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        let storage = weight.storage, block = storage.blockValues
        withUnsafeTemporaryAllocation(of: Float.self, capacity: block) { values in
            let v = values.baseAddress!
            for r in 0..<outFeatures {
                var sum: Float = 0
                for c in stride(from: 0, to: inFeatures, by: block) {
                    moert_dequantize(storage.kernelType, weight.raw + storage.bytes(r * inFeatures + c), v, Int64(block))
                    for k in 0..<block { sum += v[k] * x[c + k] }
                }
                y[r] = sum
            }
        }
    }

    /// y[n, out] = x[n, in] · W^T (+ b) through sgemm for every n (no GEMV path), so that a plugin computing the
    /// same product with the host's sgemm gets bit-identical results. Used for router gates (float32 weights),
    /// where the cost is small.
    public func applyGEMM(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>) {
        let o = Int32(outFeatures), i = Int32(inFeatures)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), o, i, 1, x, i, weight.data, i, 0, y, o)
        addBias(rows: n, to: y)
    }

    /// The product for several rows of f16/bf16 weights on blas, or of quantized weights: blocks of weight rows
    /// widened to float32 in `scratch`, then moert's GEMM when `kernel` is avx512, else sgemm. Without enough
    /// scratch (the caller reserved none) it falls back to one GEMV per row: slower, but correct and
    /// allocation-free.
    private func applyWidened(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                              scratch: UnsafeMutableBufferPointer<Float>, kernel: Int32) {
        let out = outFeatures, inF = inFeatures, storage = weight.storage
        let blockRows = Self.widenedBlockRows(outFeatures: out, inFeatures: inF)
        let skip = storage.isQuantized ? Self.activationScratchCount(inFeatures: inF) : 0
        guard let base = scratch.baseAddress, scratch.count >= skip + blockRows * inF else {
            for r in 0..<n { gemv(x + r * inF, into: y + r * out, scratch: scratch) }
            return
        }
        let block = base + skip
        var r0 = 0
        while r0 < out {
            let rows = min(blockRows, out - r0)
            weight.rows(r0, count: rows, into: block)
            // [n, in] x [rows, in]^T -> y[:, r0 ..< r0 + rows]: moert's GEMM (avx512), else sgemm
            if moert_gemm_nt_kernel(kernel, Int64(n), Int64(rows), Int64(inF), x, Int64(inF), block, MOERT_GEMM_F32, Int64(inF),
                             y + r0, Int64(out)) == 0 {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(rows), Int32(inF), 1, x, Int32(inF),
                            block, Int32(inF), 0, y + r0, Int32(out))
            }
            r0 += rows
        }
    }

    func addBias(rows n: Int, to y: UnsafeMutablePointer<Float>) {
        guard let bias else { return }
        for r in 0..<n { addInPlace(y + r * outFeatures, bias.data, count: outFeatures) }
    }
}
