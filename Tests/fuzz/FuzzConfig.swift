// FuzzConfig: libFuzzer target for the config.json and moert-section parsers (bytes → JSON → ModelConfig,
// MoESection).

import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor

/// Parses the input as config.json and as a moert section (the "moert" key if present, else the whole document,
/// as a moert.json file is read). Accepted configs must satisfy the invariants the loader relies on.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    expectingMoertError {
        let json = try JSON.parse(bytes, what: "config.json")
        expectingMoertError {
            let c = try ModelConfig(json: json, source: "config.json")
            invariant(c.vocabSize >= 1 && c.hiddenSize >= 1 && c.numHiddenLayers >= 1, "non-positive size")
            invariant(c.numAttentionHeads % c.numKeyValueHeads == 0, "heads not a multiple of kv heads")
            // RoPE turns pairs of the first rotaryDim values of a head; a latent-attention head (qk_nope + qk_rope)
            // may be odd, since only its rope part is rotated.
            invariant(c.rope.rotaryDim >= 2 && c.rope.rotaryDim % 2 == 0 && c.rope.rotaryDim <= c.headDim,
                      "rotary width odd or beyond the head")
            invariant(c.mla != nil || c.headDim % 2 == 0, "head_dim not even")
            invariant(c.numExperts == 0 || c.numExpertsPerTok <= c.numExperts, "top-k above expert count")
            invariant(c.maxPositionEmbeddings >= 1, "empty context")
            invariant(c.rmsNormEps.isFinite && c.rmsNormEps >= 0 && c.ropeTheta.isFinite && c.ropeTheta > 0, "bad float")
            invariant(c.decoderSparseStep >= 1, "sparse step below 1")
            for l in 0..<min(c.numHiddenLayers, 256) { _ = c.isMoELayer(l) }
            _ = Rope(headDim: min(c.headDim, 1 << 16), theta: c.ropeTheta)
        }
        expectingMoertError {
            let s = try MoESection(json: json.object?["moert"] ?? json, source: "moert.json")
            for l in 0..<4 {
                invariant(s.router(layer: l).map { !$0.kind.isEmpty } ?? true, "empty router kind")
                let groups = s.experts(layer: l) ?? [ExpertGroup(spec: KindSpec(kind: "ffn"), count: 4)]
                invariant(!groups.isEmpty && groups.allSatisfy { $0.count >= 1 && $0.count <= 65536 }, "bad expert group")
            }
        }
    }
    return 0
}
