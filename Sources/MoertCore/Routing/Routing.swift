// Routing: the router and expert interfaces every MoE layer is built from, and the routing table between them.

/// Per-token expert choices for a batch, in compressed rows: token t uses
/// `experts[offsets[t] ..< offsets[t + 1]]` with the matching `weights`. The count may differ per token.
public struct RoutingTable: Sendable {
    /// n + 1 row starts.
    public var offsets: [Int] = [0]
    /// Expert ids, row by row.
    public var experts: [Int32] = []
    /// Combination weights, row by row.
    public var weights: [Float] = []

    /// Number of tokens routed.
    public var tokenCount: Int { offsets.count - 1 }

    /// Empties the table, keeping its storage.
    public mutating func removeAll() {
        offsets.removeAll(keepingCapacity: true)
        offsets.append(0)
        experts.removeAll(keepingCapacity: true)
        weights.removeAll(keepingCapacity: true)
    }

    /// Appends one token's choices.
    public mutating func append(experts ids: some Sequence<Int32>, weights ws: some Sequence<Float>) {
        experts.append(contentsOf: ids)
        weights.append(contentsOf: ws)
        offsets.append(experts.count)
    }
}

/// What a router sees for one batch of tokens at one MoE layer.
public struct RouterInput {
    /// The MoE block's input (post-attention-norm hidden states), [n, hidden].
    public let x: UnsafePointer<Float>
    /// Tokens in the batch.
    public let count: Int
    /// Width of each row of `x`.
    public let hidden: Int
    /// Token ids [n].
    public let tokens: UnsafePointer<Int32>
    /// Positions in the sequence [n].
    public let positions: UnsafePointer<Int32>
    /// The id before each token [n], -1 at position 0.
    public let previousTokens: UnsafePointer<Int32>
    /// Decoder layer index (0-based).
    public let layer: Int
    /// Per-token state carried across MoE layers in this forward pass, [n, stateStride]; nil when unused.
    public let state: UnsafeMutablePointer<Float>?
    public let stateStride: Int
    /// The previous MoE layer's router logits [n, previousLogitsWidth]; nil at the first MoE layer.
    public let previousLogits: UnsafePointer<Float>?
    public let previousLogitsWidth: Int
}

/// Computes per-token expert ids and weights for a batch. Instances are shared by sessions and must not keep
/// per-call state; per-call scratch comes from the caller.
public protocol Router: AnyObject {
    /// The kind name ("topk" or a plugin kind).
    var kind: String { get }
    /// Floats of layer-to-layer state this router uses per token.
    var stateSize: Int { get }
    /// Routes `input` into `table` (cleared by the caller). `logits` ([n, experts], prefilled with NaN) may
    /// receive the raw router logits.
    /// - Throws: `MoertError` when the router fails or produces invalid output.
    func route(_ input: RouterInput, into table: inout RoutingTable, logits: UnsafeMutablePointer<Float>,
               scratch: inout [Float]) throws
}

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
    /// Computes y = F(x) for `n` rows. `x` and `y` do not overlap.
    /// - Throws: `MoertError` when a plugin expert fails.
    func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                 scratch: UnsafeMutablePointer<Float>) throws
}
