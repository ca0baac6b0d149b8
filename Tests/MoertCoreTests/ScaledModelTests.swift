// ScaledModelTests: a model stored as block-wise FP8 — the memory it takes once decoded, and scales that lie found at
// load (resident matrices) or at the first use of the expert that holds them.

import Foundation
import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport

@Suite("FP8 models")
struct ScaledModelTests {
    /// (F8 elements of routed experts, F8 elements of other matrices, bytes of their scales) from the headers.
    func census(_ fixture: String) throws -> (experts: Int, other: Int, scaleBytes: Int) {
        let file = try SafetensorsFile(path: fixturesDirectory + "/\(fixture)/model.safetensors")
        var experts = 0, other = 0, scales = 0
        for info in file.tensors.values {
            if info.dtype == .f8e4m3 {
                if info.name.contains(".experts.") { experts += info.count } else { other += info.count }
            } else if info.name.hasSuffix("_scale_inv") {
                scales += info.byteCount
            }
        }
        return (experts, other, scales)
    }

    @Test("FP8 weights take 1 byte (plus scales) per parameter in the file and 4 once decoded, experts only while resident")
    func memory() throws {
        let (experts, other, scaleBytes) = try census("qwen3_moe_fp8")
        let model = try Model(path: fixturesDirectory + "/qwen3_moe_fp8")
        // Routed experts: float32 in the store, counted by the residency budget; none resident before a token.
        #expect(model.experts.totalBytes == 4 * experts)
        #expect(model.experts.statistics.residentBytes == 0)
        // The attention matrices decoded at load, plus the small BF16 tensors (norms, router gates) that every BF16
        // checkpoint converts; the BF16 embedding and output layer are read in place.
        let small = try SafetensorsFile(path: fixturesDirectory + "/qwen3_moe_fp8/model.safetensors").tensors.values
            .filter { $0.dtype == .bf16 && !$0.name.contains("embed_tokens") && !$0.name.hasPrefix("lm_head") }
            .reduce(0) { $0 + $1.count }
        #expect(model.checkpoint.convertedBytes == 4 * other + 4 * small)
        #expect(scaleBytes * 16 * 32 / 4 >= experts + other)  // one float32 scale per block of at most 16 × 32
        _ = try allLogits(try Session(model: model), try Reference(fixture: "qwen3_moe_fp8").prompt)
        #expect(model.experts.statistics.residentBytes > 0)
    }

    /// A copy of the FP8 fixture whose float32 tensor `name` has `value` at element `index`.
    func patched(_ name: String, _ index: Int, _ value: Float) throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory.copy(of: "qwen3_moe_fp8")
        let info = try #require(try SafetensorsFile(path: fixturesDirectory + "/qwen3_moe_fp8/model.safetensors").tensors[name])
        var bytes = try dir.readBytes("model.safetensors")
        withUnsafeBytes(of: value.bitPattern.littleEndian) { v in for i in 0..<4 { bytes[info.offset + 4 * index + i] = v[i] } }
        try dir.write("model.safetensors", bytes)
        return dir
    }

    @Test("a NaN scale of an attention matrix fails the load; of a routed expert, its first use; naming the scale tensor")
    func lyingScales() throws {
        let attention = try patched("model.layers.1.self_attn.o_proj.weight_scale_inv", 1, .nan)
        let loadError = try #require(moertError { _ = try Model(path: attention.path) })
        #expect(loadError.message.contains("model.layers.1.self_attn.o_proj.weight_scale_inv: the scale of block [0, 1] is nan"), "\(loadError.message)")

        let expert = try patched("model.layers.0.mlp.experts.2.down_proj.weight_scale_inv", 0, .infinity)
        let model = try Model(path: expert.path)
        let session = try Session(model: model)
        // Every expert of the first layer sees some token of a long enough prompt.
        let tokens = (0..<64).map { Int32(($0 * 37) % model.config.vocabSize) }
        let useError = try #require(moertError { _ = try allLogits(session, tokens) })
        #expect(useError.message.contains("model.layers.0.mlp.experts.2.down_proj.weight_scale_inv: the scale of block [0, 0] is inf"), "\(useError.message)")
    }
}
