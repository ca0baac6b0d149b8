// ExpertPredictor: before a decode step's attention, guesses the experts its MoE layer will choose and asks the
// expert store to materialise them in the background, so that under a residency budget the copies overlap the
// attention instead of stalling the experts.

/// Applies a layer's own gate to the residual stream before the layer's attention (instead of after it): the
/// residual changes little across one attention block, so the top-k usually matches the router's later choice.
/// Only for layers with the built-in softmax top-k router and experts kept in the store.
final class ExpertPredictor {
    private let hidden: Int
    private var normed: [Float]
    private var logits: [Float]
    private var ids: [Int32] = []
    private var weights: [Float] = []

    init(hidden: Int) {
        self.hidden = hidden
        normed = [Float](repeating: 0, count: hidden)
        logits = []
    }

    /// Predicts the experts `block` will choose for the single token `x` ([hidden]) and requests their prefetch.
    func prefetch(_ block: MoEBlock, norm: Weight, eps: Float, x: UnsafePointer<Float>) {
        guard let router = block.router as? SoftmaxTopKRouter,
              let store = (block.experts.first as? StoredExpert)?.store, store.budget != nil else { return }
        let e = router.expertCount, k = router.topK
        if logits.count < e { logits = [Float](repeating: 0, count: e) }
        if ids.count != k { ids = [Int32](repeating: 0, count: k); weights = [Float](repeating: 0, count: k) }
        normed.withUnsafeMutableBufferPointer { n in
            logits.withUnsafeMutableBufferPointer { l in
                rmsNorm(x, weight: norm.data, rows: 1, dim: hidden, eps: eps, into: n.baseAddress!)
                router.gate.applyGEMM(n.baseAddress!, rows: 1, into: l.baseAddress!)
                // Softmax keeps the order of the logits, so the top-k of the logits is the router's top-k.
                selectTopK(l.baseAddress!, count: e, k: k, ids: &ids, weights: &weights)
            }
        }
        store.prefetch(ids.compactMap { (block.experts[Int($0)] as? StoredExpert)?.slot })
    }
}
