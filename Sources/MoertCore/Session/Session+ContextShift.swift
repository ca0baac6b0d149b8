// Session+ContextShift: dropping old positions from a full cache so that a conversation can go on (as llama.cpp's
// context shift): the first tokens are kept, the oldest of the rest dropped, and the later keys rotated back.

import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

extension Session {
    /// Why this session's model cannot shift its context, or nil when it can. Shifting keeps each later key with
    /// its position moved back by a rotation, which is what the model would compute only when positions enter
    /// attention through RoPE alone. A layer with a sliding window is refused: its ring buffer holds only the last
    /// window positions, so a shift would have to renumber them, and the kept first tokens, which it overwrote once
    /// they left the window, could enter the window of the shifted positions again.
    public var contextShiftUnsupportedReason: String? { Self.contextShiftUnsupportedReason(model) }

    /// Why sessions of `model` cannot shift their context, or nil when they can (see the instance property).
    public static func contextShiftUnsupportedReason(_ model: Model) -> String? {
        if let mla = model.config.mla {
            return "the model's multi-head latent attention caches compressed keys (kv_lora_rank \(mla.kvLoraRank)), which moert does not shift"
        }
        if let w = model.config.slidingWindow {
            let layers = model.config.layerWindows.lazy.filter { $0 != nil }.count
            return "\(layers) of the model's layers attend within a sliding window of \(w) tokens (config.json sliding_window) and keep only that many positions, which a context shift would not keep"
        }
        return nil
    }

    /// Drops positions keep ..< keep + discard from the cache: the later ones move back by `discard`, their keys
    /// rotated by -discard positions (RoPE composes by adding angles), their values copied; the first `keep` stay.
    /// The logits of the last position stay as they were. The later tokens' cached keys and values were computed
    /// while the dropped tokens were visible, so the continuation differs from evaluating the kept tokens afresh
    /// (as with llama.cpp's context shift).
    /// - Throws: `.invalidArgument` (a range outside the positions evaluated), `.unsupported`
    ///   (`contextShiftUnsupportedReason`).
    public func shiftContext(keep: Int, discard: Int) throws {
        if let reason = contextShiftUnsupportedReason { throw MoertError.unsupported("cannot shift the context: \(reason)") }
        guard keep >= 0, discard >= 0, keep <= position, discard <= position - keep else {
            throw MoertError.invalid("cannot drop \(discard) positions after the first \(keep): the session holds \(position)")
        }
        guard discard > 0 else { return }
        let c = model.config, kvw = c.numKeyValueHeads * c.headDim, rowBytes = cache.rowBytes
        let moved = position - keep - discard, scratch = ws.k.pointer, perBatch = ws.k.count / kvw
        for l in 0..<c.numHiddenLayers {
            let values = cache.values(layer: l)
            // Rows move to lower positions in increasing order, so no row is overwritten before it is read.
            var done = 0
            while done < moved {
                let n = min(perBatch, moved - done), from = keep + discard + done, to = keep + done
                cache.load(layer: l, from: from, count: n, keys: scratch)
                for r in 0..<n { model.rope.shift(scratch + r * kvw, heads: c.numKeyValueHeads, stride: c.headDim, by: -discard) }
                cache.store(layer: l, position: to, keys: scratch, count: n)
                memmove(values + to * rowBytes, values + from * rowBytes, n * rowBytes)
                done += n
            }
        }
        shiftHistory(keep: keep, discard: discard)
    }

    /// Makes room for `needed` more positions when the context-shift option is on: drops at least half of the
    /// positions after the kept ones (as llama.cpp), or as many as `needed` asks. Does nothing when they fit.
    func makeRoom(for needed: Int) throws {
        guard contextShift, needed > contextLength - position else { return }
        let keep = min(keepTokens, position)
        let discard = min(position - keep, max(needed - (contextLength - position), (position - keep) / 2))
        try shiftContext(keep: keep, discard: discard)
    }
}
