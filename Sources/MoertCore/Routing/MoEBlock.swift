// MoEBlock: routes a batch, runs each expert once on the tokens routed to it, and combines the outputs.

#if canImport(Glibc)
import Glibc
#endif

/// Optional always-on expert added to the routed output, scaled by sigmoid(w_sg · x) when a gate is present
/// (`Qwen2MoeSparseMoeBlock`: `shared_expert` and `shared_expert_gate`).
public struct SharedExpert: @unchecked Sendable {
    /// The expert.
    public let expert: SwiGLUExpert
    /// The gate [1, hidden]; nil for an ungated shared expert.
    public let gate: Linear?
}

/// Reusable buffers for MoE dispatch, owned by a session.
final class MoEWorkspace {
    var routing = RoutingTable()
    var routerScratch: [Float] = []
    var gathered: FloatBuffer?
    var expertOut: FloatBuffer?
    var expertScratch: FloatBuffer?
    /// Tokens routed to each expert, grouped: bucket e is `order[start[e] ..< start[e + 1]]`.
    var order: [Int32] = []
    var orderWeight: [Float] = []
    var start: [Int] = []

    func buffer(_ slot: inout FloatBuffer?, count: Int) throws -> UnsafeMutablePointer<Float> {
        if let b = slot, b.count >= count { return b.pointer }
        let b = try FloatBuffer(count: count)
        slot = b
        return b.pointer
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
    /// Hidden width.
    public let hidden: Int
    /// Tensor-name prefix of the block (e.g. "model.layers.3.mlp."), for routers created later.
    public let prefix: String

    /// Creates the block.
    public init(router: Router, experts: [Expert], shared: SharedExpert?, hidden: Int, prefix: String) {
        self.router = router
        self.experts = experts
        self.shared = shared
        self.hidden = hidden
        self.prefix = prefix
    }

    /// y[n, H] = Σ_e w_{t,e} F_e(x_t) (+ shared). Each expert runs once on all of its tokens (gather, GEMM chain,
    /// weighted scatter-add); each token's terms are added in increasing expert order. The routing stays in
    /// `ws.routing` and the router's logits in `logits` ([n, experts]) for the caller.
    func forward(_ input: RouterInput, router: Router, logits: UnsafeMutablePointer<Float>,
                 into y: UnsafeMutablePointer<Float>, workspace ws: MoEWorkspace) throws {
        let h = hidden, e = experts.count, n = input.count, x = input.x
        ws.routing.removeAll()
        for i in 0..<n * e { logits[i] = .nan }
        try router.route(input, into: &ws.routing, logits: logits, scratch: &ws.routerScratch)
        try validate(ws.routing, rows: n, layer: input.layer, router: router)

        // Counting sort of (token, weight) pairs by expert.
        ws.start = [Int](repeating: 0, count: e + 1)
        for id in ws.routing.experts { ws.start[Int(id) + 1] += 1 }
        for i in 0..<e { ws.start[i + 1] += ws.start[i] }
        var fill = ws.start
        let total = ws.routing.experts.count
        if ws.order.count < total {
            ws.order = [Int32](repeating: 0, count: total)
            ws.orderWeight = [Float](repeating: 0, count: total)
        }
        for t in 0..<n {
            for j in ws.routing.offsets[t]..<ws.routing.offsets[t + 1] {
                let id = Int(ws.routing.experts[j])
                ws.order[fill[id]] = Int32(t)
                ws.orderWeight[fill[id]] = ws.routing.weights[j]
                fill[id] += 1
            }
        }

        var maxRows = n
        var scratchCount = shared?.expert.scratchCount(tokens: n) ?? 0
        for i in 0..<e where ws.start[i + 1] > ws.start[i] {
            let rows = ws.start[i + 1] - ws.start[i]
            maxRows = max(maxRows, rows)
            scratchCount = max(scratchCount, experts[i].scratchCount(tokens: rows))
        }
        let xg = try ws.buffer(&ws.gathered, count: maxRows * h)
        let yg = try ws.buffer(&ws.expertOut, count: maxRows * h)
        let scratch = try ws.buffer(&ws.expertScratch, count: scratchCount)

        for i in 0..<n * h { y[i] = 0 }
        for i in 0..<e {
            let lo = ws.start[i], rows = ws.start[i + 1] - lo
            guard rows > 0 else { continue }
            let expert = experts[i]
            switch expert.output {
            case .zero:
                continue
            case .identity:
                for r in 0..<rows {
                    let w = ws.orderWeight[lo + r], t = Int(ws.order[lo + r])
                    let dst = y + t * h, src = x + t * h
                    for c in 0..<h { dst[c] += w * src[c] }
                }
            case .computed:
                // gather: [rows, H]
                for r in 0..<rows {
                    memcpy(xg + r * h, x + Int(ws.order[lo + r]) * h, h * MemoryLayout<Float>.size)
                }
                try expert.forward(xg, rows: rows, into: yg, scratch: scratch)
                // weighted scatter-add
                for r in 0..<rows {
                    let w = ws.orderWeight[lo + r]
                    let dst = y + Int(ws.order[lo + r]) * h, src = yg + r * h
                    for c in 0..<h { dst[c] += w * src[c] }
                }
            }
        }

        if let s = shared {
            try s.expert.forward(x, rows: n, into: yg, scratch: scratch)  // [n, H]
            for t in 0..<n {
                var scale: Float = 1
                if let g = s.gate {
                    var logit: Float = 0
                    g.apply(x + t * h, rows: 1, into: &logit)
                    scale = 1 / (1 + expf(-logit))
                }
                let dst = y + t * h, src = yg + t * h
                for c in 0..<h { dst[c] += scale * src[c] }
            }
        }
    }

    /// Rejects routing output that would index out of range or poison the sum.
    private func validate(_ table: RoutingTable, rows n: Int, layer: Int, router: Router) throws {
        let who = "router \(router.kind), layer \(layer)"
        guard table.tokenCount == n, table.experts.count == table.weights.count else {
            throw MoertError(.plugin, "\(who): returned \(table.tokenCount) rows for \(n) tokens")
        }
        for t in 0..<n {
            for j in table.offsets[t]..<table.offsets[t + 1] {
                let id = table.experts[j], w = table.weights[j]
                guard id >= 0 && Int(id) < experts.count else {
                    throw MoertError(.plugin, "\(who): token \(t) routed to expert \(id), outside [0, \(experts.count))")
                }
                guard w.isFinite && w >= 0 else {
                    throw MoertError(.plugin, "\(who): token \(t) has weight \(w) for expert \(id) (must be finite and >= 0)")
                }
            }
        }
    }
}
