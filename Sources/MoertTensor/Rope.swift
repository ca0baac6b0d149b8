// Rope: rotary position embedding of the default type.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Rotary position embedding of the default type, as `apply_rotary_pos_emb` with `rotate_half` in transformers:
/// the two halves of each head are the pairs (x[i], x[i + d/2]).
package struct Rope: Sendable {
    /// inv_freq[i] = 1 / theta^(2i/d), computed in float32 as transformers does.
    package let invFreq: [Float]
    /// Width of one head.
    package let headDim: Int

    /// The rotation of heads of `headDim` with base `theta`.
    package init(headDim: Int, theta: Double) {
        self.headDim = headDim
        invFreq = (0..<headDim / 2).map { i in
            let exponent = Float(2 * i) / Float(headDim)
            return 1 / powf(Float(theta), exponent)
        }
    }

    /// Rotates `heads` heads of width headDim stored back to back at `x`, for position `pos`.
    package func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position pos: Int) {
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
