// DynamicRouter: what the plugin's router kinds share — the C-call adaptors (create/route/destroy) and the
// checked view of one route() call's buffers.
//
// Part of the `dynamic` plugin (math, sources, params and tensors of `topp` and `adamoe` at the top of
// TopPRouter.swift and AdaMoERouter.swift). create() retains a Swift instance behind the opaque pointer and
// declares its row capacity in caps->max_experts_per_token; destroy() releases it. route() checks the input and
// output structs (sizes, hidden_size, row capacity, non-NULL buffers) before the kind routes. Threads: instances
// are immutable after create, and a route() call's scratch is its own, so route() may run concurrently on one
// instance; create and destroy run on the host's loading thread.

import CMoert

/// A router kind of this plugin. Instances are immutable after init, so route() may run concurrently.
protocol DynamicRouter: AnyObject {
    /// Kind name, for messages.
    static var kind: String { get }
    /// Creates an instance for one MoE layer, validating parameters and tensors.
    /// - Throws: `PluginFailure` naming the offending parameter or tensor.
    init(host: HostAccess, context: OpaquePointer?, layer: LayerFacts) throws(PluginFailure)
    /// E: experts in the layer.
    var experts: Int { get }
    /// H: hidden size.
    var hidden: Int { get }
    /// Row capacity declared as caps->max_experts_per_token.
    var maxPerToken: Int { get }
    /// The host's set_error, kept from create.
    var setError: SetErrorFunction? { get }
    /// Routes every token of `batch`.
    /// - Throws: `PluginFailure` on non-finite logits.
    func route(_ batch: RouterBatch) throws(PluginFailure)
}

/// C-call adaptors: each catches every failure and turns it into a status plus host->set_error.
enum RouterEntry {
    /// moert_router_ops.create for `R`.
    static func create<R: DynamicRouter>(
        _ type: R.Type, _ host: UnsafePointer<moert_host_api>?, _ context: OpaquePointer?,
        _ layer: UnsafePointer<moert_layer_info>?, _ caps: UnsafeMutablePointer<moert_router_caps>?,
        _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    ) -> moert_status {
        var setError: SetErrorFunction?
        do throws(PluginFailure) {
            let access = try HostAccess(host, kind: R.kind)
            setError = access.setError
            guard let out else { throw .invalid("\(R.kind): out_instance is NULL") }
            out.pointee = nil
            guard let caps, Int(caps.pointee.struct_size) >= fieldEnd(\moert_router_caps.max_experts_per_token) else {
                throw .plugin("\(R.kind): router caps missing or too small")
            }
            let router = try R(host: access, context: context, layer: LayerFacts(layer, kind: R.kind))
            caps.pointee.max_experts_per_token = Int32(router.maxPerToken)
            out.pointee = Unmanaged.passRetained(router).toOpaque()
            return MOERT_OK
        } catch {
            return error.report(setError ?? HostAccess.setErrorIfCovered(host))
        }
    }

    /// moert_router_ops.route for `R`.
    static func route<R: DynamicRouter>(
        _ type: R.Type, _ instance: UnsafeMutableRawPointer?, _ input: UnsafePointer<moert_router_input>?,
        _ output: UnsafeMutablePointer<moert_router_output>?
    ) -> moert_status {
        guard let instance else { return MOERT_ERR_PLUGIN }
        let router = Unmanaged<R>.fromOpaque(instance).takeUnretainedValue()
        do throws(PluginFailure) {
            guard let batch = try RouterBatch(kind: R.kind, input: input, output: output, hidden: router.hidden,
                                              capacity: router.maxPerToken) else {
                return MOERT_OK  // no tokens
            }
            try router.route(batch)
            return MOERT_OK
        } catch {
            return error.report(router.setError)
        }
    }

    /// moert_router_ops.destroy for `R`: releases the instance retained by create.
    static func destroy<R: DynamicRouter>(_ type: R.Type, _ instance: UnsafeMutableRawPointer?) {
        guard let instance else { return }
        Unmanaged<R>.fromOpaque(instance).release()
    }
}

/// One route() call's buffers, checked against the instance: x [n, H], output rows of `rowCapacity`, optional
/// logits [n, E].
struct RouterBatch {
    /// n: tokens in the batch (>= 1).
    let count: Int
    let x: UnsafePointer<Float>
    let ids: UnsafeMutablePointer<Int32>
    let weights: UnsafeMutablePointer<Float>
    let counts: UnsafeMutablePointer<Int32>
    /// Row stride of `ids` and `weights` (output->max_per_token).
    let rowCapacity: Int
    /// Where the router's logits go ([n, E]), nil when the host gives no buffer.
    let logits: UnsafeMutablePointer<Float>?

    /// - Returns: nil for an empty batch.
    /// - Throws: `PluginFailure` for missing or mismatched buffers.
    init?(kind: String, input: UnsafePointer<moert_router_input>?, output: UnsafeMutablePointer<moert_router_output>?,
          hidden: Int, capacity: Int) throws(PluginFailure) {
        guard let input, Int(input.pointee.struct_size) >= fieldEnd(\moert_router_input.x) else {
            throw .invalid("\(kind): router input missing or too small")
        }
        guard let output, Int(output.pointee.struct_size) >= fieldEnd(\moert_router_output.counts) else {
            throw .invalid("\(kind): router output missing or too small")
        }
        let i = input.pointee, o = output.pointee
        guard i.n_tokens >= 0 else { throw .invalid("\(kind): n_tokens = \(i.n_tokens)") }
        guard i.n_tokens > 0 else { return nil }
        guard Int(i.hidden_size) == hidden else {
            throw .invalid("\(kind): input hidden_size \(i.hidden_size), the layer has \(hidden)")
        }
        guard Int(o.max_per_token) >= capacity else {
            throw .invalid("\(kind): output rows hold \(o.max_per_token) experts, \(capacity) declared")
        }
        guard let x = i.x, let ids = o.expert_ids, let weights = o.weights, let counts = o.counts else {
            throw .invalid("\(kind): a router input or output buffer is NULL")
        }
        count = Int(i.n_tokens)
        self.x = x
        self.ids = ids
        self.weights = weights
        self.counts = counts
        rowCapacity = Int(o.max_per_token)
        logits = Int(output.pointee.struct_size) >= fieldEnd(\moert_router_output.logits) ? o.logits : nil
    }
}
