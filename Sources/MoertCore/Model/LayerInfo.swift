// LayerInfo: facts about one MoE layer handed to router and expert creation (moert_layer_info).

import CMoert

/// The Swift side of `moert_layer_info`.
struct LayerInfo {
    var layer: Int
    var moeIndex: Int
    var moeLayers: Int
    var hidden: Int
    var experts: Int
    var topK: Int
    var vocab: Int
    var expertIndex = -1

    init(layer: Int, moeIndex: Int, moeLayers: Int, hidden: Int, experts: Int, topK: Int, vocab: Int) {
        self.layer = layer
        self.moeIndex = moeIndex
        self.moeLayers = moeLayers
        self.hidden = hidden
        self.experts = experts
        self.topK = topK
        self.vocab = vocab
    }

    /// The C struct.
    var c: moert_layer_info {
        moert_layer_info(struct_size: UInt32(MemoryLayout<moert_layer_info>.size), layer: Int32(layer),
                         moe_index: Int32(moeIndex), n_moe_layers: Int32(moeLayers), hidden_size: Int32(hidden),
                         n_experts: Int32(experts), top_k: Int32(min(topK, experts)), vocab_size: Int32(vocab),
                         expert_index: Int32(expertIndex))
    }
}
