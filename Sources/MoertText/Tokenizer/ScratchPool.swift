// ScratchPool: encode scratch kept between calls, one per concurrent caller, so a call allocates almost nothing.

import MoertTensor

/// Everything one encode call writes: PCRE2 match state, the pre-token lists, the merge scratch, the word cache.
/// A call takes one from the tokenizer's pool and gives it back, so the tokenizer stays immutable to its callers
/// and threads never share a scratch.
final class EncodeScratch {
    let regex = RegexScratch()
    var pieces = Pieces()
    var spare = Pieces()
    var word = BPEWord()
    var key: [UInt8] = []
    /// Kept across calls, as tokenizers keeps its BPE cache: a chat sends the same words again and again.
    var cache = WordCache()
}

/// A lock-protected stack of idle scratch objects. It holds at most `limit`, the most threads that are expected
/// to encode at once; a call that finds it empty makes a new one.
final class ScratchPool: @unchecked Sendable {
    private let lock = Lock()
    private var idle: [EncodeScratch] = []
    private let limit = 16

    /// Runs `body` with a scratch no other call is using.
    func with<R>(_ body: (EncodeScratch) throws -> R) rethrows -> R {
        let scratch = lock.withLock { idle.popLast() } ?? EncodeScratch()
        defer { lock.withLock { if idle.count < limit { idle.append(scratch) } } }
        return try body(scratch)
    }
}
