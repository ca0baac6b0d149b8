// Expert: the interface every expert (built-in SwiGLU or plugin kind) implements.

/// What an expert's output is, so the dispatcher can skip work.
public enum ExpertOutput: Sendable {
    /// Computed by `forward`.
    case computed
    /// Always zero: the expert is skipped.
    case zero
    /// Equal to the input: the dispatcher adds w·x itself.
    case identity
}

/// Maps a batch of gathered hidden states to outputs: y[n, hidden] = F(x[n, hidden]).
public protocol Expert: AnyObject {
    /// The kind name ("ffn" or a plugin kind).
    var kind: String { get }
    /// Whether `forward` needs calling.
    var output: ExpertOutput { get }
    /// True for experts without matrix products (zero, copy, constant), for statistics.
    var isZeroCompute: Bool { get }
    /// Floats of scratch `forward` needs for `n` tokens.
    func scratchCount(tokens n: Int) -> Int
    /// Computes y = F(x) for `n` rows. `x` and `y` do not overlap; `scratch` holds `scratchCount(tokens: n)` floats.
    /// - Throws: `MoertError` when a plugin expert fails.
    func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                 scratch: UnsafeMutablePointer<Float>) throws
}
