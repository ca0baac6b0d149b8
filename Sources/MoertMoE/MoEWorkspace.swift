// MoEWorkspace: a session's buffers for MoE dispatch, allocated once for its largest batch.

import MoertTensor

/// Everything a MoE block's forward pass writes besides its output, sized once when the session is made (as
/// llama2.c's RunState), so that evaluating tokens allocates nothing.
package final class MoEWorkspace {
    /// The routing of the block that ran last, with room for every expert of every token of a batch.
    package var routing = RoutingTable()
    /// Router scratch: the most any router in effect asks for (see `reserveRouterScratch`).
    package private(set) var routerScratch: FloatBuffer
    /// One expert's tokens gathered, [batch, hidden].
    let gathered: FloatBuffer
    /// One expert's outputs, [batch, hidden]; also the shared expert's.
    let expertOut: FloatBuffer
    /// Scratch of expert and dense MLP forward passes.
    package let expertScratch: FloatBuffer
    /// Tokens routed to each expert, grouped: bucket e is `order[start[e] ..< start[e + 1]]`, with their weights.
    let order: UnsafeMutableBufferPointer<Int32>
    let orderWeight: FloatBuffer
    /// Bucket starts (experts + 1) and the fill positions of the counting sort.
    let start: UnsafeMutableBufferPointer<Int>
    let fill: UnsafeMutableBufferPointer<Int>
    /// One token's experts in `MoEBlock`'s batched decode: their ids, their weights from the store, and their
    /// products' outputs (and the shared expert's).
    let chosen: UnsafeMutableBufferPointer<Int>
    let acquired: UnsafeMutableBufferPointer<UnsafeRawPointer?>
    let decodeOut: FloatBuffer
    /// Decode products gathered into one job on the worker pool (the session's attention uses it too).
    package let batch: GEMVBatch

    /// Buffers for batches of up to `batch` tokens over blocks of at most `maxExperts` experts and `hidden` width,
    /// with `expertScratch` floats for experts and dense MLPs, `decodeCount` for a block's batched decode
    /// (`MoEBlock.decodeCount`) and room for products of up to `widestInput` inputs.
    /// - Throws: `MoertError` (`.outOfMemory`).
    package init(batch: Int, hidden: Int, maxExperts: Int, expertScratch: Int, decodeCount: Int = 0,
                 widestInput: Int = 0) throws {
        let pairs = batch * max(maxExperts, 1)
        routing.reserve(tokens: batch, perToken: max(maxExperts, 1))
        routerScratch = try FloatBuffer(count: 0)
        gathered = try FloatBuffer(count: batch * hidden)
        expertOut = try FloatBuffer(count: batch * hidden)
        self.expertScratch = try FloatBuffer(count: expertScratch)
        orderWeight = try FloatBuffer(count: pairs)
        order = .allocate(capacity: pairs)
        order.initialize(repeating: 0)
        start = .allocate(capacity: maxExperts + 1)
        start.initialize(repeating: 0)
        fill = .allocate(capacity: maxExperts + 1)
        fill.initialize(repeating: 0)
        chosen = .allocate(capacity: maxExperts)
        chosen.initialize(repeating: 0)
        acquired = .allocate(capacity: maxExperts)
        acquired.initialize(repeating: nil)
        decodeOut = try FloatBuffer(count: decodeCount)
        self.batch = try GEMVBatch(maxInFeatures: max(widestInput, hidden))
    }

    deinit {
        order.deallocate()
        start.deallocate()
        fill.deallocate()
        chosen.deallocate()
        acquired.deallocate()
    }

    /// Grows the router scratch to `count` floats (when routers change, never while evaluating).
    /// - Throws: `MoertError` (`.outOfMemory`).
    package func reserveRouterScratch(_ count: Int) throws {
        if routerScratch.count < count { routerScratch = try FloatBuffer(count: count) }
    }
}
