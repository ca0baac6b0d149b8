// RouterFactoryTests: the one place routers are chosen — kinds, parameters, the top-k override, and which status a
// bad request gets from a checkpoint and from a caller.

import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport
import Testing

/// The first MoE layer of the mixtral fixture: 4 experts, top-2, hidden 64.
private func mixtralLayer() throws -> MoELayerContext {
    let checkpoint = try Checkpoint(directory: fixturesDirectory + "/mixtral")
    return MoELayerContext(checkpoint: checkpoint, prefix: "model.layers.0.block_sparse_moe.", layer: 0, moeIndex: 0,
                           moeLayers: 2, hidden: 64, experts: 4, topK: 2, normalizeTopK: true, vocab: 256)
}

@Suite("Router factory")
struct RouterFactoryTests {
    @Test("the built-in router takes num_experts_per_tok and norm_topk_prob unless its parameters say otherwise")
    func builtinDefaults() throws {
        let layer = try mixtralLayer()
        for origin in [RouterFactory.Origin.checkpoint, .caller] {
            let plain = try #require(try RouterFactory.makeRouter(nil, for: layer, origin: origin) as? SoftmaxTopKRouter)
            #expect(plain.topK == 2 && plain.normalize && plain.expertCount == 4)
            let spec = KindSpec(kind: "topk", params: ["top_k": .int(3), "normalize": .bool(false)])
            let custom = try #require(try RouterFactory.makeRouter(spec, for: layer, origin: origin) as? SoftmaxTopKRouter)
            #expect(custom.topK == 3 && !custom.normalize)
        }
    }

    @Test("rank r keeps the expert at rank r alone, weighted as the layer renormalises (SCMoE's weak activation)")
    func rank() throws {
        let layer = try mixtralLayer()
        let router = try #require(try RouterFactory.makeRouter(try RouterFactory.rank(2, layers: [layer]), for: layer,
                                                               origin: .caller) as? SoftmaxTopKRouter)
        #expect(router.topK == 3 && router.firstRank == 2 && router.normalize)
        #expect(moertError { _ = try RouterFactory.rank(4, layers: [layer]) }?.code == .invalidArgument)
    }

    /// A request, who made it, and the status and message part it must fail with.
    static let refusals: [(KindSpec, RouterFactory.Origin, MoertError.Code, String)] = [
        (KindSpec(kind: "topk", params: ["top_k": .int(5)]), .checkpoint, .invalidArgument, "top_k must be an integer in [1, 4]"),
        (KindSpec(kind: "topk", params: ["top_k": .int(0)]), .caller, .invalidArgument, "top_k must be an integer in [1, 4]"),
        (KindSpec(kind: "topk", params: ["top_k": .double(1.5)]), .caller, .invalidArgument, "top_k must be an integer"),
        (KindSpec(kind: "topk", params: ["normalize": .int(1)]), .checkpoint, .invalidArgument, "normalize must be true or false"),
        (KindSpec(kind: "topk", params: ["temperature": .int(1)]), .checkpoint, .format, "topk router has no parameter temperature"),
        (KindSpec(kind: "topk", params: ["temperature": .int(1)]), .caller, .invalidArgument, "topk router has no parameter temperature"),
        (KindSpec(kind: "topk", params: ["rank": .int(4)]), .caller, .invalidArgument, "rank must be an integer in [0, 4)"),
        (KindSpec(kind: "topk", params: ["rank": .int(1), "top_k": .int(2)]), .caller, .invalidArgument, "top_k or rank, not both"),
        (KindSpec(kind: "no-such-kind"), .checkpoint, .unsupported, "router kind no-such-kind is not registered (name its plugin"),
        (KindSpec(kind: "no-such-kind"), .caller, .invalidArgument, "router kind no-such-kind is not registered (known: topk"),
    ]

    @Test("bad requests are refused with the status their origin calls for", arguments: refusals.indices)
    func refusal(index: Int) throws {
        let (spec, origin, code, message) = Self.refusals[index]
        let layer = try mixtralLayer()
        let e = moertError { _ = try RouterFactory.makeRouter(spec, for: layer, origin: origin) }
        #expect(e?.code == code, "\(spec) from \(origin)")
        #expect(e?.message.contains(message) == true, "\(e?.message ?? "no error")")
    }

    @Test("a caller's request: parameters must be a JSON object, the kind registered")
    func callerRequest() throws {
        let ok = try RouterFactory.request(kind: "topk", paramsJSON: #"{"top_k": 1}"#)
        #expect(ok == KindSpec(kind: "topk", params: ["top_k": .int(1)]))
        #expect(try RouterFactory.request(kind: "topk", paramsJSON: nil) == KindSpec(kind: "topk"))
        for (json, message) in [("{", "params_json: invalid JSON"), ("[1]", "params_json must be a JSON object")] {
            let e = moertError { _ = try RouterFactory.request(kind: "topk", paramsJSON: json) }
            #expect(e?.code == .invalidArgument && e?.message.contains(message) == true, "\(json): \(e?.message ?? "")")
        }
        let named = moertError { _ = try RouterFactory.request(kind: "topk", paramsJSON: "7", what: "--router-params") }
        #expect(named?.message == "--router-params must be a JSON object")
        #expect(moertError { _ = try RouterFactory.request(kind: "nope", paramsJSON: nil) }?.code == .invalidArgument)
    }

    @Test("the top-k override allows 1 up to the smallest layer's expert count")
    func topKOverride() throws {
        let layer = try mixtralLayer()
        #expect(try RouterFactory.topK(4, layers: [layer]) == KindSpec(kind: "topk", params: ["top_k": .int(4)]))
        #expect(moertError { _ = try RouterFactory.topK(5, layers: [layer]) }?.message == "top_k 5 exceeds the 4 experts of a layer")
        #expect(moertError { _ = try RouterFactory.topK(0, layers: [layer]) }?.code == .invalidArgument)
    }
}
