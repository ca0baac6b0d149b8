// TransformersParityTests: logits and greedy continuations against Hugging Face transformers' own outputs.

import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport

/// Logits must agree to float32 rounding: transformers and moert sum in different orders (BLAS blocking,
/// expert accumulation), which moves results by a few ulps of the largest logit; 1e-4 of the largest logit
/// leaves room for that while catching any real mistake (a wrong norm or rotation changes logits by > 1e-2).
let logitTolerance: Float = 1e-4

@Suite("Parity with transformers")
struct TransformersParityTests {
    @Test("prefill logits of every position", arguments: fixtureNames)
    func prefillLogits(fixture: String) throws {
        let ref = try Reference(fixture: fixture)
        let session = try Session(model: try Model(path: fixturesDirectory + "/" + fixture))
        let logits = try allLogits(session, ref.prompt)
        #expect(relativeError(logits[...], ref.logits[...]) <= logitTolerance)
    }

    @Test("greedy continuation token for token", arguments: fixtureNames)
    func greedy(fixture: String) throws {
        let ref = try Reference(fixture: fixture)
        let session = try Session(model: try Model(path: fixturesDirectory + "/" + fixture))
        var sampler = try Sampler(options: SamplerOptions())
        let out = try session.generate(prompt: ref.prompt, maxNewTokens: ref.greedy.count, ignoreEOS: true, sampler: &sampler)
        #expect(out == ref.greedy)
    }

    @Test("KV-cached decode equals a full recompute", arguments: fixtureNames)
    func cachedDecode(fixture: String) throws {
        let ref = try Reference(fixture: fixture)
        let model = try Model(path: fixturesDirectory + "/" + fixture)
        let vocab = model.config.vocabSize
        let sequence = ref.prompt + ref.greedy
        let session = try Session(model: model)
        var rows = try allLogits(session, ref.prompt)
        for t in ref.greedy.dropLast() { rows += try lastLogits(session, [t]) }
        #expect(relativeError(rows[...], ref.fullLogits[..<((sequence.count - 1) * vocab)]) <= logitTolerance)

        // The same, recomputed by moert in one prefill of the whole sequence.
        let full = try allLogits(try Session(model: model), Array(sequence.dropLast()))
        #expect(relativeError(rows[...], full[...]) <= logitTolerance)
    }

    @Test("chunked prefill (max_batch smaller than the prompt) equals one pass")
    func chunkedPrefill() throws {
        let ref = try Reference(fixture: "qwen2_moe")
        let model = try Model(path: fixturesDirectory + "/qwen2_moe")
        var options = SessionOptions()
        options.maxBatch = 3
        let chunked = try allLogits(try Session(model: model, options: options), ref.prompt)
        #expect(relativeError(chunked[...], ref.logits[...]) <= logitTolerance)
    }

    @Test("F16 and BF16 storage load and are converted exactly")
    func halfPrecisionStorage() throws {
        #expect(try Model(path: fixturesDirectory + "/mixtral_bf16").storageDType == .bf16)
        #expect(try Model(path: fixturesDirectory + "/qwen2_moe").storageDType == .f16)
        #expect(try Model(path: fixturesDirectory + "/mixtral").storageDType == .f32)
    }

    @Test("reset forgets the sequence")
    func reset() throws {
        let ref = try Reference(fixture: "mixtral")
        let session = try Session(model: try Model(path: fixturesDirectory + "/mixtral"))
        let first = try allLogits(session, ref.prompt)
        session.reset()
        #expect(session.position == 0)
        #expect(try allLogits(session, ref.prompt) == first)
    }
}
