// LayerWindowsTests: which layers attend within a sliding window, per architecture, as transformers 5.25 decides it
// (configuration_qwen2_moe.py __post_init__, the forward passes of modeling_mixtral.py and modeling_qwen3_moe.py).

import Foundation
import Testing
@testable import MoertFormats
import MoertTensor
import MoertTestSupport

@Suite("Per-layer attention windows")
struct LayerWindowsTests {
    /// The config of `fixture` after `edit`.
    func config(_ fixture: String, _ edit: (inout [String: Any]) -> Void) throws -> ModelConfig {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixturesDirectory + "/" + fixture + "/config.json"))
        var object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        edit(&object)
        let text = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        return try ModelConfig(json: try JSON.parse(text, what: "config.json"), source: "config.json")
    }

    func error(_ fixture: String, _ edit: (inout [String: Any]) -> Void) -> MoertError? {
        moertError { _ = try config(fixture, edit) }
    }

    @Test("Mixtral: sliding_window on every layer; null, or not shorter than the context, is none")
    func mixtral() throws {
        #expect(try config("mixtral") { $0["sliding_window"] = 5 }.layerWindows == [5, 5])
        #expect(try config("mixtral") { $0["sliding_window"] = 5 }.maxPositionEmbeddings == 512)
        #expect(try config("mixtral") { $0["sliding_window"] = NSNull() }.layerWindows == [nil, nil])
        #expect(try config("mixtral") { $0["sliding_window"] = 512 }.layerWindows == [nil, nil])
        #expect(try config("mixtral") { $0["sliding_window"] = 511 }.slidingWindow == 511)
        let zero = error("mixtral") { $0["sliding_window"] = 0 }
        #expect(zero?.code == .format && zero?.message.contains("sliding_window") == true)
    }

    @Test("Qwen2-MoE: even layers below max_window_layers by default, else layer_types")
    func qwen2() throws {
        func windowed(_ edit: (inout [String: Any]) -> Void) throws -> [Int?] {
            try config("qwen2_moe") {
                $0["use_sliding_window"] = true
                $0["sliding_window"] = 4
                $0["layer_types"] = nil
                edit(&$0)
            }.layerWindows
        }
        #expect(try windowed { _ in } == [4, nil, 4])
        #expect(try windowed { $0["max_window_layers"] = 1 } == [4, nil, nil])
        #expect(try windowed { $0["use_sliding_window"] = false } == [nil, nil, nil])
        // sliding_window defaults to 4096, beyond the fixture's 512 positions.
        #expect(try windowed { $0["sliding_window"] = nil } == [nil, nil, nil])
        #expect(try windowed { $0["layer_types"] = ["full_attention", "sliding_attention", "attention"] } == [nil, 4, nil])
        // The fixture's own config: use_sliding_window false, sliding_window 0, every layer full.
        #expect(try config("qwen2_moe") { _ in }.layerWindows == [nil, nil, nil])
        let disabled = error("qwen2_moe") { $0["layer_types"] = ["sliding_attention", "full_attention", "full_attention"] }
        #expect(disabled?.code == .format && disabled?.message.contains("use_sliding_window") == true)
        let null = error("qwen2_moe") { $0["use_sliding_window"] = true; $0["sliding_window"] = NSNull(); $0["layer_types"] = nil }
        #expect(null?.code == .format && null?.message.contains("sliding_window is null") == true)
    }

    @Test("layer_types: unknown entries and wrong lengths name the key")
    func layerTypes() throws {
        let chunked = error("qwen2_moe") { $0["layer_types"] = ["full_attention", "chunked_attention", "full_attention"] }
        #expect(chunked?.code == .unsupported && chunked?.message.contains("layer_types[1] \"chunked_attention\"") == true)
        let bogus = error("qwen2_moe") { $0["layer_types"] = ["full_attention", "full_attention", "bogus"] }
        #expect(bogus?.code == .unsupported && bogus?.message.contains("layer_types[2]") == true)
        let short = error("qwen2_moe") { $0["layer_types"] = ["full_attention"] }
        #expect(short?.code == .format && short?.message.contains("layer_types") == true)
        let typed = error("qwen2_moe") { $0["layer_types"] = [1, 2, 3] }
        #expect(typed?.code == .format && typed?.message.contains("layer_types[0]") == true)
    }

    @Test("Qwen3-MoE: use_sliding_window windows every layer; a layer_types transformers would ignore is refused")
    func qwen3() throws {
        #expect(try config("qwen3_moe") { $0["use_sliding_window"] = true; $0["sliding_window"] = 6 }.layerWindows == [6, 6])
        #expect(try config("qwen3_moe") { $0["sliding_window"] = 6 }.layerWindows == [nil, nil])
        // sliding_window defaults to 4096, beyond the fixture's 512 positions.
        #expect(try config("qwen3_moe") { $0["use_sliding_window"] = true; $0["sliding_window"] = nil }.layerWindows == [nil, nil])
        #expect(try config("qwen3_moe") {
            $0["use_sliding_window"] = true; $0["sliding_window"] = 6; $0["layer_types"] = ["sliding_attention", "sliding_attention"]
        }.layerWindows == [6, 6])
        let mixed = error("qwen3_moe") {
            $0["use_sliding_window"] = true; $0["sliding_window"] = 6; $0["layer_types"] = ["full_attention", "sliding_attention"]
        }
        #expect(mixed?.code == .unsupported && mixed?.message.contains("layer_types[0]") == true)
    }

    @Test("OLMoE builds a plain causal mask: no window")
    func olmoe() throws {
        #expect(try config("olmoe") { $0["sliding_window"] = 4 }.layerWindows == [nil, nil])
    }
}
