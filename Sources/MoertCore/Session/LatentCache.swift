// LatentCache: multi-head latent attention's cache — per layer and position the normalised latent and the rotated
// shared key, not expanded heads.

import CKernels
import MoertFormats
import MoertTensor

/// Per-layer rows of kv_lora_rank + qk_rope_head_dim values, laid out [layer][position][width] in `type`
/// (`DeepseekV2Attention.forward` caches the same two tensors: `cache.update(k_nope, k_pe, ...)`).
final class LatentCache {
    let type: KVCacheType
    let layers: Int
    let capacity: Int
    /// kv_lora_rank + qk_rope_head_dim.
    let width: Int
    /// Bytes of one position in one layer.
    let rowBytes: Int
    private let data: FloatBuffer

    /// A cache of `capacity` positions in each of `layers` layers.
    /// - Throws: `MoertError` (`.outOfMemory`).
    init(type: KVCacheType, layers: Int, capacity: Int, width: Int) throws {
        rowBytes = type.bytes(width: width)
        let (perLayer, o1) = capacity.multipliedReportingOverflow(by: rowBytes)
        let (total, o2) = perLayer.multipliedReportingOverflow(by: layers)
        guard !o1, !o2 else { throw MoertError(.outOfMemory, "latent cache of \(capacity) tokens overflows") }
        self.type = type
        self.layers = layers
        self.capacity = capacity
        self.width = width
        data = try FloatBuffer(count: (total + 3) / 4)
    }

    /// Bytes the cache holds (every layer and position).
    var bytes: Int { layers * capacity * rowBytes }

    /// Rows of `layer`, starting at position 0.
    func rows(layer: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(data.pointer) + layer * capacity * rowBytes }

    /// Writes `count` float32 rows ([count, width]) at `position` of `layer`.
    func store(layer: Int, position: Int, rows r: UnsafePointer<Float>, count: Int) {
        moert_kv_store(type.code, r, rows(layer: layer) + position * rowBytes, Int64(count * width))
    }

    /// Reads positions 0 ..< `count` of `layer` as float32 into `out` ([count, width]).
    func load(layer: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        moert_kv_load(type.code, rows(layer: layer), out, Int64(count * width))
    }
}

extension ModelConfig {
    /// Bytes one position takes in one layer's cache of `type`: keys and values of every key/value head, or for
    /// multi-head latent attention one row of kv_lora_rank + qk_rope_head_dim values.
    public func kvCacheBytesPerPosition(_ type: KVCacheType) -> Int {
        if let mla { return type.bytes(width: mla.cacheWidth) }
        return 2 * type.bytes(width: numKeyValueHeads * headDim)
    }

    /// Why a cache of `type` cannot hold this model's rows, or nil when it can.
    public func kvCacheUnsupportedReason(_ type: KVCacheType) -> String? {
        if let mla {
            guard type == .q8_0, mla.cacheWidth % Int(MOERT_Q8_0_BLOCK) != 0 else { return nil }
            return "KV cache type q8_0 needs cached rows of a multiple of \(MOERT_Q8_0_BLOCK) values; this model's latent rows hold kv_lora_rank \(mla.kvLoraRank) + qk_rope_head_dim \(mla.qkRopeHeadDim) = \(mla.cacheWidth)"
        }
        return type.unsupportedReason(headDim: headDim)
    }
}
