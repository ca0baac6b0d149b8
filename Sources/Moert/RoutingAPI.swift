// RoutingAPI: per-session router overrides, routing traces, expert counters and kind names of a model.

import CMoert
import MoertCore
import MoertMoE
import MoertTensor

/// Replaces the session's routers. The C entry point is `moert_session_set_router`.
@c @implementation public func moert_session_set_router(_ session: OpaquePointer!, _ kind: UnsafePointer<CChar>!,
                                                        _ paramsJSON: UnsafePointer<CChar>!) -> moert_status {
    withStatus {
        let s = object(try require(session, "session"), as: SessionHandle.self).session
        try s.setRouter(kind: kind.map { String(cString: $0) }, paramsJSON: paramsJSON.map { String(cString: $0) })
    }
}

/// Overrides top-k. The C entry point is `moert_session_set_top_k`.
@c @implementation public func moert_session_set_top_k(_ session: OpaquePointer!, _ topK: Int32) -> moert_status {
    withStatus { try object(try require(session, "session"), as: SessionHandle.self).session.setTopK(Int(topK)) }
}

/// Turns tracing on or off. The C entry point is `moert_session_set_trace`.
@c @implementation public func moert_session_set_trace(_ session: OpaquePointer!, _ enabled: Int32) -> moert_status {
    withStatus { object(try require(session, "session"), as: SessionHandle.self).session.isTracing = enabled != 0 }
}

/// Borrows the trace. The C entry point is `moert_session_get_trace`.
@c @implementation public func moert_session_get_trace(_ session: OpaquePointer!, _ trace: UnsafeMutablePointer<moert_trace>!) -> moert_status {
    withStatus {
        let handle = object(try require(session, "session"), as: SessionHandle.self)
        let out = try require(trace, "trace")
        let t = TraceView(handle.session.trace)
        handle.traceView = t
        let value = moert_trace(struct_size: UInt32(MemoryLayout<moert_trace>.size), n_records: Int64(t.count),
                                positions: UnsafePointer(t.positions.baseAddress), layers: UnsafePointer(t.layers.baseAddress),
                                tokens: UnsafePointer(t.tokens.baseAddress), offsets: UnsafePointer(t.offsets.baseAddress),
                                expert_ids: UnsafePointer(t.expertIds.baseAddress), weights: UnsafePointer(t.weights.baseAddress))
        try writeSized(value, to: out, name: "moert_trace")
    }
}

/// Empties the trace. The C entry point is `moert_session_clear_trace`.
@c @implementation public func moert_session_clear_trace(_ session: OpaquePointer!) -> moert_status {
    withStatus {
        let handle = object(try require(session, "session"), as: SessionHandle.self)
        handle.session.clearTrace()
        handle.traceView = nil
    }
}

/// Copies the expert counters. The C entry point is `moert_session_get_expert_counts`.
@c @implementation public func moert_session_get_expert_counts(_ session: OpaquePointer!, _ counts: UnsafeMutablePointer<Int64>!,
                                                               _ capacity: Int, _ outLayers: UnsafeMutablePointer<Int32>!,
                                                               _ outExperts: UnsafeMutablePointer<Int32>!) -> moert_status {
    withStatus {
        let s = object(try require(session, "session"), as: SessionHandle.self).session
        let (values, layers, experts) = s.expertCounts
        outLayers?.pointee = Int32(layers)
        outExperts?.pointee = Int32(experts)
        guard let counts else { return }
        guard capacity >= values.count else {
            throw MoertError(.bufferTooSmall, "counts holds \(UInt(bitPattern: capacity)) elements, \(values.count) needed")
        }
        for (i, v) in values.enumerated() { counts[i] = v }
    }
}

/// Zeroes the counters. The C entry point is `moert_session_reset_counters`.
@c @implementation public func moert_session_reset_counters(_ session: OpaquePointer!) -> moert_status {
    withStatus { object(try require(session, "session"), as: SessionHandle.self).session.resetCounters() }
}

/// Kind of an expert. The C entry point is `moert_model_expert_kind`.
@c @implementation public func moert_model_expert_kind(_ model: OpaquePointer!, _ moeLayer: Int32, _ expert: Int32) -> UnsafePointer<CChar>! {
    guard let model else { return nil }
    let blocks = object(model, as: ModelHandle.self).model.moeBlocks
    guard moeLayer >= 0, Int(moeLayer) < blocks.count, expert >= 0, Int(expert) < blocks[Int(moeLayer)].experts.count else { return nil }
    return kindNames.cString(blocks[Int(moeLayer)].experts[Int(expert)].kind)
}

/// Router kind of a layer. The C entry point is `moert_model_router_kind`.
@c @implementation public func moert_model_router_kind(_ model: OpaquePointer!, _ moeLayer: Int32) -> UnsafePointer<CChar>! {
    guard let model else { return nil }
    let blocks = object(model, as: ModelHandle.self).model.moeBlocks
    guard moeLayer >= 0, Int(moeLayer) < blocks.count else { return nil }
    return kindNames.cString(blocks[Int(moeLayer)].router.kind)
}
