// SessionAPI: sessions, evaluation and generation.

import CMoert
import MoertCore
import MoertTensor
import MoertText

/// The library's default session options.
nonisolated(unsafe) let defaultSessionOptions = moert_session_options(struct_size: UInt32(MemoryLayout<moert_session_options>.size), flags: 0,
                                                  n_ctx: 0, max_batch: 0, kv_type: MOERT_KV_TYPE_F32, n_keep: 0)

/// Default session options. The C entry point is `moert_session_options_init_sized`.
@c @implementation public func moert_session_options_init_sized(_ options: UnsafeMutablePointer<moert_session_options>!, _ size: Int) {
    writeDefaults(defaultSessionOptions, to: options, size: size)
}

/// Creates a session. The C entry point is `moert_session_create`.
@c @implementation public func moert_session_create(_ model: OpaquePointer!, _ options: UnsafePointer<moert_session_options>!,
                                                    _ outSession: UnsafeMutablePointer<OpaquePointer?>!) -> moert_status {
    outSession?.pointee = nil
    return withStatus {
        let out = try require(outSession, "out_session")
        let handle = object(try require(model, "model"), as: ModelHandle.self)
        let o = try readSized(options, defaults: defaultSessionOptions, name: "moert_session_options")
        guard o.flags & ~MOERT_SESSION_CONTEXT_SHIFT == 0 else {
            throw MoertError(.invalidArgument, "moert_session_options.flags has unknown bits 0x\(String(o.flags & ~MOERT_SESSION_CONTEXT_SHIFT, radix: 16))")
        }
        guard o.n_ctx >= 0, o.n_ctx <= Int64(Int32.max) else { throw MoertError(.invalidArgument, "n_ctx must be in [0, 2^31), got \(o.n_ctx)") }
        guard let kvType = KVCacheType(code: o.kv_type) else {
            throw MoertError(.invalidArgument, "kv_type \(o.kv_type) is not a MOERT_KV_TYPE_* value")
        }
        var so = SessionOptions()
        so.contextLength = Int(o.n_ctx)
        so.maxBatch = Int(o.max_batch)
        so.kvType = kvType
        so.contextShift = o.flags & MOERT_SESSION_CONTEXT_SHIFT != 0
        so.keepTokens = Int(o.n_keep)
        out.pointee = retainedHandle(SessionHandle(handle, try Session(model: handle.model, options: so)))
    }
}

/// Bytes of the KV cache. The C entry point is `moert_session_kv_bytes`.
@c @implementation public func moert_session_kv_bytes(_ session: OpaquePointer!) -> Int64 {
    guard let session else { return 0 }
    return Int64(object(session, as: SessionHandle.self).session.kvCacheBytes)
}

/// Drops positions from the KV cache. The C entry point is `moert_session_shift`.
@c @implementation public func moert_session_shift(_ session: OpaquePointer!, _ nKeep: Int64, _ nDiscard: Int64) -> moert_status {
    withStatus {
        let s = object(try require(session, "session"), as: SessionHandle.self).session
        guard nKeep >= 0, nDiscard >= 0, nKeep <= Int64(s.position), nDiscard <= Int64(s.position) - nKeep else {
            throw MoertError.invalid("cannot drop \(nDiscard) positions after the first \(nKeep): the session holds \(s.position)")
        }
        try s.shiftContext(keep: Int(nKeep), discard: Int(nDiscard))
    }
}

/// Frees a session. The C entry point is `moert_session_free`.
@c @implementation public func moert_session_free(_ session: OpaquePointer!) {
    guard let session else { return }
    releaseHandle(session, as: SessionHandle.self)
}

/// Empties the KV cache. The C entry point is `moert_session_reset`.
@c @implementation public func moert_session_reset(_ session: OpaquePointer!) -> moert_status {
    withStatus { object(try require(session, "session"), as: SessionHandle.self).session.reset() }
}

/// Tokens in the KV cache. The C entry point is `moert_session_n_past`.
@c @implementation public func moert_session_n_past(_ session: OpaquePointer!) -> Int64 {
    guard let session else { return 0 }
    return Int64(object(session, as: SessionHandle.self).session.position)
}

/// KV cache capacity. The C entry point is `moert_session_n_ctx`.
@c @implementation public func moert_session_n_ctx(_ session: OpaquePointer!) -> Int64 {
    guard let session else { return 0 }
    return Int64(object(session, as: SessionHandle.self).session.contextLength)
}

/// Evaluates tokens. The C entry point is `moert_session_eval`.
@c @implementation public func moert_session_eval(_ session: OpaquePointer!, _ tokens: UnsafePointer<Int32>!, _ nTokens: Int,
                                                  _ logitsMode: Int32, _ logits: UnsafeMutablePointer<Float>!,
                                                  _ logitsCapacity: Int) -> moert_status {
    withStatus {
        let s = object(try require(session, "session"), as: SessionHandle.self).session
        let tokens = try require(tokens, "tokens")
        // size_t arrives as Int: a count above Int.max (e.g. (size_t)-1) shows up negative.
        guard nTokens >= 0 else { throw MoertError(.invalidArgument, "n_tokens \(UInt(bitPattern: nTokens)) is not a token count") }
        let mode: LogitsMode
        switch logitsMode {
        case MOERT_LOGITS_NONE: mode = .none
        case MOERT_LOGITS_LAST: mode = .last
        case MOERT_LOGITS_ALL: mode = .all
        default: throw MoertError(.invalidArgument, "logits_mode must be MOERT_LOGITS_NONE, _LAST or _ALL, got \(logitsMode)")
        }
        try s.evaluate(UnsafeBufferPointer(start: tokens, count: nTokens), mode: mode, logits: logits, capacity: logitsCapacity)
    }
}

/// The last position's logits. The C entry point is `moert_session_last_logits`.
@c @implementation public func moert_session_last_logits(_ session: OpaquePointer!, _ logits: UnsafeMutablePointer<Float>!,
                                                         _ logitsCapacity: Int) -> moert_status {
    withStatus {
        try object(try require(session, "session"), as: SessionHandle.self).session.copyLastLogits(into: logits, capacity: logitsCapacity)
    }
}

/// The library's default generation options.
nonisolated(unsafe) let defaultGenerateOptions = moert_generate_options(struct_size: UInt32(MemoryLayout<moert_generate_options>.size),
                                                    max_new_tokens: 16, ignore_eos: 0, sampler: nil, tokenizer: nil,
                                                    stop_strings: nil, n_stop_strings: 0, scmoe_weak_rank: -1,
                                                    scmoe_beta: 0.5, scmoe_alpha: 0.1)

/// Default generation options. The C entry point is `moert_generate_options_init_sized`.
@c @implementation public func moert_generate_options_init_sized(_ options: UnsafeMutablePointer<moert_generate_options>!, _ size: Int) {
    writeDefaults(defaultGenerateOptions, to: options, size: size)
}

/// Evaluates a prompt and generates tokens. The C entry point is `moert_session_generate`.
@c @implementation public func moert_session_generate(_ session: OpaquePointer!, _ prompt: UnsafePointer<Int32>!, _ nPrompt: Int,
                                                      _ options: UnsafePointer<moert_generate_options>!,
                                                      _ callback: moert_token_callback!, _ userData: UnsafeMutableRawPointer!,
                                                      _ outTokens: UnsafeMutablePointer<Int32>!, _ outCapacity: Int,
                                                      _ outNGenerated: UnsafeMutablePointer<Int>!) -> moert_status {
    outNGenerated?.pointee = 0
    return withStatus {
        let s = object(try require(session, "session"), as: SessionHandle.self).session
        let o = try readSized(options, defaults: defaultGenerateOptions, name: "moert_generate_options")
        var sampler = try Sampler(options: try samplerOptions(o.sampler))
        guard nPrompt == 0 || prompt != nil else { throw MoertError(.invalidArgument, "prompt is NULL") }
        guard nPrompt >= 0 else { throw MoertError(.invalidArgument, "n_prompt \(UInt(bitPattern: nPrompt)) is not a token count") }
        let promptTokens = nPrompt == 0 ? [] : Array(UnsafeBufferPointer(start: prompt, count: nPrompt))
        let stop = try generationStop(o)
        guard o.scmoe_weak_rank >= -1 else { throw MoertError(.invalidArgument, "scmoe_weak_rank must be -1 (off) or a rank >= 0, got \(o.scmoe_weak_rank)") }
        let contrast = o.scmoe_weak_rank < 0 ? nil
            : SelfContrast(weakRank: Int(o.scmoe_weak_rank), beta: o.scmoe_beta, alpha: o.scmoe_alpha)
        var count = 0
        try s.generate(prompt: promptTokens, maxNewTokens: Int(o.max_new_tokens), ignoreEOS: o.ignore_eos != 0,
                       sampler: &sampler, stop: stop, contrast: contrast) { token in
            if let outTokens, count < outCapacity { outTokens[count] = token }
            count += 1
            outNGenerated?.pointee = count
            return callback.map { $0(token, userData) == 0 } ?? true
        }
    }
}

/// The tokenizer's stop ids and the stop strings of generation options.
/// - Throws: `MoertError` (`.invalidArgument`) for stop strings without a tokenizer, a bad count or invalid UTF-8.
func generationStop(_ o: moert_generate_options) throws -> GenerationStop {
    var stop = GenerationStop()
    guard o.n_stop_strings >= 0 else { throw MoertError(.invalidArgument, "n_stop_strings must be >= 0, got \(o.n_stop_strings)") }
    guard let tokenizer = o.tokenizer else {
        guard o.n_stop_strings == 0 else { throw MoertError(.invalidArgument, "stop_strings need a tokenizer in moert_generate_options") }
        return stop
    }
    let text = object(tokenizer, as: TokenizerHandle.self).text
    stop.tokenIds = text.stopTokenIds
    if o.n_stop_strings > 0 {
        let list = try require(o.stop_strings, "stop_strings")
        let strings = try (0..<Int(o.n_stop_strings)).map { i in
            try cText(try require(list[i], "stop_strings[\(i)]"), "stop_strings[\(i)]")
        }
        stop.strings = StopStrings(tokenizer: text.tokenizer, strings: strings)
    }
    return stop
}
