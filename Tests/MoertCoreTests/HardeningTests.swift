// HardeningTests: what a hostile model directory must not be able to do — choose code to run, make moert allocate
// before checking, or kill the host through a file changed under a mapping.

import Foundation
import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport
import CMoert

@Suite("Hardening")
struct HardeningTests {
    /// Loads a copy of the mixtral fixture whose moert section loads `plugin`, with `evil.so` (not a library) and
    /// `libmoert_evil.so` beside it.
    func loadNaming(_ plugin: String, trust: Bool) throws -> MoertError? {
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        try dir.write("evil.so", "not a library")
        try dir.write("libmoert_evil.so", "not a library")
        try dir.editConfig { $0["moert"] = ["format_version": 1, "plugins": [plugin]] }
        var options = ModelLoadOptions()
        options.trustPluginPaths = trust
        return moertError { _ = try Model(path: dir.path, options: options) }
    }

    @Test("a model naming a plugin library by path is refused unless the host trusts it",
          arguments: ["./evil.so", "evil.so/", "../mixtral/evil.so", "/tmp/evil.so", "sub/../evil.so"])
    func pluginPaths(path: String) throws {
        let refused = try loadNaming(path, trust: false)
        #expect(refused?.code == .plugin, "\(refused?.message ?? "loaded")")
        #expect(refused?.message.contains("plugin \"\(path)\" is a path") == true)
        // Trusted, the path is opened (and these files are no libraries, or absent).
        let trusted = try loadNaming(path, trust: true)
        #expect(trusted?.code == .io, "\(trusted?.message ?? "loaded")")
    }

    @Test("a bare plugin name is never looked up in the model directory")
    func bareNames() throws {
        let e = try loadNaming("evil", trust: true)
        #expect(e?.code == .io)
        #expect(e?.message.contains("plugin evil not found") == true, "\(e?.message ?? "loaded")")
        let copy = try TemporaryDirectory.copy(of: "mixtral")
        #expect(e?.message.contains(copy.path) == false)
    }

    @Test("weights read into memory give the logits of mapped weights, bit for bit", arguments: ["mixtral", "mixtral_bf16", "qwen2_moe"])
    func unmapped(fixture: String) throws {
        var options = ModelLoadOptions()
        options.mapWeights = false
        let read = try Model(path: fixturesDirectory + "/" + fixture, options: options)
        let mapped = try Model(path: fixturesDirectory + "/" + fixture)
        #expect(!read.checkpoint.isMapped && mapped.checkpoint.isMapped)
        let prompt: [Int32] = [1, 5, 9, 14, 3]
        let a = try allLogits(try Session(model: read), prompt), b = try allLogits(try Session(model: mapped), prompt)
        #expect(a.map(\.bitPattern) == b.map(\.bitPattern))
    }

    @Test("a mapped file that shrinks is an I/O error at the next evaluation; a model read into memory does not notice")
    func truncatedWhileLoaded() throws {
        for mapped in [true, false] {
            let dir = try TemporaryDirectory.copy(of: "mixtral")
            var options = ModelLoadOptions()
            options.mapWeights = mapped
            let model = try Model(path: dir.path, options: options)
            let session = try Session(model: model)
            let before = try lastLogits(session, [1, 2, 3])
            #expect(truncate(dir.path + "/model.safetensors", 4096) == 0)
            session.reset()
            let e = moertError { _ = try lastLogits(session, [1, 2, 3]) }
            if mapped {
                #expect(e?.code == .io && e?.message.contains("model.safetensors: the file shrank") == true, "\(e?.message ?? "evaluated")")
            } else {
                #expect(e == nil)
                #expect(try lastLogits(session, [4]).count == before.count)
            }
        }
    }

    /// Seconds on the monotonic clock.
    func seconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    @Test("a config claiming 2^28 or 2^31 - 1 layers is refused at once, before anything proportional is allocated",
          arguments: [1 << 28, Int(Int32.max)])
    func absurdLayerCount(layers: Int) throws {
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        try dir.editConfig { $0["num_hidden_layers"] = layers }
        // The load is timed inside the measured body: the check may wait for another test's measured body first.
        var elapsed = 0.0
        let e = expectNoLargeAllocation("\(layers) layers") { () -> MoertError? in
            let start = seconds()
            defer { elapsed = seconds() - start }
            return moertError { _ = try Model(path: dir.path) }
        }
        #expect(elapsed < 1)
        #expect(e?.code == .format && e?.message.contains("missing tensor model.layers.2.self_attn.q_proj.weight") == true,
                "\(e?.message ?? "loaded")")
    }

    @Test("a header of more tensors than a file may hold is refused after a bounded parse")
    func manyTensors() throws {
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        let count = SafetensorsFile.maxTensors + 50_000
        var header = "{"
        header.reserveCapacity(count * 60)
        for i in 0..<count { header += "\"t\(i)\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}," }
        header.removeLast()
        header += "}"
        try dir.write("model.safetensors", safetensorsBytes(header: header))
        let e = expectNoLargeAllocation("\(count) tensors") { moertError { _ = try Model(path: dir.path) } }
        #expect(e?.code == .format && e?.message.contains("moert reads in") == true, "\(e?.message ?? "loaded")")
    }

    @Test("a moert section naming a layer the model lacks, or a dense one, is refused")
    func sectionLayers() throws {
        for (fixture, layer, message) in [("mixtral", 7, "layers.7: the model has 2 layers (0 to 1)"),
                                          ("qwen3_moe", 0, "layers.0: layer 0 has a dense MLP")] {
            let dir = try TemporaryDirectory.copy(of: fixture)
            try dir.editConfig {
                $0["moert"] = ["format_version": 1, "layers": ["\(layer)": ["router": ["kind": "no-such-router"]]]]
                if fixture == "qwen3_moe" { $0["mlp_only_layers"] = [0] }
            }
            let e = moertError { _ = try Model(path: dir.path) }
            #expect(e?.code == .format && e?.message.contains(message) == true, "\(e?.message ?? "loaded")")
        }
    }

    @Test("dense layers and shared experts of the moert section: mistakes are named")
    func sectionDenseAndShared() throws {
        let cases: [(String, [String: Any], String)] = [
            ("mixtral", ["layers": ["0": ["dense": true, "router": ["kind": "topk"]]]],
             "layers.0: a dense layer has no router, experts or shared expert"),
            ("mixtral", ["layers": ["1": ["dense": ["intermediate_size": 0]]]], "layers.1.dense: intermediate_size must be"),
            ("mixtral", ["layers": ["1": ["dense": "yes"]]], "layers.1.dense: must be true or an object"),
            ("mixtral", ["layers": ["0": ["dense": true]]], "missing tensor model.layers.0.mlp.gate_proj.weight"),
            ("mixtral", ["shared_expert": ["weight": "half"]], "shared_expert: weight must be a finite number"),
            ("mixtral", ["shared_expert": ["width": 8]], "shared_expert: unknown key \"width\""),
            ("mixtral", ["shared_expert": ["weight": 0.5]], "missing tensor model.layers.0.block_sparse_moe.shared_expert.gate_proj.weight"),
            ("qwen2_moe", ["shared_expert": ["weight": 0.5]], "has its own shared expert"),
        ]
        for (fixture, section, message) in cases {
            let dir = try TemporaryDirectory.copy(of: fixture)
            try dir.editConfig { $0["moert"] = section }
            let e = moertError { _ = try Model(path: dir.path) }
            #expect(e?.code == .format && e?.message.contains(message) == true, "\(section): \(e?.message ?? "loaded")")
        }
    }

    @Test("expert groups of more than 65,536 experts in all are refused")
    func expertTotal() throws {
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        try dir.editConfig { $0["moert"] = ["experts": [["kind": "ffn", "count": 65536], ["kind": "ffn", "count": 1]]] }
        let e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .format && e?.message.contains("65537 experts in all") == true, "\(e?.message ?? "loaded")")
    }

    @Test("generate with an empty prompt continues after an evaluation that asked for no logits, as transformers' greedy run",
          arguments: ["mixtral", "qwen3_moe", "olmoe"])
    func continueWithoutLogits(fixture: String) throws {
        let ref = try Reference(fixture: fixture)
        let model = try Model(path: fixturesDirectory + "/" + fixture)
        for way in ["eval none", "generate 0"] {
            let session = try Session(model: model)
            var sampler = try Sampler(options: SamplerOptions())
            if way == "eval none" {
                try ref.prompt.withUnsafeBufferPointer { try session.evaluate($0, mode: .none, logits: nil, capacity: 0) }
            } else {
                try session.generate(prompt: ref.prompt, maxNewTokens: 0, sampler: &sampler)
            }
            let out = try session.generate(prompt: [], maxNewTokens: ref.greedy.count, ignoreEOS: true, sampler: &sampler)
            #expect(out == ref.greedy, "\(fixture) after \(way)")
            #expect(session.position == ref.prompt.count + ref.greedy.count)
        }
    }

    @Test("the experts a model reports are those its layers have, not config.json's count")
    func expertCount() throws {
        // The MoE++ fixture: 4 FFN experts and 4 zero-compute ones per layer; config.json is made to count only the
        // FFN experts, as a checkpoint that adds experts in its moert section does.
        let dir = try TemporaryDirectory.copy(of: "plugins/moepp")
        try dir.editConfig { $0["num_local_experts"] = 4 }
        let model = try Model(path: dir.path)
        #expect(model.config.numExperts == 4)
        #expect(model.moeBlocks.allSatisfy { $0.experts.count == 8 } && model.maxExpertsPerLayer == 8)
    }

    @Test("expert kinds with unknown or contradictory flags are refused")
    func expertFlags() throws {
        let create: @convention(c) (UnsafePointer<moert_host_api>?, OpaquePointer?, UnsafePointer<moert_layer_info>?,
                                    UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> moert_status = { _, _, _, _ in MOERT_OK }
        let destroy: @convention(c) (UnsafeMutableRawPointer?) -> Void = { _ in }
        for (flags, message) in [(UInt32(0x8), "unknown flag bits 0x8"),
                                 (MOERT_EXPERT_OUTPUT_ZERO | MOERT_EXPERT_OUTPUT_IDENTITY, "both MOERT_EXPERT_OUTPUT_ZERO")] {
            let e = "hardening.flags".withCString { name in
                let ops = moert_expert_ops(struct_size: UInt32(MemoryLayout<moert_expert_ops>.size), abi_version: UInt32(MOERT_PLUGIN_ABI_VERSION),
                                           name: name, flags: flags, create: create, forward: nil, destroy: destroy)
                return moertError { try PluginRegistry.shared.register(expert: ops, source: "test") }
            }
            #expect(e?.code == .plugin && e?.message.contains(message) == true, "\(e?.message ?? "registered")")
        }
    }

    /// A copy of the mixtral fixture with element `index` of `tensor` (float32) replaced by `value`.
    func poisoned(_ tensor: String, index: Int, value: Float) throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        let path = dir.path + "/model.safetensors"
        let offset = try #require(try SafetensorsFile(path: path).tensors[tensor]).offset + 4 * index
        var bytes = try dir.readBytes("model.safetensors")
        withUnsafeBytes(of: value.bitPattern.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
        try dir.write("model.safetensors", bytes)
        return dir
    }

    @Test("a NaN in a norm or a router gate is refused at load, naming the tensor",
          arguments: ["model.layers.1.input_layernorm.weight", "model.layers.0.block_sparse_moe.gate.weight", "model.norm.weight"])
    func nonFiniteSmallWeight(tensor: String) throws {
        let dir = try poisoned(tensor, index: 3, value: .nan)
        let e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .format && e?.message.contains("\(tensor): element 3 is nan") == true, "\(e?.message ?? "loaded")")
    }

    @Test("a NaN in a large weight makes evaluation fail with MOERT_ERR_NUMERIC, not return NaN logits",
          arguments: ["lm_head.weight", "model.layers.0.self_attn.v_proj.weight"])
    func nonFiniteLargeWeight(tensor: String) throws {
        let dir = try poisoned(tensor, index: 5, value: .infinity)
        let session = try Session(model: try Model(path: dir.path))
        let e = moertError { _ = try allLogits(session, [1, 2, 3]) }
        #expect(e?.code == .numeric, "\(e?.message ?? "evaluated")")
    }
}
