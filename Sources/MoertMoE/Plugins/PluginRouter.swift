// PluginRouter: a router instance of a registered kind, called through its C table.

import CMoert
import MoertTensor

/// A router created by a registered kind for one MoE layer. Destroys its instance when released.
final class PluginRouter: Router {
    let routerKind: RouterKind
    let instance: UnsafeMutableRawPointer?
    let layer: Int
    let expertCount: Int
    let maxPerToken: Int
    let stateSize: Int

    var kind: String { routerKind.name }

    /// Creates an instance through the kind's create().
    /// - Throws: `MoertError` (`.plugin`) naming the kind and layer when create fails or declares bad caps.
    init(kind: RouterKind, context: CreateContext, layer info: moert_layer_info) throws {
        routerKind = kind
        layer = Int(info.layer)
        expertCount = Int(info.n_experts)
        var caps = moert_router_caps(struct_size: UInt32(MemoryLayout<moert_router_caps>.size),
                                     max_experts_per_token: info.top_k, state_size: 0)
        var out: UnsafeMutableRawPointer?
        var layerInfo = info
        pluginError.clear()
        let status = context.withOpaque { ctx in
            kind.ops.create(HostAPI.pointer, ctx, &layerInfo, &caps, &out)
        }
        guard status == MOERT_OK else {
            throw MoertError(.plugin, "router \(kind.name) (\(kind.source)), layer \(info.layer): create failed with status \(status): \(pluginError.take() ?? "no message")")
        }
        instance = out
        guard caps.max_experts_per_token >= 0, Int(caps.max_experts_per_token) <= expertCount, caps.state_size >= 0,
              caps.state_size <= 1 << 20 else {
            kind.ops.destroy(out)
            throw MoertError(.plugin, "router \(kind.name), layer \(info.layer): create declared max_experts_per_token \(caps.max_experts_per_token) (allowed 0...\(expertCount)) and state_size \(caps.state_size)")
        }
        maxPerToken = Int(caps.max_experts_per_token)
        stateSize = Int(caps.state_size)
        context.warnUnreadParameters("router \(kind.name), layer \(info.layer)")
    }

    deinit { routerKind.ops.destroy(instance) }

    /// Ids (as Int32), weights and counts: [n·k] + [n·k] + [n].
    func scratchCount(tokens n: Int) -> Int { 2 * n * maxPerToken + n }

    func route(_ input: RouterInput, into table: inout RoutingTable, logits: UnsafeMutablePointer<Float>,
               scratch: UnsafeMutablePointer<Float>) throws {
        let n = input.count, k = maxPerToken
        let weights = scratch + n * k
        try scratch.withMemoryRebound(to: Int32.self, capacity: n * k) { ids in
            try (scratch + 2 * n * k).withMemoryRebound(to: Int32.self, capacity: n) { counts in
                for t in 0..<n { counts[t] = -1 }
                var cin = moert_router_input(
                    struct_size: UInt32(MemoryLayout<moert_router_input>.size), n_tokens: Int32(n), hidden_size: Int32(input.hidden),
                    x: input.x, token_ids: input.tokens, positions: input.positions, prev_token_ids: input.previousTokens,
                    state: input.state, state_stride: Int32(input.stateStride),
                    prev_logits: input.previousLogits, prev_logits_width: Int32(input.previousLogitsWidth))
                var cout = moert_router_output(struct_size: UInt32(MemoryLayout<moert_router_output>.size), max_per_token: Int32(k),
                                               expert_ids: ids, weights: weights, counts: counts, logits: logits)
                pluginError.clear()
                let status = routerKind.ops.route(instance, &cin, &cout)
                guard status == MOERT_OK else {
                    throw MoertError(.plugin, "router \(kind) (\(routerKind.source)), layer \(layer): route failed with status \(status): \(pluginError.take() ?? "no message")")
                }
                for t in 0..<n {
                    let c = Int(counts[t])
                    guard c >= 0 && c <= k else {
                        throw MoertError(.plugin, "router \(kind) (\(routerKind.source)), layer \(layer): token \(t) has count \(counts[t]), outside [0, \(k)]")
                    }
                    table.append(experts: UnsafeBufferPointer(start: ids + t * k, count: c),
                                 weights: UnsafeBufferPointer(start: weights + t * k, count: c))
                }
            }
        }
    }
}
