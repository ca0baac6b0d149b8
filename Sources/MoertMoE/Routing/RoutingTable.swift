// RoutingTable: the per-token expert choices a router hands to the MoE block.

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

    /// An empty table.
    public init() {}

    /// Room for `tokens` tokens of at most `perToken` choices each, so that filling it does not allocate.
    public mutating func reserve(tokens: Int, perToken: Int) {
        offsets.reserveCapacity(tokens + 1)
        experts.reserveCapacity(tokens * perToken)
        weights.reserveCapacity(tokens * perToken)
    }

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
