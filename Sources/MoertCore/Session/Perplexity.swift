// Perplexity: how well a model predicts a token sequence, measured in windows as `moert perplexity` reports it.

import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// The outcome of `Perplexity.measure`.
public struct PerplexityResult: Sendable {
    /// Tokens evaluated (with a stride, the overlapping parts of windows count each time).
    public var tokens = 0
    /// Tokens scored (every token after the first of its window).
    public var scored = 0
    /// Windows evaluated.
    public var windows = 0
    /// Sum over the scored tokens of -log p(token | the window's tokens before it), natural log.
    public var negativeLogLikelihood = 0.0
    /// Scored tokens that were the model's most likely next token (argmax of the logits, lowest id on ties).
    public var correct = 0
    /// Scored tokens that SCMoE's greedy choice got right, when measured with a `SelfContrast`.
    public var contrastCorrect = 0
    /// Routed experts chosen per token and MoE layer, on average (the router's top-k, or fewer and more with dynamic
    /// routers; zero-computation experts count).
    public var expertsPerToken = 0.0

    /// exp(negativeLogLikelihood / scored); NaN when nothing was scored.
    public var perplexity: Double { scored > 0 ? exp(negativeLogLikelihood / Double(scored)) : .nan }
}

/// Perplexity over consecutive windows (the definition of `moert perplexity` and of transformers' evaluation
/// without stride).
public enum Perplexity {
    /// Positions evaluated per call inside a window, so that the logits buffer stays small for long windows.
    static let chunk = 256

    /// Evaluates `tokens` in consecutive non-overlapping windows of `window` tokens (the last may be shorter), each
    /// from an empty cache, and scores every token after the first of its window, in float64 from the float32
    /// logits. With `stride`, windows of `window` tokens start every `stride` tokens instead, and each scores only
    /// the tokens after the previous window's end (the sliding evaluation of the transformers perplexity guide: more
    /// context per scored token, more tokens evaluated). `configure` prepares the session first (a router
    /// override); `progress(done, total)` is called after each chunk with tokens evaluated and the input's length.
    /// With `contrast`, a second session (SCMoE's weak pass) evaluates the same windows, and each scored token is
    /// also checked against SCMoE's greedy choice; perplexity stays the session's own.
    /// - Throws: `MoertError` (`.invalidArgument`) for a window below 2 or beyond the model's context, a stride
    ///   outside [1, window], fewer than 2 tokens, or a token outside the vocabulary; the errors of evaluation.
    public static func measure(model: Model, tokens: [Int32], window: Int, stride: Int? = nil,
                               kvType: KVCacheType = .f32, contrast: SelfContrast? = nil,
                               configure: (Session) throws -> Void = { _ in },
                               progress: (Int, Int) -> Void = { _, _ in }) throws -> PerplexityResult {
        guard window >= 2 else { throw MoertError.invalid("the window must hold at least 2 tokens, got \(window)") }
        guard window <= model.contextLength else {
            throw MoertError.invalid("a window of \(window) tokens is longer than the model's context of \(model.contextLength)")
        }
        if let stride, stride < 1 || stride > window {
            throw MoertError.invalid("the stride must be in [1, \(window)] (the window), got \(stride)")
        }
        guard tokens.count >= 2 else { throw MoertError.invalid("perplexity needs at least 2 tokens, got \(tokens.count)") }
        let vocab = model.config.vocabSize
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw MoertError.invalid("token id \(bad) is outside the vocabulary (0 to \(vocab - 1))")
        }
        var options = SessionOptions()
        options.contextLength = window
        options.kvType = kvType
        let session = try Session(model: model, options: options)
        try configure(session)
        let weak = try contrast.map { try session.contrastSession($0) }
        let rows = min(chunk, window)
        let logits = try FloatBuffer(count: rows * vocab)
        let weakLogits = try FloatBuffer(count: contrast == nil ? 1 : rows * vocab)
        var result = PerplexityResult()
        var begin = 0, previousEnd = 0
        while begin < tokens.count {
            let end = min(tokens.count, begin + window)
            // The first target of the window: its second token, or with a stride the first not scored before.
            let firstTarget = begin + (stride == nil ? 1 : max(1, previousEnd - begin))
            if firstTarget < end {
                session.reset()
                weak?.reset()
                var position = begin
                while position < end {
                    let n = min(rows, end - position)
                    try tokens.withUnsafeBufferPointer { all in
                        let part = UnsafeBufferPointer(rebasing: all[position..<(position + n)])
                        try session.evaluate(part, mode: .all, logits: logits.pointer, capacity: logits.count)
                        try weak?.evaluate(part, mode: .all, logits: weakLogits.pointer, capacity: weakLogits.count)
                    }
                    for r in 0..<n where position + r + 1 < end && position + r + 1 >= firstTarget {
                        let row = logits.pointer + r * vocab, target = Int(tokens[position + r + 1])
                        result.negativeLogLikelihood += logSumExp(row, count: vocab) - Double(row[target])
                        result.scored += 1
                        let strong = UnsafeBufferPointer(start: row, count: vocab)
                        if argmax(strong) == target { result.correct += 1 }
                        if let contrast,
                           contrast.choice(strong: strong, weak: UnsafeBufferPointer(start: weakLogits.pointer + r * vocab, count: vocab)) == target {
                            result.contrastCorrect += 1
                        }
                    }
                    position += n
                    result.tokens += n
                    progress(min(end, tokens.count), tokens.count)
                }
                result.windows += 1
            }
            previousEnd = end
            if stride != nil && end == tokens.count { break }
            begin += stride ?? window
        }
        let counts = session.expertCounts
        let chosen = counts.counts.reduce(0, +)
        result.expertsPerToken = counts.layers > 0 && result.tokens > 0
            ? Double(chosen) / Double(result.tokens) / Double(counts.layers) : 0
        return result
    }

    /// log(sum_i exp(x_i)) in float64.
    static func logSumExp(_ x: UnsafePointer<Float>, count: Int) -> Double {
        var m = -Double.infinity
        for i in 0..<count { m = max(m, Double(x[i])) }
        var s = 0.0
        for i in 0..<count { s += exp(Double(x[i]) - m) }
        return m + log(s)
    }
}
