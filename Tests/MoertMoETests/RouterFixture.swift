// RouterFixture: one case of Tests/fixtures/routers (tools/make_router_fixtures.py) — transformers' router tensors,
// inputs and decisions — and running a moert router on it.

import Foundation
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport

/// A case of tools/make_router_fixtures.py: the router tensors under checkpoint names, the routing's config keys,
/// and transformers' decisions for `tokens` inputs.
struct RouterFixture {
    /// Every case the script writes.
    static let names = ["deepseek_v2_greedy", "deepseek_v2_group", "deepseek_v3_norm", "deepseek_v3_plain",
                        "glm4_moe", "glm4_moe_group", "gpt_oss"]

    let name: String
    /// routing.json: the config keys, the architecture, the router kind and the gate's module name.
    let keys: [String: Any]
    let checkpoint: Checkpoint
    let experts: Int
    let hidden: Int
    let topK: Int
    let tokens: Int
    /// [tokens, hidden]
    let x: [Float]
    /// transformers' router_logits [tokens, experts].
    let logits: [Float]

    init(_ name: String) throws {
        self.name = name
        let directory = fixturesDirectory + "/routers/" + name
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/routing.json"))
        keys = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        checkpoint = try Checkpoint(directory: directory)
        experts = keys["n_routed_experts"] as! Int
        hidden = keys["hidden_size"] as! Int
        topK = keys["num_experts_per_tok"] as! Int
        x = try fixtureFloats("routers/\(name)/reference.safetensors", "x")
        logits = try fixtureFloats("routers/\(name)/reference.safetensors", "logits")
        tokens = x.count / hidden
    }

    var architecture: String { keys["architecture"] as! String }
    var kind: String { keys["kind"] as! String }
    var nGroup: Int { keys["n_group"] as? Int ?? 1 }
    var topkGroup: Int { keys["topk_group"] as? Int ?? 1 }
    var scaling: Double { keys["routed_scaling_factor"] as? Double ?? 1 }
    var normalize: Bool { keys["norm_topk_prob"] as? Bool ?? false }
    var groupLimited: Bool { keys["topk_method"] as? String != "greedy" && architecture == "deepseek_v2" }

    /// The routing as the architecture's config describes it (what ModelConfig fills in): DeepSeek-V2 never
    /// normalises in transformers, DeepSeek-V3 and GLM-4.5 share noaux_tc, gpt-oss has a biased `router`.
    var routing: RoutingConfig {
        var r = RoutingConfig()
        switch architecture {
        case "deepseek_v2":
            r.selection = groupLimited ? .groupLimited(groups: nGroup, keptGroups: topkGroup) : .greedy
            r.scalingFactor = Float(scaling)
        case "gpt_oss":
            r.scoring = .softmaxOfTopK
            r.gateBias = true
            r.gate = "router"
        default:
            r.scoring = .sigmoid
            r.selection = .correctedGroupLimited(groups: nGroup, keptGroups: topkGroup)
            r.normalizeTopK = normalize
            r.scalingFactor = Float(scaling)
        }
        return r
    }

    /// The parameters that make the fixture's named kind route as the fixture's config does on a layer whose own
    /// routing is the default one.
    var kindParams: [String: JSON] {
        switch architecture {
        case "deepseek_v2":
            var p: [String: JSON] = ["routed_scaling_factor": .double(scaling), "normalize": .bool(false),
                                     "topk_method": .string(groupLimited ? "group_limited_greedy" : "greedy")]
            if groupLimited {
                p["n_group"] = .int(Int64(nGroup))
                p["topk_group"] = .int(Int64(topkGroup))
            }
            return p
        case "gpt_oss":
            return [:]
        default:
            return ["routed_scaling_factor": .double(scaling), "normalize": .bool(normalize),
                    "n_group": .int(Int64(nGroup)), "topk_group": .int(Int64(topkGroup))]
        }
    }

    /// The MoE layer with `routing` (nil: the fixture's).
    func layer(routing: RoutingConfig? = nil) -> MoELayerContext {
        MoELayerContext(checkpoint: checkpoint, prefix: "model.layers.0.mlp.", layer: 0, moeIndex: 0, moeLayers: 1,
                        hidden: hidden, experts: experts, topK: topK, routing: routing ?? self.routing, vocab: 32)
    }

    /// transformers' selection `prefix` ("" or "override_"): ids [tokens, k] by expert id, and their weights.
    func expected(_ prefix: String = "") throws -> (experts: [Int32], weights: [Float]) {
        let (bytes, _) = try fixtureTensor("routers/\(name)/reference.safetensors", prefix + "experts")
        let ids = bytes.withUnsafeBytes { b in (0..<bytes.count / 4).map { b.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self) } }
        return (ids, try fixtureFloats("routers/\(name)/reference.safetensors", prefix + "weights"))
    }

    /// Runs `router` on the fixture's inputs: the routing table and the logits it wrote.
    func route(_ router: Router) throws -> (table: RoutingTable, logits: [Float]) {
        try routeRows(router, x: x, tokens: tokens, hidden: hidden, experts: experts)
    }
}

/// Runs `router` on `tokens` rows of `x` ([tokens, hidden]; token ids, positions and previous tokens all 0, no
/// state): the routing table and the [tokens, experts] logits it wrote.
func routeRows(_ router: Router, x: [Float], tokens: Int, hidden: Int, experts: Int) throws
    -> (table: RoutingTable, logits: [Float]) {
    var table = RoutingTable()
    var out = [Float](repeating: .nan, count: tokens * experts)
    var scratch = [Float](repeating: .nan, count: max(router.scratchCount(tokens: tokens), 1))
    let ids = [Int32](repeating: 0, count: tokens)
    try x.withUnsafeBufferPointer { xs in
        try ids.withUnsafeBufferPointer { t in
            let input = RouterInput(x: xs.baseAddress!, count: tokens, hidden: hidden, tokens: t.baseAddress!,
                                    positions: t.baseAddress!, previousTokens: t.baseAddress!, layer: 0, state: nil,
                                    stateStride: 0, previousLogits: nil, previousLogitsWidth: 0)
            try router.route(input, into: &table, logits: &out, scratch: &scratch)
        }
    }
    return (table, out)
}

extension RoutingTable {
    /// Token t's choices ordered by expert id.
    func byExpert(_ t: Int) -> [(Int32, Float)] {
        (offsets[t]..<offsets[t + 1]).map { (experts[$0], weights[$0]) }.sorted { $0.0 < $1.0 }
    }
}
