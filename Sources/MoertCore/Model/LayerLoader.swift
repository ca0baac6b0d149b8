// LayerLoader: reads each decoder layer's weights from a checkpoint by its architecture's tensor names, and builds
// its MoE block through the router and expert factories.

import MoertFormats
import MoertMoE
import MoertTensor

/// The tensor names of transformers' state dicts (`modeling_mixtral.py`, `modeling_qwen2_moe.py`,
/// `modeling_qwen3_moe.py`, `modeling_olmoe.py`), read with the shapes the config implies.
struct LayerLoader {
    let config: ModelConfig
    let checkpoint: Checkpoint
    let section: MoESection
    let store: ExpertStore
    /// MoE layers in the model.
    let moeLayers: Int

    /// A small float32 tensor of `shape` read whole at load (a norm or a bias), refused if not finite.
    func weight(_ name: String, _ shape: [Int]) throws -> Weight { try checkpoint.finiteWeight(name, shape: shape) }

    /// `name`.weight [out, in] as the kernels read it, with `name`.bias [out] when `bias`.
    func linear(_ name: String, out: Int, in inFeatures: Int, bias: Bool = false) throws -> Linear {
        Linear(weight: try checkpoint.matrix(name + ".weight", shape: [out, inFeatures]),
               bias: bias ? try weight(name + ".bias", [out]) : nil)
    }

    /// A resident SwiGLU MLP of `width` under `prefix`, its projections named (gate, up, down).
    func swiglu(_ prefix: String, _ names: (String, String, String), width: Int) throws -> SwiGLUExpert {
        let h = config.hiddenSize
        return SwiGLUExpert(gate: try linear(prefix + names.0, out: width, in: h),
                            up: try linear(prefix + names.1, out: width, in: h),
                            down: try linear(prefix + names.2, out: h, in: width))
    }

    /// Decoder layer `l`; `moeIndex` counts the MoE layers before it.
    func layer(_ l: Int, moeIndex: Int) throws -> DecoderLayer {
        let c = config, h = c.hiddenSize, p = "model.layers.\(l)."
        let qWidth = c.numAttentionHeads * c.headDim, kvWidth = c.numKeyValueHeads * c.headDim
        let attention = AttentionWeights(
            q: try linear(p + "self_attn.q_proj", out: qWidth, in: h, bias: c.qkvBias),
            k: try linear(p + "self_attn.k_proj", out: kvWidth, in: h, bias: c.qkvBias),
            v: try linear(p + "self_attn.v_proj", out: kvWidth, in: h, bias: c.qkvBias),
            o: try linear(p + "self_attn.o_proj", out: h, in: qWidth, bias: c.outputBias),
            qNorm: try qkNorm(p + "self_attn.q_norm.weight", wholeWidth: qWidth),
            kNorm: try qkNorm(p + "self_attn.k_norm.weight", wholeWidth: kvWidth),
            sinks: c.attentionSinks ? try weight(p + "self_attn.sinks", [c.numAttentionHeads]) : nil)
        let mlp: LayerMLP = section.isMoELayer(l, config: c)
            ? .moe(try moeBlock(l, moeIndex: moeIndex))
            : .dense(try swiglu(p + "mlp.", ("gate_proj", "up_proj", "down_proj"),
                                width: section.denseLayers[l].flatMap { $0 } ?? c.intermediateSize))
        return DecoderLayer(inputNorm: try weight(p + "input_layernorm.weight", [h]), attention: attention,
                            postAttentionNorm: try weight(p + "post_attention_layernorm.weight", [h]), mlp: mlp)
    }

    private func qkNorm(_ name: String, wholeWidth: Int) throws -> Weight? {
        switch config.qkNorm {
        case .none: return nil
        case .perHead: return try weight(name, [config.headDim])
        case .wholeProjection: return try weight(name, [wholeWidth])
        }
    }

    /// Layer `l`'s MoE block: its experts and router as the moert section names them (the built-in SwiGLU experts
    /// and softmax top-k router by default), and the shared expert of Qwen2-MoE or of the moert section.
    func moeBlock(_ l: Int, moeIndex: Int) throws -> MoEBlock {
        let c = config, h = c.hiddenSize, p = "model.layers.\(l)."
        let isMixtral = c.architecture == .mixtral
        // Mixtral checkpoints name the block `block_sparse_moe` and the projections w1/w3/w2.
        let block = isMixtral && !checkpoint.contains(p + "mlp.gate.weight") && checkpoint.hasPrefix(p + "block_sparse_moe.")
            ? p + "block_sparse_moe." : p + "mlp."
        let names = isMixtral ? ("w1", "w3", "w2") : ("gate_proj", "up_proj", "down_proj")
        let groups = section.experts(layer: l)
        let context = MoELayerContext(checkpoint: checkpoint, prefix: block, layer: l, moeIndex: moeIndex,
                                      moeLayers: moeLayers, hidden: h,
                                      experts: ExpertFactory.count(groups, builtinCount: c.numExperts),
                                      topK: c.numExpertsPerTok, routing: c.routing, vocab: c.vocabSize)
        let experts = try ExpertFactory.makeExperts(groups, for: context) { e in
            let prefix = block + "experts.\(e).", i = c.moeIntermediateSize
            return StoredExpert(store: store,
                                gate: try checkpoint.storedTensor(prefix + names.0 + ".weight", shape: [i, h]),
                                up: try checkpoint.storedTensor(prefix + names.1 + ".weight", shape: [i, h]),
                                down: try checkpoint.storedTensor(prefix + names.2 + ".weight", shape: [h, i]),
                                hidden: h, intermediate: i, moeLayer: moeIndex)
        }
        let router = try RouterFactory.makeRouter(section.router(layer: l), for: context, origin: .checkpoint)
        var shared: SharedExpert?
        if c.sharedExpertIntermediateSize > 0 {
            shared = SharedExpert(
                expert: try swiglu(block + "shared_expert.", ("gate_proj", "up_proj", "down_proj"),
                                   width: c.sharedExpertIntermediateSize),
                gate: try linear(block + "shared_expert_gate", out: 1, in: h))
        } else if let spec = section.sharedExpert(layer: l) {
            shared = SharedExpert(
                expert: try swiglu(block + "shared_expert.", ("gate_proj", "up_proj", "down_proj"),
                                   width: spec.intermediateSize ?? c.intermediateSize),
                gate: nil, weight: spec.weight, routedWeight: spec.routedWeight)
        }
        return MoEBlock(router: router, experts: experts, shared: shared, layer: context)
    }
}
