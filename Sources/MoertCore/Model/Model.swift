// Model: the weights of a decoder-only MoE transformer, read from a checkpoint and checked against its config.

/// Attention weights of one decoder layer.
public struct AttentionWeights: Sendable {
    public let q: Linear, k: Linear, v: Linear, o: Linear
    /// q/k RMSNorm weights (per head [headDim], or over the projection), when the architecture has them.
    public let qNorm: Weight?, kNorm: Weight?
}

/// The MLP of one decoder layer: a mixture of experts or a dense SwiGLU.
public enum LayerMLP: @unchecked Sendable {
    case moe(MoEBlock)
    case dense(SwiGLUExpert)
}

/// One decoder layer.
public struct DecoderLayer: @unchecked Sendable {
    public let inputNorm: Weight
    public let attention: AttentionWeights
    public let postAttentionNorm: Weight
    public let mlp: LayerMLP
}

/// Options for loading a model.
public struct ModelLoadOptions: Sendable {
    /// Cap on the context length; 0 keeps the model's.
    public var maxContext: Int = 0
    /// Cap on resident routed-expert weights; nil = all may stay resident.
    public var expertBudget: ExpertBudget?
    public init() {}
}

/// A residency budget for routed expert weights.
public enum ExpertBudget: Sendable, Equatable {
    /// At most this many bytes.
    case bytes(Int)
    /// At most this share (0 < share <= 1) of all routed expert bytes.
    case fraction(Double)

    /// Parses "512M", "2G", "1048576" or "25%".
    /// - Throws: `MoertError` (`.invalidArgument`).
    public init(parsing text: String) throws {
        let bad = MoertError.invalid("expert budget '\(text)' must be bytes (e.g. 512M, 2G, 1048576) or a share (e.g. 25%)")
        if text.hasSuffix("%") {
            guard let v = Double(text.dropLast()), v > 0, v <= 100 else { throw bad }
            self = .fraction(v / 100)
            return
        }
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = Substring(text), scale = 1
        if let last = text.last?.uppercased().first, let u = units[last] {
            scale = u
            digits = text.dropLast()
        }
        guard let v = Double(digits), v > 0, v * Double(scale) < 9e18 else { throw bad }
        self = .bytes(Int(v * Double(scale)))
    }
}

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
    let rope: Rope

    /// Loads the checkpoint directory at `path`.
    /// - Throws: `MoertError` naming the file and tensor at fault.
    public init(path: String, options: ModelLoadOptions = ModelLoadOptions()) throws {
        guard options.maxContext >= 0 else { throw MoertError.invalid("max_context must be >= 0, got \(options.maxContext)") }
        Threads.configureBLASDefault()
        let ckpt = try Checkpoint(directory: path)
        let c = ckpt.config
        checkpoint = ckpt
        config = c
        func w(_ name: String, _ shape: [Int]) throws -> Weight { try ckpt.weight(name, shape: shape) }
        func linear(_ name: String, out: Int, in inFeatures: Int, bias: Bool = false) throws -> Linear {
            Linear(weight: try ckpt.matrix(name + ".weight", shape: [out, inFeatures]), bias: bias ? try w(name + ".bias", [out]) : nil)
        }
        func swiglu(_ prefix: String, _ names: (String, String, String), width: Int) throws -> SwiGLUExpert {
            SwiGLUExpert(gate: try linear(prefix + names.0, out: width, in: c.hiddenSize),
                         up: try linear(prefix + names.1, out: width, in: c.hiddenSize),
                         down: try linear(prefix + names.2, out: c.hiddenSize, in: width))
        }

        let h = c.hiddenSize, qWidth = c.numAttentionHeads * c.headDim, kvWidth = c.numKeyValueHeads * c.headDim
        section = try ckpt.moeSection()
        let store = ExpertStore()
        experts = store
        for plugin in section.plugins { try PluginRegistry.shared.load(plugin, relativeTo: path) }
        embedding = try ckpt.matrix("model.embed_tokens.weight", shape: [c.vocabSize, h])
        let moeLayers = (0..<c.numHiddenLayers).filter(c.isMoELayer).count
        var moeIndex = 0
        var layers: [DecoderLayer] = []
        for l in 0..<c.numHiddenLayers {
            let p = "model.layers.\(l)."
            let attn = AttentionWeights(
                q: try linear(p + "self_attn.q_proj", out: qWidth, in: h, bias: c.qkvBias),
                k: try linear(p + "self_attn.k_proj", out: kvWidth, in: h, bias: c.qkvBias),
                v: try linear(p + "self_attn.v_proj", out: kvWidth, in: h, bias: c.qkvBias),
                o: try linear(p + "self_attn.o_proj", out: h, in: qWidth, bias: c.outputBias),
                qNorm: try Self.qkNormWeight(c, w, p + "self_attn.q_norm.weight", wholeWidth: qWidth),
                kNorm: try Self.qkNormWeight(c, w, p + "self_attn.k_norm.weight", wholeWidth: kvWidth))
            let mlp: LayerMLP
            if c.isMoELayer(l) {
                mlp = .moe(try Self.moeBlock(c, ckpt, section: section, layer: l, moeIndex: moeIndex, moeLayers: moeLayers,
                                             store: store, linear: linear, swiglu: swiglu))
                moeIndex += 1
            } else {
                mlp = .dense(try swiglu(p + "mlp.", ("gate_proj", "up_proj", "down_proj"), width: c.intermediateSize))
            }
            layers.append(DecoderLayer(inputNorm: try w(p + "input_layernorm.weight", [h]), attention: attn,
                                       postAttentionNorm: try w(p + "post_attention_layernorm.weight", [h]), mlp: mlp))
        }
        self.layers = layers
        finalNorm = try w("model.norm.weight", [h])
        lmHead = c.tieWordEmbeddings ? Linear(weight: embedding) : try linear("lm_head", out: c.vocabSize, in: h)

        let ignorable = ckpt.unusedTensors.filter {
            !($0.hasSuffix("rotary_emb.inv_freq") || (c.tieWordEmbeddings && $0 == "lm_head.weight"))
        }
        if let first = ignorable.first {
            let more = ignorable.count > 1 ? " (and \(ignorable.count - 1) more)" : ""
            throw MoertError.unsupported("\(path): tensor \(first)\(more) is not used by \(c.architecture.rawValue) with the configured routers and experts; the checkpoint has features moert does not support")
        }
        contextLength = options.maxContext > 0 ? min(options.maxContext, c.maxPositionEmbeddings) : c.maxPositionEmbeddings
        rope = Rope(headDim: c.headDim, theta: c.ropeTheta)
        switch options.expertBudget {
        case nil: break
        case .bytes(let b): store.budget = b
        case .fraction(let f): store.budget = max(1, Int(Double(store.totalBytes) * f))
        }
        parameterCount = ckpt.usedElementCount
        let dtypes = ckpt.floatDTypes
        storageDType = dtypes.count == 1 ? dtypes.first : nil
        PluginRegistry.shared.modelLifetime(1)
    }

    deinit { PluginRegistry.shared.modelLifetime(-1) }

    /// The MoE blocks, in layer order.
    public var moeBlocks: [MoEBlock] {
        layers.compactMap { if case .moe(let b) = $0.mlp { return b }; return nil }
    }

    /// Creates, for every MoE layer, a router of `spec` (for a session override).
    /// - Throws: the errors of the router's creation.
    public func makeRouters(_ spec: KindSpec) throws -> [Router] {
        let c = config
        var moeIndex = 0
        var routers: [Router] = []
        for (l, layer) in layers.enumerated() {
            guard case .moe(let block) = layer.mlp else { continue }
            let info = LayerInfo(layer: l, moeIndex: moeIndex, moeLayers: moeLayerCount, hidden: c.hiddenSize,
                                 experts: block.experts.count, topK: c.numExpertsPerTok, vocab: c.vocabSize)
            routers.append(try Self.makeRouter(spec, config: c, checkpoint: checkpoint, block: block.prefix, info: info))
            moeIndex += 1
        }
        return routers
    }

    private static func qkNormWeight(_ c: ModelConfig, _ w: (String, [Int]) throws -> Weight, _ name: String,
                                     wholeWidth: Int) throws -> Weight? {
        switch c.qkNorm {
        case .none: return nil
        case .perHead: return try w(name, [c.headDim])
        case .wholeProjection: return try w(name, [wholeWidth])
        }
    }

    /// Builds a layer's MoE block: experts by kind (built-in SwiGLU `ffn` or plugin kinds), the layer's router,
    /// and the Qwen2-MoE shared expert.
    private static func moeBlock(_ c: ModelConfig, _ ckpt: Checkpoint, section: MoESection, layer l: Int, moeIndex: Int,
                                 moeLayers: Int, store: ExpertStore,
                                 linear: (String, Int, Int, Bool) throws -> Linear,
                                 swiglu: (String, (String, String, String), Int) throws -> SwiGLUExpert) throws -> MoEBlock {
        let h = c.hiddenSize
        let p = "model.layers.\(l)."
        let isMixtral = c.architecture == .mixtral
        // Mixtral checkpoints name the block `block_sparse_moe` and the projections w1/w3/w2.
        let block = isMixtral && !ckpt.contains(p + "mlp.gate.weight") && ckpt.hasPrefix(p + "block_sparse_moe.")
            ? p + "block_sparse_moe." : p + "mlp."
        let names = isMixtral ? ("w1", "w3", "w2") : ("gate_proj", "up_proj", "down_proj")
        let groups = section.experts(layer: l, default: c.numExperts)
        let expertCount = groups.reduce(0) { $0 + $1.count }
        var info = LayerInfo(layer: l, moeIndex: moeIndex, moeLayers: moeLayers, hidden: h, experts: expertCount,
                             topK: c.numExpertsPerTok, vocab: c.vocabSize)
        var experts: [Expert] = []
        for group in groups {
            for _ in 0..<group.count {
                let e = experts.count
                if group.spec.kind == BuiltinKind.expert {
                    guard group.spec.params.isEmpty else { throw MoertError.format("layer \(l): the ffn expert kind takes no params") }
                    let p = block + "experts.\(e).", i = c.moeIntermediateSize
                    experts.append(StoredExpert(
                        store: store, gate: try ckpt.storedTensor(p + names.0 + ".weight", shape: [i, h]),
                        up: try ckpt.storedTensor(p + names.1 + ".weight", shape: [i, h]),
                        down: try ckpt.storedTensor(p + names.2 + ".weight", shape: [h, i]),
                        hidden: h, intermediate: i, moeLayer: moeIndex))
                } else {
                    guard let kind = PluginRegistry.shared.expert(named: group.spec.kind) else {
                        throw MoertError.unsupported("layer \(l): expert kind \(group.spec.kind) is not registered (name its plugin in the moert section's plugins, or load it first)")
                    }
                    info.expertIndex = e
                    let ctx = CreateContext(checkpoint: ckpt, prefix: block + "experts.\(e).", params: group.spec.params)
                    experts.append(try PluginExpert(kind: kind, context: ctx, layer: info.c))
                }
            }
        }
        let router = try makeRouter(section.router(layer: l), config: c, checkpoint: ckpt, block: block, info: info)
        var shared: SharedExpert?
        if c.sharedExpertIntermediateSize > 0 {
            shared = SharedExpert(
                expert: try swiglu(block + "shared_expert.", ("gate_proj", "up_proj", "down_proj"), c.sharedExpertIntermediateSize),
                gate: try linear(block + "shared_expert_gate", 1, h, false))
        }
        return MoEBlock(router: router, experts: experts, shared: shared, hidden: h, prefix: block)
    }

    /// Creates a router of `spec.kind` for one MoE layer: the built-in softmax top-k, or a registered plugin kind.
    /// - Throws: `MoertError` for unknown kinds, bad parameters, missing tensors or a failing plugin create.
    static func makeRouter(_ spec: KindSpec, config c: ModelConfig, checkpoint: Checkpoint, block: String,
                           info: LayerInfo) throws -> Router {
        if spec.kind == BuiltinKind.router {
            let allowed: Set<String> = ["top_k", "normalize"]
            if let bad = spec.params.keys.first(where: { !allowed.contains($0) }) {
                throw MoertError.format("layer \(info.layer): topk router has no parameter \(bad) (top_k, normalize)")
            }
            let k = try spec.params["top_k"].map { v -> Int in
                guard let i = v.int, i >= 1, i <= Int64(info.experts) else {
                    throw MoertError.invalid("layer \(info.layer): top_k must be an integer in [1, \(info.experts)]")
                }
                return Int(i)
            } ?? min(info.topK, info.experts)
            let normalize = try spec.params["normalize"].map { v -> Bool in
                guard let b = v.bool else { throw MoertError.invalid("layer \(info.layer): normalize must be true or false") }
                return b
            } ?? c.normTopkProb
            let gate = Linear(weight: try checkpoint.weight(block + "gate.weight", shape: [info.experts, c.hiddenSize]))
            return SoftmaxTopKRouter(gate: gate, topK: k, normalize: normalize)
        }
        guard let kind = PluginRegistry.shared.router(named: spec.kind) else {
            throw MoertError.unsupported("layer \(info.layer): router kind \(spec.kind) is not registered (name its plugin in the moert section's plugins, or load it first)")
        }
        let ctx = CreateContext(checkpoint: checkpoint, prefix: block, params: spec.params)
        return try PluginRouter(kind: kind, context: ctx, layer: info.c)
    }

    /// The storage dtype of the weights: one of F32/F16/BF16, or nil when mixed.
    public let storageDType: TensorDType?

    /// Number of layers whose MLP is a mixture of experts.
    public var moeLayerCount: Int {
        layers.reduce(0) { if case .moe = $1.mlp { return $0 + 1 }; return $0 }
    }
}
