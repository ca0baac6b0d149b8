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

/// Per-layer keys and values, laid out [layer][position][kvHeads × headDim] in `type`.
final class KVCache {
    let type: KVCacheType
    let layers: Int
    let capacity: Int
    /// kvHeads × headDim.
    let rowWidth: Int
    /// Bytes of one position's keys (or values) in one layer.
    let rowBytes: Int
    private let keys: FloatBuffer
    private let values: FloatBuffer

    init(type: KVCacheType, layers: Int, capacity: Int, rowWidth: Int) throws {
        rowBytes = type.bytes(width: rowWidth)
        let (perLayer, o1) = capacity.multipliedReportingOverflow(by: rowBytes)
        let (total, o2) = perLayer.multipliedReportingOverflow(by: layers)
        guard !o1, !o2 else { throw MoertError(.outOfMemory, "KV cache of \(capacity) tokens overflows") }
        self.type = type
        self.layers = layers
        self.capacity = capacity
        self.rowWidth = rowWidth
        keys = try FloatBuffer(count: (total + 3) / 4)
        values = try FloatBuffer(count: (total + 3) / 4)
    }

    /// Bytes the cache holds (keys and values of every layer and position).
    var bytes: Int { 2 * layers * capacity * rowBytes }

    /// Keys of `layer`, starting at position 0.
    func keys(layer: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(keys.pointer) + layer * capacity * rowBytes }
    /// Values of `layer`, starting at position 0.
    func values(layer: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(values.pointer) + layer * capacity * rowBytes }

    /// Writes `count` positions of float32 keys and values ([count, rowWidth] each) at `position` of `layer`.
    func store(layer: Int, position: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, count: Int) {
        moert_kv_store(type.code, k, keys(layer: layer) + position * rowBytes, Int64(count * rowWidth))
        moert_kv_store(type.code, v, values(layer: layer) + position * rowBytes, Int64(count * rowWidth))
    }

    /// Writes `count` positions of float32 keys ([count, rowWidth]) at `position` of `layer`.
    func store(layer: Int, position: Int, keys k: UnsafePointer<Float>, count: Int) {
        moert_kv_store(type.code, k, keys(layer: layer) + position * rowBytes, Int64(count * rowWidth))
    }

    /// Reads the keys of positions `from` ..< `from + count` of `layer` as float32 ([count, rowWidth]).
    func load(layer: Int, from: Int, count: Int, keys k: UnsafeMutablePointer<Float>) {
        moert_kv_load(type.code, keys(layer: layer) + from * rowBytes, k, Int64(count * rowWidth))
    }

    /// Reads positions 0 ..< `count` of `layer` as float32 into `keys` and `values` ([count, rowWidth] each).
    func load(layer: Int, count: Int, keys k: UnsafeMutablePointer<Float>, values v: UnsafeMutablePointer<Float>) {
        moert_kv_load(type.code, keys(layer: layer), k, Int64(count * rowWidth))
        moert_kv_load(type.code, values(layer: layer), v, Int64(count * rowWidth))
    }
}
