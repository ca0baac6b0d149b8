// GLMAndGptOssTests: GLM-4.5 MoE's and gpt-oss's config keys as moert reads them, and the errors that name them
// (their parity with transformers is in TransformersParityTests).

import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport

@Suite("GLM-4.5 MoE and gpt-oss")
struct GLMAndGptOssTests {
    @Test("GLM-4.5: DeepSeek-V3's routing, partial rotary, q/k norms, q/k/v biases, dense first layer, shared experts")
    func glmKeys() throws {
        let c = try ModelConfig.read(directory: fixturesDirectory + "/glm4_moe").config
        #expect(c.routing.scoring == .sigmoid && c.routing.selection == .correctedGroupLimited(groups: 2, keptGroups: 1))
        #expect(c.routing.normalizeTopK && c.routing.scalingFactor == 2.5)
        #expect(c.rope.rotaryDim == 8 && c.headDim == 16 && c.qkNorm == .perHead && c.qkvBias && !c.outputBias)
        #expect(c.mlpOnlyLayers == [0] && c.sharedExpertIntermediateSize == 32 && c.numNextnPredictLayers == 1)
    }

    @Test("GLM-4.5: an older config's top-level partial_rotary_factor, and the default of 0.5 without one")
    func glmPartialRotary() throws {
        for (factor, width) in [(0.25, 4), (nil, 8)] as [(Double?, Int)] {
            let dir = try TemporaryDirectory.copy(of: "glm4_moe")
            try dir.editConfig {
                $0["rope_parameters"] = ["rope_type": "default", "rope_theta": 10000.0]
                $0["partial_rotary_factor"] = factor
            }
            #expect(try ModelConfig.read(directory: dir.path).config.rope.rotaryDim == width)
        }
    }

    /// Config edits GLM-4.5 refuses, with the key the message must name: experts not divisible by n_group, more kept
    /// groups than groups, a rotary width that is odd (int(16 × 0.2) = 3), a missing size.
    nonisolated(unsafe) static let glmRefused: [(key: String, value: Any?, named: String)] = [
        ("n_group", 3, "n_group"), ("topk_group", 3, "topk_group"), ("partial_rotary_factor", 0.2, "partial_rotary_factor"),
        ("n_shared_experts", nil, "n_shared_experts"),
    ]

    @Test("GLM-4.5 refusals name the key", arguments: 0..<4)
    func glmRefusals(index: Int) throws {
        let (key, value, named) = Self.glmRefused[index]
        let e = try loadEdited("glm4_moe") {
            if key == "partial_rotary_factor" { $0["rope_parameters"] = ["rope_type": "default", "rope_theta": 10000.0] }
            $0[key] = value
        }
        #expect(e?.code == .format && e?.message.contains(named) == true, "\(String(describing: e))")
    }

    @Test("gpt-oss: windows on the layers layer_types names (else the even ones), sinks, clamped SwiGLU, router")
    func gptOssKeys() throws {
        let c = try ModelConfig.read(directory: fixturesDirectory + "/gpt_oss").config
        #expect(c.layerWindows == [4, nil, 4] && c.attentionSinks)
        #expect(c.clampedSwiGLU?.alpha == 1.702 && c.clampedSwiGLU?.limit == 1.5)
        #expect(c.routing.scoring == .softmaxOfTopK && c.routing.gateBias && c.routing.gate == "router")
        let dir = try TemporaryDirectory.copy(of: "gpt_oss")
        try dir.editConfig { $0["layer_types"] = nil; $0["num_hidden_layers"] = 3 }
        #expect(try ModelConfig.read(directory: dir.path).config.layerWindows == [4, nil, 4])
    }

    @Test("gpt-oss refusals name the key or the tensor")
    func gptOssRefusals() throws {
        let limit = try loadEdited("gpt_oss") { $0["swiglu_limit"] = -1.0 }
        #expect(limit?.code == .format && limit?.message.contains("swiglu_limit") == true, "\(String(describing: limit))")
        let types = try loadEdited("gpt_oss") { $0["layer_types"] = ["sliding_attention", "chunked_attention", "full_attention"] }
        #expect(types?.message.contains("layer_types[1]") == true, "\(String(describing: types))")
        let missing = try loadEdited("gpt_oss") { $0["num_hidden_layers"] = 4; $0["layer_types"] = nil }
        #expect(missing?.code == .format && missing?.message.contains("model.layers.3.") == true, "\(String(describing: missing))")
    }
}
