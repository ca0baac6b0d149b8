// DeepSeekTests: DeepSeek-V2/V3 config keys as moert reads them, the errors that name a key, the skipped
// multi-token-prediction tensors, and the latent cache.

import Foundation
import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport

@Suite("DeepSeek")
struct DeepSeekTests {
    func config(_ fixture: String) throws -> ModelConfig {
        try ModelConfig.read(directory: fixturesDirectory + "/" + fixture).config
    }

    @Test("DeepSeek-V2: latent attention sizes, YaRN, dense first layer, shared experts, softmax greedy routing")
    func v2Keys() throws {
        let c = try config("deepseek_v2")
        #expect(c.architecture == .deepseekV2)
        #expect(c.mla == MLAConfig(qLoraRank: 24, kvLoraRank: 32, qkNopeHeadDim: 16, qkRopeHeadDim: 8, vHeadDim: 16,
                                   attentionBias: true).with(softmaxScale: c.mla!.softmaxScale))
        // transformers: yarn_apply_mscale(rope_parameters, qk_head_dim ** -0.5)
        #expect(abs(Double(c.mla!.softmaxScale) - 0.25191097422871067) <= 1e-7)
        #expect(c.headDim == 24 && c.rope.rotaryDim == 8 && c.rope.pairing == .interleaved)
        guard case .yarn(let y) = c.rope.scaling else { Issue.record("no YaRN"); return }
        #expect(y.factor == 4 && y.originalMaxPositionEmbeddings == 16 && y.betaFast == 4 && y.mscaleAllDim == 0.8)
        #expect(c.mlpOnlyLayers == [0] && !c.isMoELayer(0) && c.isMoELayer(1) && c.isMoELayer(2))
        #expect(c.sharedExpertIntermediateSize == 2 * 32 && c.intermediateSize == 64 && c.moeIntermediateSize == 32)
        #expect(c.routing.scoring == .softmax && c.routing.selection == .greedy && !c.routing.normalizeTopK)
        #expect(c.routing.scalingFactor == 1)
        #expect(try config("deepseek_v2_lite").mla?.qLoraRank == nil)
    }

    @Test("DeepSeek-V3: sigmoid scores, corrected group selection, scaling, rope_interleave, multi-token-prediction layers")
    func v3Keys() throws {
        let c = try config("deepseek_v3")
        #expect(c.architecture == .deepseekV3)
        #expect(c.routing.scoring == .sigmoid && c.routing.selection == .correctedGroupLimited(groups: 4, keptGroups: 2))
        #expect(c.routing.normalizeTopK && c.routing.scalingFactor == 2.5)
        #expect(c.rope.pairing == .halves && c.numNextnPredictLayers == 1)
        #expect(try config("deepseek_v3_dense").rope.pairing == .interleaved)
        let g = try config("deepseek_v2_group")
        #expect(g.routing.selection == .groupLimited(groups: 4, keptGroups: 2) && g.routing.scalingFactor == 1.5)
    }

    @Test("options moert does not run are load errors naming the key")
    func refusedKeys() throws {
        let cases: [(String, String, (inout [String: Any]) -> Void)] = [
            ("deepseek_v2", "topk_method", { $0["topk_method"] = "random_greedy" }),
            ("deepseek_v2", "scoring_func", { $0["scoring_func"] = "sigmoid" }),
            ("deepseek_v2", "norm_topk_prob", { $0["norm_topk_prob"] = true }),
            ("deepseek_v2", "moe_layer_freq", { $0["moe_layer_freq"] = 2 }),
            ("deepseek_v2", "mlp_bias", { $0["mlp_bias"] = true }),
            ("deepseek_v3_dense", "topk_method", { $0["topk_method"] = "greedy" }),
            ("deepseek_v3_dense", "scoring_func", { $0["scoring_func"] = "softmax" }),
            ("deepseek_v3_dense", "rope_type \"longrope\"", { $0["rope_parameters"] = ["rope_type": "longrope", "factor": 2.0] }),
        ]
        for (fixture, key, edit) in cases {
            let e = try loadEdited(fixture, edit)
            #expect(e?.code == .unsupported && e?.message.contains(key) == true, "\(key): \(String(describing: e))")
        }
    }

    @Test("missing or inconsistent sizes are format errors naming the key")
    func badSizes() throws {
        let cases: [(String, (inout [String: Any]) -> Void)] = [
            ("kv_lora_rank", { $0.removeValue(forKey: "kv_lora_rank") }),
            ("q_lora_rank", { $0.removeValue(forKey: "q_lora_rank") }),
            ("qk_rope_head_dim", { $0["qk_rope_head_dim"] = 7 }),
            ("num_key_value_heads", { $0["num_key_value_heads"] = 2 }),
            ("n_group", { $0["n_group"] = 3 }),
            ("topk_group", { $0["topk_group"] = 5 }),
            ("routed_scaling_factor", { $0["routed_scaling_factor"] = -1.0 }),
        ]
        for (key, edit) in cases {
            let e = try loadEdited("deepseek_v3_dense", edit)
            #expect(e?.code == .format && e?.message.contains(key) == true, "\(key): \(String(describing: e))")
        }
    }

    @Test("the checkpoint's q/kv projections are read by their names: a missing one is named")
    func missingTensor() throws {
        let e = try loadEdited("deepseek_v2") { $0["q_lora_rank"] = NSNull() }
        #expect(e?.message.contains("model.layers.0.self_attn.q_proj.weight") == true)
    }

    @Test("multi-token-prediction tensors (model.layers.<num_hidden_layers>.*) are skipped by name")
    func mtpSkipped() throws {
        let file = try SafetensorsFile(path: fixturesDirectory + "/deepseek_v3_dense/model.safetensors")
        #expect(file.tensors.keys.contains("model.layers.2.eh_proj.weight"))
        #expect(file.tensors.keys.contains("model.layers.2.self_attn.kv_a_proj_with_mqa.weight"))
        let model = try Model(path: fixturesDirectory + "/deepseek_v3_dense")
        #expect(model.layers.count == 2)
        // Without num_nextn_predict_layers the same tensors are unknown, and the load says so.
        let e = try loadEdited("deepseek_v3_dense") { $0["num_nextn_predict_layers"] = 0 }
        #expect(e?.code == .unsupported && e?.message.contains("model.layers.2.") == true)
    }

    @Test("chunked prefill (max_batch 3) over the latent cache equals transformers' logits")
    func chunkedPrefill() throws {
        for fixture in ["deepseek_v2", "deepseek_v3_dense"] {
            let ref = try Reference(fixture: fixture)
            var options = SessionOptions()
            options.maxBatch = 3
            let session = try Session(model: try Model(path: fixturesDirectory + "/" + fixture), options: options)
            #expect(relativeError(try allLogits(session, ref.prompt)[...], ref.logits[...]) <= logitTolerance, "\(fixture)")
        }
    }

    /// A copy of `fixture` with every float32 tensor rounded to f16, stored as f16 (`half`) or as float32.
    func roundedCopy(_ fixture: String, half: Bool) throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory.copy(of: fixture)
        let file = try SafetensorsFile(path: dir.path + "/model.safetensors")
        let names = file.tensors.keys.sorted()
        var entries: [SafetensorsWriter.Entry] = [], bytes: [[UInt8]] = []
        for name in names {
            let info = file.tensors[name]!
            let raw = UnsafeRawBufferPointer(start: file.data(info), count: info.byteCount)
            guard info.dtype == .f32 else {
                entries.append(.init(name: name, dtype: info.dtype, shape: info.shape))
                bytes.append(Array(raw))
                continue
            }
            let rounded = raw.bindMemory(to: Float.self).map { Float16($0) }
            entries.append(.init(name: name, dtype: half ? .f16 : .f32, shape: info.shape))
            bytes.append(half ? rounded.withUnsafeBytes(Array.init) : rounded.map(Float.init).withUnsafeBytes(Array.init))
        }
        let writer = try SafetensorsWriter(path: dir.path + "/model.safetensors", entries: entries)
        for b in bytes { try b.withUnsafeBytes { try writer.append($0) } }
        try writer.finish()
        return dir
    }

    @Test("decode with f16 weights (kv_b_proj read as stored, one position at a time) equals the same values in float32")
    func halfDecode() throws {
        let ref = try Reference(fixture: "deepseek_v2")
        let halfDir = try roundedCopy("deepseek_v2", half: true), fullDir = try roundedCopy("deepseek_v2", half: false)
        let half = try Session(model: try Model(path: halfDir.path)), full = try Session(model: try Model(path: fullDir.path))
        #expect(half.model.storageDType == .f16 && full.model.storageDType == .f32)
        for token in ref.prompt {
            let a = try lastLogits(half, [token]), b = try lastLogits(full, [token])
            // The same products summed in another order (f16 rows widened in registers): float32 rounding only.
            #expect(relativeError(a[...], b[...]) <= 1e-5, "token \(token)")
        }
    }

    @Test("context shift is refused for the latent cache")
    func noContextShift() throws {
        let model = try Model(path: fixturesDirectory + "/deepseek_v2")
        var o = SessionOptions()
        o.contextShift = true
        let e = moertError { _ = try Session(model: model, options: o) }
        #expect(e?.code == .unsupported && e?.message.contains("kv_lora_rank") == true)
    }
}

extension MLAConfig {
    /// The same sizes with `softmaxScale` set.
    func with(softmaxScale s: Float) -> MLAConfig {
        var c = self
        c.softmaxScale = s
        return c
    }
}
