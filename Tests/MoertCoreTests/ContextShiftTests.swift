// ContextShiftTests: dropping positions from a full cache. Layer 0's keys and values depend only on each token and
// its position, so after a shift they must equal what a fresh session computes for the kept tokens at their new
// positions: that checks the rotation and the moves. Generation goes on past n_ctx with the option, and models it
// does not suit refuse it.

import Testing
@testable import MoertCore
import MoertFormats
import MoertTensor
import MoertTestSupport

@Suite("Context shift")
struct ContextShiftTests {
    func session(_ model: Model, _ type: KVCacheType = .f32, context: Int = 0, shift: Bool = false,
                 keep: Int = 0) throws -> Session {
        var o = SessionOptions()
        o.kvType = type
        o.contextLength = context
        o.contextShift = shift
        o.keepTokens = keep
        return try Session(model: model, options: o)
    }

    /// Layer 0's cached keys and values of positions 0 ..< count, widened to float32.
    func layer0(_ s: Session, count: Int) -> ([Float], [Float]) {
        let width = s.cache.rowWidth
        var k = [Float](repeating: .nan, count: count * width), v = k
        s.cache.load(layer: 0, from: 0, count: count, keys: &k, values: &v)
        return (k, v)
    }

    @Test("layer 0 after a shift equals a fresh evaluation of the kept tokens, every cache type",
          arguments: KVCacheType.allCases)
    func layerZeroMatchesFresh(type: KVCacheType) throws {
        let model = try Model(path: fixturesDirectory + "/mixtral_hd64")
        let ref = try Reference(fixture: "mixtral_hd64")
        let tokens = ref.prompt + ref.greedy   // 15 tokens
        let keep = 3, discard = 5
        let shifted = try session(model, type)
        _ = try allLogits(shifted, tokens)
        try shifted.shiftContext(keep: keep, discard: discard)
        #expect(shifted.position == tokens.count - discard)

        let kept = Array(tokens[..<keep] + tokens[(keep + discard)...])
        let fresh = try session(model, type)
        _ = try allLogits(fresh, kept)
        let (k1, v1) = layer0(shifted, count: kept.count), (k2, v2) = layer0(fresh, count: kept.count)
        // A float32 cache: the rotation by -discard composes with the stored one to float32 rounding. A rounded
        // cache: the moved keys are rounded twice, so they may differ by one rounding step of the type.
        let tolerance: Float = type == .f32 ? 1e-5 : (type == .f16 ? 2e-3 : 2e-2)
        #expect(relativeError(k1[...], k2[...]) <= tolerance, "keys")
        #expect(relativeError(v1[...], v2[...]) <= (type == .f32 ? 1e-6 : tolerance), "values")
        // The tokens moved with their rows, and evaluation goes on from the new position.
        let next = try lastLogits(shifted, [tokens[0]])
        #expect(next.allSatisfy { $0.isFinite })
        #expect(shifted.position == kept.count + 1)
    }

    @Test("generation goes past n_ctx with the option, and stops at it without")
    func generatePastContext() throws {
        let model = try Model(path: fixturesDirectory + "/mixtral")
        let prompt: [Int32] = [17, 200, 45, 99, 3, 128, 250]
        var sampler = try Sampler(options: SamplerOptions())
        let plain = try session(model, context: 16)
        let stopped = try plain.generate(prompt: prompt, maxNewTokens: 40, ignoreEOS: true, sampler: &sampler)
        #expect(stopped.count == 16 - prompt.count + 1)

        let shifting = try session(model, context: 16, shift: true, keep: 2)
        let long = try shifting.generate(prompt: prompt, maxNewTokens: 40, ignoreEOS: true, sampler: &sampler)
        #expect(long.count == 40)
        #expect(shifting.position <= 16)
        // Until the context fills, both generate the same tokens.
        #expect(Array(long.prefix(stopped.count - 1)) == Array(stopped.prefix(stopped.count - 1)))

        // A prompt longer than the room left shifts too, as long as it fits after the kept positions.
        let more = try shifting.generate(prompt: Array(repeating: 5, count: 12), maxNewTokens: 3, ignoreEOS: true, sampler: &sampler)
        #expect(more.count == 3)
        let tooLong = moertError { _ = try shifting.generate(prompt: Array(repeating: 5, count: 16), maxNewTokens: 1, sampler: &sampler) }
        #expect(tooLong?.code == .contextFull)
    }

    @Test("bad ranges and options are refused; a model with a sliding window cannot shift")
    func refusals() throws {
        let model = try Model(path: fixturesDirectory + "/mixtral")
        let s = try session(model)
        _ = try allLogits(s, [1, 2, 3, 4])
        #expect(moertError { try s.shiftContext(keep: 5, discard: 0) }?.code == .invalidArgument)
        #expect(moertError { try s.shiftContext(keep: 2, discard: 3) }?.code == .invalidArgument)
        #expect(moertError { try s.shiftContext(keep: -1, discard: 1) }?.code == .invalidArgument)
        try s.shiftContext(keep: 4, discard: 0)
        #expect(s.position == 4)
        #expect(moertError { _ = try session(model, context: 16, shift: true, keep: 16) }?.code == .invalidArgument)

        // mixtral's sliding_window (4096) is above its max_position_embeddings (512): it never binds. Below, it does.
        #expect(model.config.slidingWindow == nil)
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        try dir.editConfig { $0["sliding_window"] = 64 }
        let windowed = try Model(path: dir.path)
        #expect(windowed.config.slidingWindow == 64 && windowed.contextLength == 512)
        let refused = moertError { _ = try session(windowed, shift: true) }
        #expect(refused?.code == .unsupported)
        #expect(refused?.message.contains("sliding window") == true)
        let w = try session(windowed)
        _ = try allLogits(w, [1, 2, 3])
        #expect(moertError { try w.shiftContext(keep: 0, discard: 1) }?.code == .unsupported)
    }
}
