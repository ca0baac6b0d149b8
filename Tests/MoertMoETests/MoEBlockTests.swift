// MoEBlockTests: the dispatcher — gather, expert products, weighted scatter-add, skipped zero experts, identity
// experts — against y_t = Σ_j w_tj · F_{e_tj}(x_t) written out, and its refusal of routing it cannot trust.

import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport
import Testing

/// Returns the routing it was given, token by token.
fileprivate final class FixedRouter: Router {
    let choices: [[(Int32, Float)]]
    init(_ choices: [[(Int32, Float)]]) { self.choices = choices }
    var kind: String { "fixed" }
    var stateSize: Int { 0 }
    func scratchCount(tokens n: Int) -> Int { 0 }
    func route(_ input: RouterInput, into table: inout RoutingTable, logits: UnsafeMutablePointer<Float>,
               scratch: UnsafeMutablePointer<Float>) throws {
        for t in 0..<input.count { table.append(experts: choices[t].map(\.0), weights: choices[t].map(\.1)) }
    }
}

/// F(x) = a·x + b, or an expert whose output the dispatcher handles itself (zero, identity).
fileprivate final class AffineExpert: Expert {
    let a: Float, b: Float
    let output: ExpertOutput
    init(_ a: Float, _ b: Float, output: ExpertOutput = .computed) { self.a = a; self.b = b; self.output = output }
    var kind: String { "affine" }
    var isZeroCompute: Bool { output != .computed }
    func scratchCount(tokens n: Int) -> Int { n }
    func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                 scratch: UnsafeMutablePointer<Float>) throws {
        for r in 0..<n { scratch[r] = 0 }  // touches exactly the scratch it asked for
        for i in 0..<n * 4 { y[i] = a * x[i] + b }
    }
    func reference(_ x: Double) -> Double {
        switch output {
        case .computed: return Double(a) * x + Double(b)
        case .zero: return 0
        case .identity: return x
        }
    }
}

@Suite("MoE block dispatch")
struct MoEBlockTests {
    static let hidden = 4

    /// Runs a block of `experts` with `routing` over one input row per token.
    fileprivate func run(_ experts: [AffineExpert], _ routing: [[(Int32, Float)]], workspaceExperts: Int? = nil) throws -> [Float] {
        let checkpoint = try Checkpoint(directory: fixturesDirectory + "/mixtral")
        let layer = MoELayerContext(checkpoint: checkpoint, prefix: "", layer: 3, moeIndex: 0, moeLayers: 1,
                                    hidden: Self.hidden, experts: experts.count, topK: 2, normalizeTopK: false, vocab: 256)
        let router = FixedRouter(routing)
        let block = MoEBlock(router: router, experts: experts, shared: nil, layer: layer)
        let n = routing.count
        let ws = try MoEWorkspace(batch: n, hidden: Self.hidden, maxExperts: workspaceExperts ?? experts.count,
                                  expertScratch: block.scratchCount(tokens: n))
        let x = (0..<n * Self.hidden).map { Float($0 % 7) - 2.5 }
        var y = [Float](repeating: .nan, count: n * Self.hidden)
        var logits = [Float](repeating: 0, count: n * experts.count)
        let ids = [Int32](repeating: 0, count: n)
        try x.withUnsafeBufferPointer { xs in
            try ids.withUnsafeBufferPointer { t in
                let input = RouterInput(x: xs.baseAddress!, count: n, hidden: Self.hidden, tokens: t.baseAddress!,
                                        positions: t.baseAddress!, previousTokens: t.baseAddress!, layer: 3, state: nil,
                                        stateStride: 0, previousLogits: nil, previousLogitsWidth: 0)
                try block.forward(input, router: router, logits: &logits, into: &y, workspace: ws)
            }
        }
        for t in 0..<n {
            for c in 0..<Self.hidden {
                let xv = Double(x[t * Self.hidden + c])
                let want = routing[t].reduce(0.0) { $0 + Double($1.1) * experts[Int($1.0)].reference(xv) }
                #expect(abs(Double(y[t * Self.hidden + c]) - want) <= 1e-5, "token \(t), column \(c)")
            }
        }
        return y
    }

    @Test("outputs are the weighted sums of the chosen experts; zero experts add nothing, identity experts add w·x")
    func combination() throws {
        let experts = [AffineExpert(2, 1), AffineExpert(-1, 0.5), AffineExpert(0, 0, output: .zero),
                       AffineExpert(0, 0, output: .identity), AffineExpert(3, -2)]
        _ = try run(experts, [
            [(0, 0.5), (1, 0.25)],            // two computed experts
            [(4, 1)],                         // one
            [],                               // none: the output is zero
            [(2, 0.7), (3, 0.3)],             // zero and identity
            [(1, 0.1), (0, 0.2), (4, 0.3)],   // three, listed out of id order
            [(0, 0.5), (3, 0.5)],
        ])
    }

    /// Routing no dispatcher may trust: an id out of range, a negative, a NaN or an infinite weight.
    static let badRouting: [([(Int32, Float)], String)] = [
        ([(5, 0.5)], "routed to expert 5, outside [0, 2)"),
        ([(-1, 0.5)], "routed to expert -1"),
        ([(0, -0.5)], "has weight -0.5"),
        ([(1, .nan)], "has weight nan"),
        ([(1, .infinity)], "has weight inf"),
    ]

    @Test("routing that would index out of range or poison the sum is refused", arguments: badRouting.indices)
    func refusal(index: Int) throws {
        let (choices, message) = Self.badRouting[index]
        let e = moertError { _ = try run([AffineExpert(1, 0), AffineExpert(2, 0)], [[(0, 1)], choices]) }
        #expect(e?.code == .plugin)
        #expect(e?.message.contains("router fixed, layer 3: token 1 " + message) == true, "\(e?.message ?? "no error")")
    }

    @Test("a workspace sized for fewer experts is an internal error, not an out-of-bounds write")
    func smallWorkspace() throws {
        let e = moertError { _ = try run([AffineExpert(1, 0), AffineExpert(2, 0), AffineExpert(3, 0)], [[(2, 1)]], workspaceExperts: 1) }
        #expect(e?.code == .internal)
    }
}
