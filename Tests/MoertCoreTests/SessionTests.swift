// SessionTests: evaluation arguments, context limits and sampling.

import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport

@Suite("Session")
struct SessionTests {
    let model: Model
    init() throws { model = try Model(path: fixturesDirectory + "/mixtral") }

    @Test("out-of-range token ids are refused and nothing is evaluated")
    func badTokens() throws {
        let s = try Session(model: model)
        for bad: Int32 in [-1, 256, .max] {
            let e = moertError { _ = try lastLogits(s, [1, bad]) }
            #expect(e?.code == .outOfRange && e?.message.contains("\(bad)") == true)
        }
        #expect(s.position == 0)
    }

    @Test("context overflow is refused and the session stays usable")
    func contextFull() throws {
        var o = SessionOptions()
        o.contextLength = 8
        let s = try Session(model: model, options: o)
        _ = try lastLogits(s, [1, 2, 3, 4, 5, 6])
        #expect(moertError { _ = try lastLogits(s, [1, 2, 3]) }?.code == .contextFull)
        #expect(s.position == 6)
        _ = try lastLogits(s, [1, 2])
        #expect(s.position == 8)
    }

    @Test("empty input, small buffers and absurd options are refused")
    func badArguments() throws {
        let s = try Session(model: model)
        #expect(moertError { _ = try lastLogits(s, []) }?.code == .invalidArgument)
        var small = [Float](repeating: 0, count: 10)
        let e = moertError {
            try [Int32(1)].withUnsafeBufferPointer { t in
                try small.withUnsafeMutableBufferPointer { try s.evaluate(t, mode: .last, logits: $0.baseAddress, capacity: 10) }
            }
        }
        #expect(e?.code == .bufferTooSmall)
        var o = SessionOptions()
        o.contextLength = 1 << 30
        #expect(moertError { _ = try Session(model: model, options: o) }?.code == .invalidArgument)
        o.contextLength = -1
        #expect(moertError { _ = try Session(model: model, options: o) }?.code == .invalidArgument)
    }

    @Test("greedy sampling takes the lowest id among equal maxima and skips NaN")
    func greedyTies() throws {
        var s = try Sampler(options: SamplerOptions())
        let row: [Float] = [.nan, 1, 3, 3, -2]
        #expect(try row.withUnsafeBufferPointer { try s.sample($0) } == 2)
        let nans: [Float] = [.nan, .nan]
        #expect(moertError { _ = try nans.withUnsafeBufferPointer { try s.sample($0) } }?.code == .invalidArgument)
    }

    @Test("seeded sampling is reproducible, top-k 1 is argmax, top-p keeps the head")
    func seededSampling() throws {
        let row: [Float] = (0..<50).map { Float($0 % 7) * 0.3 }
        func draws(_ o: SamplerOptions) throws -> [Int32] {
            var s = try Sampler(options: o)
            return try (0..<40).map { _ in try row.withUnsafeBufferPointer { try s.sample($0) } }
        }
        var o = SamplerOptions()
        o.temperature = 1
        o.seed = 7
        #expect(try draws(o) == draws(o))
        #expect(Set(try draws(o)).count > 1)
        o.topK = 1
        #expect(Set(try draws(o)) == [6])
        o.topK = 0
        o.topP = 0.01
        // Every token with the top logit (ids 6, 13, 20, ...) has the same probability; p = 0.01 keeps only the first.
        #expect(Set(try draws(o)) == [6])
    }

    @Test("invalid sampler options are refused")
    func badSamplerOptions() {
        for edit in [{ (o: inout SamplerOptions) in o.temperature = -1 }, { $0.topP = 0 }, { $0.topP = 1.5 }, { $0.topK = -3 },
                     { $0.temperature = .nan }] {
            var o = SamplerOptions()
            edit(&o)
            #expect(moertError { _ = try Sampler(options: o) }?.code == .invalidArgument)
        }
    }

    @Test("decode attention is timed only when asked, and only for decode steps")
    func decodeAttentionTiming() throws {
        let s = try Session(model: model)
        _ = try lastLogits(s, [1, 2, 3])
        _ = try lastLogits(s, [4])
        #expect(s.decodeAttentionSeconds == 0, "off by default")
        s.timesDecodeAttention = true
        _ = try lastLogits(s, [5, 6, 7])
        #expect(s.decodeAttentionSeconds == 0, "a batch of three is no decode step")
        _ = try lastLogits(s, [8])
        let one = s.decodeAttentionSeconds
        _ = try lastLogits(s, [9])
        #expect(one > 0 && s.decodeAttentionSeconds > one, "each decode step adds its attention's time")
        s.timesDecodeAttention = false
        let kept = s.decodeAttentionSeconds
        _ = try lastLogits(s, [10])
        #expect(s.decodeAttentionSeconds == kept)
    }

    @Test("generation stops after EOS unless told to ignore it")
    func eos() throws {
        let ref = try Reference(fixture: "mixtral")
        let s = try Session(model: model)
        var sampler = try Sampler(options: SamplerOptions())
        let all = try s.generate(prompt: ref.prompt, maxNewTokens: 8, ignoreEOS: true, sampler: &sampler)
        #expect(all == ref.greedy)
        // Pretend the 3rd greedy token is EOS: generation must stop right after it.
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        try dir.editConfig { $0["eos_token_id"] = Int(ref.greedy[2]) }
        let s2 = try Session(model: try Model(path: dir.path))
        let stopped = try s2.generate(prompt: ref.prompt, maxNewTokens: 8, sampler: &sampler)
        #expect(stopped == Array(ref.greedy.prefix(3)))
    }

    @Test("a callback can stop generation early")
    func callbackStop() throws {
        let ref = try Reference(fixture: "mixtral")
        var sampler = try Sampler(options: SamplerOptions())
        var seen: [Int32] = []
        let out = try Session(model: model).generate(prompt: ref.prompt, maxNewTokens: 8, ignoreEOS: true, sampler: &sampler) {
            seen.append($0)
            return seen.count < 3
        }
        #expect(out == seen && out == Array(ref.greedy.prefix(3)))
    }
}
