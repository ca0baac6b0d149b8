// Elementwise kernels: RMSNorm, SiLU gating, softmax, rotary position embedding.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// RMSNorm of each of `rows` rows of width `dim`: y = x / sqrt(mean(x²) + eps) · w
/// (`MixtralRMSNorm.forward`: variance in float32, then scale by the weight). `x` and `y` may be the same.
func rmsNorm(_ x: UnsafePointer<Float>, weight w: UnsafePointer<Float>, rows: Int, dim: Int, eps: Float,
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
func siluMultiply(_ g: UnsafeMutablePointer<Float>, _ u: UnsafePointer<Float>, count: Int) {
    for i in 0..<count {
        let v = g[i]
        g[i] = v / (1 + expf(-v)) * u[i]
    }
}

/// Numerically stable softmax of `count` values in place. A row of all -inf becomes all zeros.
func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
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
func clamp(_ x: UnsafeMutablePointer<Float>, count: Int, limit: Float) {
    for i in 0..<count { x[i] = min(max(x[i], -limit), limit) }
}

/// Rotary position embedding of the default type, as `apply_rotary_pos_emb` with `rotate_half` in transformers:
/// the two halves of each head are the pairs (x[i], x[i + d/2]).
struct Rope: Sendable {
    /// inv_freq[i] = 1 / theta^(2i/d), computed in float32 as transformers does.
    let invFreq: [Float]
    let headDim: Int

    init(headDim: Int, theta: Double) {
        self.headDim = headDim
        invFreq = (0..<headDim / 2).map { i in
            let exponent = Float(2 * i) / Float(headDim)
            return 1 / powf(Float(theta), exponent)
        }
    }

    /// Rotates `heads` heads of width headDim stored back to back at `x`, for position `pos`.
    func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position pos: Int) {
        let half = headDim / 2
        let p = Float(pos)
        for i in 0..<half {
            let angle = p * invFreq[i]
            let c = cosf(angle), s = sinf(angle)
            for h in 0..<heads {
                let v = x + h * headDim
                let a = v[i], b = v[i + half]
                v[i] = a * c - b * s
                v[i + half] = b * c + a * s
            }
        }
    }
}
