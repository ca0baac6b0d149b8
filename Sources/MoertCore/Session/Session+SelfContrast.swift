// Session+SelfContrast: SCMoE self-contrast decoding — the session's own routing (the strong activation) contrasted
// with a weak activation that keeps a single lower-ranked expert in every MoE layer, each with its own KV cache.

import MoertFormats
import MoertMoE
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// SCMoE ("Unchosen Experts Can Contribute Too", Shi et al., NeurIPS 2024; DavidFanzz/SCMoE `scmoe` decoding):
/// with z_s the strong logits and z_w the weak ones, the next token is chosen from
/// score = (1 + β) z_s − β z_w over the plausible tokens (z_s ≥ max z_s + log α, i.e. p_s ≥ α · max p_s); the others
/// get −∞. The weak pass routes every MoE layer to the expert at 0-based rank `weakRank` of its probabilities alone,
/// weighted as the layer renormalises (weight 1 for Mixtral).
public struct SelfContrast: Sendable, Equatable {
    /// The 0-based rank of the one expert the weak pass keeps per MoE layer (the paper's example: 2).
    public var weakRank: Int
    /// β: how strongly the weak scores are subtracted (the paper's default 0.5).
    public var beta: Float
    /// α: the plausibility cutoff relative to the most probable strong token (the paper's default 0.1).
    public var alpha: Float

    /// Creates the settings.
    public init(weakRank: Int, beta: Float = 0.5, alpha: Float = 0.1) {
        self.weakRank = weakRank
        self.beta = beta
        self.alpha = alpha
    }

    /// - Throws: `MoertError` (`.invalidArgument`) unless β is finite and >= 0 and α in (0, 1].
    func validate() throws {
        guard beta.isFinite, beta >= 0 else { throw MoertError.invalid("self-contrast beta must be finite and >= 0, got \(beta)") }
        guard alpha > 0, alpha <= 1 else { throw MoertError.invalid("self-contrast alpha must be in (0, 1], got \(alpha)") }
    }

    /// scores[i] = (1 + β) strong[i] − β weak[i] where strong[i] ≥ max(strong) + log α, else −∞.
    func combine(strong: UnsafeBufferPointer<Float>, weak: UnsafeBufferPointer<Float>, into scores: inout [Float]) {
        let cutoff = plausibilityCutoff(strong)
        for i in 0..<strong.count {
            scores[i] = strong[i] >= cutoff ? (1 + beta) * strong[i] - beta * weak[i] : -.infinity
        }
    }

    /// The token greedy decoding picks from the scores `combine` gives (the lowest id on ties), without writing them.
    func choice(strong: UnsafeBufferPointer<Float>, weak: UnsafeBufferPointer<Float>) -> Int {
        let cutoff = plausibilityCutoff(strong)
        var best = -1, bestScore = -Float.infinity
        for i in 0..<strong.count where strong[i] >= cutoff {
            let score = (1 + beta) * strong[i] - beta * weak[i]
            if best < 0 || score > bestScore { (best, bestScore) = (i, score) }
        }
        return best
    }

    /// max(strong) + log α.
    private func plausibilityCutoff(_ strong: UnsafeBufferPointer<Float>) -> Float {
        var best = -Float.infinity
        for v in strong where v > best { best = v }
        return best + logf(alpha)
    }
}

extension Session {
    /// A session on the same model and cache settings whose routers keep the expert at rank `contrast.weakRank`
    /// alone, holding this session's tokens (evaluated; their last logits in `logits` when `wantLogits`).
    /// - Throws: `.invalidArgument` for a session that shifts its context (the two caches would drift apart); the
    ///   errors of `contrastSession` and `evaluate`.
    func weakSession(_ contrast: SelfContrast, logits: UnsafeMutableBufferPointer<Float>, wantLogits: Bool) throws -> Session {
        guard !contextShift else { throw MoertError.invalid("self-contrast decoding cannot be combined with a context shift") }
        let weak = try contrastSession(contrast)
        if position > 0 {
            try weak.evaluate(UnsafeBufferPointer(rebasing: history[0..<position]), mode: wantLogits ? .last : .none,
                              logits: wantLogits ? logits.baseAddress : nil, capacity: wantLogits ? logits.count : 0)
        }
        return weak
    }

    /// An empty session on the same model and cache settings whose routers keep the expert at rank
    /// `contrast.weakRank` alone: SCMoE's weak pass.
    /// - Throws: `.invalidArgument` for a rank the model's layers do not have or bad β/α, or when a layer has no
    ///   built-in gate to rank experts by.
    func contrastSession(_ contrast: SelfContrast) throws -> Session {
        try contrast.validate()
        var options = SessionOptions()
        options.contextLength = contextLength
        options.maxBatch = maxBatch
        options.kvType = kvType
        let weak = try Session(model: model, options: options)
        do {
            try weak.setRouter(try RouterFactory.rank(contrast.weakRank, layers: model.moeBlocks.map(\.layer)))
        } catch let e as MoertError where e.code == .format || e.code == .io {
            throw MoertError.invalid("self-contrast decoding ranks the experts of the built-in router's gate: \(e.message)")
        }
        return weak
    }
}
