// ScoredTopKRouter: the routers of DeepSeek-V2, DeepSeek-V3, GLM-4.5 and gpt-oss — a gate's logits scored,
// experts selected greedily or within groups, the weights normalised and scaled as a RoutingConfig says.

import MoertFormats
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// A learned gate followed by the scoring, selection, normalisation and scaling of a `RoutingConfig`, as
/// transformers 5.25 runs them:
/// - `DeepseekV2TopkRouter.forward` (softmax; `greedy`, or `group_limited_greedy`: groups ranked by their best
///   score, the experts of the other groups masked to 0; the weights times `routed_scaling_factor`; transformers'
///   V2 router never applies `norm_topk_prob`);
/// - `DeepseekV3TopkRouter.forward` and `Glm4MoeTopkRouter.forward`, the same code (sigmoid; selection on the
///   scores plus `e_score_correction_bias`, groups ranked by the sum of their two best corrected scores, the other
///   groups masked to -inf; weights are the uncorrected scores, divided by their sum + 1e-20 when normalising,
///   then times `routed_scaling_factor`);
/// - `GptOssTopKRouter.forward` (the gate's logits with its bias; the k largest; a softmax over those k).
///
/// Logits are float32 whatever the gate's storage, as DeepSeek-V3's router computes them. Among equal values the
/// lower expert (or group) index is selected first. `torch.topk` promises no order among ties: on CPU it keeps the
/// lower index for a few equal values at the boundary, but not always among many (top-4 of fifteen zeros and a one
/// gives 3, 10, 11, 13). Exact ties of real-valued scores are rare outside masked experts, which are never
/// selected here because `RoutingConfig.check` refuses a k larger than the kept groups hold. With `firstRank` r > 0
/// the r best are dropped: ranks r ..< k are kept and the weights (normalisation, the softmax of gpt-oss) are
/// computed over those alone, as `SoftmaxTopKRouter` does (SCMoE's rank-r routing keeps rank r alone: r = k - 1).
public final class ScoredTopKRouter: Router {
    /// The kind name the router was created as ("topk" for a model's own routing, or a named built-in kind).
    public let kind: String
    /// The gate, [experts, hidden], with its bias when the routing has one.
    public let gate: Linear
    /// `e_score_correction_bias` [experts], added to the scores for selection only; set exactly when the selection
    /// is `correctedGroupLimited`.
    public let correctionBias: Weight?
    /// Scoring, selection, normalisation and scaling.
    public let routing: RoutingConfig
    /// Experts selected per token (before dropping the first `firstRank`).
    public let topK: Int
    /// Ranks (0-based) before this one are not kept.
    public let firstRank: Int

    /// Experts the gate scores.
    public var expertCount: Int { gate.outFeatures }
    public var stateSize: Int { 0 }

    /// Creates the router after checking that the routing can select `topK` experts.
    /// - Parameters:
    ///   - kind: the kind name it reports.
    ///   - gate: the gate [experts, hidden], with the bias the routing's `gateBias` asks for.
    ///   - correctionBias: `e_score_correction_bias` [experts] for `correctedGroupLimited`, else nil.
    ///   - routing: how logits become weights.
    ///   - topK: experts selected per token.
    ///   - firstRank: the first rank kept, in 0 ..< topK.
    ///   - topKName: the key `topK` came from, for messages.
    /// - Throws: `MoertError` (`.format`) from `RoutingConfig.check` naming the key; (`.invalidArgument`) for a
    ///   `firstRank` outside 0 ..< topK, a correction bias given without `correctedGroupLimited` (or missing with
    ///   it) or of the wrong shape, or a gate bias that disagrees with `routing.gateBias`.
    public init(kind: String, gate: Linear, correctionBias: Weight?, routing: RoutingConfig, topK: Int,
                firstRank: Int = 0, topKName: String = "num_experts_per_tok") throws {
        let e = gate.outFeatures
        try routing.check(experts: e, topK: topK, topKName: topKName)
        guard firstRank >= 0, firstRank < topK else {
            throw MoertError.invalid("rank \(firstRank) must be in [0, \(topK))")
        }
        var corrected = false
        if case .correctedGroupLimited = routing.selection { corrected = true }
        guard corrected == (correctionBias != nil) else {
            throw MoertError.invalid(corrected ? "noaux_tc selection needs e_score_correction_bias"
                                               : "e_score_correction_bias is used only by noaux_tc selection")
        }
        guard correctionBias.map({ $0.shape == [e] }) ?? true else {
            throw MoertError.invalid("e_score_correction_bias must have shape [\(e)], got \(correctionBias!.shape)")
        }
        guard routing.gateBias == (gate.bias != nil) else {
            throw MoertError.invalid(routing.gateBias ? "the routing has a gate bias but the gate has none"
                                                      : "the gate has a bias the routing does not have")
        }
        self.kind = kind
        self.gate = gate
        self.correctionBias = correctionBias
        self.routing = routing
        self.topK = topK
        self.firstRank = firstRank
    }

    /// Per token, reused across the batch: scores and choice values (2e), group scores (g), the kept groups' ids
    /// and values (2 × kept groups), the selected ids, choice values and weights (3k).
    public func scratchCount(tokens n: Int) -> Int {
        let (g, kept) = routing.groups ?? (0, 0)
        return 2 * expertCount + g + 2 * kept + 3 * topK
    }

    public func route(_ input: RouterInput, into table: inout RoutingTable, logits: UnsafeMutablePointer<Float>,
                      scratch: UnsafeMutablePointer<Float>) throws {
        let e = expertCount, n = input.count, k = topK
        let (g, keptGroups) = routing.groups ?? (0, 0)
        // Float regions, then the Int32 ids (group ids, expert ids) rebound from the end of the scratch.
        let scores = scratch, choice = scores + e, groupScores = choice + e, groupValues = groupScores + g
        let values = groupValues + keptGroups, weights = values + k
        // [n, H] x [E, H]^T (+ b) -> [n, E]
        gate.applyGEMM(input.x, rows: n, into: logits)
        try (weights + k).withMemoryRebound(to: Int32.self, capacity: keptGroups + k) { intScratch in
            let groupIds = intScratch, ids = intScratch + keptGroups
            for t in 0..<n {
                let row = logits + t * e
                guard (0..<e).allSatisfy({ row[$0].isFinite }) else {
                    throw MoertError(.numeric, "layer \(input.layer): router logits are not finite (the weights or the hidden states hold NaN or infinity)")
                }
                score(row, into: scores, count: e)
                // scores_for_choice = scores (+ e_score_correction_bias)
                choice.update(from: scores, count: e)
                if let bias = correctionBias?.data {
                    for i in 0..<e { choice[i] += bias[i] }
                }
                if g > 0 {
                    maskGroups(choice, experts: e, groups: g, kept: keptGroups, groupScores: groupScores,
                               groupIds: groupIds, groupValues: groupValues)
                }
                selectTopK(choice, count: e, k: k, ids: ids, weights: values)
                let kept = firstRank..<k
                // topk_weights = scores.gather(1, topk_indices): the uncorrected scores
                for j in kept { weights[j] = scores[Int(ids[j])] }
                finishWeights(weights + firstRank, count: kept.count)
                table.append(experts: UnsafeBufferPointer(start: ids + firstRank, count: kept.count),
                             weights: UnsafeBufferPointer(start: weights + firstRank, count: kept.count))
            }
        }
    }

    /// One token's logits into scores: softmax over all experts, an independent sigmoid, or (gpt-oss) the logits
    /// themselves, whose softmax over the kept is taken in `finishWeights`.
    private func score(_ z: UnsafePointer<Float>, into s: UnsafeMutablePointer<Float>, count e: Int) {
        switch routing.scoring {
        case .softmax:
            s.update(from: z, count: e)
            softmaxInPlace(s, count: e)
        case .sigmoid:
            // torch.sigmoid: 1 / (1 + exp(-z))
            for i in 0..<e { s[i] = 1 / (1 + expf(-z[i])) }
        case .softmaxOfTopK:
            s.update(from: z, count: e)
        }
    }

    /// Keeps the `kept` best groups of `choice` and masks every expert of the others: groups ranked by their best
    /// value (`group_limited_greedy`, masked to 0) or by the sum of their two best (`noaux_tc`, masked to -inf).
    private func maskGroups(_ choice: UnsafeMutablePointer<Float>, experts e: Int, groups g: Int, kept: Int,
                            groupScores: UnsafeMutablePointer<Float>, groupIds: UnsafeMutablePointer<Int32>,
                            groupValues: UnsafeMutablePointer<Float>) {
        let size = e / g
        var corrected = false
        if case .correctedGroupLimited = routing.selection { corrected = true }
        for j in 0..<g {
            let group = choice + j * size
            var best = -Float.infinity, second = -Float.infinity
            for i in 0..<size {
                let v = group[i]
                if v > best { second = best; best = v } else if v > second { second = v }
            }
            // noaux_tc: .topk(2, dim=-1)[0].sum(dim=-1); group_limited_greedy: .max(dim=-1)
            groupScores[j] = corrected ? best + second : best
        }
        selectTopK(groupScores, count: g, k: kept, ids: groupIds, weights: groupValues)
        // groupScores becomes the group mask: 1 for a kept group.
        for j in 0..<g { groupScores[j] = 0 }
        for j in 0..<kept { groupScores[Int(groupIds[j])] = 1 }
        let masked: Float = corrected ? -.infinity : 0
        for j in 0..<g where groupScores[j] == 0 {
            (choice + j * size).update(repeating: masked, count: size)
        }
    }

    /// The kept weights in place: a softmax over them (gpt-oss), or divided by their sum when normalising (+ 1e-20
    /// for sigmoid scores, as DeepSeek-V3 does); then times `routed_scaling_factor`.
    private func finishWeights(_ w: UnsafeMutablePointer<Float>, count: Int) {
        if routing.scoring == .softmaxOfTopK {
            softmaxInPlace(w, count: count)
        } else if routing.normalizeTopK {
            var sum: Float = 0
            for j in 0..<count { sum += w[j] }
            if routing.scoring == .sigmoid { sum += 1e-20 }
            for j in 0..<count { w[j] /= sum }
        }
        let scale = routing.scalingFactor
        if scale != 1 {
            for j in 0..<count { w[j] *= scale }
        }
    }
}
