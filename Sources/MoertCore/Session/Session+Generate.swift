// Session+Generate: prompt evaluation followed by sampled, fed-back decoding.

import MoertTensor
import MoertText

/// What ends generation besides the model's stop ids and the token budget.
public struct GenerationStop {
    /// More ids that end it, such as a tokenizer's eos_token (ignored with `ignoreEOS`, as the model's are).
    public var tokenIds: [Int32] = []
    /// Strings whose appearance in the generated text ends it (after the token that completes one).
    public var strings: StopStrings?

    /// Nothing more than the model's stop ids.
    public init() {}
}

extension Session {
    /// Evaluates `prompt`, then generates up to `maxNewTokens` tokens with `sampler`, calling `onToken` for each
    /// (return false to stop). Stops after one of the model's stop ids (`Model.stopTokenIds`) unless `ignoreEOS`, and
    /// when the context is full — unless the session shifts its context (`SessionOptions.contextShift`), which then
    /// makes room for the prompt and for each new token.
    /// Every generated token is evaluated (the session then holds prompt + generated tokens, so a later call with
    /// an empty prompt continues the sequence), except when the context is full.
    /// `stop` adds stop ids and stop strings. With `contrast`, tokens are chosen by SCMoE self-contrast decoding
    /// (`SelfContrast`): the sampler sees the contrasted scores instead of the logits.
    /// - Returns: the generated tokens.
    /// - Throws: the errors of `evaluate`; `.invalidArgument` for a negative count or an empty session and prompt.
    @discardableResult
    public func generate(prompt: [Int32], maxNewTokens: Int, ignoreEOS: Bool = false, sampler: inout Sampler,
                         stop: GenerationStop = GenerationStop(), contrast: SelfContrast? = nil,
                         onToken: (Int32) -> Bool = { _ in true }) throws -> [Int32] {
        guard maxNewTokens >= 0 else { throw MoertError.invalid("max_new_tokens must be >= 0, got \(maxNewTokens)") }
        guard !prompt.isEmpty || position > 0 else { throw MoertError.invalid("empty prompt and empty session: nothing to continue") }
        let vocab = model.config.vocabSize
        var logits = [Float](repeating: 0, count: vocab)
        var generated: [Int32] = []
        guard maxNewTokens > 0 else {
            if !prompt.isEmpty {
                try makeRoom(for: prompt.count)
                try prompt.withUnsafeBufferPointer { try evaluate($0, mode: .none, logits: nil, capacity: 0) }
            }
            return generated
        }
        // Self-contrast: the weak pass's session and logits, and the scores sampled from (each allocated once per call).
        var weakLogits = [Float](repeating: 0, count: contrast == nil ? 0 : vocab)
        var scores = weakLogits
        let weak = try contrast.map { c in
            try weakLogits.withUnsafeMutableBufferPointer { try weakSession(c, logits: $0, wantLogits: prompt.isEmpty) }
        }
        if prompt.isEmpty {
            // The previous call sampled from these logits already if it stopped on a full context.
            guard position < contextLength || contextShift else {
                throw MoertError(.contextFull, "the context is full (\(position) of \(contextLength) positions); nothing more can be generated")
            }
            // An evaluation without logits (MOERT_LOGITS_NONE, or a generation of 0 tokens) left none to sample from.
            try recomputeLastLogits()
            logits.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: lastLogitsBuffer.pointer, count: vocab) }
        } else {
            try makeRoom(for: prompt.count)
            try prompt.withUnsafeBufferPointer { p in
                try logits.withUnsafeMutableBufferPointer { try evaluate(p, mode: .last, logits: $0.baseAddress, capacity: vocab) }
                try weakLogits.withUnsafeMutableBufferPointer { try weak?.evaluate(p, mode: .last, logits: $0.baseAddress, capacity: vocab) }
            }
        }
        // At most the positions left, plus the last token, which is sampled but not evaluated when the context fills.
        generated.reserveCapacity(min(maxNewTokens, contextLength + 1))
        let eos = Set(model.stopTokenIds + stop.tokenIds)
        var stopStrings = stop.strings
        while true {
            if let contrast {
                logits.withUnsafeBufferPointer { strong in
                    weakLogits.withUnsafeBufferPointer { contrast.combine(strong: strong, weak: $0, into: &scores) }
                }
            }
            var token = try (contrast == nil ? logits : scores).withUnsafeBufferPointer { try sampler.sample($0) }
            generated.append(token)
            let goOn = onToken(token)
            let stringFound = try stopStrings?.push(token) ?? false
            try makeRoom(for: 1)
            guard position < contextLength else { break }
            try withUnsafePointer(to: &token) { p in
                let one = UnsafeBufferPointer(start: p, count: 1)
                try logits.withUnsafeMutableBufferPointer { try evaluate(one, mode: .last, logits: $0.baseAddress, capacity: vocab) }
                try weakLogits.withUnsafeMutableBufferPointer { try weak?.evaluate(one, mode: .last, logits: $0.baseAddress, capacity: vocab) }
            }
            if !goOn || stringFound || generated.count >= maxNewTokens || (!ignoreEOS && eos.contains(token)) { break }
        }
        return generated
    }
}
