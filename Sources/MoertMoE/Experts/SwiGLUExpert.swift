// SwiGLUExpert: the feed-forward network of every supported architecture's dense and shared MLPs.

import MoertTensor

/// F(x) = W_down (silu(W_gate x) ⊙ W_up x) (`MixtralBlockSparseTop2MLP`, `Qwen2MoeMLP`, `OlmoeMLP`), with weights
/// that stay resident (dense MLPs, shared experts).
public final class SwiGLUExpert: Expert {
    /// W_gate [I, H] (Mixtral `w1`).
    public let gate: Linear
    /// W_up [I, H] (Mixtral `w3`).
    public let up: Linear
    /// W_down [H, I] (Mixtral `w2`).
    public let down: Linear

    /// Intermediate width I.
    public var intermediate: Int { gate.outFeatures }

    /// Creates the expert from its three projections.
    public init(gate: Linear, up: Linear, down: Linear) {
        self.gate = gate
        self.up = up
        self.down = down
    }

    public var kind: String { BuiltinKind.expert }
    public var output: ExpertOutput { .computed }
    public var isZeroCompute: Bool { false }

    /// The gate and up activations (2·n·I floats), then what the products need.
    public func scratchCount(tokens n: Int) -> Int {
        2 * n * intermediate + max(gate.scratchCount(rows: n), up.scratchCount(rows: n), down.scratchCount(rows: n))
    }

    /// y = down(silu(gate x) ⊙ up x) for `n` rows; `scratch` holds `scratchCount(tokens: n)` floats.
    public func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                        scratch: UnsafeMutablePointer<Float>) {
        let i = intermediate
        let g = scratch, u = scratch + n * i
        let products = UnsafeMutableBufferPointer(start: scratch + 2 * n * i, count: scratchCount(tokens: n) - 2 * n * i)
        gate.apply(x, rows: n, into: g, scratch: products)   // [n, H] -> [n, I]
        up.apply(x, rows: n, into: u, scratch: products)     // [n, H] -> [n, I]
        swiglu(gate: g, up: u, rows: n, width: i, into: g)
        down.apply(g, rows: n, into: y, scratch: products)   // [n, I] -> [n, H]
    }
    /// `forward` of one row with the gate and up products gathered into `batch` (one job on the worker pool): the
    /// same bits. `scratch` holds `scratchCount(tokens: 1)` floats.
    public func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                        scratch: UnsafeMutablePointer<Float>, batch: GEMVBatch) {
        let i = intermediate
        let g = scratch, u = scratch + i
        let products = UnsafeMutableBufferPointer(start: scratch + 2 * i, count: scratchCount(tokens: 1) - 2 * i)
        batch.add(gate, x, into: g)                          // [H] -> [I]
        batch.add(up, x, into: u)                            // [H] -> [I]
        batch.run()
        swiglu(g, rows: 1, width: i, into: g)                // [gate | up] -> [I]: forward's bits
        down.apply(g, rows: 1, into: y, scratch: products)   // [I] -> [H]
    }
}
