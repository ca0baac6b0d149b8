// MoELayerContext: what creating a router or expert for one MoE layer may know (the Swift side of moert_layer_info).

import CMoert
import MoertFormats

/// One MoE layer as routers and experts see it when they are created: where its tensors are and its sizes.
public struct MoELayerContext: @unchecked Sendable {
    /// The checkpoint holding the layer's tensors.
    public let checkpoint: Checkpoint
    /// Tensor-name prefix of the layer's block, e.g. "model.layers.3.mlp." (the router's gate is prefix +
    /// "gate.weight", expert e's tensors are under prefix + "experts.<e>.").
    public let prefix: String
    /// Decoder layer index, 0-based.
    public let layer: Int
    /// Index among the model's MoE layers, 0-based.
    public let moeIndex: Int
    /// MoE layers in the model.
    public let moeLayers: Int
    /// Width of the hidden states.
    public let hidden: Int
    /// Experts in the layer, all kinds together.
    public let experts: Int
    /// The configured experts per token (num_experts_per_tok).
    public let topK: Int
    /// How the built-in router scores and selects experts (config.json's routing keys).
    public let routing: RoutingConfig
    /// Whether the built-in router renormalises its top-k weights (norm_topk_prob).
    public var normalizeTopK: Bool { routing.normalizeTopK }
    /// Token ids are in [0, vocab).
    public let vocab: Int

    /// Creates the context of one layer.
    public init(checkpoint: Checkpoint, prefix: String, layer: Int, moeIndex: Int, moeLayers: Int, hidden: Int,
                experts: Int, topK: Int, normalizeTopK: Bool, vocab: Int) {
        var routing = RoutingConfig()
        routing.normalizeTopK = normalizeTopK
        self.init(checkpoint: checkpoint, prefix: prefix, layer: layer, moeIndex: moeIndex, moeLayers: moeLayers,
                  hidden: hidden, experts: experts, topK: topK, routing: routing, vocab: vocab)
    }

    /// Creates the context of one layer with the model's routing.
    public init(checkpoint: Checkpoint, prefix: String, layer: Int, moeIndex: Int, moeLayers: Int, hidden: Int,
                experts: Int, topK: Int, routing: RoutingConfig, vocab: Int) {
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.layer = layer
        self.moeIndex = moeIndex
        self.moeLayers = moeLayers
        self.hidden = hidden
        self.experts = experts
        self.topK = topK
        self.routing = routing
        self.vocab = vocab
    }

    /// The C struct handed to a plugin's create(); `expertIndex` is -1 for routers.
    func layerInfo(expertIndex: Int = -1) -> moert_layer_info {
        moert_layer_info(struct_size: UInt32(MemoryLayout<moert_layer_info>.size), layer: Int32(layer),
                         moe_index: Int32(moeIndex), n_moe_layers: Int32(moeLayers), hidden_size: Int32(hidden),
                         n_experts: Int32(experts), top_k: Int32(min(topK, experts)), vocab_size: Int32(vocab),
                         expert_index: Int32(expertIndex))
    }
}
