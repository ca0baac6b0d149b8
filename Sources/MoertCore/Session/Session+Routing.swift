// Session+Routing: a session's router overrides (chosen by RouterFactory), routing traces and expert counters.

import MoertFormats
import MoertMoE
import MoertTensor

extension Session {
    /// Replaces every MoE layer's router with one of `spec` for this session; nil restores the model's.
    /// - Throws: the errors of `RouterFactory.makeRouter` (as a caller's request); the session keeps its routers
    ///   then.
    public func setRouter(_ spec: KindSpec?) throws {
        try routing.setOverrides(try spec.map { try model.makeRouters($0) }, workspace: ws.moe)
    }

    /// Replaces every MoE layer's router with one of the registered kind `kind`, its parameters given as a JSON
    /// object (nil: none; `what` names them in messages); kind nil restores the model's routers.
    /// - Throws: `MoertError` (`.invalidArgument`) for an unregistered kind or malformed parameters, or the errors of
    ///   the kind's creation.
    public func setRouter(kind: String?, paramsJSON: String?, what: String = "params_json") throws {
        guard let kind else { return try setRouter(nil) }
        try setRouter(try RouterFactory.request(kind: kind, paramsJSON: paramsJSON, what: what))
    }

    /// Uses the architecture's own router with `k` experts per token in every MoE layer (each keeping the rest of
    /// its routing: renormalisation, scaling, expert groups); 0 restores the model's routers.
    /// - Throws: `MoertError` (`.invalidArgument`) unless 0 <= k <= the smallest layer's expert count and k fits in
    ///   the experts of the groups a group-limited layer keeps.
    public func setTopK(_ k: Int) throws {
        guard k >= 0 else { throw MoertError.invalid("top_k must be >= 0 (0 restores the model's routers), got \(k)") }
        try setRouter(k == 0 ? nil : try RouterFactory.topK(k, layers: model.moeBlocks.map(\.layer)))
    }

    /// The router each MoE layer uses in this session.
    public var routers: [Router] { routing.routers }

    /// Turns trace recording on or off.
    public var isTracing: Bool {
        get { routing.tracing }
        set { routing.tracing = newValue }
    }

    /// The routing trace recorded so far.
    public var trace: TraceRecords { routing.trace }

    /// Empties the trace.
    public func clearTrace() { routing.clearTrace() }

    /// Tokens routed to each expert per MoE layer, [moeLayers][maxExperts], since creation or the last reset.
    public var expertCounts: (counts: [Int64], layers: Int, experts: Int) {
        (routing.counts, model.moeBlocks.count, routing.maxExperts)
    }

    /// Zeroes the expert counters.
    public func resetCounters() { routing.resetCounters() }
}
