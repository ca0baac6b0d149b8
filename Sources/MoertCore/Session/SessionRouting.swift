// SessionRouting: a session's router overrides, the per-forward routing state, and its traces and counters.

import MoertMoE
import MoertTensor

/// Routing concerns of one session: which routers run, the state carried from MoE layer to MoE layer within a
/// forward pass (router state and the previous layer's logits), and what was routed where. Its buffers are sized
/// when the session is made and when its routers change, never while evaluating.
final class SessionRouting {
    let model: Model
    let batch: Int
    /// Per-MoE-layer routers replacing the model's own; nil = the model's.
    private(set) var overrides: [Router]?
    /// The routers in effect, one per MoE layer.
    private(set) var routers: [Router]
    /// Expert slots per MoE layer row in counters and logits (the largest layer's expert count).
    let maxExperts: Int

    // Per chunk: token ids (borrowed from the caller), positions, previous ids, router state and logits.
    private var tokens: UnsafePointer<Int32>?
    private let positions: UnsafeMutableBufferPointer<Int32>
    private let previousTokens: UnsafeMutableBufferPointer<Int32>
    /// Floats of router state per token: the largest any router in effect declares.
    private var stateStride = 0
    private var state: FloatBuffer
    private var logits: FloatBuffer
    private var previousLogits: FloatBuffer
    private var previousWidth = 0

    /// Tokens routed to each expert: [moeLayer * maxExperts + expert].
    private(set) var counts: [Int64]
    /// Recording switch and records.
    var tracing = false
    private(set) var trace = TraceRecords()

    /// The routing state of a session over `model` with chunks of up to `batch` tokens, sizing `workspace`'s
    /// router scratch for the model's routers.
    /// - Throws: `MoertError` (`.outOfMemory`).
    init(model: Model, batch: Int, workspace: MoEWorkspace) throws {
        self.model = model
        self.batch = batch
        let blocks = model.moeBlocks
        maxExperts = blocks.map(\.experts.count).max() ?? 0
        routers = blocks.map(\.router)
        counts = [Int64](repeating: 0, count: blocks.count * maxExperts)
        positions = .allocate(capacity: batch)
        positions.initialize(repeating: 0)
        previousTokens = .allocate(capacity: batch)
        previousTokens.initialize(repeating: 0)
        state = try FloatBuffer(count: 0)
        logits = try FloatBuffer(count: batch * maxExperts)
        previousLogits = try FloatBuffer(count: batch * maxExperts)
        try fit(routers, workspace: workspace)
    }

    deinit {
        positions.deallocate()
        previousTokens.deallocate()
    }

    /// Uses `routers` (one per MoE layer) instead of the model's, or the model's again for nil.
    /// - Throws: `MoertError` (`.outOfMemory`); the routers in effect do not change then.
    func setOverrides(_ overrides: [Router]?, workspace: MoEWorkspace) throws {
        precondition(overrides == nil || overrides!.count == model.moeBlocks.count)
        let next = overrides ?? model.moeBlocks.map(\.router)
        try fit(next, workspace: workspace)
        self.overrides = overrides
        routers = next
    }

    /// Sizes the router state and scratch for `routers`.
    private func fit(_ routers: [Router], workspace: MoEWorkspace) throws {
        let stride = routers.map(\.stateSize).max() ?? 0
        if state.count < batch * stride { state = try FloatBuffer(count: batch * stride) }
        try workspace.reserveRouterScratch(routers.map { $0.scratchCount(tokens: batch) }.max() ?? 0)
        stateStride = stride
    }

    /// Zeroes the counters.
    func resetCounters() { counts = [Int64](repeating: 0, count: counts.count) }

    /// Empties the trace.
    func clearTrace() { trace = TraceRecords() }

    /// Prepares a chunk of `n` tokens starting at `position`: positions, previous ids, fresh zero state.
    func beginChunk(tokens: UnsafePointer<Int32>, count n: Int, position: Int, previousToken: Int32) {
        self.tokens = tokens
        for t in 0..<n {
            positions[t] = Int32(position + t)
            previousTokens[t] = t == 0 ? previousToken : tokens[t - 1]
        }
        // Router state never crosses positions: every token starts from zeros at the first MoE layer.
        state.pointer.update(repeating: 0, count: n * stateStride)
        previousWidth = 0
    }

    /// Runs one MoE block on the chunk, then records counters and the trace.
    func run(_ block: MoEBlock, moeIndex: Int, layer: Int, input x: UnsafePointer<Float>, count n: Int,
             into y: UnsafeMutablePointer<Float>, workspace ws: MoEWorkspace) throws {
        let input = RouterInput(
            x: x, count: n, hidden: block.hidden, tokens: tokens!, positions: positions.baseAddress!,
            previousTokens: previousTokens.baseAddress!, layer: layer,
            state: stateStride > 0 ? state.pointer : nil, stateStride: stateStride,
            previousLogits: previousWidth > 0 ? previousLogits.pointer : nil, previousLogitsWidth: previousWidth)
        try block.forward(input, router: routers[moeIndex], logits: logits.pointer, into: y, workspace: ws)
        swap(&logits, &previousLogits)
        previousWidth = block.experts.count
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
    /// Position of each record's token.
    public var positions: [Int32] = []
    /// Decoder layer of each record.
    public var layers: [Int32] = []
    /// Token id of each record.
    public var tokens: [Int32] = []
    /// n + 1 offsets into expertIds and weights.
    public var offsets: [Int64] = [0]
    /// Chosen experts, record by record.
    public var expertIds: [Int32] = []
    /// Their weights.
    public var weights: [Float] = []

    /// Number of records.
    public var count: Int { positions.count }
}
