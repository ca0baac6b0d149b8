// MoEBlock: routes a batch, runs each expert once on the tokens routed to it, and combines the outputs.

import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// Optional always-on expert: the block's output is routedWeight · (routed sum) + weight · g(x) · F(x), where
/// g(x) = sigmoid(w_sg · x) when a gate is present, else 1 (`Qwen2MoeSparseMoeBlock`: `shared_expert` and
/// `shared_expert_gate`, weights 1; RMoE's `add_moe_share_expert`: no gate, `moe_weight` and `share_weight`).
public struct SharedExpert: @unchecked Sendable {
    /// The expert.
    public let expert: SwiGLUExpert
    /// The gate [1, hidden]; nil for an ungated shared expert.
    public let gate: Linear?
    /// The shared expert's fixed weight.
    public let weight: Float
    /// The routed experts' sum's weight.
    public let routedWeight: Float

    /// Creates the shared expert.
    public init(expert: SwiGLUExpert, gate: Linear?, weight: Float = 1, routedWeight: Float = 1) {
        self.expert = expert
        self.gate = gate
        self.weight = weight
        self.routedWeight = routedWeight
    }
}

/// A mixture-of-experts MLP: router, experts and an optional shared expert.
public final class MoEBlock: @unchecked Sendable {
    /// The layer's own router (a session may override it).
    public let router: Router
    /// The routed experts, indexed by expert id.
    public let experts: [Expert]
    /// An expert every token also passes through.
    public let shared: SharedExpert?
    /// The layer as routers and experts see it (for routers a session creates later).
    public let layer: MoELayerContext

    /// Hidden width.
    public var hidden: Int { layer.hidden }

    /// Creates the block.
    public init(router: Router, experts: [Expert], shared: SharedExpert?, layer: MoELayerContext) {
        self.router = router
        self.experts = experts
        self.shared = shared
        self.layer = layer
    }

    /// Floats of expert scratch a batch of up to `n` tokens needs (an expert gets 1 to n of them).
    package func scratchCount(tokens n: Int) -> Int {
        var most = shared?.expert.scratchCount(tokens: n) ?? 0
        for e in experts { most = max(most, e.scratchCount(tokens: 1), e.scratchCount(tokens: n)) }
        return most
    }

    /// y[n, H] = Σ_e w_{t,e} F_e(x_t) (+ shared). Each expert runs once on all of its tokens (gather, GEMM chain,
    /// weighted scatter-add); each token's terms are added in increasing expert order. The routing stays in
    /// `ws.routing` and the router's logits in `logits` ([n, experts]) for the caller.
    /// - Throws: `MoertError`: `.plugin` for a router's or expert's failure or invalid routing, `.internal` when the
    ///   workspace was sized for other routers or experts.
    package func forward(_ input: RouterInput, router: Router, logits: UnsafeMutablePointer<Float>,
                         into y: UnsafeMutablePointer<Float>, workspace ws: MoEWorkspace) throws {
        let h = hidden, e = experts.count, n = input.count, x = input.x
        guard router.scratchCount(tokens: n) <= ws.routerScratch.count, n * e <= ws.order.count, e < ws.start.count else {
            throw MoertError(.internal, "layer \(input.layer): the session's MoE workspace is too small for router \(router.kind)")
        }
        ws.routing.removeAll()
        for i in 0..<n * e { logits[i] = .nan }
        try router.route(input, into: &ws.routing, logits: logits, scratch: ws.routerScratch.pointer)
        try validate(ws.routing, rows: n, layer: input.layer, router: router)

        // Counting sort of (token, weight) pairs by expert.
        let start = ws.start.baseAddress!, fill = ws.fill.baseAddress!
        let order = ws.order.baseAddress!, orderWeight = ws.orderWeight.pointer
        for i in 0...e { start[i] = 0 }
        for id in ws.routing.experts { start[Int(id) + 1] += 1 }
        for i in 0..<e { start[i + 1] += start[i] }
        fill.update(from: start, count: e + 1)
        for t in 0..<n {
            for j in ws.routing.offsets[t]..<ws.routing.offsets[t + 1] {
                let id = Int(ws.routing.experts[j])
                order[fill[id]] = Int32(t)
                orderWeight[fill[id]] = ws.routing.weights[j]
                fill[id] += 1
            }
        }

        let xg = ws.gathered.pointer, yg = ws.expertOut.pointer, scratch = ws.expertScratch.pointer
        for i in 0..<n * h { y[i] = 0 }
        for i in 0..<e {
            let lo = start[i], rows = start[i + 1] - lo
            guard rows > 0 else { continue }
            let expert = experts[i]
            switch expert.output {
            case .zero:
                continue
            case .identity:
                for r in 0..<rows {
                    let w = orderWeight[lo + r], t = Int(order[lo + r])
                    let dst = y + t * h, src = x + t * h
                    for c in 0..<h { dst[c] += w * src[c] }
                }
            case .computed:
                guard expert.scratchCount(tokens: rows) <= ws.expertScratch.count else {
                    throw MoertError(.internal, "layer \(input.layer): the session's expert scratch is too small for expert \(i)")
                }
                // gather: [rows, H]
                for r in 0..<rows {
                    memcpy(xg + r * h, x + Int(order[lo + r]) * h, h * MemoryLayout<Float>.size)
                }
                try expert.forward(xg, rows: rows, into: yg, scratch: scratch)
                // weighted scatter-add
                for r in 0..<rows {
                    let w = orderWeight[lo + r]
                    let dst = y + Int(order[lo + r]) * h, src = yg + r * h
                    for c in 0..<h { dst[c] += w * src[c] }
                }
            }
        }

        if let s = shared {
            guard s.expert.scratchCount(tokens: n) <= ws.expertScratch.count else {
                throw MoertError(.internal, "layer \(input.layer): the session's expert scratch is too small for the shared expert")
            }
            s.expert.forward(x, rows: n, into: yg, scratch: scratch)  // [n, H]
            if s.routedWeight != 1 {
                for i in 0..<(n * h) { y[i] *= s.routedWeight }
            }
            for t in 0..<n {
                var scale = s.weight
                if let g = s.gate {
                    var logit: Float = 0
                    g.apply(x + t * h, rows: 1, into: &logit, scratch: .init(start: nil, count: 0))
                    scale *= 1 / (1 + expf(-logit))
                }
                let dst = y + t * h, src = yg + t * h
                for c in 0..<h { dst[c] += scale * src[c] }
            }
        }
    }

    /// Rejects routing output that would index out of range or poison the sum.
    private func validate(_ table: RoutingTable, rows n: Int, layer: Int, router: Router) throws {
        func failure(_ problem: String) -> MoertError { MoertError(.plugin, "router \(router.kind), layer \(layer): " + problem) }
        guard table.tokenCount == n, table.experts.count == table.weights.count else {
            throw failure("returned \(table.tokenCount) rows for \(n) tokens")
        }
        for t in 0..<n {
            for j in table.offsets[t]..<table.offsets[t + 1] {
                let id = table.experts[j], w = table.weights[j]
                guard id >= 0 && Int(id) < experts.count else {
                    throw failure("token \(t) routed to expert \(id), outside [0, \(experts.count))")
                }
                guard w.isFinite && w >= 0 else {
                    throw failure("token \(t) has weight \(w) for expert \(id) (must be finite and >= 0)")
                }
            }
        }
    }
}
