// ScoredTopKRouterTests: the DeepSeek-V2, DeepSeek-V3, GLM-4.5 and gpt-oss routers against transformers' own router
// modules (Tests/fixtures/routers, tools/make_router_fixtures.py), through the architecture's routing and through
// the named kinds, with the top-k override and SCMoE's rank.

import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Expert ids must match exactly. Weights: transformers computes the same float32 operations in another order
/// (softmax divides where moert multiplies by the reciprocal, sums over k in another order, sgemm vs addmm), a few
/// ulps apart; 1e-5 relative leaves two orders of magnitude. Logits are compared relative to the row's largest.
private let tolerance: Float = 1e-5

/// Checks `table` and `logits` against the fixture's selection `prefix`.
private func expectMatches(_ fixture: RouterFixture, _ result: (table: RoutingTable, logits: [Float]),
                           prefix: String = "", comment: String) throws {
    let (ids, weights) = try fixture.expected(prefix)
    let k = ids.count / fixture.tokens
    #expect(result.table.tokenCount == fixture.tokens, "\(comment)")
    for t in 0..<fixture.tokens {
        let got = result.table.byExpert(t)
        #expect(got.map(\.0) == Array(ids[t * k ..< (t + 1) * k]), "\(comment): token \(t) experts")
        guard got.count == k else { continue }
        for j in 0..<k {
            let want = weights[t * k + j]
            #expect(abs(got[j].1 - want) <= tolerance * abs(want), "\(comment): token \(t) weight \(j): \(got[j].1) vs \(want)")
        }
        let e = fixture.experts, row = fixture.logits[t * e ..< (t + 1) * e]
        #expect(relativeError(result.logits[t * e ..< (t + 1) * e], row) <= tolerance, "\(comment): token \(t) logits")
    }
}

@Suite("Scored top-k routers against transformers")
struct ScoredTopKRouterTests {
    @Test("the architecture's own routing (kind topk) matches transformers' router module", arguments: RouterFixture.names)
    func builtin(name: String) throws {
        let fixture = try RouterFixture(name)
        let router = try RouterFactory.makeRouter(nil, for: fixture.layer(), origin: .checkpoint)
        let scored = try #require(router as? ScoredTopKRouter)
        #expect(scored.kind == "topk" && scored.topK == fixture.topK)
        try expectMatches(fixture, try fixture.route(router), comment: name)
    }

    @Test("the named kind, its parameters given on a layer of default routing, matches transformers", arguments: RouterFixture.names)
    func namedKind(name: String) throws {
        let fixture = try RouterFixture(name)
        var plain = RoutingConfig()
        plain.gate = fixture.routing.gate
        let spec = try RouterFactory.request(kind: fixture.kind, paramsJSON: nil)
        let router = try RouterFactory.makeRouter(KindSpec(kind: spec.kind, params: fixture.kindParams),
                                                  for: fixture.layer(routing: plain), origin: .caller)
        #expect(router.kind == fixture.kind)
        try expectMatches(fixture, try fixture.route(router), comment: "\(name) as \(fixture.kind)")
        // The same kind with no parameters on the fixture's own layer takes every value from its routing.
        let defaults = try RouterFactory.makeRouter(KindSpec(kind: fixture.kind), for: fixture.layer(), origin: .caller)
        try expectMatches(fixture, try fixture.route(defaults), comment: "\(name) as \(fixture.kind), defaults")
    }

    @Test("the top-k override changes k and keeps the groups, normalisation and scaling", arguments: RouterFixture.names)
    func topKOverride(name: String) throws {
        let fixture = try RouterFixture(name)
        let layer = fixture.layer()
        guard let k = fixture.keys["override_top_k"] as? Int else {
            // glm4_moe_group keeps one group of two experts: three cannot be selected.
            let e = moertError { _ = try RouterFactory.topK(fixture.topK + 1, layers: [layer]) }
            #expect(e?.code == .invalidArgument)
            #expect(e?.message == "layer 0: top_k 3 exceeds the 2 experts of the topk_group 1 kept groups (n_group 4, 2 experts each)")
            return
        }
        let router = try RouterFactory.makeRouter(try RouterFactory.topK(k, layers: [layer]), for: layer, origin: .caller)
        try expectMatches(fixture, try fixture.route(router), prefix: "override_", comment: "\(name) top_k \(k)")
    }

    @Test("rank k - 1 keeps the k-th selected expert alone, its weight renormalised and scaled")
    func rank() throws {
        let fixture = try RouterFixture("deepseek_v3_norm")
        let layer = fixture.layer(), k = fixture.topK
        let router = try RouterFactory.makeRouter(try RouterFactory.rank(k - 1, layers: [layer]), for: layer, origin: .caller)
        let (table, _) = try fixture.route(router)
        let (ids, _) = try fixture.expected()
        let bias = try fixtureFloats("routers/deepseek_v3_norm/model.safetensors", "model.layers.0.mlp.gate.e_score_correction_bias")
        for t in 0..<fixture.tokens {
            // The selected expert with the smallest corrected score, from transformers' logits.
            let selected = ids[t * k ..< (t + 1) * k].map(Int.init)
            let corrected = { (e: Int) -> Double in 1 / (1 + exp(-Double(fixture.logits[t * fixture.experts + e]))) + Double(bias[e]) }
            let last = selected.min { corrected($0) < corrected($1) }!
            #expect(table.byExpert(t).map(\.0) == [Int32(last)], "token \(t)")
            #expect(abs(table.byExpert(t).first!.1 - 2.5) <= 2.5 * tolerance, "token \(t): one weight, normalised, times 2.5")
        }
    }
}

@Suite("Built-in router kinds")
struct BuiltinRouterKindTests {
    @Test("the built-in kinds are listed first and refused to plugins")
    func listed() throws {
        #expect(Array(PluginRegistry.shared.routerNames.prefix(4)) == ["topk", "deepseek_v2", "deepseek_v3", "gpt_oss"])
        #expect(try RouterFactory.request(kind: "gpt_oss", paramsJSON: "{}") == KindSpec(kind: "gpt_oss"))
        #expect(BuiltinKind.routers == ["topk", "deepseek_v2", "deepseek_v3", "gpt_oss"])
    }

    @Test("plain softmax routing stays SoftmaxTopKRouter; named kinds on it route as their config says")
    func plainLayer() throws {
        let fixture = try RouterFixture("deepseek_v2_greedy")
        let layer = fixture.layer(routing: RoutingConfig())
        #expect(try RouterFactory.makeRouter(nil, for: layer, origin: .checkpoint) is SoftmaxTopKRouter)
        let v2 = try #require(try RouterFactory.makeRouter(KindSpec(kind: "deepseek_v2"), for: layer, origin: .caller) as? ScoredTopKRouter)
        #expect(v2.routing.selection == .greedy && v2.routing.scoring == .softmax && v2.routing.scalingFactor == 1)
        let grouped = try #require(try RouterFactory.makeRouter(
            KindSpec(kind: "deepseek_v2", params: ["topk_method": .string("group_limited_greedy"), "n_group": .int(8), "topk_group": .int(3)]),
            for: layer, origin: .caller) as? ScoredTopKRouter)
        #expect(grouped.routing.selection == .groupLimited(groups: 8, keptGroups: 3))
    }

    /// A request on a fixture's layer, who made it, and the status and message part it must fail with.
    static let refusals: [(String, KindSpec, RouterFactory.Origin, MoertError.Code, String)] = [
        ("deepseek_v3_norm", KindSpec(kind: "deepseek_v3", params: ["n_group": .int(3)]), .caller, .invalidArgument,
         "layer 0: deepseek_v3 router cannot run: n_group 3 must be >= 1 and divide the 16 experts"),
        ("deepseek_v3_norm", KindSpec(kind: "deepseek_v3", params: ["n_group": .int(3)]), .checkpoint, .format,
         "n_group 3 must be >= 1 and divide the 16 experts"),
        ("deepseek_v3_norm", KindSpec(kind: "deepseek_v3", params: ["topk_group": .int(5)]), .caller, .invalidArgument,
         "topk_group 5 must be in [1, n_group 4]"),
        ("deepseek_v3_norm", KindSpec(kind: "deepseek_v3", params: ["top_k": .int(9)]), .caller, .invalidArgument,
         "top_k 9 exceeds the 8 experts of the topk_group 2 kept groups (n_group 4, 4 experts each)"),
        ("deepseek_v3_norm", KindSpec(kind: "topk", params: ["rank": .int(8)]), .caller, .invalidArgument,
         "rank 8 + 1 = 9 exceeds the 8 experts of the topk_group 2 kept groups"),
        ("deepseek_v3_norm", KindSpec(kind: "deepseek_v3", params: ["n_group": .int(16), "topk_group": .int(4)]), .caller,
         .invalidArgument, "n_group 16 leaves 1 expert per group; noaux_tc ranks groups by the sum of their two best scores"),
        ("deepseek_v3_norm", KindSpec(kind: "deepseek_v3", params: ["topk_method": .string("noaux_tc")]), .caller,
         .invalidArgument, "deepseek_v3 router has no parameter topk_method (top_k, normalize, rank, routed_scaling_factor, n_group, topk_group)"),
        ("deepseek_v3_norm", KindSpec(kind: "deepseek_v3", params: ["routed_scaling_factor": .double(-1)]), .caller,
         .invalidArgument, "routed_scaling_factor must be a finite positive number"),
        ("deepseek_v2_greedy", KindSpec(kind: "deepseek_v3"), .caller, .invalidArgument,
         "deepseek_v3 router needs e_score_correction_bias, tensor model.layers.0.mlp.gate.e_score_correction_bias, which the checkpoint does not have"),
        ("deepseek_v2_greedy", KindSpec(kind: "deepseek_v3"), .checkpoint, .format, "needs e_score_correction_bias"),
        ("deepseek_v2_greedy", KindSpec(kind: "gpt_oss"), .caller, .invalidArgument,
         "gpt_oss router needs the gate's bias, tensor model.layers.0.mlp.gate.bias, which the checkpoint does not have"),
        ("deepseek_v2_greedy", KindSpec(kind: "deepseek_v2", params: ["n_group": .int(4)]), .caller, .invalidArgument,
         "n_group and topk_group apply only with topk_method group_limited_greedy"),
        ("deepseek_v2_greedy", KindSpec(kind: "deepseek_v2", params: ["topk_method": .string("noaux_tc")]), .caller,
         .invalidArgument, "topk_method must be one of greedy, group_limited_greedy"),
        ("gpt_oss", KindSpec(kind: "topk", params: ["normalize": .bool(true)]), .caller, .invalidArgument,
         "normalize does not apply to this layer's routing"),
        ("gpt_oss", KindSpec(kind: "gpt_oss", params: ["normalize": .bool(true)]), .checkpoint, .format,
         "gpt_oss router has no parameter normalize (top_k, rank)"),
        ("gpt_oss", KindSpec(kind: "gpt_oss", params: ["top_k": .int(17)]), .caller, .invalidArgument,
         "top_k must be an integer in [1, 16]"),
    ]

    @Test("impossible routing and bad parameters are refused with the status their origin calls for", arguments: refusals.indices)
    func refusal(index: Int) throws {
        let (name, spec, origin, code, message) = Self.refusals[index]
        let e = moertError { _ = try RouterFactory.makeRouter(spec, for: try RouterFixture(name).layer(), origin: origin) }
        #expect(e?.code == code, "\(spec) from \(origin): \(e?.message ?? "no error")")
        #expect(e?.message.contains(message) == true, "\(e?.message ?? "no error")")
    }

    @Test("a model's own routing that cannot run is a format error naming the key")
    func impossibleConfig() throws {
        let fixture = try RouterFixture("deepseek_v3_norm")
        var routing = fixture.routing
        routing.selection = .correctedGroupLimited(groups: 4, keptGroups: 0)
        let e = moertError { _ = try RouterFactory.makeRouter(nil, for: fixture.layer(routing: routing), origin: .checkpoint) }
        #expect(e?.code == .format && e?.message == "layer 0: topk router cannot run: topk_group 0 must be in [1, n_group 4]")
        var checks = RoutingConfig()
        checks.scalingFactor = .nan
        #expect(moertError { try checks.check(experts: 8, topK: 2) }?.message == "routed_scaling_factor must be finite and positive, got nan")
        checks = RoutingConfig()
        checks.selection = .groupLimited(groups: 4, keptGroups: 1)
        #expect(moertError { try checks.check(experts: 8, topK: 3) }?.message
                == "num_experts_per_tok 3 exceeds the 2 experts of the topk_group 1 kept groups (n_group 4, 2 experts each)")
        #expect(moertError { try checks.check(experts: 8, topK: 2) } == nil)
        #expect(moertError { _ = try RouterFactory.rank(2, layers: [try RouterFixture("glm4_moe_group").layer()]) }?.code == .invalidArgument)
    }
}
