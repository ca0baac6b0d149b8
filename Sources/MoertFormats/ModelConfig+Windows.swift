// ModelConfig+Windows: which layers attend within a sliding window, from `sliding_window`, `use_sliding_window`,
// `max_window_layers` and `layer_types`, as each architecture's configuration and modeling file in transformers reads them.

import MoertTensor

/// The attention kind of one `layer_types` entry.
enum _LayerAttention: Equatable {
    case full, sliding
}

/// Which decoder layers attend within the sliding window, described without a value per layer (a config may claim
/// any number of layers; nothing proportional to it is allocated before the checkpoint shows the layers exist).
public enum WindowedLayers: Sendable, Equatable {
    /// No layer (full causal attention everywhere).
    case none
    /// Every layer.
    case all
    /// The even layers (0, 2, 4, ...) below the bound (`Qwen2MoeConfig`'s default with `max_window_layers`).
    case evenBelow(Int)
    /// As `layer_types` lists them: true for sliding_attention.
    case listed([Bool])

    /// True when layer `l` attends within the window.
    public func contains(_ l: Int) -> Bool {
        switch self {
        case .none: return false
        case .all: return true
        case .evenBelow(let bound): return l % 2 == 0 && l < bound
        case .listed(let flags): return l >= 0 && l < flags.count && flags[l]
        }
    }
}

extension ModelConfig {
    /// The window and the layers that attend within it. A window never binds when it is at least the model's context
    /// (`max_position_embeddings`), so then no layer is windowed.
    ///  - Mixtral: `sliding_window` on every layer when set (`MixtralModel.forward` picks one mask for all layers).
    ///  - Qwen2-MoE: `layer_types`, by default sliding on the even layers below `max_window_layers` when
    ///    `use_sliding_window` (`Qwen2MoeConfig.__post_init__`); `sliding_window` defaults to 4096.
    ///  - Qwen3-MoE: `sliding_window` on every layer when `use_sliding_window` (`Qwen3MoeModel.forward`); it
    ///    defaults to 4096.
    ///  - OLMoE: none (`OlmoeModel.forward` builds a plain causal mask).
    /// Where transformers does not read `layer_types` (Mixtral, Qwen3-MoE, OLMoE) a `layer_types` that says otherwise
    /// is refused rather than ignored.
    /// - Throws: `MoertError` (`.format` for ill-typed keys, `.unsupported` for layer types moert does not run).
    static func windows(_ keys: _ConfigReader, arch: Architecture, layers: Int, maxPositions: Int,
                        source: String) throws -> (window: Int?, layers: WindowedLayers) {
        let listed = try layerTypes(keys, layers: layers, source: source)
        var window: Int?
        var windowed: WindowedLayers
        switch arch {
        case .mixtral:
            window = try slidingWindow(keys, default: nil, source: source)
            windowed = window == nil ? .none : .all
        case .qwen3Moe:
            let enabled = try keys.bool("use_sliding_window", default: false)
            window = enabled ? try slidingWindow(keys, default: 4096, source: source) : nil
            windowed = window == nil ? .none : .all
        case .olmoe, .deepseekV2, .deepseekV3, .glm4Moe:
            window = nil
            windowed = .none
        case .gptOss:
            // GptOssConfig: the layers layer_types names sliding_attention, by default the even ones.
            window = try slidingWindow(keys, default: 128, source: source)
            windowed = window == nil ? .none : listed.map { .listed($0.map { $0 == .sliding }) } ?? .evenBelow(layers)
            return window.map { $0 < maxPositions } ?? false ? (window, windowed) : (nil, .none)
        case .qwen2Moe:
            let enabled = try keys.bool("use_sliding_window", default: false)
            let maxWindowLayers = try keys.int("max_window_layers", min: 0, default: 28)
            if let listed {
                windowed = .listed(listed.map { $0 == .sliding })
            } else {
                windowed = enabled && maxWindowLayers > 0 ? .evenBelow(maxWindowLayers) : .none
            }
            if windowed != .none, listed.map({ $0.contains(.sliding) }) ?? true {
                // Qwen2MoeConfig sets sliding_window to 0 without use_sliding_window: no key would be visible.
                guard enabled else {
                    throw MoertError.format("\(source): layer_types names sliding_attention layers but use_sliding_window is false (transformers then sets sliding_window to 0)")
                }
                window = try slidingWindow(keys, default: 4096, source: source)
                guard window != nil else {
                    throw MoertError.format("\(source): use_sliding_window is true and layers are sliding_attention, but sliding_window is null")
                }
            }
            return window.map { $0 < maxPositions } ?? false ? (window, windowed) : (nil, .none)
        }
        if let listed, let l = listed.indices.first(where: { (listed[$0] == .sliding) != windowed.contains($0) }) {
            throw MoertError.unsupported("\(source): layer_types[\(l)] is \(listed[l] == .sliding ? "sliding_attention" : "full_attention"), but transformers' \(arch.rawValue) does not read layer_types and gives layer \(l) \(windowed.contains(l) ? "a sliding window (sliding_window)" : "full attention")")
        }
        return window.map { $0 < maxPositions } ?? false ? (window, windowed) : (nil, .none)
    }

    /// `layer_types` as attention kinds, nil when absent: one entry per layer, each full_attention (or its legacy
    /// name attention, `remap_legacy_layer_types`) or sliding_attention.
    /// - Throws: `MoertError` (`.format` for a list of the wrong length or type, `.unsupported` for other entries).
    static func layerTypes(_ keys: _ConfigReader, layers: Int, source: String) throws -> [_LayerAttention]? {
        guard let v = keys.raw("layer_types"), !v.isNull else { return nil }
        guard let list = v.array else { throw MoertError.format("\(source): \"layer_types\" must be a list of strings") }
        guard list.count == layers else {
            throw MoertError.format("\(source): \"layer_types\" has \(list.count) entries, num_hidden_layers is \(layers)")
        }
        return try list.enumerated().map { i, entry in
            switch entry.string {
            case "full_attention", "attention": return .full
            case "sliding_attention": return .sliding
            case let name?:
                throw MoertError.unsupported("\(source): layer_types[\(i)] \"\(name)\" is not supported (only full_attention and sliding_attention)")
            case nil:
                throw MoertError.format("\(source): layer_types[\(i)] must be a string")
            }
        }
    }

    /// `sliding_window`: a positive integer, `def` when the key is absent, nil when it is null.
    private static func slidingWindow(_ keys: _ConfigReader, default def: Int?, source: String) throws -> Int? {
        guard let v = keys.raw("sliding_window") else { return def }
        guard !v.isNull else { return nil }
        guard let w = v.int, w >= 1, w <= Int64(Int32.max) else {
            throw MoertError.format("\(source): \"sliding_window\" must be an integer >= 1 or null (a window of 0 leaves no key visible)")
        }
        return Int(w)
    }
}
