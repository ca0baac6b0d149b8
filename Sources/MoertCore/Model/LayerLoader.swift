// LayerLoader: reads each decoder layer's weights from a checkpoint by its architecture's tensor names, and builds
// its MoE block through the router and expert factories.

import MoertFormats
import MoertMoE
import MoertTensor

/// The tensor names of transformers' state dicts (`modeling_mixtral.py`, `modeling_qwen2_moe.py`,
/// `modeling_qwen3_moe.py`, `modeling_olmoe.py`, `modeling_deepseek_v2.py`, `modeling_deepseek_v3.py`,
/// `modeling_glm4_moe.py`, `modeling_gpt_oss.py`), read with the shapes the config implies. Experts are read by the
/// per-expert names checkpoints hold (`experts.N.gate_proj.weight`), which is also what transformers' save_pretrained
/// writes for its fused `experts.gate_up_proj`; gpt-oss's experts stay fused in its checkpoints (`fusedExpert`).
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
        let attention: LayerAttention
        if let mla = c.mla {
            attention = .latent(try latentAttention(p + "self_attn.", mla))
        } else {
            attention = .grouped(AttentionWeights(
                q: try linear(p + "self_attn.q_proj", out: qWidth, in: h, bias: c.qkvBias),
                k: try linear(p + "self_attn.k_proj", out: kvWidth, in: h, bias: c.qkvBias),
                v: try linear(p + "self_attn.v_proj", out: kvWidth, in: h, bias: c.qkvBias),
                o: try linear(p + "self_attn.o_proj", out: h, in: qWidth, bias: c.outputBias),
                qNorm: try qkNorm(p + "self_attn.q_norm.weight", wholeWidth: qWidth),
                kNorm: try qkNorm(p + "self_attn.k_norm.weight", wholeWidth: kvWidth),
                sinks: c.attentionSinks ? try weight(p + "self_attn.sinks", [c.numAttentionHeads]) : nil))
        }
        let mlp: LayerMLP = section.isMoELayer(l, config: c)
            ? .moe(try moeBlock(l, moeIndex: moeIndex))
            : .dense(try swiglu(p + "mlp.", ("gate_proj", "up_proj", "down_proj"),
                                width: section.denseLayers[l].flatMap { $0 } ?? c.intermediateSize))
        return DecoderLayer(inputNorm: try weight(p + "input_layernorm.weight", [h]), attention: attention,
                            postAttentionNorm: try weight(p + "post_attention_layernorm.weight", [h]), mlp: mlp)
    }

    /// The multi-head latent attention under `p` (`DeepseekV2Attention.__init__`).
    private func latentAttention(_ p: String, _ mla: MLAConfig) throws -> LatentAttentionWeights {
        let c = config, h = c.hiddenSize, nh = c.numAttentionHeads, bias = mla.attentionBias
        let query: LatentAttentionWeights.Query
        if let rank = mla.qLoraRank {
            query = .compressed(a: try linear(p + "q_a_proj", out: rank, in: h, bias: bias),
                                norm: try weight(p + "q_a_layernorm.weight", [rank]),
                                b: try linear(p + "q_b_proj", out: nh * mla.qkHeadDim, in: rank))
        } else {
            query = .direct(try linear(p + "q_proj", out: nh * mla.qkHeadDim, in: h))
        }
        return LatentAttentionWeights(
            query: query,
            kvA: try linear(p + "kv_a_proj_with_mqa", out: mla.cacheWidth, in: h, bias: bias),
            kvANorm: try weight(p + "kv_a_layernorm.weight", [mla.kvLoraRank]),
            kvB: try checkpoint.matrix(p + "kv_b_proj.weight", shape: [nh * (mla.qkNopeHeadDim + mla.vHeadDim), mla.kvLoraRank]),
            o: try linear(p + "o_proj", out: h, in: nh * mla.vHeadDim, bias: bias))
    }

    private func qkNorm(_ name: String, wholeWidth: Int) throws -> Weight? {
        switch config.qkNorm {
        case .none: return nil
        case .perHead: return try weight(name, [config.headDim])
        case .wholeProjection: return try weight(name, [wholeWidth])
        }
    }

    /// Expert `e` of a block whose experts are fused into 3-D tensors as gpt-oss stores them (`GptOssExperts`):
    /// `experts.gate_up_proj` [E, H, 2I] with gate and up interleaved in the last axis, `experts.down_proj`
    /// [E, I, H] (both applied as x · W), or the released checkpoints' MXFP4 `_blocks`/`_scales` of them, and their
    /// biases `gate_up_proj_bias` [E, 2I] and `down_proj_bias` [E, H]. The matrices become [out, in] when the expert
    /// is materialised (transposed, or decoded); the biases are read at load.
    func fusedExpert(_ block: String, _ e: Int, moeIndex: Int) throws -> StoredExpert {
        let c = config, h = c.hiddenSize, i = c.moeIntermediateSize, n = c.numExperts, p = block + "experts."
        let gate: StoredTensor, up: StoredTensor?, down: StoredTensor
        if checkpoint.contains(p + "gate_up_proj_blocks") {
            // The released checkpoints: MXFP4 blocks, already [out, in], gate and up rows interleaved.
            (gate, up, down) = try checkpoint.mxfp4Expert(p, expert: e, experts: n, hidden: h, intermediate: i)
        } else {
            // transformers' own form: float matrices applied as x · W, gate and up columns interleaved.
            gate = try checkpoint.storedMatrix(p + "gate_up_proj", shape: [n, h, 2 * i], index: e,
                                               encoding: .transposed(rows: h, columns: 2 * i, interleaved: true))
            up = nil
            down = try checkpoint.storedMatrix(p + "down_proj", shape: [n, i, h], index: e,
                                               encoding: .transposed(rows: i, columns: h, interleaved: false))
        }
        let gateUpBias = try weight(p + "gate_up_proj_bias", [n, 2 * i]).data + e * 2 * i
        let downBias = try weight(p + "down_proj_bias", [n, h]).data + e * h
        let biases = try FloatBuffer(count: 2 * i + h)
        for j in 0..<i {
            biases.pointer[j] = gateUpBias[2 * j]          // gate: even columns
            biases.pointer[i + j] = gateUpBias[2 * j + 1]  // up: odd columns
        }
        (biases.pointer + 2 * i).update(from: downBias, count: h)
        let activation: ExpertActivation = c.clampedSwiGLU.map { .clampedSwiGLU(alpha: $0.alpha, limit: $0.limit) } ?? .swiglu
        return StoredExpert(store: store, gate: gate, up: up, down: down, hidden: h, intermediate: i,
                            moeLayer: moeIndex, activation: activation, biases: biases)
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
            if c.architecture == .gptOss { return try fusedExpert(block, e, moeIndex: moeIndex) }
            let prefix = block + "experts.\(e).", i = c.moeIntermediateSize
            return StoredExpert(store: store,
                                gate: try checkpoint.storedTensor(prefix + names.0 + ".weight", shape: [i, h]),
                                up: try checkpoint.storedTensor(prefix + names.1 + ".weight", shape: [i, h]),
                                down: try checkpoint.storedTensor(prefix + names.2 + ".weight", shape: [h, i]),
                                hidden: h, intermediate: i, moeLayer: moeIndex)
        }
        let router = try RouterFactory.makeRouter(section.router(layer: l), for: context, origin: .checkpoint)
        var shared: SharedExpert?
        if c.sharedExpertIntermediateSize > 0, c.architecture != .qwen2Moe {
            // DeepSeekMoE's (and GLM-4.5's) shared experts: one ungated MLP of n_shared_experts × moe_intermediate_size.
            shared = SharedExpert(
                expert: try swiglu(block + "shared_experts.", ("gate_proj", "up_proj", "down_proj"),
                                   width: c.sharedExpertIntermediateSize),
                gate: nil)
        } else if c.sharedExpertIntermediateSize > 0 {
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
