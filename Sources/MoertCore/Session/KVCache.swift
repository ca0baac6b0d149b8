// KVCache: keys and values of every layer for the positions evaluated so far.

import MoertTensor

/// Per-layer keys and values, laid out [layer][position][kvHeads × headDim].
final class KVCache {
    let layers: Int
    let capacity: Int
    /// kvHeads × headDim.
    let rowWidth: Int
    let keys: FloatBuffer
    let values: FloatBuffer

    init(layers: Int, capacity: Int, rowWidth: Int) throws {
        let (perLayer, o1) = capacity.multipliedReportingOverflow(by: rowWidth)
        let (total, o2) = perLayer.multipliedReportingOverflow(by: layers)
        guard !o1, !o2 else { throw MoertError(.outOfMemory, "KV cache of \(capacity) tokens overflows") }
        self.layers = layers
        self.capacity = capacity
        self.rowWidth = rowWidth
        keys = try FloatBuffer(count: total)
        values = try FloatBuffer(count: total)
    }

    /// Keys of `layer`, starting at position 0.
    func keys(layer: Int) -> UnsafeMutablePointer<Float> { keys.pointer + layer * capacity * rowWidth }
    /// Values of `layer`, starting at position 0.
    func values(layer: Int) -> UnsafeMutablePointer<Float> { values.pointer + layer * capacity * rowWidth }
}
