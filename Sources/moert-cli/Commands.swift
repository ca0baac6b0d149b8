// Commands: the `moert` subcommands — info, run, generate.

import MoertCore

/// Options every command that loads a model accepts.
let modelOptions: Set<String> = ["--model", "--threads", "--ctx"]

/// Help text of each command.
let commandHelp: [String: String] = [
    "info": """
    usage: moert info --model DIR [--threads N]

    Prints the architecture, sizes, storage dtype and memory of a Hugging Face MoE checkpoint directory.
    """,
    "run": """
    usage: moert run --model DIR --tokens 5,17,42 [--logits OUT.npy] [--threads N] [--ctx N]

    Evaluates the tokens in one prefill and writes the logits of every position to OUT.npy, a float32 NumPy
    array of shape [n_tokens, vocab]. Without --logits, prints the greedy next token of each position.
    """,
    "generate": """
    usage: moert generate --model DIR --tokens 5,17,42 [--max-new N] [--temperature T] [--top-k K]
                          [--top-p P] [--seed S] [--ignore-eos] [--threads N] [--ctx N]

    Generates up to N (default 16) tokens after the prompt and prints their ids, space-separated, on one line.
    Temperature 0 (the default) is greedy. Generation stops after the model's EOS token unless --ignore-eos.
    """,
]

/// Loads the model named by --model after applying --threads.
func loadModel(_ args: Arguments) throws -> Model {
    try Threads.set(try args.int("--threads", default: 0))
    guard try args.int("--threads", default: 0) >= 0 else { throw UsageError("--threads must be >= 0") }
    return try Model(path: try args.required("--model"))
}

/// Creates a session honouring --ctx.
func makeSession(_ model: Model, _ args: Arguments) throws -> Session {
    var o = SessionOptions()
    o.contextLength = try args.int("--ctx", default: 0)
    return try Session(model: model, options: o)
}

/// `moert info`.
func infoCommand(_ args: Arguments) throws {
    let m = try loadModel(args)
    let c = m.config
    let dtype = m.storageDType?.rawValue ?? "mixed"
    func mib(_ bytes: Int) -> String {
        let tenths = (bytes * 10 + (1 << 19)) >> 20
        return "\(tenths / 10).\(tenths % 10) MiB"
    }
    print("architecture      \(c.architecture.rawValue)")
    print("parameters        \(m.parameterCount)")
    print("dtype             \(dtype) (computed in f32)")
    print("vocab             \(c.vocabSize)")
    print("hidden            \(c.hiddenSize)")
    print("layers            \(c.numHiddenLayers) (\(m.moeLayerCount) MoE)")
    print("heads             \(c.numAttentionHeads) query, \(c.numKeyValueHeads) key/value, head_dim \(c.headDim)")
    print("experts           \(c.numExperts), top-\(c.numExpertsPerTok), width \(c.moeIntermediateSize)\(c.normTopkProb ? ", renormalised" : "")")
    if c.sharedExpertIntermediateSize > 0 { print("shared expert     width \(c.sharedExpertIntermediateSize), sigmoid-gated") }
    print("context           \(m.contextLength)")
    print("rope theta        \(c.ropeTheta)")
    print("memory            \(mib(m.checkpoint.mappedBytes)) mapped, \(mib(m.checkpoint.convertedBytes)) converted to f32")
    print("threads           \(Threads.current)")
}

/// `moert run`.
func runCommand(_ args: Arguments) throws {
    let tokens = try args.tokens("--tokens")
    let m = try loadModel(args)
    let s = try makeSession(m, args)
    let vocab = m.config.vocabSize
    var logits = [Float](repeating: 0, count: tokens.count * vocab)
    try tokens.withUnsafeBufferPointer { t in
        try logits.withUnsafeMutableBufferPointer { try s.evaluate(t, mode: .all, logits: $0.baseAddress, capacity: $0.count) }
    }
    if let out = args.string("--logits") {
        try writeNpy(path: out, shape: [tokens.count, vocab], data: logits)
    } else {
        let next = (0..<tokens.count).map { i in
            logits.withUnsafeBufferPointer { argmax(UnsafeBufferPointer(rebasing: $0[i * vocab ..< (i + 1) * vocab])) ?? 0 }
        }
        print(next.map(String.init).joined(separator: " "))
    }
}

/// `moert generate`.
func generateCommand(_ args: Arguments) throws {
    let tokens = try args.tokens("--tokens")
    var so = SamplerOptions()
    so.temperature = try args.float("--temperature", default: 0)
    so.topK = try args.int("--top-k", default: 0)
    so.topP = try args.float("--top-p", default: 1)
    let seed = try args.int("--seed", default: 0)
    guard seed >= 0 else { throw UsageError("--seed must be >= 0") }
    so.seed = UInt64(seed)
    var sampler = try Sampler(options: so)
    let maxNew = try args.int("--max-new", default: 16)
    let m = try loadModel(args)
    let s = try makeSession(m, args)
    let out = try s.generate(prompt: tokens, maxNewTokens: maxNew, ignoreEOS: args.has("--ignore-eos"), sampler: &sampler)
    print(out.map(String.init).joined(separator: " "))
}
