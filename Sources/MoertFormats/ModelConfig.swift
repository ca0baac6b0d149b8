// ModelConfig: the parts of a Hugging Face config.json that moert needs, validated per architecture.

import MoertTensor

/// The decoder architectures moert runs.
public enum Architecture: String, Sendable, CaseIterable {
    case mixtral = "MixtralForCausalLM"
    case qwen2Moe = "Qwen2MoeForCausalLM"
    case qwen3Moe = "Qwen3MoeForCausalLM"
    case olmoe = "OlmoeForCausalLM"
    case gptOss = "GptOssForCausalLM"
    case deepseekV2 = "DeepseekV2ForCausalLM"
    case deepseekV3 = "DeepseekV3ForCausalLM"
    case glm4Moe = "Glm4MoeForCausalLM"
}

/// How an architecture normalises queries and keys before RoPE.
public enum QKNorm: Sendable {
    /// No normalisation (Mixtral, Qwen2-MoE).
    case none
    /// RMSNorm over each head's `headDim` values (Qwen3-MoE, `Qwen3MoeAttention`).
    case perHead
    /// RMSNorm over the whole projection before it is split into heads (OLMoE, `OlmoeAttention`).
    case wholeProjection
}

/// Validated model hyperparameters. Field names follow the config.json keys in camelCase.
public struct ModelConfig: Sendable {
    /// `architectures[0]`.
    public var architecture: Architecture
    /// Token ids are in [0, vocabSize).
    public var vocabSize: Int
    /// Width of the residual stream.
    public var hiddenSize: Int
    /// Width of a dense MLP (Qwen dense layers); for Mixtral/OLMoE also the expert width.
    public var intermediateSize: Int
    /// Decoder layers.
    public var numHiddenLayers: Int
    /// Query heads.
    public var numAttentionHeads: Int
    /// Key/value heads (grouped-query attention; defaults to the query heads).
    public var numKeyValueHeads: Int
    /// Width of one head (`head_dim`, else hidden / heads; for multi-head latent attention the query/key head,
    /// qk_nope_head_dim + qk_rope_head_dim).
    public var headDim: Int
    /// RMSNorm epsilon.
    public var rmsNormEps: Float
    /// RoPE base (top level, or inside `rope_parameters`); the same as `rope.theta`.
    public var ropeTheta: Double
    /// The rotary embedding: base, rotated width, pairing and scaling (`rope_parameters` / `rope_scaling`).
    public var rope: RopeConfig
    /// Longest context the model supports.
    public var maxPositionEmbeddings: Int
    /// The sliding attention window of the windowed layers (config.json `sliding_window`); nil when no layer
    /// attends within a window shorter than `maxPositionEmbeddings`.
    public var slidingWindow: Int?
    /// Which layers attend within `slidingWindow` (`ModelConfig+Windows.swift`).
    public var windowedLayers: WindowedLayers
    /// Each query head adds a learned logit (`self_attn.sinks` [heads]) to its softmax denominator (gpt-oss).
    public var attentionSinks = false
    /// The LM head is the embedding.
    public var tieWordEmbeddings: Bool
    /// Routed experts per MoE layer.
    public var numExperts: Int
    /// Experts the built-in router keeps per token.
    public var numExpertsPerTok: Int
    /// Width of one routed expert.
    public var moeIntermediateSize: Int
    /// Renormalise the top-k probabilities to sum to one (`norm_topk_prob`; the routing's `normalizeTopK`).
    public var normTopkProb: Bool {
        get { routing.normalizeTopK }
        set { routing.normalizeTopK = newValue }
    }
    /// How the built-in router scores and selects experts.
    public var routing: RoutingConfig
    /// Width of the shared expert (Qwen2-MoE's gated one; DeepSeek's n_shared_experts × moe_intermediate_size,
    /// ungated); 0 when there is none.
    public var sharedExpertIntermediateSize: Int
    /// Layers whose MLP is dense.
    public var mlpOnlyLayers: Set<Int>
    /// Every decoderSparseStep-th layer is a MoE layer (Qwen).
    public var decoderSparseStep: Int
    /// Biases on the q, k and v projections.
    public var qkvBias: Bool
    /// Bias on the output projection.
    public var outputBias: Bool
    /// How queries and keys are normalised.
    public var qkNorm: QKNorm
    /// OLMoE clamps q, k and v to ±clipQkv when set.
    public var clipQkv: Float?
    /// gpt-oss's clamped SwiGLU in the experts (`swiglu_limit`, `swiglu_alpha`); nil: plain SwiGLU.
    public var clampedSwiGLU: (alpha: Float, limit: Float)?
    /// Multi-head latent attention (DeepSeek-V2/V3); nil for grouped-query attention.
    public var mla: MLAConfig?
    /// DeepSeek-V3 multi-token-prediction layers stored after the decoder layers (`num_nextn_predict_layers`);
    /// moert does not run them and skips their tensors by name.
    public var numNextnPredictLayers: Int
    /// Beginning-of-sequence id, when named.
    public var bosTokenId: Int32?
    /// End-of-sequence ids (config.json may name several).
    public var eosTokenIds: [Int32]
    /// The native storage format of the weights (`quantization_config`: block-wise FP8, MXFP4); nil when none.
    public var quantization: QuantizationConfig?

    /// The attention window of layer `layer` (0-based): a query at position p sees keys at p - window + 1 ... p;
    /// nil for full causal attention.
    public func attentionWindow(layer: Int) -> Int? { windowedLayers.contains(layer) ? slidingWindow : nil }

    /// Each layer's attention window (`attentionWindow(layer:)`), [numHiddenLayers]: for a model whose layers were
    /// loaded (a config alone may claim any number of layers).
    public var layerWindows: [Int?] { (0..<numHiddenLayers).map { attentionWindow(layer: $0) } }

    /// True when layer `layer` (0-based) has a mixture-of-experts MLP (`Qwen2MoeDecoderLayer.__init__`).
    public func isMoELayer(_ layer: Int) -> Bool {
        numExperts > 0 && !mlpOnlyLayers.contains(layer) && (layer + 1) % decoderSparseStep == 0
    }
}

extension ModelConfig {
    /// Reads and validates `directory`/config.json.
    /// - Returns: the config and the document as parsed (it may also hold the moert section).
    /// - Throws: `MoertError` (`.io` when there is no config.json, else as `init(json:source:)`).
    public static func read(directory: String) throws -> (config: ModelConfig, json: JSON) {
        let path = joinPath(directory, "config.json")
        guard fileExists(path) else { throw MoertError(.io, "\(directory): no config.json (expected a Hugging Face model directory)") }
        let json = try JSON.parse(try readTextFile(path), what: path)
        return (try ModelConfig(json: json, source: path), json)
    }

    /// Parses and validates a config.json document.
    /// - Parameter source: the file name, for messages.
    /// - Throws: `MoertError` (`.format` for missing or ill-typed keys, `.unsupported` for architectures and
    ///   features moert does not run).
    public init(json: JSON, source: String) throws {
        let keys = _ConfigReader(json: json, source: source)
        guard json.object != nil else { throw MoertError.format("\(source): not a JSON object") }
        guard let archs = keys.raw("architectures")?.array, let archName = archs.first?.string else {
            throw MoertError.format("\(source): missing \"architectures\" (a list naming the model class)")
        }
        guard let arch = Architecture(rawValue: archName) else {
            let known = Architecture.allCases.map(\.rawValue).joined(separator: ", ")
            throw MoertError.unsupported("\(source): architecture \(archName) is not supported (supported: \(known))")
        }
        architecture = arch
        if let act = keys.raw("hidden_act")?.string, act != "silu" {
            throw MoertError.unsupported("\(source): hidden_act \"\(act)\" is not supported (only silu)")
        }
        vocabSize = try keys.int("vocab_size", min: 1)
        hiddenSize = try keys.int("hidden_size", min: 1)
        numHiddenLayers = try keys.int("num_hidden_layers", min: 1)
        numAttentionHeads = try keys.int("num_attention_heads", min: 1)
        numKeyValueHeads = try keys.int("num_key_value_heads", min: 1, default: numAttentionHeads)
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw MoertError.format("\(source): num_attention_heads \(numAttentionHeads) is not a multiple of num_key_value_heads \(numKeyValueHeads)")
        }
        if let hd = keys.raw("head_dim"), !hd.isNull {
            headDim = try keys.int("head_dim", min: 1)
        } else {
            guard hiddenSize % numAttentionHeads == 0 else {
                throw MoertError.format("\(source): hidden_size \(hiddenSize) is not a multiple of num_attention_heads and no head_dim is given")
            }
            headDim = hiddenSize / numAttentionHeads
        }
        guard headDim % 2 == 0 else { throw MoertError.format("\(source): head_dim \(headDim) must be even for RoPE") }
        rmsNormEps = Float(try keys.double("rms_norm_eps", default: 1e-6))
        guard rmsNormEps >= 0, rmsNormEps.isFinite else { throw MoertError.format("\(source): rms_norm_eps must be finite and >= 0") }
        maxPositionEmbeddings = try keys.int("max_position_embeddings", min: 1, default: 4096)
        rope = try Self.rope(keys, headDim: headDim, maxPositionEmbeddings: maxPositionEmbeddings,
                             partialRotary: arch == .glm4Moe ? 0.5 : nil, source: source)
        ropeTheta = rope.theta
        tieWordEmbeddings = try keys.bool("tie_word_embeddings", default: false)
        bosTokenId = try keys.optionalTokenId("bos_token_id")
        eosTokenIds = try keys.tokenIds("eos_token_id")

        // Per-architecture keys (see each configuration_*.py in transformers).
        mlpOnlyLayers = []
        decoderSparseStep = 1
        sharedExpertIntermediateSize = 0
        qkNorm = .none
        clipQkv = nil
        clampedSwiGLU = nil
        var routing = RoutingConfig()
        mla = nil
        numNextnPredictLayers = 0
        switch arch {
        case .mixtral:
            numExperts = try keys.int("num_local_experts", min: 1)
            intermediateSize = try keys.int("intermediate_size", min: 1)
            moeIntermediateSize = intermediateSize
            routing.normalizeTopK = true  // MixtralSparseMoeBlock always renormalises
            qkvBias = false
            outputBias = false
        case .qwen2Moe, .qwen3Moe:
            // Released checkpoints write num_experts; transformers 5 writes num_local_experts.
            numExperts = try keys.int(keys.raw("num_experts") == nil ? "num_local_experts" : "num_experts", min: 0)
            intermediateSize = try keys.int("intermediate_size", min: 1)
            moeIntermediateSize = try keys.int("moe_intermediate_size", min: 1)
            routing.normalizeTopK = try keys.bool("norm_topk_prob", default: false)
            decoderSparseStep = try keys.int("decoder_sparse_step", min: 1, default: 1)
            let onlyLayers = try keys.intList("mlp_only_layers")
            mlpOnlyLayers = Set(onlyLayers)
            if arch == .qwen2Moe {
                sharedExpertIntermediateSize = try keys.int("shared_expert_intermediate_size", min: 0, default: 0)
                qkvBias = try keys.bool("qkv_bias", default: true)
                outputBias = false
            } else {
                qkvBias = try keys.bool("attention_bias", default: false)
                outputBias = qkvBias
                qkNorm = .perHead
            }
        case .olmoe:
            numExperts = try keys.int(keys.raw("num_experts") == nil ? "num_local_experts" : "num_experts", min: 1)
            intermediateSize = try keys.int("intermediate_size", min: 1)
            moeIntermediateSize = intermediateSize
            routing.normalizeTopK = try keys.bool("norm_topk_prob", default: false)
            qkvBias = try keys.bool("attention_bias", default: false)
            outputBias = qkvBias
            qkNorm = .wholeProjection
            if let c = keys.raw("clip_qkv"), !c.isNull {
                let v = try keys.double("clip_qkv", default: 0)
                guard v > 0, v.isFinite else { throw MoertError.format("\(source): clip_qkv must be a positive number") }
                clipQkv = Float(v)
            }
        case .gptOss:
            numExperts = try keys.int("num_local_experts", min: 1)
            intermediateSize = try keys.int("intermediate_size", min: 1)
            moeIntermediateSize = intermediateSize
            qkvBias = try keys.bool("attention_bias", default: true)
            outputBias = qkvBias
            let alpha = try keys.double("swiglu_alpha", default: 1.702), limit = try keys.double("swiglu_limit", default: 7.0)
            guard alpha.isFinite, limit > 0, limit.isFinite else {
                throw MoertError.format("\(source): swiglu_alpha must be finite and swiglu_limit a positive number")
            }
            clampedSwiGLU = (Float(alpha), Float(limit))
            attentionSinks = true
            routing.scoring = .softmaxOfTopK
            routing.gateBias = true
            routing.gate = "router"
        case .glm4Moe:
            let g = try Self.glm4Moe(keys, layers: numHiddenLayers, source: source)
            numExperts = g.numExperts
            intermediateSize = g.intermediateSize
            moeIntermediateSize = g.moeIntermediateSize
            sharedExpertIntermediateSize = g.sharedExpertIntermediateSize
            mlpOnlyLayers = g.denseLayers
            routing = g.routing
            qkvBias = try keys.bool("attention_bias", default: false)
            outputBias = false  // Glm4MoeAttention: o_proj has no bias
            qkNorm = try keys.bool("use_qk_norm", default: false) ? .perHead : .none
            numNextnPredictLayers = g.numNextnPredictLayers
        case .deepseekV2, .deepseekV3:
            let d = try Self.deepSeek(keys, arch: arch, heads: numAttentionHeads, source: source)
            numExperts = d.numExperts
            intermediateSize = d.intermediateSize
            moeIntermediateSize = d.moeIntermediateSize
            routing = d.routing
            mlpOnlyLayers = Set(0..<min(d.firstKDenseReplace, numHiddenLayers))
            sharedExpertIntermediateSize = d.sharedExpertIntermediateSize
            qkvBias = false
            outputBias = d.mla.attentionBias
            guard numKeyValueHeads == numAttentionHeads else {
                throw MoertError.format("\(source): num_key_value_heads \(numKeyValueHeads) must equal num_attention_heads \(numAttentionHeads) for multi-head latent attention (kv_b_proj expands the latent into every head)")
            }
            headDim = d.mla.qkHeadDim
            rope.rotaryDim = d.mla.qkRopeHeadDim
            rope.pairing = d.ropePairing
            mla = d.mla
            mla?.softmaxScale = Self.latentSoftmaxScale(qkHeadDim: d.mla.qkHeadDim, rope: rope)
            numNextnPredictLayers = d.numNextnPredictLayers
        }
        numExpertsPerTok = try keys.int("num_experts_per_tok", min: 1)
        self.routing = routing
        if numExperts > 0 && numExpertsPerTok > numExperts {
            throw MoertError.format("\(source): num_experts_per_tok \(numExpertsPerTok) exceeds the \(numExperts) experts")
        }
        (slidingWindow, windowedLayers) = try Self.windows(keys, arch: arch, layers: numHiddenLayers,
                                                           maxPositions: maxPositionEmbeddings, source: source)
        quantization = try QuantizationConfig.parse(keys.raw("quantization_config"), source: source)
    }
}

/// Typed, bounded reads of config.json keys with messages that name the file and key.
struct _ConfigReader {
    let json: JSON
    let source: String

    func raw(_ key: String) -> JSON? { json.object?[key] }

    func int(_ key: String, min: Int, default def: Int? = nil) throws -> Int {
        guard let v = raw(key), !v.isNull else {
            if let def { return def }
            throw MoertError.format("\(source): missing \"\(key)\"")
        }
        guard let i = v.int, i >= Int64(min), i <= Int64(Int32.max) else {
            throw MoertError.format("\(source): \"\(key)\" must be an integer >= \(min) and < 2^31")
        }
        return Int(i)
    }

    func double(_ key: String, default def: Double) throws -> Double {
        guard let v = raw(key), !v.isNull else { return def }
        guard let d = v.double else { throw MoertError.format("\(source): \"\(key)\" must be a number") }
        return d
    }

    func bool(_ key: String, default def: Bool) throws -> Bool {
        guard let v = raw(key), !v.isNull else { return def }
        guard let b = v.bool else { throw MoertError.format("\(source): \"\(key)\" must be true or false") }
        return b
    }

    func intList(_ key: String) throws -> [Int] {
        guard let v = raw(key), !v.isNull else { return [] }
        guard let a = v.array else { throw MoertError.format("\(source): \"\(key)\" must be a list of integers") }
        return try a.map {
            guard let i = $0.int, i >= 0, i <= Int64(Int32.max) else { throw MoertError.format("\(source): \"\(key)\" must hold integers >= 0") }
            return Int(i)
        }
    }

    func optionalTokenId(_ key: String) throws -> Int32? {
        guard let v = raw(key), !v.isNull else { return nil }
        if let a = v.array { return try a.first.map { try tokenId($0, key) } }
        return try tokenId(v, key)
    }

    func tokenIds(_ key: String) throws -> [Int32] {
        guard let v = raw(key), !v.isNull else { return [] }
        if let a = v.array { return try a.map { try tokenId($0, key) } }
        return [try tokenId(v, key)]
    }

    private func tokenId(_ v: JSON, _ key: String) throws -> Int32 {
        guard let i = v.int, i >= 0, i <= Int64(Int32.max) else { throw MoertError.format("\(source): \"\(key)\" must hold token ids") }
        return Int32(i)
    }
}
