// KVCache: keys and values of every layer for the positions evaluated so far, in the session's cache type.

import CKernels
import MoertTensor

/// Element type of a session's KV cache.
public enum KVCacheType: String, CaseIterable, Sendable {
    /// float32: exactly the values transformers attends over (the default).
    case f32
    /// IEEE half precision, rounded to nearest even.
    case f16
    /// bfloat16, rounded to nearest even.
    case bf16
    /// Blocks of 32 values of one head, each an f16 scale and 32 int8 (GGML's q8_0): 8.5 bits per value.
    case q8_0

    /// The code of the C kernels (MOERT_KV_*), which is also the C API's MOERT_KV_TYPE_* value.
    public var code: Int32 {
        switch self {
        case .f32: return MOERT_KV_F32
        case .f16: return MOERT_KV_F16
        case .bf16: return MOERT_KV_BF16
        case .q8_0: return MOERT_KV_Q8_0
        }
    }

    /// The type of a C API code, nil for an unknown one.
    public init?(code: Int32) {
        guard let t = Self.allCases.first(where: { $0.code == code }) else { return nil }
        self = t
    }

    /// Bytes of `width` values (for q8_0 a multiple of 32).
    public func bytes(width: Int) -> Int { Int(moert_kv_row_bytes(code, Int64(width))) }

    /// Why a model whose heads have `headDim` values cannot use this type, or nil when it can.
    public func unsupportedReason(headDim: Int) -> String? {
        guard self == .q8_0, headDim % Int(MOERT_Q8_0_BLOCK) != 0 else { return nil }
        return "KV cache type q8_0 needs a head dimension that is a multiple of \(MOERT_Q8_0_BLOCK); this model's is \(headDim)"
    }
}

/// Per-layer keys and values in `type`, one row of kvHeads × headDim values per position. A full-attention layer holds
/// every position of the context, row p for position p. A sliding-window layer holds only the last `window` positions
/// it can still attend to, as a ring buffer: position p is row p % window, overwritten when position p + window is
/// written, so its memory does not grow with the context.
final class KVCache {
    let type: KVCacheType
    let layers: Int
    /// Positions a full-attention layer holds (the session's context).
    let capacity: Int
    /// Each layer's ring size (its attention window) when it keeps only the last positions; nil for a full layer.
    let rings: [Int?]
    /// kvHeads × headDim.
    let rowWidth: Int
    /// Bytes of one position's keys (or values) in one layer.
    let rowBytes: Int
    /// Byte offset of each layer's first row, [layers + 1].
    private let offsets: [Int]
    private let keys: FloatBuffer
    private let values: FloatBuffer

    /// A cache of `capacity` positions for the layers whose `rings` entry is nil and of that many positions (a ring
    /// buffer) for the others.
    /// - Throws: `MoertError` (`.outOfMemory`).
    init(type: KVCacheType, capacity: Int, rowWidth: Int, rings: [Int?]) throws {
        rowBytes = type.bytes(width: rowWidth)
        var offsets = [0]
        for ring in rings {
            let (layerBytes, o1) = (ring ?? capacity).multipliedReportingOverflow(by: rowBytes)
            let (end, o2) = offsets.last!.addingReportingOverflow(layerBytes)
            guard !o1, !o2 else { throw MoertError(.outOfMemory, "KV cache of \(capacity) tokens overflows") }
            offsets.append(end)
        }
        self.type = type
        self.layers = rings.count
        self.capacity = capacity
        self.rings = rings
        self.rowWidth = rowWidth
        self.offsets = offsets
        keys = try FloatBuffer(count: (offsets.last! + 3) / 4)
        values = try FloatBuffer(count: (offsets.last! + 3) / 4)
    }

    /// Bytes the cache holds (keys and values of every layer: its whole context for a full layer, its window for a
    /// sliding-window one).
    var bytes: Int { 2 * offsets.last! }

    /// Keys of `layer`, starting at row 0.
    func keys(layer: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(keys.pointer) + offsets[layer] }
    /// Values of `layer`, starting at row 0.
    func values(layer: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(values.pointer) + offsets[layer] }

    /// Calls `body(row, index, count)` for the runs of consecutive rows that hold positions `position ..< position +
    /// count` of `layer` (two runs when a ring wraps); `index` counts from `position`. A ring layer takes at most its
    /// ring size of positions at once.
    @inline(__always)
    private func runs(layer: Int, position: Int, count: Int, _ body: (_ row: Int, _ index: Int, _ count: Int) -> Void) {
        guard let ring = rings[layer] else { return body(position, 0, count) }
        assert(count <= ring, "a ring buffer holds \(ring) positions, \(count) asked")
        let row = position % ring, head = min(count, ring - row)
        body(row, 0, head)
        if head < count { body(0, head, count - head) }
    }

    /// Writes `count` positions of float32 keys and values ([count, rowWidth] each) at `position` of `layer` (at most
    /// the ring size of a sliding-window layer).
    func store(layer: Int, position: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, count: Int) {
        let kb = keys(layer: layer), vb = values(layer: layer)
        runs(layer: layer, position: position, count: count) { row, i, n in
            moert_kv_store(type.code, k + i * rowWidth, kb + row * rowBytes, Int64(n * rowWidth))
            moert_kv_store(type.code, v + i * rowWidth, vb + row * rowBytes, Int64(n * rowWidth))
        }
    }

    /// Writes `count` positions of float32 keys ([count, rowWidth]) at `position` of `layer`.
    func store(layer: Int, position: Int, keys k: UnsafePointer<Float>, count: Int) {
        let kb = keys(layer: layer)
        runs(layer: layer, position: position, count: count) { row, i, n in
            moert_kv_store(type.code, k + i * rowWidth, kb + row * rowBytes, Int64(n * rowWidth))
        }
    }

    /// Reads the keys of positions `from` ..< `from + count` of `layer` as float32 ([count, rowWidth]).
    func load(layer: Int, from: Int, count: Int, keys k: UnsafeMutablePointer<Float>) {
        let kb = keys(layer: layer)
        runs(layer: layer, position: from, count: count) { row, i, n in
            moert_kv_load(type.code, kb + row * rowBytes, k + i * rowWidth, Int64(n * rowWidth))
        }
    }

    /// Reads positions `from` ..< `from + count` of `layer` as float32 into `keys` and `values` ([count, rowWidth]
    /// each); a sliding-window layer still holds them when they are among its last ring-size positions.
    func load(layer: Int, from: Int, count: Int, keys k: UnsafeMutablePointer<Float>, values v: UnsafeMutablePointer<Float>) {
        let kb = keys(layer: layer), vb = values(layer: layer)
        runs(layer: layer, position: from, count: count) { row, i, n in
            moert_kv_load(type.code, kb + row * rowBytes, k + i * rowWidth, Int64(n * rowWidth))
            moert_kv_load(type.code, vb + row * rowBytes, v + i * rowWidth, Int64(n * rowWidth))
        }
    }
}
