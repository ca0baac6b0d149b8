// SoftmaxTopKRouterTests: top-k selection and the built-in router against the formula written out in double
// precision (softmax over the gate's logits, the k largest with the lower index first on ties, renormalised).

import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Softmax top-k router")
struct SoftmaxTopKRouterTests {
    @Test("selectTopK keeps the k largest, largest first, the lower index first among equal values")
    func selection() {
        var rng = TestRandom(seed: 7)
        for trial in 0..<200 {
            let count = 1 + trial % 17, k = 1 + trial % count
            // Few distinct values, so that ties are common.
            let values = (0..<count).map { _ in Float(Int(rng.nextUnitDouble() * 4)) }
            let expected = values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }.prefix(k)
            var ids = [Int32](repeating: -1, count: k), weights = [Float](repeating: .nan, count: k)
            selectTopK(values, count: count, k: k, ids: &ids, weights: &weights)
            #expect(ids.map(Int.init) == Array(expected), "\(values) k=\(k)")
            #expect(weights == expected.map { values[$0] })
        }
    }

    @Test("routing matches softmax, top-k and renormalisation in double precision", arguments: [false, true])
    func routing(normalize: Bool) throws {
        let experts = 6, hidden = 10, tokens = 5, k = 2
        var rng = TestRandom(seed: 11)
        let gate = rng.floats(experts * hidden), x = rng.floats(tokens * hidden)
        let (table, logits) = try gate.withUnsafeBufferPointer { g in
            let router = SoftmaxTopKRouter(gate: Linear(weight: Weight(data: g.baseAddress!, shape: [experts, hidden])),
                                           topK: k, normalize: normalize)
            return try routeRows(router, x: x, tokens: tokens, hidden: hidden, experts: experts)
        }
        #expect(table.tokenCount == tokens && table.experts.count == tokens * k)
        for t in 0..<tokens {
            let z = (0..<experts).map { e in (0..<hidden).reduce(0.0) { $0 + Double(gate[e * hidden + $1]) * Double(x[t * hidden + $1]) } }
            let m = z.max()!, sum = z.reduce(0) { $0 + exp($1 - m) }
            let p = z.map { exp($0 - m) / sum }
            let order = p.indices.sorted { p[$0] > p[$1] }.prefix(k)
            let kept = order.map { p[$0] }, total = kept.reduce(0, +)
            #expect(table.experts[t * k ..< (t + 1) * k].map(Int.init) == Array(order))
            for (j, w) in kept.enumerated() {
                let want = normalize ? w / total : w
                #expect(abs(Double(table.weights[t * k + j]) - want) <= 1e-6, "token \(t), choice \(j)")
            }
            for e in 0..<experts { #expect(abs(Double(logits[t * experts + e]) - z[e]) <= 1e-5) }
        }
    }
}
