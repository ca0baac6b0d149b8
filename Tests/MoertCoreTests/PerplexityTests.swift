// PerplexityTests: perplexity in windows against transformers (Tests/fixtures/perplexity, tools/make_perplexity_fixtures.py).

import Foundation
import Testing
@testable import MoertCore
import MoertFormats
import MoertText
import MoertTestSupport

@Suite("Perplexity")
struct PerplexityTests {
    struct Case {
        let fixture: String, ctx: Int, stride: Int?, text: String, tokens: Int, scored: Int, nll: Double, perplexity: Double
    }

    static func cases() throws -> [Case] {
        let text = try String(contentsOfFile: fixturesDirectory + "/perplexity/reference.json", encoding: .utf8)
        let json = try JSON.parse(text, what: "reference.json")
        return try #require(json.object?["cases"]?.array).map { c in
            let o = c.object!
            return Case(fixture: o["fixture"]!.string!, ctx: Int(o["ctx"]!.int!), stride: o["stride"]?.int.map { Int($0) },
                        text: o["text"]!.string!, tokens: Int(o["tokens"]!.int!),
                        scored: Int(o["scored"]!.int!), nll: o["nll"]!.double!, perplexity: o["perplexity"]!.double!)
        }
    }

    /// The cases on Genesis 1 (the held-out split's case runs in the command-line test, on the release build).
    @Test("the same perplexity as transformers over the same windows, within 1e-4")
    func matchesTransformers() throws {
        let cases = try Self.cases().filter { $0.text == "genesis.txt" }
        #expect(cases.count >= 3 && cases.contains { $0.stride != nil && $0.stride! < $0.ctx })
        for c in cases {
            let text = try String(contentsOfFile: fixturesDirectory + "/perplexity/" + c.text, encoding: .utf8)
            let directory = fixturesDirectory + "/" + c.fixture
            let model = try Model(path: directory)
            let tokens = try ModelText(path: directory).tokenizer.encode(text, addSpecialTokens: false)
            #expect(tokens.count == c.tokens)
            let result = try Perplexity.measure(model: model, tokens: tokens, window: c.ctx, stride: c.stride)
            #expect(result.scored == c.scored, "ctx \(c.ctx) stride \(String(describing: c.stride))")
            if c.stride == nil {
                #expect(result.tokens == c.tokens && result.windows == (c.tokens + c.ctx - 1) / c.ctx, "ctx \(c.ctx)")
            }
            #expect(abs(result.perplexity - c.perplexity) <= 1e-4 * c.perplexity, "ctx \(c.ctx): \(result.perplexity) vs \(c.perplexity)")
            #expect(result.expertsPerToken == Double(model.config.numExpertsPerTok))
        }
    }

    @Test("bad windows and inputs are refused")
    func refusals() throws {
        let model = try Model(path: fixturesDirectory + "/mixtral")
        #expect(moertError { _ = try Perplexity.measure(model: model, tokens: [1, 2, 3], window: 8, stride: 9) }?.code == .invalidArgument)
        #expect(moertError { _ = try Perplexity.measure(model: model, tokens: [1, 2, 3], window: 8, stride: 0) }?.code == .invalidArgument)
        for (tokens, window) in [([Int32](arrayLiteral: 1, 2, 3), 1), ([1, 2, 3], model.contextLength + 1), ([7], 16), ([1, 999], 16)] {
            #expect(moertError { _ = try Perplexity.measure(model: model, tokens: tokens, window: window) }?.code == .invalidArgument,
                    "\(tokens) window \(window)")
        }
    }
}
