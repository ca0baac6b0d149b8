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
    public init() {}
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
    /// Number of parameters.
    public let parameterCount: Int
    let rope: Rope

    /// Loads the checkpoint directory at `path`.
    /// - Throws: `MoertError` naming the file and tensor at fault.
    public init(path: String, options: ModelLoadOptions = ModelLoadOptions()) throws {
        guard options.maxContext >= 0 else { throw MoertError.invalid("max_context must be >= 0, got \(options.maxContext)") }
        let ckpt = try Checkpoint(directory: path)
        let c = ckpt.config
        checkpoint = ckpt
        config = c
        var params = 0
        func w(_ name: String, _ shape: [Int]) throws -> Weight {
            let t = try ckpt.weight(name, shape: shape)
            params += t.count
            return t
        }
        func linear(_ name: String, out: Int, in inFeatures: Int, bias: Bool = false) throws -> Linear {
            Linear(weight: try w(name + ".weight", [out, inFeatures]), bias: bias ? try w(name + ".bias", [out]) : nil)
        }
        func swiglu(_ prefix: String, _ names: (String, String, String), width: Int) throws -> SwiGLUExpert {
            SwiGLUExpert(gate: try linear(prefix + names.0, out: width, in: c.hiddenSize),
                         up: try linear(prefix + names.1, out: width, in: c.hiddenSize),
                         down: try linear(prefix + names.2, out: c.hiddenSize, in: width))
        }

        let h = c.hiddenSize, qWidth = c.numAttentionHeads * c.headDim, kvWidth = c.numKeyValueHeads * c.headDim
        embedding = try w("model.embed_tokens.weight", [c.vocabSize, h])
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
                mlp = .moe(try Self.moeBlock(c, ckpt, layerPrefix: p, w: w, linear: linear, swiglu: swiglu))
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
            throw MoertError.unsupported("\(path): tensor \(first) (and \(ignorable.count - 1) more) is not used by \(c.architecture.rawValue); the checkpoint has features moert does not support")
        }
        contextLength = options.maxContext > 0 ? min(options.maxContext, c.maxPositionEmbeddings) : c.maxPositionEmbeddings
        parameterCount = params
        rope = Rope(headDim: c.headDim, theta: c.ropeTheta)
    }

    private static func qkNormWeight(_ c: ModelConfig, _ w: (String, [Int]) throws -> Weight, _ name: String,
                                     wholeWidth: Int) throws -> Weight? {
        switch c.qkNorm {
        case .none: return nil
        case .perHead: return try w(name, [c.headDim])
        case .wholeProjection: return try w(name, [wholeWidth])
        }
    }

    /// Builds a layer's MoE block from per-expert tensors (`experts.{e}.w1` or `experts.{e}.gate_proj`).
    private static func moeBlock(_ c: ModelConfig, _ ckpt: Checkpoint, layerPrefix p: String,
                                 w: (String, [Int]) throws -> Weight,
                                 linear: (String, Int, Int, Bool) throws -> Linear,
                                 swiglu: (String, (String, String, String), Int) throws -> SwiGLUExpert) throws -> MoEBlock {
        let h = c.hiddenSize
        let isMixtral = c.architecture == .mixtral
        // Mixtral checkpoints name the block `block_sparse_moe` and the projections w1/w3/w2.
        let block = isMixtral && ckpt.contains(p + "block_sparse_moe.gate.weight") ? p + "block_sparse_moe." : p + "mlp."
        let names = isMixtral ? ("w1", "w3", "w2") : ("gate_proj", "up_proj", "down_proj")
        var experts: [Expert] = []
        for e in 0..<c.numExperts {
            experts.append(try swiglu(block + "experts.\(e).", names, c.moeIntermediateSize))
        }
        let router = SoftmaxTopKRouter(gate: try linear(block + "gate", c.numExperts, h, false),
                                       topK: c.numExpertsPerTok, normalize: c.normTopkProb)
        var shared: SharedExpert?
        if c.sharedExpertIntermediateSize > 0 {
            shared = SharedExpert(
                expert: try swiglu(block + "shared_expert.", ("gate_proj", "up_proj", "down_proj"), c.sharedExpertIntermediateSize),
                gate: try linear(block + "shared_expert_gate", 1, h, false))
        }
        return MoEBlock(router: router, experts: experts, shared: shared, hidden: h)
    }

    /// The storage dtype of the weights: one of F32/F16/BF16, or nil when mixed.
    public var storageDType: TensorDType? {
        let s = checkpoint.floatDTypes
        return s.count == 1 ? s.first : nil
    }

    /// Number of layers whose MLP is a mixture of experts.
    public var moeLayerCount: Int {
        layers.reduce(0) { if case .moe = $1.mlp { return $0 + 1 }; return $0 }
    }
}
