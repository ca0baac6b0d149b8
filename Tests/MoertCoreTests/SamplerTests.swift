// SamplerTests: temperature, top-k and top-p sampling against the procedure written out with a full sort.

@testable import MoertCore
import MoertTensor
import MoertTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The draw the sampler must make for uniform `u`: candidates sorted by logit (lower id first on ties), the first
/// top-k kept, weights e^(l/T - max), the smallest head reaching top-p, then the first cumulative weight above u·sum.
private func referenceDraw(_ logits: [Float], _ o: SamplerOptions, uniform u: Double) -> Int32 {
    var ids = logits.indices.filter { !logits[$0].isNaN }
    ids.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
    if o.topK > 0 { ids = Array(ids.prefix(o.topK)) }
    let top = logits[ids[0]] / o.temperature
    var probs = ids.map { expf(logits[$0] / o.temperature - top) }
    if o.topP < 1 {
        let sum = probs.reduce(0, +)
        var cumulative: Float = 0
        for (i, p) in probs.enumerated() {
            cumulative += p / sum
            if cumulative >= o.topP { probs = Array(probs.prefix(i + 1)); break }
        }
    }
    let r = Float(u) * probs.reduce(0, +)
    var acc: Float = 0
    for (i, p) in probs.enumerated() {
        acc += p
        if r < acc { return Int32(ids[i]) }
    }
    return Int32(ids[probs.count - 1])
}

@Suite("Sampler")
struct SamplerTests {
    @Test("draws equal the written-out procedure for temperatures, top-k and top-p, with ties and NaN")
    func matchesReference() throws {
        var data = TestRandom(seed: 3)
        for trial in 0..<300 {
            var o = SamplerOptions()
            o.temperature = [0.3, 0.7, 1, 2][trial % 4]
            o.topK = [0, 1, 2, 5, 40, 1000][trial % 6]
            o.topP = [1, 0.9, 0.5, 0.05][(trial / 6) % 4]
            o.seed = UInt64(trial)
            // Coarse values so that ties are common; a few NaN that must be skipped.
            let vocab = 1 + trial % 97
            var logits = (0..<vocab).map { _ in Float(Int(data.nextUnitDouble() * 8)) * 0.5 }
            if vocab > 3 { logits[trial % vocab] = .nan }
            var sampler = try Sampler(options: o)
            var stream = Xoshiro256(seed: o.seed)
            for _ in 0..<3 {
                let got = try logits.withUnsafeBufferPointer { try sampler.sample($0) }
                let want = o.topK == 1 ? Int32(logits.withUnsafeBufferPointer { argmax($0)! })
                                       : referenceDraw(logits, o, uniform: stream.nextUnitDouble())
                #expect(got == want, "trial \(trial): \(o)")
            }
        }
    }
}
