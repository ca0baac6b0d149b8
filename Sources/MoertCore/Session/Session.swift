// Session: one sequence over a shared model — KV cache, scratch buffers and the forward pass.

import CKernels
import MoertMoE
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// Options for a session.
public struct SessionOptions: Sendable {
    /// Tokens the KV cache holds; 0 = min(model context, 4096).
    public var contextLength: Int = 0
    /// Most tokens evaluated in one forward chunk; 0 = 512.
    public var maxBatch: Int = 0
    /// Element type of the KV cache.
    public var kvType: KVCacheType = .f32
    /// Generation shifts the context when it is full (`Session.shiftContext`) instead of stopping.
    public var contextShift = false
    /// Positions a context shift keeps at the start (a system prompt, the BOS token).
    public var keepTokens = 0
    /// The defaults.
    public init() {}
}

/// Which logits `Session.evaluate` produces.
public enum LogitsMode: Sendable {
    case none, last, all
}

/// One sequence being evaluated. Not thread-safe: use from one thread at a time.
public final class Session {
    /// The shared model.
    public let model: Model
    /// KV cache capacity in tokens.
    public let contextLength: Int
    /// Largest chunk evaluated at once.
    public let maxBatch: Int
    /// Generation shifts the context when it is full.
    public let contextShift: Bool
    /// Positions a context shift keeps at the start.
    public let keepTokens: Int
    /// Positions already evaluated.
    public private(set) var position = 0
    /// Element type of the KV cache.
    public var kvType: KVCacheType { cache.type }
    /// Bytes of the KV cache: every position of the context for a full-attention layer, the window for a
    /// sliding-window layer (a ring buffer), the latent rows of a multi-head latent attention layer.
    public var kvCacheBytes: Int { cache.bytes + (latentCache?.bytes ?? 0) }
    /// Logits of the last evaluated position, when the last evaluation produced them (a copy).
    public var lastLogits: [Float]? {
        hasLastLogits ? Array(UnsafeBufferPointer(start: lastLogitsBuffer.pointer, count: lastLogitsBuffer.count)) : nil
    }
    /// The last evaluated position's logits, valid when `hasLastLogits`; [vocab].
    let lastLogitsBuffer: FloatBuffer
    private(set) var hasLastLogits = false
    /// The token at position - 1 (-1 when empty), for routers that look at the previous token.
    private var previousToken: Int32 = -1
    /// The tokens evaluated so far, [contextLength]: a position can be evaluated again when its logits are wanted.
    let history: UnsafeMutableBufferPointer<Int32>

    let cache: KVCache
    /// The latent cache of multi-head latent attention (then `cache` holds no layers); nil otherwise.
    let latentCache: LatentCache?
    let ws: Workspace
    /// Routing overrides and records of this session.
    let routing: SessionRouting
    /// When true, each decode step adds the time its attention over the KV cache takes (every layer's, from the
    /// cached keys and values to the attention output) to `decodeAttentionSeconds`, so that a benchmark can tell the
    /// cache's part of a step from the rest (`moert bench --depth`). Off by default; on, two clock reads per layer.
    public var timesDecodeAttention = false
    /// Seconds decode steps spent in attention over the KV cache while `timesDecodeAttention` was on (the caller
    /// resets it).
    public var decodeAttentionSeconds: Double = 0

    /// Creates a session with an empty KV cache.
    /// - Throws: `MoertError` (`.invalidArgument` for bad options, `.outOfMemory`).
    public init(model: Model, options: SessionOptions = SessionOptions()) throws {
        guard options.contextLength >= 0 else { throw MoertError.invalid("n_ctx must be >= 0, got \(options.contextLength)") }
        guard options.maxBatch >= 0 else { throw MoertError.invalid("max_batch must be >= 0, got \(options.maxBatch)") }
        if options.contextLength > model.contextLength {
            throw MoertError.invalid("n_ctx \(options.contextLength) exceeds the model's context length \(model.contextLength)")
        }
        self.model = model
        contextLength = options.contextLength > 0 ? options.contextLength : min(model.contextLength, 4096)
        maxBatch = min(options.maxBatch > 0 ? options.maxBatch : 512, contextLength)
        guard options.keepTokens >= 0, options.keepTokens < contextLength else {
            throw MoertError.invalid("n_keep must be in [0, n_ctx \(contextLength)), got \(options.keepTokens)")
        }
        if options.contextShift, let reason = Self.contextShiftUnsupportedReason(model) {
            throw MoertError.unsupported("context shift: \(reason)")
        }
        contextShift = options.contextShift
        keepTokens = options.keepTokens
        let c = model.config
        if let reason = c.kvCacheUnsupportedReason(options.kvType) { throw MoertError.invalid(reason) }
        // A window binds only when it is shorter than the context; such a layer keeps a ring buffer of its window.
        // Multi-head latent attention keeps its own cache of latents instead.
        let context = contextLength
        let rings = c.mla == nil ? c.layerWindows.map { $0.flatMap { $0 < context ? $0 : nil } } : []
        cache = try KVCache(type: options.kvType, capacity: contextLength, rowWidth: c.numKeyValueHeads * c.headDim,
                            rings: rings)
        latentCache = try c.mla.map {
            try LatentCache(type: options.kvType, layers: c.numHiddenLayers, capacity: context, width: $0.cacheWidth)
        }
        // The most keys a query attends over: the context, or when every layer keeps a ring, the longest window and a
        // chunk, so that such a session's scratch does not grow with n_ctx either.
        let longestRing = rings.lazy.compactMap { $0 }.max()
        let batch = maxBatch
        let attended = longestRing.map { rings.contains(nil) ? context : min(context, $0 - 1 + batch) } ?? context
        ws = try Workspace(model: model, batch: maxBatch, context: attended, kvType: options.kvType,
                           longestRing: longestRing)
        routing = try SessionRouting(model: model, batch: maxBatch, workspace: ws.moe)
        lastLogitsBuffer = try FloatBuffer(count: c.vocabSize)
        history = .allocate(capacity: contextLength)
        history.initialize(repeating: -1)
        moert_gemm_prepare_threads()    // the GEMMs' per-thread buffers, so that no evaluation allocates them
    }

    deinit { history.deallocate() }

    /// Forgets all evaluated tokens.
    public func reset() {
        position = 0
        hasLastLogits = false
        previousToken = -1
    }

    /// Evaluates `tokens` after the positions already in the cache and writes logits into `logits`
    /// (`vocab` floats for `.last`, `tokens.count × vocab` for `.all`).
    /// - Throws: `MoertError`: `.invalidArgument` (empty input), `.outOfRange` (bad token id; nothing evaluated),
    ///   `.contextFull` (nothing evaluated), `.bufferTooSmall`, `.io` (a mapped checkpoint file shrank; nothing
    ///   evaluated), or a routing failure.
    public func evaluate(_ tokens: UnsafeBufferPointer<Int32>, mode: LogitsMode, logits: UnsafeMutablePointer<Float>?,
                         capacity: Int) throws {
        let vocab = model.config.vocabSize, n = tokens.count
        guard n > 0 else { throw MoertError.invalid("no tokens to evaluate") }
        for (i, t) in tokens.enumerated() where t < 0 || Int(t) >= vocab {
            throw MoertError(.outOfRange, "token \(i) has id \(t), outside [0, \(vocab))")
        }
        guard n <= contextLength - position else {
            throw MoertError(.contextFull, "\(n) tokens do not fit: \(position) of \(contextLength) context positions are used")
        }
        try model.checkpoint.checkUnchanged()
        let needed = mode == .all ? n * vocab : (mode == .last ? vocab : 0)
        if needed > 0 {
            guard let logits else { throw MoertError.invalid("logits buffer is NULL") }
            guard capacity >= needed else {
                throw MoertError(.bufferTooSmall, "logits buffer holds \(capacity) floats, \(needed) needed")
            }
        }
        var done = 0
        while done < n {
            let chunk = min(maxBatch, n - done)
            let isLast = done + chunk == n
            let out: UnsafeMutablePointer<Float>?
            let chunkMode: LogitsMode
            switch mode {
            case .all: out = logits! + done * vocab; chunkMode = .all
            case .last: out = isLast ? logits : nil; chunkMode = isLast ? .last : .none
            case .none: out = nil; chunkMode = .none
            }
            hasLastLogits = false
            try forward(tokens.baseAddress! + done, count: chunk, mode: chunkMode, logits: out)
            done += chunk
        }
        if let logits, mode != .none {
            let row = logits + (mode == .all ? (n - 1) * vocab : 0)
            lastLogitsBuffer.pointer.update(from: row, count: vocab)
            hasLastLogits = true
        }
    }

    /// Copies the last evaluated position's logits into `out` (`capacity` floats), computing them first when the
    /// last evaluation asked for none (see `recomputeLastLogits`).
    /// - Throws: `MoertError`: `.invalidArgument` (empty session, NULL buffer), `.bufferTooSmall`, or the errors of
    ///   `evaluate`.
    public func copyLastLogits(into out: UnsafeMutablePointer<Float>?, capacity: Int) throws {
        let vocab = model.config.vocabSize
        guard let out else { throw MoertError.invalid("logits buffer is NULL") }
        guard capacity >= vocab else { throw MoertError(.bufferTooSmall, "logits buffer holds \(UInt(bitPattern: capacity)) floats, \(vocab) needed") }
        try recomputeLastLogits()
        out.update(from: lastLogitsBuffer.pointer, count: vocab)
    }

    /// Makes `lastLogits` available when the last evaluation asked for none (`.none`): the last position is evaluated
    /// again, which rewrites its keys and values from the same inputs.
    /// - Throws: `.invalidArgument` for an empty session, or the errors of `evaluate`.
    func recomputeLastLogits() throws {
        guard position > 0 else { throw MoertError.invalid("the session holds no tokens") }
        guard !hasLastLogits else { return }
        var last = history[position - 1]
        position -= 1
        previousToken = position > 0 ? history[position - 1] : -1
        let logits = try FloatBuffer(count: model.config.vocabSize)
        try withUnsafePointer(to: &last) {
            try evaluate(UnsafeBufferPointer(start: $0, count: 1), mode: .last, logits: logits.pointer, capacity: logits.count)
        }
    }

    /// Drops history entries keep ..< keep + discard, as `shiftContext` does with the cache.
    func shiftHistory(keep: Int, discard: Int) {
        let h = history.baseAddress!
        (h + keep).update(from: h + keep + discard, count: position - keep - discard)
        position -= discard
    }

    // MARK: - Forward pass

    /// One chunk of at most maxBatch tokens at positions position ..< position + n.
    private func forward(_ tokens: UnsafePointer<Int32>, count n: Int, mode: LogitsMode,
                         logits: UnsafeMutablePointer<Float>?) throws {
        let c = model.config, h = c.hiddenSize
        let x = ws.x.pointer, xn = ws.xn.pointer, tmp = ws.tmp.pointer
        routing.beginChunk(tokens: tokens, count: n, position: position, previousToken: previousToken)
        var moeIndex = 0

        // token embedding: [n] -> [n, H]
        for t in 0..<n {
            model.embedding.row(Int(tokens[t]), into: x + t * h)
        }
        for (l, layer) in model.layers.enumerated() {
            // attention block with pre-norm and residual
            rmsNorm(x, weight: layer.inputNorm.data, rows: n, dim: h, eps: c.rmsNormEps, into: xn)
            switch layer.attention {
            case .grouped(let a): attention(a, layer: l, xn, count: n, into: tmp)
            case .latent(let a): latentAttention(a, layer: l, xn, count: n, into: tmp)
            }
            addInPlace(x, tmp, count: n * h)
            // MLP block with pre-norm and residual
            rmsNorm(x, weight: layer.postAttentionNorm.data, rows: n, dim: h, eps: c.rmsNormEps, into: xn)
            switch layer.mlp {
            case .moe(let block):
                try routing.run(block, moeIndex: moeIndex, layer: l, input: xn, count: n, into: tmp, workspace: ws.moe)
                moeIndex += 1
            case .dense(let mlp) where n == 1:
                mlp.forward(xn, into: tmp, scratch: ws.moe.expertScratch.pointer, batch: ws.moe.batch)
            case .dense(let mlp):
                mlp.forward(xn, rows: n, into: tmp, scratch: ws.moe.expertScratch.pointer)
            }
            addInPlace(x, tmp, count: n * h)
        }
        (history.baseAddress! + position).update(from: tokens, count: n)
        position += n
        previousToken = tokens[n - 1]

        // final norm and LM head: [rows, H] -> [rows, V]
        switch mode {
        case .none: return
        case .last:
            rmsNorm(x + (n - 1) * h, weight: model.finalNorm.data, rows: 1, dim: h, eps: c.rmsNormEps, into: xn)
            model.lmHead.apply(xn, rows: 1, into: logits!, scratch: ws.productScratch)
        case .all:
            rmsNorm(x, weight: model.finalNorm.data, rows: n, dim: h, eps: c.rmsNormEps, into: xn)
            model.lmHead.apply(xn, rows: n, into: logits!, scratch: ws.productScratch)
        }
        try checkFinite(logits!, count: (mode == .all ? n : 1) * c.vocabSize, firstPosition: mode == .all ? position - n : position - 1)
    }

    /// Refuses logits that hold NaN or infinity (from non-finite weights, or values beyond float32's range) rather
    /// than handing them to the host as if they were a result; a scan of each row costs little next to the LM head.
    /// - Throws: `MoertError` (`.numeric`) naming the position and token id.
    private func checkFinite(_ logits: UnsafePointer<Float>, count: Int, firstPosition: Int) throws {
        // A float is infinite or NaN when its exponent bits are all ones: then adding one to the exponent field
        // carries into the sign bit. One branch-free pass (which the compiler vectorises), the search only on failure.
        let bits = UnsafeRawPointer(logits).assumingMemoryBound(to: UInt32.self)
        var carries: UInt32 = 0
        for i in 0..<count { carries |= (bits[i] & 0x7f80_0000) &+ 0x0080_0000 }
        guard carries & 0x8000_0000 != 0 else { return }
        let vocab = model.config.vocabSize
        for i in 0..<count where !logits[i].isFinite {
            throw MoertError(.numeric, "the logits of position \(firstPosition + i / vocab) are not finite (\(logits[i]) for token \(i % vocab)): the model's weights or its activations hold NaN or infinity")
        }
    }

    /// Grouped-query causal self-attention of `n` new tokens against the cache (`eager_attention_forward`).
    /// Writes [n, H] into `out`.
    private func attention(_ a: AttentionWeights, layer l: Int, _ xn: UnsafePointer<Float>, count n: Int,
                           into out: UnsafeMutablePointer<Float>) {
        let c = model.config, hd = c.headDim, nh = c.numAttentionHeads, nkv = c.numKeyValueHeads
        let qw = nh * hd, kvw = nkv * hd
        let q = ws.q.pointer, k = ws.k.pointer, v = ws.v.pointer, ctx = ws.ctx.pointer
        if n == 1 {
            // Decode: the three products as one job on the worker pool.
            let batch = ws.moe.batch
            batch.add(a.q, xn, into: q)
            batch.add(a.k, xn, into: k)
            batch.add(a.v, xn, into: v)
            batch.run()
        } else {
            a.q.apply(xn, rows: n, into: q, scratch: ws.productScratch)   // [n, H] -> [n, nh·hd]
            a.k.apply(xn, rows: n, into: k, scratch: ws.productScratch)   // [n, H] -> [n, nkv·hd]
            a.v.apply(xn, rows: n, into: v, scratch: ws.productScratch)   // [n, H] -> [n, nkv·hd]
        }
        switch c.qkNorm {
        case .none: break
        case .perHead:
            rmsNorm(q, weight: a.qNorm!.data, rows: n * nh, dim: hd, eps: c.rmsNormEps, into: q)
            rmsNorm(k, weight: a.kNorm!.data, rows: n * nkv, dim: hd, eps: c.rmsNormEps, into: k)
        case .wholeProjection:
            rmsNorm(q, weight: a.qNorm!.data, rows: n, dim: qw, eps: c.rmsNormEps, into: q)
            rmsNorm(k, weight: a.kNorm!.data, rows: n, dim: kvw, eps: c.rmsNormEps, into: k)
        }
        if let limit = c.clipQkv {
            clamp(q, count: n * qw, limit: limit)
            clamp(k, count: n * kvw, limit: limit)
            clamp(v, count: n * kvw, limit: limit)
        }
        for t in 0..<n {
            model.rope.apply(q + t * qw, heads: nh, stride: hd, position: position + t)
            model.rope.apply(k + t * kvw, heads: nkv, stride: hd, position: position + t)
        }
        let scale = 1 / Float(hd).squareRoot(), sinks = a.sinks?.data
        if let window = cache.rings[l] {
            slidingAttention(q, k, v, layer: l, count: n, window: window, scale: scale, sinks: sinks, into: ctx)
            a.o.apply(ctx, rows: n, into: out, scratch: ws.productScratch)  // [n, nh·hd] -> [n, H]
            return
        }
        cache.store(layer: l, position: position, keys: k, values: v, count: n)

        let total = position + n
        if n == 1 {
            // Decode: one query row per head against the cache as stored.
            timingDecodeAttention {
                moert_attention_decode(q, cache.keys(layer: l), cache.values(layer: l), cache.type.code, Int32(nh),
                                       Int32(nkv), Int32(hd), 0, Int64(total), Int64(total), sinks, scale,
                                       ws.decodeScratch.pointer, ctx)
            }
            a.o.apply(ctx, rows: 1, into: out, scratch: ws.productScratch)
            return
        }
        // Prefill: float32 keys and values, read back from the cache so that a chunk sees what decode will see.
        let keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>
        if let widened = ws.widenedKV, cache.type != .f32 {
            keys = widened.keys.pointer
            values = widened.values.pointer
            cache.load(layer: l, from: 0, count: total, keys: keys, values: values)
        } else {
            keys = cache.keys(layer: l).assumingMemoryBound(to: Float.self)
            values = cache.values(layer: l).assumingMemoryBound(to: Float.self)
        }
        attentionPrefill(q: q, keys: keys, values: values, rows: n, position: position, sinks: sinks, heads: nh,
                         kvHeads: nkv, headDim: hd, scale: scale, scores: ws.scores.pointer,
                         scoresCount: ws.scores.count, into: ctx)
        a.o.apply(ctx, rows: n, into: out, scratch: ws.productScratch)  // [n, nh·hd] -> [n, H]
    }

    /// Runs `body`, a decode step's attention over the KV cache, adding its time to `decodeAttentionSeconds` when
    /// `timesDecodeAttention` is on.
    @inline(__always)
    func timingDecodeAttention(_ body: () -> Void) {
        guard timesDecodeAttention else { return body() }
        let t0 = monotonicSeconds()
        body()
        decodeAttentionSeconds += monotonicSeconds() - t0
    }

    /// Attention of `n` new tokens (keys `k` and values `v` after RoPE, [n, nkv·hd]) in a layer that attends within
    /// `window` positions and keeps them in a ring buffer: position p sees p - window + 1 ... p
    /// (`sliding_window_overlay` in transformers' masking_utils.py). Writes [n, nh·hd] into `ctx`.
    private func slidingAttention(_ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                                  layer l: Int, count n: Int, window: Int, scale: Float, sinks: UnsafePointer<Float>?,
                                  into ctx: UnsafeMutablePointer<Float>) {
        let c = model.config, hd = c.headDim, nh = c.numAttentionHeads, nkv = c.numKeyValueHeads, kvw = nkv * hd
        if n == 1 {
            // Decode: the new row replaces the one of position - window, which no later query sees; the window is
            // the last min(window, position + 1) rows of the ring, from the row of its oldest position.
            cache.store(layer: l, position: position, keys: k, values: v, count: 1)
            let visible = min(window, position + 1), first = (position + 1 - visible) % window
            timingDecodeAttention {
                moert_attention_decode(q, cache.keys(layer: l), cache.values(layer: l), cache.type.code, Int32(nh),
                                       Int32(nkv), Int32(hd), Int64(first), Int64(visible), Int64(window), sinks,
                                       scale, ws.decodeScratch.pointer, ctx)
            }
            return
        }
        // Prefill: float32 rows of positions lo ..< position + n in order, the earlier ones read from the ring before
        // the new ones overwrite them; the new ones pass through the ring in runs of at most `window` (each read back
        // before the next overwrites it), so that a chunk sees the rounding decode will see.
        let widened = ws.widenedKV!
        let keys = widened.keys.pointer, values = widened.values.pointer
        let lo = max(0, position - window + 1), earlier = position - lo
        cache.load(layer: l, from: lo, count: earlier, keys: keys, values: values)
        var done = 0
        while done < n {
            let m = min(window, n - done), row = (earlier + done) * kvw
            cache.store(layer: l, position: position + done, keys: k + done * kvw, values: v + done * kvw, count: m)
            cache.load(layer: l, from: position + done, count: m, keys: keys + row, values: values + row)
            done += m
        }
        attentionPrefill(q: q, keys: keys, values: values, rows: n, position: earlier, window: window, sinks: sinks,
                         heads: nh, kvHeads: nkv, headDim: hd, scale: scale, scores: ws.scores.pointer,
                         scoresCount: ws.scores.count, into: ctx)
    }
}
