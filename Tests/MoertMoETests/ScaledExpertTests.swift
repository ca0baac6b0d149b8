// ScaledExpertTests: MXFP4 experts (gpt-oss) through the expert store — decoded to bf16 when materialised, at 2 bytes
// per parameter, and computing the SwiGLU of transformers' dequantized weights.

import Foundation
import Testing
import MoertFormats
@testable import MoertMoE
import MoertTensor
import MoertTestSupport

@Suite("MXFP4 experts in the store")
struct ScaledExpertTests {
    @Test("bf16 in the store, 2 bytes per parameter; output equals a float64 SwiGLU of transformers' weights to 1e-5")
    func mxfp4Expert() throws {
        let (experts, h, i) = (3, 64, 32)
        let checkpoint = try Checkpoint(directory: fixturesDirectory + "/mxfp4", native: .mxfp4(modulesToNotConvert: []))
        let store = ExpertStore()
        let prefix = "model.layers.0.mlp.experts."
        var made: [StoredExpert] = []
        for e in 0..<experts {
            let (gate, up, down) = try checkpoint.mxfp4Expert(prefix, expert: e, experts: experts, hidden: h, intermediate: i)
            made.append(StoredExpert(store: store, gate: gate, up: up, down: down, hidden: h, intermediate: i, moeLayer: 0))
        }
        #expect(made.allSatisfy { $0.storage == .bf16 })
        #expect(store.totalBytes == experts * 3 * h * i * 2)
        // transformers' GptOssExperts weights: gate_up_proj [E, H, 2I] (gate = even columns), down_proj [E, I, H].
        let (gu, _) = try fixtureTensor("mxfp4/reference.safetensors", "gate_up_proj")
        let (dn, _) = try fixtureTensor("mxfp4/reference.safetensors", "down_proj")
        func bf16(_ b: [UInt8], _ k: Int) -> Double { Double(Float(bitPattern: (UInt32(b[2 * k]) | UInt32(b[2 * k + 1]) << 8) << 16)) }
        var rng = TestRandom(seed: 5)
        let x = rng.floats(h)
        // Expert 1 holds a block scaled by 2^123 (the fixture's extreme), whose products overflow any float.
        for e in [0, 2] {
            var act = [Double](repeating: 0, count: i)
            for r in 0..<i {
                var g = 0.0, u = 0.0
                for c in 0..<h {
                    g += Double(x[c]) * bf16(gu, (e * h + c) * 2 * i + 2 * r)
                    u += Double(x[c]) * bf16(gu, (e * h + c) * 2 * i + 2 * r + 1)
                }
                act[r] = g / (1 + Foundation.exp(-g)) * u
            }
            var want = [Double](repeating: 0, count: h)
            for r in 0..<h { for c in 0..<i { want[r] += act[c] * bf16(dn, (e * i + c) * h + r) } }
            var y = [Float](repeating: .nan, count: h)
            var scratch = [Float](repeating: 0, count: made[e].scratchCount(tokens: 1))
            try x.withUnsafeBufferPointer { xp in
                try y.withUnsafeMutableBufferPointer { yp in
                    try scratch.withUnsafeMutableBufferPointer { try made[e].forward(xp.baseAddress!, rows: 1, into: yp.baseAddress!, scratch: $0.baseAddress!) }
                }
            }
            let scale = want.map(abs).max()!
            let err = zip(y, want).map { abs(Double($0) - $1) }.max()! / scale
            // float32 accumulation over 64 and 32 products of exactly represented bf16 weights: well under 1e-5.
            #expect(err < 1e-5, "expert \(e): relative error \(err)")
        }
        #expect(store.statistics.residentBytes == 2 * 3 * h * i * 2)  // the two experts used
    }
}
