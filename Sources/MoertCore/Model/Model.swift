// Model: the weights of a decoder-only MoE transformer, read from a checkpoint and checked against its config.

import MoertFormats
import MoertMoE
import MoertTensor

/// A loaded model. Immutable after `init`, so any number of sessions on any threads may share it.
public final class Model: @unchecked Sendable {
    /// The checkpoint (keeps the mappings alive).
    public let checkpoint: Checkpoint
    /// Hyperparameters.
    public let config: ModelConfig
    /// Token embedding [vocab, hidden].
    public let embedding: Weight
    /// Decoder layers.
    public let layers: [DecoderLayer]
    /// The MoE blocks, in layer order.
    public let moeBlocks: [MoEBlock]
    /// Final RMSNorm [hidden].
    public let finalNorm: Weight
    /// LM head [vocab, hidden] (the embedding when tied).
    public let lmHead: Linear
    /// Longest context a session may use.
    public let contextLength: Int
    /// The routers and experts the checkpoint asked for.
    public let section: MoESection
    /// Routed expert weights (materialised on use, under the residency budget).
    public let experts: ExpertStore
    /// Number of parameters.
    public let parameterCount: Int
    /// The storage dtype of the weights: one of F32/F16/BF16, or nil when mixed or quantized (moert's q8_0/q4_0, or
    /// the checkpoint's own FP8 or MXFP4).
    public let storageDType: TensorDType?
    /// The ids that end generation: generation_config.json's eos_token_id, then config.json's.
    public let stopTokenIds: [Int32]
    /// Rotary position embedding of the attention heads.
    let rope: Rope

    /// Loads the checkpoint directory at `path`: config.json, the safetensors files, the moert section and the
    /// plugins it names, and generation_config.json when present.
    /// - Throws: `MoertError` naming the file and tensor at fault.
    public init(path: String, options: ModelLoadOptions = ModelLoadOptions()) throws {
        guard options.maxContext >= 0 else { throw MoertError.invalid("max_context must be >= 0, got \(options.maxContext)") }
        let (c, configJSON) = try ModelConfig.read(directory: path)
        let section = try MoESection.read(directory: path, config: configJSON)
        self.section = section
        let ckpt = try Checkpoint(directory: path, mapped: options.mapWeights,
                                  quantized: section.quantization?.tensors ?? [:], native: c.quantization)
        checkpoint = ckpt
        config = c
        stopTokenIds = GenerationConfig.stopTokenIds(generation: try GenerationConfig.read(directory: path),
                                                     config: c.eosTokenIds)
        let store = ExpertStore(sourcesAreMapped: ckpt.isMapped)
        experts = store
        for plugin in section.plugins {
            try PluginRegistry.shared.load(plugin, namedBy: section.source, directory: path, trustPaths: options.trustPluginPaths)
        }

        try Self.checkSection(section, c)
        // Layers are loaded in order, so a config claiming more layers than the checkpoint holds fails at the first
        // missing one; nothing proportional to the claimed count is allocated or looped over before that (a 1 KB
        // config must not cost gigabytes or minutes before it is refused).
        let layersPresent = (ckpt.largestIndex(after: "model.layers.") ?? -1) + 1
        let h = c.hiddenSize
        let loader = LayerLoader(config: c, checkpoint: ckpt, section: section, store: store,
                                 moeLayers: (0..<min(c.numHiddenLayers, layersPresent)).reduce(0) {
                                     $0 + (section.isMoELayer($1, config: c) ? 1 : 0)
                                 })
        embedding = try ckpt.matrix("model.embed_tokens.weight", shape: [c.vocabSize, h])
        var layers: [DecoderLayer] = []
        var moeBlocks: [MoEBlock] = []
        for l in 0..<c.numHiddenLayers {
            let layer = try loader.layer(l, moeIndex: moeBlocks.count)
            if case .moe(let block) = layer.mlp { moeBlocks.append(block) }
            layers.append(layer)
        }
        self.layers = layers
        self.moeBlocks = moeBlocks
        finalNorm = try loader.weight("model.norm.weight", [h])
        lmHead = c.tieWordEmbeddings ? Linear(weight: embedding) : try loader.linear("lm_head", out: c.vocabSize, in: h)

        // DeepSeek-V3's multi-token-prediction layers follow the decoder layers (model.layers.<num_hidden_layers + i>.)
        // and are skipped: moert predicts one token at a time, as transformers' DeepseekV3ForCausalLM does.
        let mtpPrefixes = (0..<c.numNextnPredictLayers).map { "model.layers.\(c.numHiddenLayers + $0)." }
        let ignorable = ckpt.unusedTensors.filter { name in
            !(name.hasSuffix("rotary_emb.inv_freq") || (c.tieWordEmbeddings && name == "lm_head.weight")
              || mtpPrefixes.contains { name.hasPrefix($0) })
        }
        if let first = ignorable.first {
            let more = ignorable.count > 1 ? " (and \(ignorable.count - 1) more)" : ""
            // The built-in router's gate (weight, bias, e_score_correction_bias) left in a checkpoint whose moert
            // section gives the layer another router.
            if let block = moeBlocks.first(where: { first.hasPrefix($0.layer.prefix + $0.layer.routing.gate + ".") }) {
                throw MoertError.format("\(path): tensor \(first)\(more) is the built-in router's gate, but layer \(block.layer.layer) uses the router '\(block.router.kind)' (\(section.source)); remove the gate from the checkpoint (docs/model-format.md, \"Producing a model\")")
            }
            throw MoertError.unsupported("\(path): tensor \(first)\(more) is not used by \(c.architecture.rawValue) with the configured routers and experts; the checkpoint has features moert does not support")
        }
        contextLength = options.maxContext > 0 ? min(options.maxContext, c.maxPositionEmbeddings) : c.maxPositionEmbeddings
        rope = Rope(c.rope)
        switch options.expertBudget {
        case nil: break
        case .bytes(let b): store.budget = b
        case .fraction(let f): store.budget = max(1, Int(Double(store.totalBytes) * f))
        }
        parameterCount = ckpt.usedElementCount
        let dtypes = ckpt.floatDTypes
        storageDType = dtypes.count == 1 && ckpt.quantized.isEmpty && c.quantization == nil ? dtypes.first : nil
        PluginRegistry.shared.modelLifetime(1)  // before anything that may throw: deinit, which runs then, ends it
        try KernelChoice.prepare(for: kernelWorkload)
    }

    /// The shapes and storage types the model runs, for choosing its kernels.
    public var kernelWorkload: KernelWorkload {
        var storages = [lmHead.weight.storage]
        for layer in layers {
            switch layer.attention {
            case .grouped(let a): storages += [a.q.weight.storage, a.o.weight.storage]
            case .latent(let a): storages += [a.kvA.weight.storage, a.o.weight.storage]
            }
            switch layer.mlp {
            case .dense(let mlp): storages.append(mlp.gate.weight.storage)
            case .moe(let block): storages += block.experts.compactMap { ($0 as? StoredExpert)?.storage }
            }
        }
        let c = config
        return KernelWorkload(storages: storages, hidden: c.hiddenSize, intermediate: c.moeIntermediateSize,
                              heads: c.numAttentionHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim)
    }

    deinit { PluginRegistry.shared.modelLifetime(-1) }

    /// Checks that every layer the moert section names exists and is a mixture of experts: a typo in a layer
    /// index must not go unnoticed.
    /// - Throws: `MoertError` (`.format`) naming the section and the layer.
    private static func checkSection(_ section: MoESection, _ c: ModelConfig) throws {
        for layer in section.namedLayers {
            guard layer < c.numHiddenLayers else {
                throw MoertError.format("\(section.source): layers.\(layer): the model has \(c.numHiddenLayers) layers (0 to \(c.numHiddenLayers - 1))")
            }
            guard c.isMoELayer(layer) else {
                throw MoertError.format("\(section.source): layers.\(layer): layer \(layer) has a dense MLP already, not a mixture of experts")
            }
        }
        if c.sharedExpertIntermediateSize > 0, section.sharedExpert != nil || !section.layerSharedExperts.isEmpty {
            let key = c.mla == nil ? "shared_expert_intermediate_size" : "n_shared_experts"
            throw MoertError.format("\(section.source): shared_expert: \(c.architecture.rawValue) has its own shared expert (config.json's \(key))")
        }
    }

    /// Number of layers whose MLP is a mixture of experts.
    public var moeLayerCount: Int { moeBlocks.count }

    /// Experts of the largest MoE layer, all kinds together (the moert section may give a layer more or fewer
    /// than config.json's num_experts); config.json's count for a model without MoE layers.
    public var maxExpertsPerLayer: Int { moeBlocks.map(\.experts.count).max() ?? config.numExperts }

    /// Creates, for every MoE layer, a router of `spec` (a caller's per-session override; nil: the built-in).
    /// - Throws: the errors of `RouterFactory.makeRouter`.
    public func makeRouters(_ spec: KindSpec?) throws -> [Router] {
        try moeBlocks.map { try RouterFactory.makeRouter(spec, for: $0.layer, origin: .caller) }
    }
}
