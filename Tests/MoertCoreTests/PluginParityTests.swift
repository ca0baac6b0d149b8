// PluginParityTests: models that use the shipped router and expert plugins, against PyTorch references written
// from the papers' math (tools/make_plugin_fixtures.py).

import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport

/// Every plugin fixture and the plugin library it needs.
let pluginFixtures = ["gru", "gru_rnn", "hash", "hash_multi", "comet", "comet_e6", "moepp", "moepp_mixtral_gating", "topp", "adamoe"]

@Suite("Plugin parity with reference implementations")
struct PluginParityTests {
    @Test("prefill logits", arguments: pluginFixtures)
    func prefill(fixture: String) throws {
        let name = "plugins/" + fixture
        let ref = try Reference(fixture: name)
        let session = try Session(model: try Model(path: fixturesDirectory + "/" + name))
        let logits = try allLogits(session, ref.prompt)
        #expect(relativeError(logits[...], ref.logits[...]) <= logitTolerance)
    }

    @Test("greedy continuation and cached decode", arguments: pluginFixtures)
    func greedy(fixture: String) throws {
        let name = "plugins/" + fixture
        let ref = try Reference(fixture: name)
        let model = try Model(path: fixturesDirectory + "/" + name)
        var sampler = try Sampler(options: SamplerOptions())
        let out = try Session(model: model).generate(prompt: ref.prompt, maxNewTokens: ref.greedy.count, ignoreEOS: true, sampler: &sampler)
        #expect(out == ref.greedy)
        let vocab = model.config.vocabSize
        let session = try Session(model: model)
        var rows = try allLogits(session, ref.prompt)
        for t in ref.greedy.dropLast() { rows += try lastLogits(session, [t]) }
        #expect(relativeError(rows[...], ref.fullLogits[..<((ref.prompt.count + ref.greedy.count - 1) * vocab)]) <= logitTolerance)
    }
}
