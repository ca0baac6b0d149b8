// PluginParityTests: models that use the shipped router and expert plugins, against PyTorch references written
// from the papers' math (tools/make_plugin_fixtures.py).

import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport

/// Every plugin fixture and the plugin library it needs.
let pluginFixtures = ["gru", "gru_rnn", "gru_shared", "hash", "hash_multi", "hash_relu", "comet", "comet_e6", "moepp",
                      "moepp_mixtral_gating", "topp", "adamoe", "dense_layer"]

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

@Suite("Checkpoints converted to a plugin router")
struct ConvertedCheckpointTests {
    @Test("the built-in gate left beside a plugin router is named, with what to do")
    func leftoverGate() throws {
        let dir = try TemporaryDirectory.copy(of: "plugins/gru")
        let file = try SafetensorsFile(path: dir.path + "/model.safetensors")
        var entries: [SafetensorsWriter.Entry] = [], bytes: [[UInt8]] = []
        for name in file.tensors.keys.sorted() {
            let info = file.tensors[name]!
            entries.append(.init(name: name, dtype: info.dtype, shape: info.shape))
            bytes.append(Array(UnsafeRawBufferPointer(start: file.data(info), count: info.byteCount)))
        }
        let config = try JSON.parse(try dir.read("config.json"), what: "config.json")
        let hidden = Int(config.object!["hidden_size"]!.int!), experts = Int(config.object!["num_local_experts"]!.int!)
        let gate = "model.layers.0.block_sparse_moe.gate.weight"
        entries.append(.init(name: gate, dtype: .f32, shape: [experts, hidden]))
        bytes.append([UInt8](repeating: 0, count: experts * hidden * 4))
        let writer = try SafetensorsWriter(path: dir.path + "/model.safetensors", entries: entries)
        for b in bytes { try b.withUnsafeBytes { try writer.append($0) } }
        try writer.finish()
        let e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .format && e!.message.contains(gate) && e!.message.contains("'gru'")
                && e!.message.contains("remove the gate"), "\(String(describing: e))")
    }

    /// A copy of plugin fixture `name` whose model.safetensors holds every tensor except `dropped`.
    func copy(of name: String, without dropped: String) throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory.copy(of: name)
        let file = try SafetensorsFile(path: dir.path + "/model.safetensors")
        let names = file.tensors.keys.sorted().filter { $0 != dropped }
        #expect(names.count == file.tensors.count - 1, "\(dropped) is in the fixture")
        let writer = try SafetensorsWriter(path: dir.path + "/model.safetensors",
                                           entries: names.map { .init(name: $0, dtype: file.tensors[$0]!.dtype, shape: file.tensors[$0]!.shape) })
        for n in names {
            let info = file.tensors[n]!
            try writer.append(UnsafeRawBufferPointer(start: file.data(info), count: info.byteCount))
        }
        try writer.finish()
        return dir
    }

    @Test("MoE++: the gating residual's map may be left out of the first MoE layer, which has no previous logits")
    func moeppFirstLayerGateMap() throws {
        let dir = try copy(of: "plugins/moepp", without: "model.layers.0.block_sparse_moe.router.gate_map.weight")
        let ref = try Reference(fixture: "plugins/moepp")
        let logits = try allLogits(try Session(model: try Model(path: dir.path)), ref.prompt)
        #expect(relativeError(logits[...], ref.logits[...]) <= logitTolerance)
        // After the first MoE layer it is still required.
        let later = try copy(of: "plugins/moepp", without: "model.layers.1.block_sparse_moe.router.gate_map.weight")
        let e = moertError { _ = try Model(path: later.path) }
        #expect(e != nil && e!.message.contains("router.gate_map.weight"), "\(String(describing: e))")
    }
}
