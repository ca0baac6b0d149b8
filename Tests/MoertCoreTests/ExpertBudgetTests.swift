// ExpertBudgetTests: the residency budget changes memory, never results.

import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport

@Suite("Expert residency budget")
struct ExpertBudgetTests {
    func run(_ fixture: String, budget: ExpertBudget?) throws -> (logits: [Float], generated: [Int32], stats: ExpertStoreStats) {
        var options = ModelLoadOptions()
        options.expertBudget = budget
        let model = try Model(path: fixturesDirectory + "/" + fixture, options: options)
        let ref = try Reference(fixture: fixture)
        let logits = try allLogits(try Session(model: model), ref.prompt)
        var sampler = try Sampler(options: SamplerOptions())
        let generated = try Session(model: model).generate(prompt: ref.prompt, maxNewTokens: 8, ignoreEOS: true, sampler: &sampler)
        return (logits, generated, model.experts.statistics)
    }

    @Test("logits and generations are bit-identical under any budget", arguments: ["mixtral", "qwen2_moe", "mixtral_bf16", "qwen3_moe_fp8"])
    func bitIdentical(fixture: String) throws {
        let full = try run(fixture, budget: nil)
        #expect(full.stats.evictions == 0)
        for budget: ExpertBudget in [.fraction(0.5), .fraction(0.25), .bytes(1)] {
            let limited = try run(fixture, budget: budget)
            #expect(limited.logits == full.logits, "\(budget)")
            #expect(limited.generated == full.generated, "\(budget)")
            #expect(limited.stats.evictions > 0, "\(budget) evicts")
            #expect(limited.stats.residentBytes <= max(limited.stats.budgetBytes!, limited.stats.totalBytes / limited.stats.residentPerLayer.count / 2 + 1),
                    "\(budget) stays within the budget, or one expert over it when the budget is below one expert")
        }
    }

    /// Logits of each position of the reference prompt, evaluated one token at a time (decode).
    func decodeLogits(_ fixture: String, budget: ExpertBudget?) throws -> [Float] {
        var options = ModelLoadOptions()
        options.expertBudget = budget
        let model = try Model(path: fixturesDirectory + "/" + fixture, options: options)
        // (the quantized fixtures' references hold logits of their own prompts only)
        let session = try Session(model: model), prompt = (try? Reference(fixture: fixture).prompt) ?? [1, 17, 42, 3, 99, 250]
        var out: [Float] = []
        for token in prompt { out += try lastLogits(session, [token]) }
        return out
    }

    /// Without a budget one token's experts (and the shared expert) run their products as two jobs on the worker pool
    /// (MoEBlock.forwardOneToken); under a budget one expert at a time: the same products, the same bits. Fixtures with
    /// and without a shared expert (gated or not), with expert biases and the clamped SwiGLU (gpt-oss), quantized,
    /// bf16 and FP8 (read as float32) experts.
    @Test("decode gives the same bits with its experts batched (no budget) as one at a time (a budget)",
          arguments: ["mixtral", "qwen2_moe", "deepseek_v2", "gpt_oss", "mixtral_q4_0", "qwen2_moe_q4_0", "mixtral_bf16",
                      "qwen3_moe_fp8"])
    func batchedDecode(fixture: String) throws {
        let batched = try decodeLogits(fixture, budget: nil)
        #expect(batched.allSatisfy { $0.isFinite })
        #expect(try decodeLogits(fixture, budget: .fraction(1)) == batched)
    }

    @Test("budgets parse from bytes, units and percentages")
    func parsing() throws {
        #expect(try ExpertBudget(parsing: "512M") == .bytes(512 << 20))
        #expect(try ExpertBudget(parsing: "2G") == .bytes(2 << 30))
        #expect(try ExpertBudget(parsing: "1048576") == .bytes(1048576))
        #expect(try ExpertBudget(parsing: "25%") == .fraction(0.25))
        for bad in ["", "0", "-5M", "12Q", "150%", "0%", "abc"] {
            #expect(moertError { _ = try ExpertBudget(parsing: bad) }?.code == .invalidArgument, "\(bad)")
        }
    }

    @Test("statistics count hits, misses and resident experts per layer")
    func statistics() throws {
        let stats = try run("mixtral", budget: nil).stats
        #expect(stats.residentBytes == stats.totalBytes)  // every expert was used by the prompt and the continuation
        #expect(stats.residentPerLayer == [4, 4])
        #expect(stats.misses == 8 && stats.hits > 0 && stats.bytesLoaded == stats.totalBytes)
    }
}
