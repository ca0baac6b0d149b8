// SlidingWindowTests: layers that attend within a sliding window keep a ring buffer of it; sequences several windows
// long, in chunks shorter and longer than the window and token by token, against transformers.

import Testing
@testable import MoertCore
import MoertFormats
import MoertTensor
import MoertTestSupport

@Suite("Sliding windows and their ring buffers")
struct SlidingWindowTests {
    func session(_ model: Model, batch: Int = 0, context: Int = 0, type: KVCacheType = .f32) throws -> Session {
        var o = SessionOptions()
        o.maxBatch = batch
        o.contextLength = context
        o.kvType = type
        return try Session(model: model, options: o)
    }

    @Test("the config's windows reach the layers", arguments: windowFixtureNames)
    func windows(fixture: String) throws {
        let c = try Model(path: fixturesDirectory + "/" + fixture).config
        if fixture == "mixtral_window" {
            #expect(c.layerWindows == [5, 5])
        } else {
            // layer_types: full, sliding, sliding (not the default pattern of even layers)
            #expect(c.layerWindows == [nil, 4, 4])
        }
        #expect(c.maxPositionEmbeddings == 512)
    }

    /// The long reference (40 tokens: 8 windows of 5, 10 of 4) evaluated with chunks of one token (decode), shorter
    /// than the window, equal to it, just over it, and longer than the whole sequence.
    @Test("a sequence several windows long matches transformers in any chunk size", arguments: windowFixtureNames)
    func longSequence(fixture: String) throws {
        let ref = try Reference(fixture: fixture)
        let model = try Model(path: fixturesDirectory + "/" + fixture)
        let window = model.config.slidingWindow!
        #expect(ref.longTokens.count >= 3 * window + 8)
        for batch in [1, 2, window - 1, window, window + 1, 16, 64] {
            let s = try session(model, batch: batch)
            let logits = try allLogits(s, ref.longTokens)
            #expect(relativeError(logits[...], ref.longLogits[...]) <= logitTolerance, "\(fixture) max_batch \(batch)")
        }
        // Prompt in one chunk, then one token at a time (cached decode past the window).
        let s = try session(model)
        let p = ref.prompt.count, vocab = model.config.vocabSize
        var rows = try allLogits(s, Array(ref.longTokens[..<p]))
        for t in ref.longTokens[p...] { rows += try lastLogits(s, [t]) }
        #expect(relativeError(rows[...], ref.longLogits[...]) <= logitTolerance)
        #expect(rows.count == ref.longTokens.count * vocab)
    }

    @Test("every cache type: decode over the ring agrees with prefill and stays within the type's tolerance",
          arguments: windowFixtureNames)
    func cacheTypes(fixture: String) throws {
        let ref = try Reference(fixture: fixture)
        let model = try Model(path: fixturesDirectory + "/" + fixture)
        for type in KVCacheType.allCases where type.unsupportedReason(headDim: model.config.headDim) == nil {
            let decoded = try allLogits(try session(model, batch: 1, type: type), ref.longTokens)
            let chunked = try allLogits(try session(model, batch: 7, type: type), ref.longTokens)
            #expect(relativeError(decoded[...], ref.longLogits[...]) <= kvTolerance[type]!, "\(type)")
            // Chunks and single tokens compute keys and values in different summation orders (GEMM, GEMV), a few
            // float32 ulps apart, which now and then rounds a value to the other f16/bf16 neighbour; over these 40
            // positions that moves logits by up to about 1e-4 with or without a window (qwen2_moe: 9.4e-5 in bf16).
            let agree = type == .f32 ? logitTolerance : 1e-3
            #expect(relativeError(chunked[...], decoded[...]) <= agree, "\(type) chunks vs decode")
        }
    }

    @Test("windowed layers hold their window, full layers the context")
    func bytes() throws {
        for (fixture, full, windowed) in [("mixtral_window", 0, [5, 5]), ("qwen2_moe_window", 1, [4, 4])] {
            let model = try Model(path: fixturesDirectory + "/" + fixture)
            let c = model.config, row = c.numKeyValueHeads * c.headDim * 4
            for context in [64, 300] {
                let s = try session(model, context: context)
                #expect(s.kvCacheBytes == 2 * row * (full * context + windowed.reduce(0, +)), "\(fixture) \(context)")
            }
            // Every layer windowed: the attention scratch is sized by the window and the chunk, not by n_ctx.
            if full == 0 {
                let s = try session(model, batch: 8, context: 500)
                #expect(s.ws.scores.count == 8 * (windowed.max()! - 1 + 8))
                #expect(s.ws.widenedKV?.keys.count == (windowed.max()! - 1 + 8) * c.numKeyValueHeads * c.headDim)
            }
            // A context no longer than the window: the window never binds and every layer is linear.
            let short = try session(model, context: 4)
            #expect(short.kvCacheBytes == 2 * row * 4 * c.numHiddenLayers)
        }
    }

    @Test("the last logits are recomputed from the ring when the last evaluation asked for none")
    func recompute() throws {
        let ref = try Reference(fixture: "mixtral_window")
        let model = try Model(path: fixturesDirectory + "/mixtral_window")
        let s = try session(model, batch: 6)
        try ref.longTokens.withUnsafeBufferPointer { try s.evaluate($0, mode: .none, logits: nil, capacity: 0) }
        let vocab = model.config.vocabSize
        var last = [Float](repeating: .nan, count: vocab)
        try s.copyLastLogits(into: &last, capacity: vocab)
        #expect(relativeError(last[...], ref.longLogits[((ref.longTokens.count - 1) * vocab)...]) <= logitTolerance)
        // The next token still sees its window.
        let next = try lastLogits(s, [ref.longTokens[3]])
        let want = try allLogits(try session(model), ref.longTokens + [ref.longTokens[3]])
        #expect(relativeError(next[...], want[(ref.longTokens.count * vocab)...]) <= logitTolerance)
    }

    @Test("a context shift is refused with the reason")
    func shiftRefused() throws {
        let model = try Model(path: fixturesDirectory + "/mixtral_window")
        var o = SessionOptions()
        o.contextShift = true
        let e = moertError { _ = try Session(model: model, options: o) }
        #expect(e?.code == .unsupported && e?.message.contains("sliding window of 5") == true, "\(e?.message ?? "")")
        let s = try session(model)
        _ = try allLogits(s, [1, 3, 4])
        #expect(moertError { try s.shiftContext(keep: 0, discard: 1) }?.code == .unsupported)
    }
}
