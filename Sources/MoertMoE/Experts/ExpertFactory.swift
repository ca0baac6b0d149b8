// ExpertFactory: where a MoE layer's experts are made — the architecture's built-in experts, or registered plugin
// kinds — from the groups a checkpoint's moert section lists.

import MoertFormats
import MoertTensor

/// The one place that turns a layer's expert groups into experts.
public enum ExpertFactory {
    /// Experts in a layer with `groups` (nil: `builtinCount` built-in experts).
    public static func count(_ groups: [ExpertGroup]?, builtinCount: Int) -> Int {
        groups?.reduce(0) { $0 + $1.count } ?? builtinCount
    }

    /// The experts of `layer`, in id order: for each group, `count` experts of its kind. A built-in expert comes
    /// from `builtin` (given the expert id; the architecture knows its tensor names), any other kind from the plugin
    /// registry.
    /// - Throws: `MoertError`: `.format` when the built-in kind is given parameters, `.unsupported` for an
    ///   unregistered kind, or the errors of `builtin` and of a plugin's create.
    public static func makeExperts(_ groups: [ExpertGroup]?, for layer: MoELayerContext,
                                   builtin: (Int) throws -> Expert) throws -> [Expert] {
        let groups = groups ?? [ExpertGroup(spec: KindSpec(kind: BuiltinKind.expert), count: layer.experts)]
        var experts: [Expert] = []
        for group in groups {
            for _ in 0..<group.count {
                let id = experts.count
                if group.spec.kind == BuiltinKind.expert {
                    guard group.spec.params.isEmpty else {
                        throw MoertError.format("layer \(layer.layer): the ffn expert kind takes no params")
                    }
                    experts.append(try builtin(id))
                    continue
                }
                guard let kind = PluginRegistry.shared.expert(named: group.spec.kind) else {
                    throw MoertError.unsupported("layer \(layer.layer): expert kind \(group.spec.kind) is not registered (name its plugin in the moert section's plugins, or load it first)")
                }
                let context = CreateContext(checkpoint: layer.checkpoint, prefix: layer.prefix + "experts.\(id).",
                                            params: group.spec.params)
                experts.append(try PluginExpert(kind: kind, context: context, layer: layer.layerInfo(expertIndex: id)))
            }
        }
        return experts
    }
}
