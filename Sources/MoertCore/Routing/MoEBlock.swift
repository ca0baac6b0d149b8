// MoEBlock: routes a batch, runs each expert once on the tokens routed to it, and combines the outputs.

#if canImport(Glibc)
import Glibc
#endif

/// Optional always-on expert added to the routed output, scaled by sigmoid(w_sg · x) when a gate is present
/// (`Qwen2MoeSparseMoeBlock`: `shared_expert` and `shared_expert_gate`).
public struct SharedExpert: Sendable {
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
    /// Chooses experts per token.
    public let router: Router
    /// The routed experts, indexed by expert id.
    public let experts: [Expert]
    /// An expert every token also passes through.
    public let shared: SharedExpert?
    /// Hidden width.
    public let hidden: Int

    /// Creates the block.
    public init(router: Router, experts: [Expert], shared: SharedExpert?, hidden: Int) {
        self.router = router
        self.experts = experts
        self.shared = shared
        self.hidden = hidden
    }

    /// y[n, H] = Σ_e w_{t,e} F_e(x_t) (+ shared). Each expert runs once on all of its tokens (gather, GEMM chain,
    /// weighted scatter-add); each token's terms are added in increasing expert order.
    func forward(_ x: UnsafePointer<Float>, rows n: Int, tokens: UnsafePointer<Int32>, layer: Int,
                 into y: UnsafeMutablePointer<Float>, workspace ws: MoEWorkspace) throws {
        let h = hidden, e = experts.count
        ws.routing.removeAll()
        try router.route(RouterInput(x: x, count: n, hidden: h, tokens: tokens, layer: layer),
                         into: &ws.routing, scratch: &ws.routerScratch)
        try validate(ws.routing, rows: n, layer: layer)

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

        var maxRows = 0
        for i in 0..<e { maxRows = max(maxRows, ws.start[i + 1] - ws.start[i]) }
        var scratchCount = 0
        for i in 0..<e where ws.start[i + 1] > ws.start[i] {
            scratchCount = max(scratchCount, experts[i].scratchCount(tokens: ws.start[i + 1] - ws.start[i]))
        }
        if let s = shared { scratchCount = max(scratchCount, s.expert.scratchCount(tokens: n)) }
        let xg = try ws.buffer(&ws.gathered, count: max(maxRows, n) * h)
        let yg = try ws.buffer(&ws.expertOut, count: max(maxRows, n) * h)
        let scratch = try ws.buffer(&ws.expertScratch, count: scratchCount)

        for i in 0..<n * h { y[i] = 0 }
        for i in 0..<e {
            let lo = ws.start[i], rows = ws.start[i + 1] - lo
            guard rows > 0 else { continue }
            // gather: [rows, H]
            for r in 0..<rows {
                memcpy(xg + r * h, x + Int(ws.order[lo + r]) * h, h * MemoryLayout<Float>.size)
            }
            experts[i].forward(xg, rows: rows, into: yg, scratch: scratch)
            // weighted scatter-add
            for r in 0..<rows {
                let w = ws.orderWeight[lo + r]
                let dst = y + Int(ws.order[lo + r]) * h, src = yg + r * h
                for c in 0..<h { dst[c] += w * src[c] }
            }
        }

        if let s = shared {
            s.expert.forward(x, rows: n, into: yg, scratch: scratch)  // [n, H]
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
    private func validate(_ table: RoutingTable, rows n: Int, layer: Int) throws {
        guard table.tokenCount == n, table.experts.count == table.weights.count else {
            throw MoertError(.plugin, "layer \(layer): router returned \(table.tokenCount) rows for \(n) tokens")
        }
        for (id, w) in zip(table.experts, table.weights) {
            guard id >= 0 && Int(id) < experts.count else {
                throw MoertError(.plugin, "layer \(layer): router chose expert \(id), outside [0, \(experts.count))")
            }
            guard w.isFinite && w >= 0 else {
                throw MoertError(.plugin, "layer \(layer): router returned weight \(w) for expert \(id) (must be finite and >= 0)")
            }
        }
    }
}
