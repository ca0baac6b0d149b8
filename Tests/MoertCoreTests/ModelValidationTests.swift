// ModelValidationTests: configs and checkpoints that moert must refuse, each with a clear, specific error.

import Foundation
import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport

/// Loads a copy of `fixture` after `edit` changed its config.json; the load's error, nil when it loaded.
func loadEdited(_ fixture: String = "mixtral", _ edit: (inout [String: Any]) -> Void) throws -> MoertError? {
    let dir = try TemporaryDirectory.copy(of: fixture)
    try dir.editConfig(edit)
    return moertError { _ = try Model(path: dir.path) }
}

@Suite("Model validation")
struct ModelValidationTests {

    @Test("unknown architecture is named")
    func unknownArchitecture() throws {
        let e = try loadEdited { $0["architectures"] = ["JambaForCausalLM"] }
        #expect(e?.code == .unsupported)
        #expect(e?.message.contains("JambaForCausalLM") == true)
    }

    @Test("rope types other than default and yarn are refused, naming the type")
    func ropeScaling() throws {
        let e = try loadEdited { $0["rope_parameters"] = ["rope_type": "longrope", "rope_theta": 10000.0, "factor": 4.0] }
        #expect(e?.code == .unsupported)
        #expect(e?.message.contains("longrope") == true)
        let legacy = try loadEdited { $0["rope_scaling"] = ["type": "dynamic", "factor": 2.0] }
        #expect(legacy?.code == .unsupported && legacy?.message.contains("rope_scaling rope_type \"dynamic\"") == true)
    }

    @Test("an activation other than SiLU is refused")
    func activation() throws {
        let e = try loadEdited { $0["hidden_act"] = "gelu" }
        #expect(e?.code == .unsupported)
        #expect(e?.message.contains("gelu") == true)
    }

    @Test("missing and ill-typed keys name the key")
    func badKeys() throws {
        let missing = try loadEdited { $0.removeValue(forKey: "hidden_size") }
        #expect(missing?.code == .format && missing?.message.contains("hidden_size") == true)
        let typed = try loadEdited { $0["num_hidden_layers"] = "two" }
        #expect(typed?.code == .format && typed?.message.contains("num_hidden_layers") == true)
        let k = try loadEdited { $0["num_experts_per_tok"] = 9 }
        #expect(k?.code == .format && k?.message.contains("num_experts_per_tok") == true)
    }

    @Test("config shapes that disagree with the tensors name the tensor, file and both shapes")
    func shapeMismatch() throws {
        let e = try loadEdited { $0["intermediate_size"] = 33 }
        #expect(e?.code == .format)
        #expect(e?.message.contains("experts.0.w1.weight in model.safetensors: expected shape [33, 64], got [32, 64]") == true,
                "\(e?.message ?? "")")
    }

    @Test("a sliding window no longer caps the context")
    func slidingWindow() throws {
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        try dir.editConfig { $0["sliding_window"] = 16 }
        let model = try Model(path: dir.path)
        #expect(model.contextLength == 512 && model.config.layerWindows == [16, 16])
    }

    @Test("rope_theta is read at the top level and inside rope_parameters")
    func ropeThetaPlacement() throws {
        #expect(try Model(path: fixturesDirectory + "/qwen3_moe").config.ropeTheta == 2000)
        #expect(try Model(path: fixturesDirectory + "/mixtral").config.ropeTheta == 10000)
    }

    @Test("missing config.json and missing weights are I/O errors")
    func missingFiles() throws {
        let empty = try TemporaryDirectory()
        #expect(moertError { _ = try Model(path: empty.path) }?.code == .io)
        try empty.write("config.json", try String(contentsOfFile: fixturesDirectory + "/mixtral/config.json", encoding: .utf8))
        let e = moertError { _ = try Model(path: empty.path) }
        #expect(e?.code == .io && e?.message.contains("model.safetensors") == true)
    }

    @Test("a missing tensor is named")
    func missingTensor() throws {
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        try dir.write("model.safetensors", safetensorsBytes(tensors: [("model.embed_tokens.weight", [256, 64], [Float](repeating: 0, count: 256 * 64))]))
        let e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .format)
        #expect(e?.message.contains("model.layers.0.self_attn.q_proj.weight") == true, "\(e?.message ?? "")")
    }

    @Test("integer weights are refused")
    func integerWeights() throws {
        let dir = try TemporaryDirectory()
        try dir.write("config.json", try String(contentsOfFile: fixturesDirectory + "/mixtral/config.json", encoding: .utf8))
        try dir.write("model.safetensors", safetensorsBytes(
            header: #"{"model.embed_tokens.weight": {"dtype": "I32", "shape": [256, 64], "data_offsets": [0, 65536]}}"#,
            data: [UInt8](repeating: 0, count: 65536)))
        let e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .unsupported && e?.message.contains("I32") == true, "\(e?.message ?? "")")
    }

    @Test("tensors moert would ignore make the load fail")
    func unusedTensor() throws {
        let dir = try TemporaryDirectory.copy(of: "mixtral_sharded")
        var index = try dir.read("model.safetensors.index.json")
        index = index.replacingOccurrences(of: "\"weight_map\": {", with: "\"weight_map\": {\"model.layers.0.mlp.gate.e_score_correction_bias\": \"extra.safetensors\", ")
        try dir.write("model.safetensors.index.json", index)
        try dir.write("extra.safetensors", safetensorsBytes(tensors: [("model.layers.0.mlp.gate.e_score_correction_bias", [4], [0, 0, 0, 0])]))
        let e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .unsupported && e?.message.contains("e_score_correction_bias") == true, "\(e?.message ?? "")")
    }

    @Test("a shard listed in the index but absent is an I/O error")
    func missingShard() throws {
        let dir = try TemporaryDirectory.copy(of: "mixtral_sharded")
        try FileManager.default.removeItem(atPath: dir.path + "/model-00002-of-00003.safetensors")
        let e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .io && e?.message.contains("model-00002-of-00003.safetensors") == true)
    }

    @Test("a truncated weight file is refused")
    func truncatedWeights() throws {
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        let bytes = try dir.readBytes("model.safetensors")
        try dir.write("model.safetensors", Array(bytes.prefix(bytes.count - 100)))
        let e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .format && e?.message.contains("run past") == true, "\(e?.message ?? "")")
    }
}
