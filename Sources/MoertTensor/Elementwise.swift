// Elementwise kernels: RMSNorm, SiLU gating (SwiGLU, gpt-oss's clamped SwiGLU), softmax, clamping and residual addition.

import CKernels
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

/// SwiGLU of `rows` rows laid out as [gate (width) | up (width)] into out [rows, width]: silu(gate) · up, on `kernel`
/// or the one chosen for swiglu. `out` must not overlap `gateUp`, except that it may equal it when rows == 1; the
/// portable kernel overwrites the gate halves.
package func swiglu(_ gateUp: UnsafeMutablePointer<Float>, rows: Int, width: Int, into out: UnsafeMutablePointer<Float>,
                    kernel: Kernel? = nil) {
    let k = kernel ?? KernelProduct.swiglu.chosen
    if moert_swiglu_kernel(k.rawValue, gateUp, Int64(rows), Int64(width), out) != 0 { return }
    for r in 0..<rows {
        let g = gateUp + r * 2 * width
        siluMultiply(g, g + width, count: width)
        if out + r * width != g { (out + r * width).update(from: g, count: width) }
    }
}

/// `swiglu` of gate [rows, width] and up [rows, width] held apart, into out [rows, width]: each row the same bits as
/// `swiglu` of that row laid out as [gate | up]. `out` may equal `gate`, and must not otherwise overlap either.
package func swiglu(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, rows: Int, width: Int,
                    into out: UnsafeMutablePointer<Float>, kernel: Kernel? = nil) {
    let k = kernel ?? KernelProduct.swiglu.chosen
    if moert_swiglu_split_kernel(k.rawValue, gate, up, Int64(rows), Int64(width), out) != 0 { return }
    if out != gate { out.update(from: gate, count: rows * width) }
    siluMultiply(out, up, count: rows * width)
}

/// gpt-oss's clamped SwiGLU (`GptOssExperts._apply_gate`) of `rows` rows laid out as [gate (width) | up (width)]
/// into out [rows, width]: g = min(gate, limit), u = clamp(up, -limit, limit), (u + 1) · g · sigmoid(alpha · g).
/// `out` must not overlap `gateUp`, except that it may equal it when rows == 1.
package func clampedSwiGLU(_ gateUp: UnsafePointer<Float>, rows: Int, width: Int, alpha: Float, limit: Float,
                           into out: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let g = gateUp + r * 2 * width, u = g + width, o = out + r * width
        for i in 0..<width {
            let gate = min(g[i], limit), up = min(max(u[i], -limit), limit)
            o[i] = (up + 1) * (gate * (1 / (1 + expf(-(gate * alpha)))))
        }
    }
}

/// Adds `bias` [width] to each of `rows` rows of `x` [rows, width].
package func addRowBias(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, bias: UnsafePointer<Float>) {
    for r in 0..<rows {
        let row = x + r * width
        for i in 0..<width { row[i] += bias[i] }
    }
}

/// Numerically stable softmax of `count` values in place. A row of all -inf becomes all zeros. A `sink` logit joins
/// the maximum and the denominator but has no entry (gpt-oss attention sinks: modeling_gpt_oss.py
/// `eager_attention_forward` concatenates it as a column, subtracts the row maximum and drops it after the softmax).
package func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int, sink: Float? = nil) {
    var m = sink ?? -Float.infinity
    for i in 0..<count where x[i] > m { m = x[i] }
    guard m > -Float.infinity else {
        for i in 0..<count { x[i] = 0 }
        return
    }
    var sum: Float = sink.map { expf($0 - m) } ?? 0
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
