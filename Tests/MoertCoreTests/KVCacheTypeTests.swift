// KVCacheTypeTests: sessions with a rounded KV cache against transformers' logits (float32 cache), within the
// tolerance each type's rounding allows; cached decode against recompute with the same cache type.

import Foundation
import Testing
@testable import MoertCore
import MoertFormats
import MoertTensor
import MoertTestSupport

/// Largest logit error of a cache type relative to the largest logit of transformers' float32 run, on the tiny
/// fixtures. Keys and values enter attention rounded: f16 keeps 11 significant bits (relative error 2^-11), bf16 8
/// (2^-8), q8_0 a step of max|x| / 127 per block of 32 (about 2^-8 of the block's largest value). The error then
/// passes through the layers; the bounds are a few times what was measured (docs/kv-cache.md lists the figures) and
/// well below what a mistake gives (a wrong row or scale: above 1e-1).
let kvTolerance: [KVCacheType: Float] = [.f32: logitTolerance, .f16: 2e-3, .bf16: 1.5e-2, .q8_0: 3e-2]

@Suite("KV cache types")
struct KVCacheTypeTests {
    func session(_ model: Model, _ type: KVCacheType, context: Int = 0) throws -> Session {
        var o = SessionOptions()
        o.kvType = type
        o.contextLength = context
        return try Session(model: model, options: o)
    }

    @Test("every cache type stays within its tolerance of transformers, prefill and cached decode",
          arguments: fixtureNames)
    func withinTolerance(fixture: String) throws {
        let ref = try Reference(fixture: fixture)
        let model = try Model(path: fixturesDirectory + "/" + fixture)
        let vocab = model.config.vocabSize
        let sequence = ref.prompt + ref.greedy
        for type in KVCacheType.allCases {
            if let reason = model.config.kvCacheUnsupportedReason(type) {
                #expect(throws: MoertError.self, "\(reason)") { try session(model, type) }
                continue
            }
            let s = try session(model, type)
            var rows = try allLogits(s, ref.prompt)
            #expect(relativeError(rows[...], ref.logits[...]) <= kvTolerance[type]!, "\(type) prefill")
            for t in ref.greedy.dropLast() { rows += try lastLogits(s, [t]) }
            #expect(relativeError(rows[...], ref.fullLogits[..<((sequence.count - 1) * vocab)]) <= kvTolerance[type]!,
                    "\(type) cached decode")
            // Decode and prefill read the same rounded cache. Their keys and values come from products in different
            // summation orders (GEMV, GEMM), a few float32 ulps apart, which now and then rounds one value to the
            // other f16/bf16 neighbour: float32 agrees to its rounding, the others to 1e-3 (measured up to 1.3e-4,
            // qwen2_moe_window in f16).
            let full = try allLogits(try session(model, type), Array(sequence.dropLast()))
            #expect(relativeError(rows[...], full[...]) <= (type == .f32 ? logitTolerance : 1e-3), "\(type) decode vs recompute")
        }
    }

    @Test("cache bytes per type: f16 and bf16 half of f32, q8_0 34 bytes per 32 values")
    func bytes() throws {
        let model = try Model(path: fixturesDirectory + "/mixtral_hd64")
        let c = model.config
        let f32 = try session(model, .f32, context: 64).kvCacheBytes
        #expect(f32 == 2 * c.numHiddenLayers * 64 * c.numKeyValueHeads * c.headDim * 4)
        #expect(try session(model, .f16, context: 64).kvCacheBytes * 2 == f32)
        #expect(try session(model, .bf16, context: 64).kvCacheBytes * 2 == f32)
        #expect(try session(model, .q8_0, context: 64).kvCacheBytes * 128 == f32 * 34)
    }

    @Test("multi-head latent attention caches kv_lora_rank + qk_rope_head_dim values per position and layer")
    func latentBytes() throws {
        let model = try Model(path: fixturesDirectory + "/deepseek_v2_lite")
        let c = model.config, mla = try #require(c.mla)
        #expect(mla.cacheWidth == mla.kvLoraRank + mla.qkRopeHeadDim)
        let f32 = try session(model, .f32, context: 64).kvCacheBytes
        #expect(f32 == c.numHiddenLayers * 64 * mla.cacheWidth * 4)
        #expect(c.kvCacheBytesPerPosition(.f32) == mla.cacheWidth * 4)
        #expect(try session(model, .bf16, context: 64).kvCacheBytes * 2 == f32)
        #expect(try session(model, .q8_0, context: 64).kvCacheBytes * 128 == f32 * 34)
    }

    @Test("q8_0 is refused for latent rows that are not a multiple of 32 values, naming both ranks")
    func q8NeedsLatentBlocks() throws {
        let model = try Model(path: fixturesDirectory + "/deepseek_v2")
        let error = #expect(throws: MoertError.self) { try session(model, .q8_0) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("kv_lora_rank 32 + qk_rope_head_dim 8") == true)
    }

    @Test("q8_0 is refused with a head dimension that is not a multiple of 32, naming it")
    func q8NeedsBlocks() throws {
        let model = try Model(path: fixturesDirectory + "/mixtral")
        #expect(model.config.headDim % 32 != 0)
        let error = #expect(throws: MoertError.self) { try session(model, .q8_0) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("head dimension") == true)
    }
}
