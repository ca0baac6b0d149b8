// PluginExpert: an expert instance of a registered kind, called through its C table.

import CMoert
import MoertTensor

/// An expert created by a registered kind. Destroys its instance when released.
final class PluginExpert: Expert {
    let expertKind: ExpertKind
    let instance: UnsafeMutableRawPointer?
    let layer: Int
    let index: Int
    let hidden: Int

    var kind: String { expertKind.name }

    var output: ExpertOutput {
        if expertKind.flags & MOERT_EXPERT_OUTPUT_ZERO != 0 { return .zero }
        if expertKind.flags & MOERT_EXPERT_OUTPUT_IDENTITY != 0 { return .identity }
        return .computed
    }

    var isZeroCompute: Bool { expertKind.flags & MOERT_EXPERT_ZERO_COMPUTE != 0 || output != .computed }

    /// Creates an instance through the kind's create().
    /// - Throws: `MoertError` (`.plugin`) naming the kind, layer and expert when create fails.
    init(kind: ExpertKind, context: CreateContext, layer info: moert_layer_info) throws {
        expertKind = kind
        layer = Int(info.layer)
        index = Int(info.expert_index)
        hidden = Int(info.hidden_size)
        var out: UnsafeMutableRawPointer?
        var layerInfo = info
        pluginError.clear()
        let status = context.withOpaque { ctx in
            kind.ops.create(HostAPI.pointer, ctx, &layerInfo, &out)
        }
        guard status == MOERT_OK else {
            throw MoertError(.plugin, "expert \(kind.name) (\(kind.source)), layer \(info.layer), expert \(info.expert_index): create failed with status \(status): \(pluginError.take() ?? "no message")")
        }
        instance = out
        context.warnUnreadParameters("expert \(kind.name), layer \(info.layer), expert \(info.expert_index)")
    }

    deinit { expertKind.ops.destroy(instance) }

    func scratchCount(tokens n: Int) -> Int { 0 }

    func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                 scratch: UnsafeMutablePointer<Float>) throws {
        guard let forward = expertKind.ops.forward else { return }
        pluginError.clear()
        let status = forward(instance, x, Int32(n), Int32(hidden), y)
        guard status == MOERT_OK else {
            throw MoertError(.plugin, "expert \(kind) (\(expertKind.source)), layer \(layer), expert \(index): forward failed with status \(status): \(pluginError.take() ?? "no message")")
        }
    }
}
