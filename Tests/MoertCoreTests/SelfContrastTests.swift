// SelfContrastTests: SCMoE self-contrast decoding against transformers (Tests/fixtures/scmoe,
// tools/make_scmoe_fixtures.py), and its refusals.

import Foundation
import Testing
@testable import MoertCore
import MoertFormats
import MoertTestSupport

@Suite("SCMoE self-contrast decoding")
struct SelfContrastTests {
    struct Case {
        let fixture: String, prompt: [Int32], contrast: SelfContrast, tokens: [Int32], greedy: [Int32]
    }

    static func cases() throws -> [Case] {
        let text = try String(contentsOfFile: fixturesDirectory + "/scmoe/reference.json", encoding: .utf8)
        let json = try JSON.parse(text, what: "reference.json")
        func ids(_ v: JSON?) -> [Int32] { (v?.array ?? []).map { Int32($0.int!) } }
        return try #require(json.object?["cases"]?.array).map { c in
            let o = c.object!
            return Case(fixture: o["fixture"]!.string!, prompt: ids(o["prompt"]),
                        contrast: SelfContrast(weakRank: Int(o["weak_rank"]!.int!), beta: Float(o["beta"]!.double!),
                                               alpha: Float(o["alpha"]!.double!)),
                        tokens: ids(o["tokens"]), greedy: ids(o["greedy"]))
        }
    }

    @Test("the tokens transformers chooses with the same strong and weak passes, β and α")
    func matchesTransformers() throws {
        let cases = try Self.cases()
        #expect(cases.count >= 2)
        for c in cases {
            let model = try Model(path: fixturesDirectory + "/" + c.fixture)
            var sampler = try Sampler(options: SamplerOptions())
            let plain = try Session(model: model).generate(prompt: c.prompt, maxNewTokens: c.greedy.count, ignoreEOS: true,
                                                           sampler: &sampler)
            #expect(plain == c.greedy)
            let session = try Session(model: model)
            let out = try session.generate(prompt: c.prompt, maxNewTokens: c.tokens.count, ignoreEOS: true, sampler: &sampler,
                                           contrast: c.contrast)
            #expect(out == c.tokens, "\(c.fixture) rank \(c.contrast.weakRank)")
            #expect(session.position == c.prompt.count + c.tokens.count)
        }
    }

    @Test("a continuation after earlier tokens: the weak pass is given the session's tokens first")
    func continues() throws {
        let c = try #require(try Self.cases().first)
        let model = try Model(path: fixturesDirectory + "/" + c.fixture)
        var sampler = try Sampler(options: SamplerOptions())
        let session = try Session(model: model)
        try c.prompt.dropLast(2).withUnsafeBufferPointer { try session.evaluate($0, mode: .none, logits: nil, capacity: 0) }
        var out = try session.generate(prompt: Array(c.prompt.suffix(2)), maxNewTokens: 5, ignoreEOS: true, sampler: &sampler,
                                       contrast: c.contrast)
        out += try session.generate(prompt: [], maxNewTokens: c.tokens.count - 5, ignoreEOS: true, sampler: &sampler,
                                    contrast: c.contrast)
        #expect(out == c.tokens)
    }

    @Test("perplexity's SCMoE accuracy: with β = 0 it is the argmax accuracy; the perplexity is the model's own")
    func perplexityAccuracy() throws {
        let model = try Model(path: fixturesDirectory + "/mixtral")
        var sampler = try Sampler(options: SamplerOptions())
        // A greedy continuation: in its own window every token after the prompt is the argmax.
        let prompt: [Int32] = [17, 200, 45, 99, 3]
        let tokens = prompt + (try Session(model: model).generate(prompt: prompt, maxNewTokens: 40, ignoreEOS: true, sampler: &sampler))
        let plain = try Perplexity.measure(model: model, tokens: tokens, window: 64)
        let zero = try Perplexity.measure(model: model, tokens: tokens, window: 64, contrast: SelfContrast(weakRank: 2, beta: 0))
        let half = try Perplexity.measure(model: model, tokens: tokens, window: 64, contrast: SelfContrast(weakRank: 2, beta: 0.5))
        #expect(plain.correct >= 40 && zero.contrastCorrect == plain.correct && half.contrastCorrect < plain.correct)
        #expect(zero.negativeLogLikelihood == plain.negativeLogLikelihood && half.negativeLogLikelihood == plain.negativeLogLikelihood)
    }

    @Test("bad settings, a context shift and a model without built-in gates are refused")
    func refusals() throws {
        let model = try Model(path: fixturesDirectory + "/mixtral")
        var sampler = try Sampler(options: SamplerOptions())
        for (contrast, message) in [(SelfContrast(weakRank: 4), "rank must be in [0, 4)"),
                                    (SelfContrast(weakRank: 1, beta: -1), "beta must be finite and >= 0"),
                                    (SelfContrast(weakRank: 1, alpha: 0), "alpha must be in (0, 1]")] {
            let e = moertError { try Session(model: model).generate(prompt: [1, 2], maxNewTokens: 2, sampler: &sampler, contrast: contrast) }
            #expect(e?.code == .invalidArgument && e?.message.contains(message) == true, "\(e?.message ?? "generated")")
        }
        var options = SessionOptions()
        options.contextShift = true
        let shifting = try Session(model: model, options: options)
        let e = moertError { try shifting.generate(prompt: [1, 2], maxNewTokens: 2, sampler: &sampler, contrast: SelfContrast(weakRank: 1)) }
        #expect(e?.code == .invalidArgument && e?.message.contains("context shift") == true, "\(e?.message ?? "generated")")
        let hashed = try Model(path: fixturesDirectory + "/plugins/hash")
        let g = moertError { try Session(model: hashed).generate(prompt: [1, 2], maxNewTokens: 2, sampler: &sampler, contrast: SelfContrast(weakRank: 1)) }
        #expect(g?.code == .invalidArgument && g?.message.contains("built-in router's gate") == true, "\(g?.message ?? "generated")")
    }
}
