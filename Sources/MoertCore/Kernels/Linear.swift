// Linear: y = x W^T (+ b) through OpenBLAS, for weights stored as nn.Linear does ([out, in], row-major).

import COpenBLAS

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
        if n == 1 {
            // [out, in] · [in] -> [out]
            cblas_sgemv(CblasRowMajor, CblasNoTrans, o, i, 1, weight.data, i, x, 1, 0, y, 1)
        } else {
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

/// a[i] += b[i] for i in 0..<count.
@inline(__always)
func addInPlace(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { a[i] += b[i] }
}
