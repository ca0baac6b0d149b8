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
    /// The routed experts that are built-in stored experts, by expert id (nil for plugin experts).
    private let storedExperts: [StoredExpert?]

    /// Hidden width.
    public var hidden: Int { layer.hidden }

    /// Creates the block.
    public init(router: Router, experts: [Expert], shared: SharedExpert?, layer: MoELayerContext) {
        self.router = router
        self.experts = experts
        self.shared = shared
        self.layer = layer
        storedExperts = experts.map { $0 as? StoredExpert }
    }

    /// Floats of `forwardOneToken`'s outputs: a token routed to every expert, and the shared expert.
    package var decodeCount: Int {
        experts.count * (storedExperts.map { $0?.decodeWidth ?? 0 }.max() ?? 0)
            + (shared.map { 2 * $0.expert.intermediate + hidden } ?? 0)
    }

    /// The widest input of the block's products (hidden, or an intermediate width).
    package var widestInput: Int {
        max(hidden, storedExperts.map { $0?.intermediate ?? 0 }.max() ?? 0, shared?.expert.intermediate ?? 0)
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

        if n == 1, try forwardOneToken(x, into: y, workspace: ws) { return }

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
            if n == 1 {
                s.expert.forward(x, into: yg, scratch: scratch, batch: ws.batch)  // [H]
            } else {
                s.expert.forward(x, rows: n, into: yg, scratch: scratch)  // [n, H]
            }
            addShared(s, x, output: yg, rows: n, into: y)
        }
    }

    /// y = routedWeight · y + weight · g(x) · out for `n` rows: the shared expert's output `out` joins the routed sum.
    private func addShared(_ s: SharedExpert, _ x: UnsafePointer<Float>, output out: UnsafePointer<Float>, rows n: Int,
                           into y: UnsafeMutablePointer<Float>) {
        let h = hidden
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
            let dst = y + t * h, src = out + t * h
            for c in 0..<h { dst[c] += scale * src[c] }
        }
    }

    /// `forward` for one token whose experts are all built-in stored experts without a residency budget: their
    /// weights acquired together, the gate/up products of every expert and of the shared expert run as one job on
    /// the worker pool (`GEMVBatch`), the down products as a second, then the sum in `forward`'s order, so the bits
    /// are `forward`'s. Returns false, computing nothing, otherwise (plugin experts, a budget, an expert chosen twice).
    private func forwardOneToken(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                                 workspace ws: MoEWorkspace) throws -> Bool {
        let h = hidden, start = ws.start.baseAddress!, chosen = ws.chosen.baseAddress!
        var k = 0, stride = 0
        for i in 0..<experts.count where start[i + 1] > start[i] {
            guard start[i + 1] - start[i] == 1, let e = storedExperts[i], e.store.budget == nil else { return false }
            chosen[k] = i
            k += 1
            stride = max(stride, e.decodeWidth)
        }
        let sharedWidth = shared.map { $0.expert.intermediate } ?? 0
        guard k * stride + (shared == nil ? 0 : 2 * sharedWidth + h) <= ws.decodeOut.count else { return false }

        let out = ws.decodeOut.pointer, weights = ws.acquired.baseAddress!, batch = ws.batch
        var acquired = 0
        defer {
            for j in 0..<acquired {
                let e = storedExperts[chosen[j]]!
                e.store.release(e.slot)
            }
        }
        for j in 0..<k {
            let e = storedExperts[chosen[j]]!
            weights[j] = try e.store.acquire(e.slot)
            acquired += 1
        }
        // Expert j's row at out + j·stride: gate/up [2I] (then its activation [I] in place), output [H] after it.
        let sharedOut = out + k * stride
        for j in 0..<k {
            batch.add(storedExperts[chosen[j]]!.gateUp(weights[j]!), x, into: out + j * stride)   // [H] -> [2I]
        }
        if let s = shared {
            batch.add(s.expert.gate, x, into: sharedOut)                                          // [H] -> [I]
            batch.add(s.expert.up, x, into: sharedOut + sharedWidth)                              // [H] -> [I]
        }
        batch.run()
        for j in 0..<k {
            let e = storedExperts[chosen[j]]!, row = out + j * stride
            e.activate(row, rows: 1, into: row)
            batch.add(e.down(weights[j]!), row, into: row + 2 * e.intermediate)                    // [I] -> [H]
        }
        if let s = shared {
            swiglu(sharedOut, rows: 1, width: sharedWidth, into: sharedOut)                     // [gate | up] -> [I]
            batch.add(s.expert.down, sharedOut, into: sharedOut + 2 * sharedWidth)               // [I] -> [H]
        }
        batch.run()

        for c in 0..<h { y[c] = 0 }
        for j in 0..<k {
            let e = storedExperts[chosen[j]]!, src = out + j * stride + 2 * e.intermediate
            e.addDownBias(src, rows: 1)
            let w = ws.orderWeight.pointer[start[chosen[j]]]
            for c in 0..<h { y[c] += w * src[c] }
        }
        if let s = shared { addShared(s, x, output: sharedOut + 2 * sharedWidth, rows: 1, into: y) }
        return true
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
