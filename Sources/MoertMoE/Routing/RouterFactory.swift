// RouterFactory: where a router is chosen — a built-in kind (the architecture's own router, deepseek_v2,
// deepseek_v3, gpt_oss) or a registered plugin kind, with its parameters — for a checkpoint's moert section and for
// a caller's per-session override alike.

import MoertFormats
import MoertTensor

/// The one place that turns a router kind and its parameters into a router for one MoE layer.
public enum RouterFactory {
    /// Who asks for a router. A bad request from a checkpoint is a malformed or unsupported file; from a caller
    /// (the C API, the command line) it is a bad argument.
    public enum Origin: Sendable {
        /// The checkpoint's moert section.
        case checkpoint
        /// A per-session override.
        case caller
    }

    /// The router `spec` names (nil: the architecture's own, `BuiltinKind.router`) for the MoE layer `layer`.
    /// - Throws: `MoertError`: an unregistered kind (`.unsupported` from a checkpoint, `.invalidArgument` from a
    ///   caller), bad parameters of a built-in kind or routing it cannot run (`.format` from a checkpoint,
    ///   `.invalidArgument` from a caller), a missing gate tensor, or a failing plugin create (`.plugin`).
    public static func makeRouter(_ spec: KindSpec?, for layer: MoELayerContext, origin: Origin) throws -> Router {
        let kind = spec?.kind ?? BuiltinKind.router
        let params = spec?.params ?? [:]
        if BuiltinKind.routers.contains(kind) { return try makeBuiltin(kind, params, for: layer, origin: origin) }
        guard let registered = PluginRegistry.shared.router(named: kind) else {
            switch origin {
            case .checkpoint:
                throw MoertError.unsupported("layer \(layer.layer): router kind \(kind) is not registered (name its plugin in the moert section's plugins, or load it first)")
            case .caller:
                throw unregistered(kind)
            }
        }
        let context = CreateContext(checkpoint: layer.checkpoint, prefix: layer.prefix, params: params)
        return try PluginRouter(kind: registered, context: context, layer: layer.layerInfo())
    }

    /// A caller's request: `kind` with parameters as a JSON object (nil: none); `what` names the parameters in
    /// messages (the C argument or the command-line option).
    /// - Throws: `MoertError` (`.invalidArgument`) for an unregistered kind or parameters that are not a JSON object.
    public static func request(kind: String, paramsJSON: String?, what: String = "params_json") throws -> KindSpec {
        var params: [String: JSON] = [:]
        if let paramsJSON {
            let parsed: JSON
            do {
                parsed = try JSON.parse(paramsJSON, what: what)
            } catch let e as MoertError {
                throw MoertError.invalid(e.message)
            }
            guard let o = parsed.object else { throw MoertError.invalid("\(what) must be a JSON object") }
            params = o
        }
        guard PluginRegistry.shared.routerNames.contains(kind) else { throw unregistered(kind) }
        return KindSpec(kind: kind, params: params)
    }

    /// The architecture's own router with `k` experts per token in every layer of `layers`, each keeping the rest
    /// of its routing (groups, renormalisation, scaling): the top-k override.
    /// - Throws: `MoertError` (`.invalidArgument`) unless 1 <= k <= the smallest layer's expert count, and k fits
    ///   in the experts of the groups a group-limited layer keeps.
    public static func topK(_ k: Int, layers: [MoELayerContext]) throws -> KindSpec {
        guard k >= 1 else { throw MoertError.invalid("top_k must be >= 1, got \(k)") }
        let most = layers.map(\.experts).min() ?? 0
        guard k <= most else { throw MoertError.invalid("top_k \(k) exceeds the \(most) experts of a layer") }
        try checkRouting(layers, topK: k, topKName: "top_k")
        return KindSpec(kind: BuiltinKind.router, params: ["top_k": .int(Int64(k))])
    }

    /// Checks every layer's routing with `topK` experts per token.
    /// - Throws: `MoertError` (`.invalidArgument`) naming the layer and the key.
    private static func checkRouting(_ layers: [MoELayerContext], topK: Int, topKName: String) throws {
        for layer in layers {
            do {
                try layer.routing.check(experts: layer.experts, topK: topK, topKName: topKName)
            } catch let e as MoertError {
                throw MoertError.invalid("layer \(layer.layer): \(e.message)")
            }
        }
    }

    private static func unregistered(_ kind: String) -> MoertError {
        MoertError.invalid("router kind \(kind) is not registered (known: \(PluginRegistry.shared.routerNames.joined(separator: ", ")))")
    }

    /// The architecture's own router with every layer keeping only the expert at 0-based rank `rank` of its
    /// selection order (SCMoE's weak activation), with the weight the layer's renormalisation gives it.
    /// - Throws: `MoertError` (`.invalidArgument`) unless 0 <= rank < the smallest layer's expert count, and
    ///   rank + 1 fits in the experts of the groups a group-limited layer keeps.
    public static func rank(_ rank: Int, layers: [MoELayerContext]) throws -> KindSpec {
        let most = layers.map(\.experts).min() ?? 0
        guard rank >= 0, rank < most else { throw MoertError.invalid("rank must be in [0, \(most)) (0-based, the smallest layer's experts), got \(rank)") }
        try checkRouting(layers, topK: rank + 1, topKName: "rank \(rank) + 1 =")
        return KindSpec(kind: BuiltinKind.router, params: ["rank": .int(Int64(rank))])
    }
}
