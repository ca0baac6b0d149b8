// Rope: rotary position embedding (default or YaRN frequencies; halves or interleaved pairs; full or partial).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Which two values of a head one frequency rotates.
public enum RopePairing: String, Sendable, Equatable {
    /// (x[i], x[i + d/2]): `rotate_half` in transformers' `apply_rotary_pos_emb` (Llama, Mixtral, Qwen, OLMoE,
    /// DeepSeek-V3 with `rope_interleave: false`).
    case halves
    /// (x[2i], x[2i + 1]): DeepSeek-V2's complex `apply_rotary_emb` and DeepSeek-V3's
    /// `apply_rotary_pos_emb_interleave` (`rope_interleave: true`).
    case interleaved
}

/// YaRN's parameters (`rope_type: "yarn"`), as `_compute_yarn_parameters` in transformers'
/// `modeling_rope_utils.py` reads them.
public struct YaRNParameters: Sendable, Equatable {
    /// `factor`: the context extension; how much the low frequencies are interpolated.
    public var factor: Double
    /// `original_max_position_embeddings`: the pretraining context, which bounds the correction range.
    public var originalMaxPositionEmbeddings: Int
    /// `beta_fast` (32 when absent or 0): rotations above which a frequency is kept (extrapolated).
    public var betaFast: Double = 32
    /// `beta_slow` (1 when absent or 0): rotations below which a frequency is interpolated.
    public var betaSlow: Double = 1
    /// `mscale`: with `mscaleAllDim`, the numerator of the attention factor.
    public var mscale: Double?
    /// `mscale_all_dim`: with `mscale`, the denominator of the attention factor; DeepSeek also folds it into the
    /// softmax scale (`yarn_apply_mscale`, see `softmaxScaleFactor`).
    public var mscaleAllDim: Double?
    /// `truncate` (true when absent): round the correction range outwards to whole dimensions (gpt-oss: false).
    public var truncate: Bool = true
    /// `attention_factor`: the scale of cos and sin; nil to derive it from `factor`, `mscale` and `mscaleAllDim`.
    public var attentionFactor: Double?

    /// Parameters with the given factor and pretraining context, the rest at transformers' defaults.
    public init(factor: Double, originalMaxPositionEmbeddings: Int) {
        self.factor = factor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
    }

    /// `yarn_get_mscale`: 0.1 · mscale · ln(scale) + 1 for scale > 1, else 1 (YaRN paper, eq. 21).
    public static func mscale(_ scale: Double, _ m: Double = 1) -> Double {
        scale <= 1 ? 1 : 0.1 * m * log(scale) + 1
    }

    /// The factor cos and sin are multiplied by (`attention_factor`, or as `_compute_yarn_parameters` infers it).
    public var resolvedAttentionFactor: Double {
        if let attentionFactor { return attentionFactor }
        if let m = mscale, let all = mscaleAllDim, m != 0, all != 0 {
            return Self.mscale(factor, m) / Self.mscale(factor, all)
        }
        return Self.mscale(factor)
    }

    /// The factor DeepSeek's multi-head latent attention multiplies its softmax scale by: mscale(factor,
    /// mscale_all_dim)² when `mscale_all_dim` is set and non-zero, else 1 (`yarn_apply_mscale`).
    public var softmaxScaleFactor: Double {
        guard let all = mscaleAllDim, all != 0 else { return 1 }
        let m = Self.mscale(factor, all)
        return m * m
    }
}

/// How the frequencies are scaled (`rope_type`).
public enum RopeScaling: Sendable, Equatable {
    /// `default`: inv_freq[i] = 1 / theta^(2i/d).
    case none
    /// `yarn`.
    case yarn(YaRNParameters)
}

/// A model's rotary position embedding as config.json describes it.
public struct RopeConfig: Sendable, Equatable {
    /// `rope_theta`.
    public var theta: Double
    /// Values rotated at the start of each head (head_dim × `partial_rotary_factor`, even).
    public var rotaryDim: Int
    /// Which values form a rotated pair.
    public var pairing: RopePairing
    /// How the frequencies are scaled.
    public var scaling: RopeScaling

    /// A description of rope over `rotaryDim` values with base `theta`.
    public init(theta: Double, rotaryDim: Int, pairing: RopePairing = .halves, scaling: RopeScaling = .none) {
        self.theta = theta
        self.rotaryDim = rotaryDim
        self.pairing = pairing
        self.scaling = scaling
    }
}

/// Rotary position embedding as transformers applies it: `inv_freq` from the rope type (computed in float32 as
/// transformers does), angle = position · inv_freq[i] in float32, and each pair (a, b) becomes
/// (a·cos − b·sin, b·cos + a·sin), with cos and sin multiplied by YaRN's attention factor.
package struct Rope: Sendable {
    /// inv_freq[i] for the rotaryDim / 2 pairs.
    package let invFreq: [Float]
    /// Values rotated at the start of each head.
    package let rotaryDim: Int
    /// Which values form a pair.
    package let pairing: RopePairing
    /// The scale of cos and sin (YaRN's attention factor; 1 otherwise).
    package let attentionFactor: Float

    /// The default rotation of whole heads of `headDim` with base `theta` (halves pairing).
    package init(headDim: Int, theta: Double) {
        self.init(RopeConfig(theta: theta, rotaryDim: headDim))
    }

    /// The rotation `config` describes.
    package init(_ config: RopeConfig) {
        rotaryDim = config.rotaryDim
        pairing = config.pairing
        let d = config.rotaryDim, base = Float(config.theta)
        // pos_freqs = base ** (arange(0, d, 2) / d), in float32
        let posFreqs = (0..<d / 2).map { i in powf(base, Float(2 * i) / Float(d)) }
        switch config.scaling {
        case .none:
            invFreq = posFreqs.map { 1 / $0 }
            attentionFactor = 1
        case .yarn(let y):
            invFreq = Self.yarnInvFreq(posFreqs: posFreqs, dim: d, base: config.theta, y)
            attentionFactor = Float(y.resolvedAttentionFactor)
        }
    }

    /// `_compute_yarn_parameters`: frequencies with fewer than `beta_slow` rotations over the original context are
    /// interpolated (divided by `factor`), those with more than `beta_fast` kept, a linear ramp between.
    private static func yarnInvFreq(posFreqs: [Float], dim d: Int, base: Double, _ y: YaRNParameters) -> [Float] {
        func correctionDim(_ rotations: Double) -> Double {
            Double(d) * log(Double(y.originalMaxPositionEmbeddings) / (rotations * 2 * Double.pi)) / (2 * log(base))
        }
        var low = correctionDim(y.betaFast), high = correctionDim(y.betaSlow)
        if y.truncate {
            low = low.rounded(.down)
            high = high.rounded(.up)
        }
        low = max(low, 0)
        high = min(high, Double(d - 1))
        if low == high { high += 0.001 }  // transformers' guard against a zero-width ramp
        let factor = Float(y.factor)
        return posFreqs.enumerated().map { i, p in
            // ramp = clamp((i - low) / (high - low), 0, 1) in float32; extrapolation weight = 1 - ramp
            let ramp = min(max((Float(i) - Float(low)) / Float(high - low), 0), 1)
            let extrapolation = 1 - ramp
            return (1 / (factor * p)) * (1 - extrapolation) + (1 / p) * extrapolation
        }
    }

    /// Rotates `heads` heads of width rotaryDim stored back to back at `x`, for position `pos`.
    package func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position pos: Int) {
        apply(x, heads: heads, stride: rotaryDim, position: pos)
    }

    /// Rotates the first rotaryDim values of `heads` heads that start `stride` floats apart at `x`, for position
    /// `pos` (a partial rotary head, or the rope part of a multi-head latent attention query).
    package func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, stride: Int, position pos: Int) {
        rotate(x, heads: heads, stride: stride, position: pos, scale: attentionFactor)
    }

    /// Moves keys already rotated for their position by `positions` (negative: back), without applying the
    /// attention factor again: rotations compose by adding angles.
    package func shift(_ x: UnsafeMutablePointer<Float>, heads: Int, stride: Int, by positions: Int) {
        rotate(x, heads: heads, stride: stride, position: positions, scale: 1)
    }

    private func rotate(_ x: UnsafeMutablePointer<Float>, heads: Int, stride: Int, position pos: Int, scale: Float) {
        let half = rotaryDim / 2
        let p = Float(pos)
        for i in 0..<half {
            let angle = p * invFreq[i]
            let c = cosf(angle) * scale, s = sinf(angle) * scale
            for h in 0..<heads {
                let v = x + h * stride
                switch pairing {
                case .halves:
                    let a = v[i], b = v[i + half]
                    v[i] = a * c - b * s
                    v[i + half] = b * c + a * s
                case .interleaved:
                    let a = v[2 * i], b = v[2 * i + 1]
                    v[2 * i] = a * c - b * s
                    v[2 * i + 1] = b * c + a * s
                }
            }
        }
    }
}
