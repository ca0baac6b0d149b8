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

/// What a router sees for one batch of tokens at one layer.
public struct RouterInput {
    /// The MoE block's input (post-attention-norm hidden states), [n, hidden].
    public let x: UnsafePointer<Float>
    /// Tokens in the batch.
    public let count: Int
    /// Width of each row of `x`.
    public let hidden: Int
    /// The token ids of the batch (n ids).
    public let tokens: UnsafePointer<Int32>
    /// Decoder layer index (0-based).
    public let layer: Int
}

/// Computes per-token expert ids and weights for a batch. Implementations are immutable and shared by sessions;
/// per-call scratch comes from the caller.
public protocol Router: AnyObject, Sendable {
    /// Number of experts ids may point to.
    var expertCount: Int { get }
    /// Routes `input` into `table` (cleared by the caller).
    /// - Throws: `MoertError` when the router fails or produces invalid output.
    func route(_ input: RouterInput, into table: inout RoutingTable, scratch: inout [Float]) throws
}

/// Maps a batch of gathered hidden states to outputs: y[n, hidden] = F(x[n, hidden]).
public protocol Expert: AnyObject, Sendable {
    /// Floats of scratch `forward` needs for `n` tokens.
    func scratchCount(tokens n: Int) -> Int
    /// Computes y = F(x) for `n` rows. `x` and `y` do not overlap.
    func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                 scratch: UnsafeMutablePointer<Float>)
}
