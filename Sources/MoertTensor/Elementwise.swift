// Elementwise kernels: RMSNorm, SiLU gating, softmax, clamping and residual addition.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// RMSNorm of each of `rows` rows of width `dim`: y = x / sqrt(mean(x²) + eps) · w
/// (`MixtralRMSNorm.forward`: variance in float32, then scale by the weight). `x` and `y` may be the same.
package func rmsNorm(_ x: UnsafePointer<Float>, weight w: UnsafePointer<Float>, rows: Int, dim: Int, eps: Float,
             into y: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let xr = x + r * dim, yr = y + r * dim
        var sum: Float = 0
        for i in 0..<dim { sum += xr[i] * xr[i] }
        let scale = 1 / (sum / Float(dim) + eps).squareRoot()
        for i in 0..<dim { yr[i] = w[i] * (xr[i] * scale) }
    }
}

/// SwiGLU activation in place: g[i] = silu(g[i]) · u[i], with silu(v) = v / (1 + e^-v).
package func siluMultiply(_ g: UnsafeMutablePointer<Float>, _ u: UnsafePointer<Float>, count: Int) {
    for i in 0..<count {
        let v = g[i]
        g[i] = v / (1 + expf(-v)) * u[i]
    }
}

/// Numerically stable softmax of `count` values in place. A row of all -inf becomes all zeros.
package func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    var m = -Float.infinity
    for i in 0..<count where x[i] > m { m = x[i] }
    guard m > -Float.infinity else {
        for i in 0..<count { x[i] = 0 }
        return
    }
    var sum: Float = 0
    for i in 0..<count {
        let e = expf(x[i] - m)
        x[i] = e
        sum += e
    }
    let inv = 1 / sum
    for i in 0..<count { x[i] *= inv }
}

/// Clamps `count` values to [-limit, limit] (OLMoE `clip_qkv`).
package func clamp(_ x: UnsafeMutablePointer<Float>, count: Int, limit: Float) {
    for i in 0..<count { x[i] = min(max(x[i], -limit), limit) }
}

/// a[i] += b[i] for i in 0..<count (the residual connection).
@inline(__always)
package func addInPlace(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { a[i] += b[i] }
}
