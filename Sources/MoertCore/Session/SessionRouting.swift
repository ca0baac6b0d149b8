// SessionRouting: a session's router overrides, the per-forward routing state, and its traces and counters.

/// Routing concerns of one session: which routers run, the state carried from MoE layer to MoE layer within a
/// forward pass (router state and the previous layer's logits), and what was routed where.
final class SessionRouting {
    let model: Model
    let batch: Int
    /// Per-MoE-layer routers replacing the model's own; nil = the model's.
    private(set) var overrides: [Router]?
    /// Expert slots per MoE layer row in counters and logits (the largest layer's expert count).
    let maxExperts: Int

    // Per chunk.
    private var tokens: UnsafePointer<Int32>?
    private var positions: [Int32] = []
    private var previousTokens: [Int32] = []
    private var state: [Float] = []
    private var stateStride = 0
    private var logits: [Float]
    private var previousLogits: [Float]
    private var previousWidth = 0

    /// Tokens routed to each expert: [moeLayer * maxExperts + expert].
    private(set) var counts: [Int64]
    /// Recording switch and records.
    var tracing = false
    private(set) var trace = TraceRecords()

    init(model: Model, batch: Int) {
        self.model = model
        self.batch = batch
        let blocks = model.moeBlocks
        maxExperts = blocks.map(\.experts.count).max() ?? 0
        counts = [Int64](repeating: 0, count: blocks.count * maxExperts)
        logits = [Float](repeating: 0, count: batch * maxExperts)
        previousLogits = logits
    }

    /// Uses `routers` (one per MoE layer) instead of the model's, or the model's again for nil.
    func setOverrides(_ routers: [Router]?) {
        precondition(routers == nil || routers!.count == model.moeBlocks.count)
        overrides = routers
    }

    /// The routers in effect.
    var routers: [Router] { overrides ?? model.moeBlocks.map(\.router) }

    /// Zeroes the counters.
    func resetCounters() { counts = [Int64](repeating: 0, count: counts.count) }

    /// Empties the trace.
    func clearTrace() { trace = TraceRecords() }

    /// Prepares a chunk of `n` tokens starting at `position`: positions, previous ids, fresh zero state.
    func beginChunk(tokens: UnsafePointer<Int32>, count n: Int, position: Int, previousToken: Int32) {
        self.tokens = tokens
        positions = (0..<n).map { Int32(position + $0) }
        previousTokens = (0..<n).map { $0 == 0 ? previousToken : tokens[$0 - 1] }
        stateStride = routers.map(\.stateSize).max() ?? 0
        // Router state never crosses positions: every token starts from zeros at the first MoE layer.
        state = [Float](repeating: 0, count: n * stateStride)
        previousWidth = 0
    }

    /// Runs one MoE block on the chunk, then records counters and the trace.
    func run(_ block: MoEBlock, moeIndex: Int, layer: Int, input x: UnsafePointer<Float>, count n: Int,
             into y: UnsafeMutablePointer<Float>, workspace ws: MoEWorkspace) throws {
        let router = overrides?[moeIndex] ?? block.router
        let width = block.experts.count
        try positions.withUnsafeBufferPointer { pos in
            try previousTokens.withUnsafeBufferPointer { prev in
                try state.withUnsafeMutableBufferPointer { st in
                    try previousLogits.withUnsafeBufferPointer { pl in
                        try logits.withUnsafeMutableBufferPointer { lg in
                            let input = RouterInput(
                                x: x, count: n, hidden: block.hidden, tokens: tokens!, positions: pos.baseAddress!,
                                previousTokens: prev.baseAddress!, layer: layer,
                                state: stateStride > 0 ? st.baseAddress : nil, stateStride: stateStride,
                                previousLogits: previousWidth > 0 ? pl.baseAddress : nil, previousLogitsWidth: previousWidth)
                            try block.forward(input, router: router, logits: lg.baseAddress!, into: y, workspace: ws)
                        }
                    }
                }
            }
        }
        swap(&logits, &previousLogits)
        previousWidth = width
        record(ws.routing, moeIndex: moeIndex, layer: layer, count: n)
    }

    private func record(_ table: RoutingTable, moeIndex: Int, layer: Int, count n: Int) {
        let row = moeIndex * maxExperts
        for id in table.experts { counts[row + Int(id)] += 1 }
        guard tracing else { return }
        for t in 0..<n {
            trace.positions.append(positions[t])
            trace.layers.append(Int32(layer))
            trace.tokens.append(tokens![t])
            let lo = table.offsets[t], hi = table.offsets[t + 1]
            trace.expertIds.append(contentsOf: table.experts[lo..<hi])
            trace.weights.append(contentsOf: table.weights[lo..<hi])
            trace.offsets.append(Int64(trace.expertIds.count))
        }
    }
}

/// Routing records: one per (token, MoE layer), in evaluation order.
public struct TraceRecords: Sendable {
    public var positions: [Int32] = []
    public var layers: [Int32] = []
    public var tokens: [Int32] = []
    /// n + 1 offsets into expertIds and weights.
    public var offsets: [Int64] = [0]
    public var expertIds: [Int32] = []
    public var weights: [Float] = []

    /// Number of records.
    public var count: Int { positions.count }
}

extension Session {
    /// Replaces every MoE layer's router with one of `spec` for this session; nil restores the model's.
    /// - Throws: the errors of router creation; the session keeps its routers then.
    public func setRouter(_ spec: KindSpec?) throws {
        routing.setOverrides(try spec.map { try model.makeRouters($0) })
    }

    /// Turns trace recording on or off.
    public var isTracing: Bool {
        get { routing.tracing }
        set { routing.tracing = newValue }
    }

    /// The routing trace recorded so far.
    public var trace: TraceRecords { routing.trace }

    /// Empties the trace.
    public func clearTrace() { routing.clearTrace() }

    /// Tokens routed to each expert per MoE layer, [moeLayers][maxExperts], since creation or the last reset.
    public var expertCounts: (counts: [Int64], layers: Int, experts: Int) {
        (routing.counts, model.moeBlocks.count, routing.maxExperts)
    }

    /// Zeroes the expert counters.
    public func resetCounters() { routing.resetCounters() }
}
