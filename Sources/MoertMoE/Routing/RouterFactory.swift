// RouterFactory: where a router is chosen — the built-in softmax top-k or a registered plugin kind, with its
// parameters — for a checkpoint's moert section and for a caller's per-session override alike.

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

    /// The router `spec` names (nil: the built-in) for the MoE layer `layer`.
    /// - Throws: `MoertError`: an unregistered kind (`.unsupported` from a checkpoint, `.invalidArgument` from a
    ///   caller), bad parameters of the built-in (`.format` from a checkpoint, `.invalidArgument` from a caller),
    ///   a missing gate tensor, or a failing plugin create (`.plugin`).
    public static func makeRouter(_ spec: KindSpec?, for layer: MoELayerContext, origin: Origin) throws -> Router {
        let kind = spec?.kind ?? BuiltinKind.router
        let params = spec?.params ?? [:]
        if kind == BuiltinKind.router { return try makeTopK(params, for: layer, origin: origin) }
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

    /// The built-in router with `k` experts per token in every layer of `layers`, each keeping its own
    /// renormalisation (the top-k override).
    /// - Throws: `MoertError` (`.invalidArgument`) unless 1 <= k <= the smallest layer's expert count.
    public static func topK(_ k: Int, layers: [MoELayerContext]) throws -> KindSpec {
        guard k >= 1 else { throw MoertError.invalid("top_k must be >= 1, got \(k)") }
        let most = layers.map(\.experts).min() ?? 0
        guard k <= most else { throw MoertError.invalid("top_k \(k) exceeds the \(most) experts of a layer") }
        return KindSpec(kind: BuiltinKind.router, params: ["top_k": .int(Int64(k))])
    }

    private static func unregistered(_ kind: String) -> MoertError {
        MoertError.invalid("router kind \(kind) is not registered (known: \(PluginRegistry.shared.routerNames.joined(separator: ", ")))")
    }

    /// The built-in router with every layer keeping only the expert at 0-based rank `rank` of its probabilities
    /// (SCMoE's weak activation), with the weight the layer's renormalisation gives it.
    /// - Throws: `MoertError` (`.invalidArgument`) unless 0 <= rank < the smallest layer's expert count.
    public static func rank(_ rank: Int, layers: [MoELayerContext]) throws -> KindSpec {
        let most = layers.map(\.experts).min() ?? 0
        guard rank >= 0, rank < most else { throw MoertError.invalid("rank must be in [0, \(most)) (0-based, the smallest layer's experts), got \(rank)") }
        return KindSpec(kind: BuiltinKind.router, params: ["rank": .int(Int64(rank))])
    }

    /// The built-in router: parameters `top_k` (default num_experts_per_tok), `normalize` (default norm_topk_prob)
    /// and `rank` (keep only the expert at this 0-based rank; excludes `top_k`), the gate read from the layer's
    /// `gate.weight`.
    private static func makeTopK(_ params: [String: JSON], for layer: MoELayerContext, origin: Origin) throws -> Router {
        let allowed: Set<String> = ["top_k", "normalize", "rank"]
        if let bad = params.keys.sorted().first(where: { !allowed.contains($0) }) {
            let message = "layer \(layer.layer): topk router has no parameter \(bad) (top_k, normalize, rank)"
            throw origin == .checkpoint ? MoertError.format(message) : MoertError.invalid(message)
        }
        guard params["rank"] == nil || params["top_k"] == nil else {
            throw MoertError.invalid("layer \(layer.layer): topk router takes top_k or rank, not both")
        }
        let rank = try params["rank"].map { v -> Int in
            guard let i = v.int, i >= 0, i < Int64(layer.experts) else {
                throw MoertError.invalid("layer \(layer.layer): rank must be an integer in [0, \(layer.experts))")
            }
            return Int(i)
        }
        let k = try params["top_k"].map { v -> Int in
            guard let i = v.int, i >= 1, i <= Int64(layer.experts) else {
                throw MoertError.invalid("layer \(layer.layer): top_k must be an integer in [1, \(layer.experts)]")
            }
            return Int(i)
        } ?? rank.map { $0 + 1 } ?? min(layer.topK, layer.experts)
        let normalize = try params["normalize"].map { v -> Bool in
            guard let b = v.bool else { throw MoertError.invalid("layer \(layer.layer): normalize must be true or false") }
            return b
        } ?? layer.normalizeTopK
        let gate = Linear(weight: try layer.checkpoint.finiteWeight(layer.prefix + "gate.weight", shape: [layer.experts, layer.hidden]))
        return SoftmaxTopKRouter(gate: gate, topK: k, normalize: normalize, firstRank: rank ?? 0)
    }
}
