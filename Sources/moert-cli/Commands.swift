// Commands: the `moert` subcommands — info, run, generate, trace.

import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor

/// Options every command that loads a model accepts.
let modelOptions: Set<String> = ["--model", "--threads", "--ctx", "--kv-type", "--plugin", "--expert-budget"]
/// Switches every command that loads a model accepts.
let modelFlags: Set<String> = ["--trust-model-plugins", "--no-mmap"]
/// Options of commands that sample.
let samplingOptions: Set<String> = ["--temperature", "--top-k", "--top-p", "--seed"]
/// Options of commands that evaluate: router overrides for the session.
let routingOptions: Set<String> = ["--router", "--router-params", "--moe-top-k"]

/// Help lines shared by commands.
let commonHelp = """
      --threads N           worker threads (default: all CPUs)
      --plugin LIST         comma-separated plugin libraries to load first (names or paths)
      --expert-budget SIZE  cap on resident expert weights: bytes (512M, 2G) or a share (25%)
      --ctx N               KV cache size in tokens (default: min(model context, 4096))
      --kv-type T           KV cache element type: f32 (default, exact), f16, bf16 or q8_0
      --trust-model-plugins let the model's moert section load plugin libraries by path (it runs their code)
      --no-mmap             read the weights into memory instead of mapping them
    """
let routingHelp = """
      --router KIND         replace every MoE layer's router for this run (built in: topk, deepseek_v2,
                            deepseek_v3, gpt_oss; plugins add more, e.g. topp)
      --router-params JSON  parameters of that router, a JSON object
      --moe-top-k K         the model's own router with K experts per token
    """

/// Help text of each command.
let commandHelp: [String: String] = [
    "info": """
    usage: moert info --model DIR [--memory] [options]

    Prints the architecture, sizes, storage dtype, memory, and the router and expert kinds of each MoE layer
    of a Hugging Face MoE checkpoint directory. --memory also evaluates a short prompt and prints the expert
    memory statistics (allocator, resident bytes, arena bytes, hits, misses, evictions).

    options:
    """ + "\n" + commonHelp,
    "run": """
    usage: moert run --model DIR --tokens 5,17,42 [--logits OUT.npy] [options]

    Evaluates the tokens in one prefill and writes the logits of every position to OUT.npy, a float32 NumPy
    array of shape [n_tokens, vocab]. Without --logits, prints the greedy next token of each position.

    options:
    """ + "\n" + commonHelp + "\n" + routingHelp,
    "generate": """
    usage: moert generate --model DIR --prompt TEXT [--chat [--system TEXT]] [--max-new N] [sampling] [options]
           moert generate --model DIR --tokens 5,17,42 [--max-new N] [sampling] [options]

    With --prompt, encodes TEXT with the model's tokenizer (special tokens added, as transformers' encode does) and
    prints the generated text as it is made. With --chat the prompt is a user message (after a system message with
    --system) rendered through the model's chat template. With --tokens, generates after the given ids and prints
    the generated ids, space-separated, on one line. Generates up to N (default 16) tokens; stops after one of the
    model's stop ids (generation_config.json, config.json, and with --prompt the tokenizer's eos_token) unless
    --ignore-eos.

    sampling:
      --temperature T       0 (default) is greedy
      --top-k K             keep the K most likely tokens (0 = all)
      --top-p P             keep the smallest set reaching probability P (1 = all)
      --seed S              seed of the sampler (default 0)
      --ignore-eos          do not stop at the stop ids
      --context-shift       when the context is full, drop the oldest half of the tokens after the first
                            N (--keep) and go on, instead of stopping
      --keep N              tokens a context shift keeps at the start (default: the BOS token, when the prompt starts with it)
      --scmoe K,R,BETA      SCMoE self-contrast decoding: each token is chosen from (1 + BETA) * strong - BETA * weak
                            logits, among the tokens at least ALPHA times as probable as the most probable strong one;
                            strong: K experts per token (0: the model's own routing, or --router/--moe-top-k), weak:
                            only the expert at 0-based rank R in every MoE layer (the paper's setting: 2,2,0.5)
      --scmoe-alpha A       SCMoE's plausibility cutoff ALPHA (default 0.1)
    options:
    """ + "\n" + commonHelp + "\n" + routingHelp,
    "chat": """
    usage: moert chat --model DIR [--system TEXT] [--max-new N] [--context-shift [--keep N]] [sampling] [options]

    A conversation in the terminal: each line you type is a user message; the model's reply, rendered through its
    chat template, is printed as it is made (at most N tokens, default 512). /reset starts over; Ctrl-D ends.
    Sampling options as for generate. A conversation that outgrows the context (--ctx) starts over, or with
    --context-shift goes on without its oldest tokens.

      --context-shift       when the context is full, drop the oldest half of the tokens after the first
                            N (--keep) and go on
      --keep N              tokens a context shift keeps at the start (default: the system prompt and
                            the header of a user turn)
    options:
    """ + "\n" + commonHelp + "\n" + routingHelp,
    "tokenize": """
    usage: moert tokenize (--model DIR | --tokenizer FILE) (--text TEXT | --file PATH | --jsonl FILE) [--add-special]

    Prints the token ids of the text on one line, space-separated. --file reads the file's exact bytes; --jsonl reads
    one JSON string a line and prints one line of ids for each. Special-token text in the input (e.g. <|im_start|>)
    becomes those tokens. --add-special adds the tokenizer's special tokens (e.g. a BOS first), as transformers'
    encode(add_special_tokens=True); without it none are added. With --model only the tokenizer files of DIR are read.
    """,
    "detokenize": """
    usage: moert detokenize (--model DIR | --tokenizer FILE) (--tokens 1,2,3 | --jsonl FILE)

    Prints the text of the ids (special tokens kept) and a newline; --tokens "" prints an empty line. --jsonl reads
    one JSON array of ids a line and prints the text of each as one JSON string a line.
    """,
    "render-chat": """
    usage: moert render-chat --model DIR --messages FILE.json [--add-generation-prompt]

    Prints exactly the text the chat template of DIR (tokenizer_config.json or chat_template.jinja) makes of the
    messages in FILE.json, a list of {"role", "content"} objects, as transformers' apply_chat_template(messages,
    tokenize=False). Only the tokenizer files of DIR are read: it need not hold a model.
    """,
    "bench": """
    usage: moert bench --model DIR [--prompt N] [--decode N] [--repeat R] [--baseline] [--bandwidth] [options]
           moert bench --model DIR --depth N1,N2,... [--kv-type T] [--repeat R] [options]

    Measures prefill of N prompt tokens (default 512; after one warm-up) and greedy decode of N tokens (default
    128) after a 16-token prompt, R times each (default 3), and prints medians in tokens per second, the load
    time and the peak RSS (the protocol of the peer benchmarks, so figures compare with llama.cpp). With --router
    or --moe-top-k the session uses that router; --baseline also measures the model's own routers in the same run
    and prints ratios. --bandwidth then times 16 decode bursts of 16 tokens, each followed by a plain read of 256
    MiB on the worker threads, and prints the read's GB/s and each pair (decode tok/s:read GB/s): decode beside
    the machine's bandwidth in the same seconds, which on a shared machine moves from one second to the next.

    With --depth, measures decode after a long context instead: after a warm-up prefill, each of R rounds fills
    one session per depth N with N pseudo-random tokens (one prefill, untimed), then times 64 greedy decode steps
    at every depth, in bursts of 16 that alternate between the depths (so that the machine's slow and fast
    phases fall on all of them alike). Prints `depth N decode X tok/s` (the median of the rounds) with the KV
    bytes each step reads, the time a step spends in attention over the cache (and the cache's read speed there)
    beside the time of the rest of the step, and, after the first depth, the median of the rounds' speed ratios
    to it. N + 64 must fit --ctx (by default the context is sized for the largest depth); each depth's session
    holds a whole cache.

    options:
    """ + "\n" + commonHelp + "\n" + routingHelp,
    "perplexity": """
    usage: moert perplexity --model DIR --file TEXT [--ctx N] [--stride S] [options]

    The perplexity of the model on a UTF-8 text file: the text is tokenized by the model's tokenizer.json without
    special tokens and cut into consecutive windows of N tokens (default: config.json's max_position_embeddings; the
    last window may be shorter); each window is evaluated from an empty cache and every token after its first is
    scored. Prints the tokens evaluated, the experts chosen per token and MoE layer, the time, the next-token
    accuracy (how often the scored token is the most likely one), and last `perplexity X` = exp(mean negative
    log-likelihood of the scored tokens). Progress goes to stderr. With --router or --moe-top-k the measurement uses
    that router. With --stride S, windows of N tokens start every S tokens and each scores only the tokens after the
    previous window's end (more context per scored token; the sliding evaluation of the transformers perplexity
    guide). With --scmoe K,R,BETA the accuracy line also gives how often SCMoE self-contrast decoding's greedy choice
    (see `moert generate --help`) is the scored token; perplexity stays the model's own (with top-k K when K > 0).

    options:
      --file TEXT           the text
      --ctx N               the window in tokens (default: the model's context length)
      --stride S            overlapping windows, S tokens apart (1 to N)
      --scmoe K,R,BETA      also score SCMoE's choices (--scmoe-alpha A: its cutoff, default 0.1)
    """ + "\n" + commonHelp.split(separator: "\n").filter { !$0.contains("--ctx") }.joined(separator: "\n") + "\n" + routingHelp,
    "quantize": """
    usage: moert quantize --model DIR --out DIR2 --type T [--attention T] [--experts T] [--shared T]
                          [--output-type T] [--tensor-type PATTERN=T ...] [--calibration FILE --bits AVG]
                          [--force]

    Writes a copy of the checkpoint in DIR to DIR2 with its linear weights stored as type T: q8_0 (8.5 bits per
    weight) or q4_0 (4.5 bits; blocks of 32 weights with one f16 scale, as GGML's Q8_0 and Q4_0), q4_k (4.5 bits;
    super-blocks of 256 with a 6-bit scale and minimum per 32, as GGML's Q4_K: closer to the weights than q4_0 at
    the same size), q3_0 (3.5 bits; moert's own, q4_0's rule with 3 bits), or f16, bf16, f32. --type gives T to
    attention, routed experts, shared experts and dense MLPs; the router gates keep their stored precision (routing
    must not flip on rounding), norms and biases too; the embeddings and the output layer get --output-type
    (default: q8_0 when T has fewer than 8 bits, else T). --attention, --experts and --shared (shared experts and dense MLPs) override T for their class, and
    --tensor-type PATTERN=T (repeatable; the first whose regular expression matches somewhere in a tensor's name
    wins, router gates included) overrides them all, e.g. --tensor-type 'layers\\.0\\..*experts=q8_0'; a pattern
    that matches nothing is an error. A tensor whose rows are not whole blocks of its type gets q4_0 instead of
    q4_k when they are whole blocks of 32 (with the rest of its routed expert), else keeps its stored type (the
    summary says which). The output is one model.safetensors, config.json with the quantized
    tensors listed in its moert section (docs/model-format.md), and every other file of DIR copied (tokenizer,
    generation config). Progress goes to stderr, a summary per class to stdout.

    Per-expert bits: with --calibration FILE --bits AVG, the model first runs over FILE (token ids separated by
    commas or white space, or else text, tokenized without special tokens; up to 65536 tokens), counting how often
    and with how much routing weight each routed expert is chosen; each routed expert then gets q3_0, q4_0 or q8_0
    so that the routed experts average closest to AVG bits per weight (3.5 to 8.5) with the least expected error
    (an expert's routing weight times its type's rounding noise): experts used alike get the same type, the most
    used more bits, unused ones the fewest; an expert given q4_0 whose rows are whole 256-weight super-blocks gets
    q4_k instead (the same size, closer to the weights). The choice is printed and written into the quantization
    entry.

    options:
      --model DIR         the checkpoint to read
      --out DIR2          the directory to write (created if missing)
      --type T            q8_0, q4_0, q4_k, q3_0, f16, bf16 or f32
      --attention T       type of the attention projections
      --experts T         type of the routed experts
      --shared T          type of shared experts and dense MLPs
      --output-type T     type of the embeddings and output layer
      --tensor-type P=T   type of the tensors whose name matches regular expression P (repeatable)
      --calibration FILE  input for per-expert bits (with --bits)
      --bits AVG          average bits per routed-expert weight, from q3_0 (3.5) to q8_0 (8.5)
      --force             overwrite a checkpoint already in DIR2
    """,
    "trace": """
    usage: moert trace --model DIR --tokens 5,17,42 --out trace.json [--max-new N] [options]

    Evaluates the tokens (and greedily generates N more, default 0) with routing tracing on, writes every
    (token, layer) routing decision and the per-layer expert counts to trace.json, and prints a per-layer load
    summary: tokens routed per expert, the share of zero-compute experts, and the coefficient of variation.

    options:
    """ + "\n" + commonHelp + "\n" + routingHelp,
    "kernels": """
    usage: moert kernels [--available] [--threads N]

    Prints this CPU, and for each product (decode GEMV per storage type, prefill GEMM, attention, SwiGLU) the
    kernels it has, comma-separated (in parentheses those this CPU cannot run), and the one it will run: forced by
    MOERT_KERNELS, cached from an earlier measurement, or what decides when a model first runs it. With --available, prints only
    the kernels this CPU can run for at least one product, one per line.

    How a kernel is chosen: when a model is loaded, each product it runs that has more than one kernel this CPU can
    run gets the fastest of them on the model's own shapes (a few milliseconds), and the choice is kept in a cache
    file keyed by the CPU (vendor, family, model, features) and thread count, so later runs make the same choice
    without measuring. With caching off or the cache file unwritable, a table of choices measured on known CPUs
    decides (the widest vectors first for other CPUs), so that no measurement noise can change a kernel between
    runs. Choices are made once per process.

    environment:
      MOERT_KERNELS=LIST       force kernels: a kernel name for every product that has it (avx2), or PRODUCT=KERNEL
                               (gemv.f16=avx512; a group: gemv=avx2), comma-separated, later entries winning.
                               Kernels: portable, blas, avx2, avx512, avx2x4 (decode GEMVs reading four rows
                               at a time), avx2hw (decode GEMVs without software prefetch), avx2l2 (decode
                               attention prefetching into the second-level cache)
      MOERT_KERNEL_CACHE=FILE  the cache file (default $XDG_CACHE_HOME/moert/kernels.tsv or
                               ~/.cache/moert/kernels.tsv); 0 or off: no cache (the table decides)
      MOERT_AVX512=0           never run AVX-512 kernels

    options:
      --available   only the kernel names this CPU can run
      --threads N   the thread count whose cached choices to show (default: every online CPU)
    """,
]

/// Loads the model named by --model after applying --threads and loading --plugin libraries.
func loadModel(_ args: Arguments) throws -> Model {
    let threads = try args.int("--threads", default: 0)
    guard threads >= 0 else { throw UsageError("--threads must be >= 0, got \(threads)") }
    try Threads.set(threads)
    for plugin in (args.string("--plugin") ?? "").split(separator: ",") {
        try PluginRegistry.shared.load(String(plugin.trimmingSpaces))
    }
    var options = ModelLoadOptions()
    if let budget = args.string("--expert-budget") { options.expertBudget = try ExpertBudget(parsing: budget) }
    options.trustPluginPaths = args.has("--trust-model-plugins")
    options.mapWeights = !args.has("--no-mmap")
    return try Model(path: try args.required("--model"), options: options)
}

/// The KV cache type --kv-type names (f32 without it).
func kvType(_ args: Arguments) throws -> KVCacheType {
    guard let name = args.string("--kv-type") else { return .f32 }
    guard let type = KVCacheType(rawValue: name) else {
        throw UsageError("--kv-type must be one of \(KVCacheType.allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
    }
    return type
}

/// Creates a session honouring --ctx, --kv-type, --context-shift with --keep (`defaultKeep` without it) and the
/// router overrides.
func makeSession(_ model: Model, _ args: Arguments, defaultKeep: Int = 0) throws -> Session {
    var o = SessionOptions()
    o.contextLength = try args.int("--ctx", default: 0)
    o.kvType = try kvType(args)
    o.contextShift = args.has("--context-shift")
    o.keepTokens = try args.int("--keep", default: defaultKeep)
    guard o.contextShift || args.string("--keep") == nil else { throw UsageError("--keep needs --context-shift") }
    let session = try Session(model: model, options: o)
    try applyRouterOverride(args, to: session)
    return session
}

/// The rope of `moert info`: base, rotated width and pairing, and YaRN's parameters when set.
func describeRope(_ r: RopeConfig) -> String {
    var text = "theta \(r.theta), \(r.rotaryDim) values rotated (\(r.pairing.rawValue) pairs)"
    if case .yarn(let y) = r.scaling {
        text += "; yarn factor \(y.factor), original context \(y.originalMaxPositionEmbeddings), beta \(y.betaFast)/\(y.betaSlow)"
        if let m = y.mscale { text += ", mscale \(m)" }
        if let m = y.mscaleAllDim { text += ", mscale_all_dim \(m)" }
        text += ", attention factor \(y.resolvedAttentionFactor)\(y.truncate ? "" : ", untruncated")"
    }
    return text
}

/// The built-in routing of `moert info`: scores, selection, renormalisation and scaling.
func describeRouting(_ r: RoutingConfig) -> String {
    var text: String
    switch r.scoring {
    case .softmax: text = "softmax scores"
    case .sigmoid: text = "sigmoid scores"
    case .softmaxOfTopK: text = "softmax over the selected logits"
    }
    if r.gateBias { text += ", gate with a bias" }
    switch r.selection {
    case .greedy: break
    case let .groupLimited(groups, kept): text += "; the best \(kept) of \(groups) groups by their best score"
    case let .correctedGroupLimited(groups, kept):
        text += "; + e_score_correction_bias for selection, the best \(kept) of \(groups) groups by their two best"
    }
    if r.normalizeTopK { text += "; renormalised" }
    if r.scalingFactor != 1 { text += "; × \(r.scalingFactor) (routed_scaling_factor)" }
    return text
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
    print("weights           \(storageSummary(m.checkpoint))")
    if let q = c.quantization {
        // Decoded once: at load for resident matrices, when materialised for routed experts (docs/model-format.md).
        let to: String
        switch q {
        case .fp8: to = "f32"
        case .mxfp4: to = "bf16"
        }
        print("quantization      \(q.summary); decoded to \(to) (at load, routed experts when materialised)")
    }
    print("vocab             \(c.vocabSize)")
    print("hidden            \(c.hiddenSize)")
    print("layers            \(c.numHiddenLayers) (\(m.moeLayerCount) MoE)")
    if let mla = c.mla {
        let q = mla.qLoraRank.map { "q_lora_rank \($0)" } ?? "q_proj"
        print("attention         multi-head latent (MLA): \(c.numAttentionHeads) heads, \(q), kv_lora_rank \(mla.kvLoraRank), qk_nope_head_dim \(mla.qkNopeHeadDim), qk_rope_head_dim \(mla.qkRopeHeadDim), v_head_dim \(mla.vHeadDim)")
    } else {
        print("attention         \(c.numKeyValueHeads == c.numAttentionHeads ? "multi-head" : "grouped-query") (GQA): \(c.numAttentionHeads) query heads, \(c.numKeyValueHeads) key/value, head_dim \(c.headDim)")
    }
    print("experts           \(c.numExperts), top-\(c.numExpertsPerTok), width \(c.moeIntermediateSize)\(c.normTopkProb ? ", renormalised" : "")")
    if c.numExperts > 0 { print("routing           \(describeRouting(c.routing))") }
    if c.sharedExpertIntermediateSize > 0 {
        print("shared expert     width \(c.sharedExpertIntermediateSize), \(c.architecture == .qwen2Moe ? "sigmoid-gated" : "ungated")")
    }
    print("context           \(m.contextLength)")
    print("rope              \(describeRope(c.rope))")
    print("memory            \(mib(m.checkpoint.mappedBytes)) mapped, \(mib(m.checkpoint.convertedBytes)) converted or copied at load")
    // Full-attention layers hold every position; a sliding-window layer a ring buffer of its window.
    let windows = c.layerWindows.compactMap { $0 }
    func bytes(_ positions: Int) -> String {
        KVCacheType.allCases.map { type -> String in
            guard c.kvCacheUnsupportedReason(type) == nil else { return "\(type.rawValue) -" }
            return "\(type.rawValue) \(positions * c.kvCacheBytesPerPosition(type))"
        }.joined(separator: ", ")
    }
    if let mla = c.mla {
        print("kv cache          latent: kv_lora_rank \(mla.kvLoraRank) + qk_rope_head_dim \(mla.qkRopeHeadDim) = \(mla.cacheWidth) values per token and layer")
        print("                  bytes per token: \(bytes(c.numHiddenLayers)) (--kv-type; - : not for \(mla.cacheWidth) values)")
    } else {
        print("kv cache          keys and values: 2 × \(c.numKeyValueHeads) × \(c.headDim) = \(2 * c.numKeyValueHeads * c.headDim) values per token and layer")
        print("                  bytes per token: \(bytes(c.numHiddenLayers - windows.count)) (--kv-type; - : not for this head_dim)")
    }
    if let w = c.slidingWindow {
        print("sliding window    \(windows.count) of \(c.numHiddenLayers) layers attend to the last \(w) positions; fixed bytes: \(bytes(windows.reduce(0, +)))")
    }
    if c.attentionSinks { print("attention sinks   a learned logit per query head (self_attn.sinks)") }
    print("context shift     \(Session.contextShiftUnsupportedReason(m).map { "no: \($0)" } ?? "yes (--context-shift)")")
    print("threads           \(Threads.current)")
    printModelKernels(m, label: "kernel", width: 17)
    print("blas              \(Threads.blasKernels)")
    var moeIndex = 0
    for (l, layer) in m.layers.enumerated() {
        guard case .moe(let block) = layer.mlp else {
            print("layer \(l)           dense MLP")
            continue
        }
        let shared = block.shared.map { s in
            s.gate != nil ? "; gated shared expert" : "; shared expert (weight \(s.weight), routed \(s.routedWeight))"
        } ?? ""
        print("layer \(l)           router \(block.router.kind); experts \(describeExperts(block.experts))\(shared)")
        moeIndex += 1
    }
    if args.has("--memory") { try printMemory(m) }
}

/// "q4_0 attention, routed experts; q8_0 embeddings and output layer; f32 router gates, other tensors": how each
/// class of tensor is stored (several types in a class are listed as "q8_0 (12) + q4_0 (4)").
func storageSummary(_ checkpoint: Checkpoint) -> String {
    var byClass: [TensorClass: [String: Int]] = [:]
    for name in checkpoint.tensorNames {
        guard let s = checkpoint.storedFormat(of: name) else { continue }
        byClass[TensorClass.of(name), default: [:]][s, default: 0] += 1
    }
    var byTypes: [(String, [String])] = []
    for cls in TensorClass.allCases {
        guard let types = byClass[cls] else { continue }
        let key = types.count == 1 ? types.keys.first! : types.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value))" }.joined(separator: " + ")
        if let i = byTypes.firstIndex(where: { $0.0 == key }) { byTypes[i].1.append(cls.rawValue) } else { byTypes.append((key, [cls.rawValue])) }
    }
    return byTypes.map { "\($0.0) \($0.1.joined(separator: ", "))" }.joined(separator: "; ")
}

/// The expert memory statistics, after a short evaluation so that experts are materialised.
func printMemory(_ m: Model) throws {
    let s = try Session(model: m)
    let prompt = (0..<min(16, m.contextLength)).map { Int32($0 % m.config.vocabSize) }
    try prompt.withUnsafeBufferPointer { try s.evaluate($0, mode: .none, logits: nil, capacity: 0) }
    func mib(_ bytes: Int) -> String { oneDecimal(Double(bytes) / 1048576) + " MiB" }
    let st = m.experts.statistics
    print("allocator         \(m.experts.arena.backend.rawValue)\(jemallocVersion.map { " \($0)" } ?? "")")
    print("experts total     \(mib(st.totalBytes)) (compute layout)")
    print("experts resident  \(mib(st.residentBytes)) after a \(prompt.count)-token prompt; budget \(st.budgetBytes.map(mib) ?? "none")")
    print("resident/layer    \(st.residentPerLayer.map(String.init).joined(separator: " "))")
    if let je = m.experts.arena.jemallocStats {
        print("arena             \(mib(je.active)) active, \(mib(je.mapped)) mapped")
    }
    print("file mapping      \(mib(m.checkpoint.mappedBytes)); converted \(mib(m.checkpoint.convertedBytes))")
    print("expert cache      \(st.hits) hits, \(st.misses) misses, \(mib(st.bytesLoaded)) loaded, \(st.evictions) evictions")
}

/// "4 ffn, 2 moepp.constant, 1 moepp.copy": runs of equal kinds in id order.
func describeExperts(_ experts: [Expert]) -> String {
    var runs: [(String, Int)] = []
    for e in experts {
        if let last = runs.last, last.0 == e.kind { runs[runs.count - 1].1 += 1 } else { runs.append((e.kind, 1)) }
    }
    return runs.map { "\($0.1) \($0.0)" }.joined(separator: ", ")
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

/// `moert generate --tokens`: ids in, ids out.
func generateCommand(_ args: Arguments) throws {
    let tokens = try args.tokens("--tokens")
    var sampler = try samplerFromArguments(args)
    let maxNew = try args.int("--max-new", default: 16)
    let m = try loadModel(args)
    let s = try makeSession(m, args)
    let scmoe = try selfContrastArguments(args)
    try scmoe?.apply(to: s)
    let out = try s.generate(prompt: tokens, maxNewTokens: maxNew, ignoreEOS: args.has("--ignore-eos"), sampler: &sampler,
                             contrast: scmoe?.contrast)
    print(out.map(String.init).joined(separator: " "))
}
