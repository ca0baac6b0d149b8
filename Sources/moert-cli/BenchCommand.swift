// BenchCommand: `moert bench` — prefill and decode throughput, load time and peak memory, as medians of repeats.

import MoertCore
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// Peak resident set size of this process in MiB: VmHWM of /proc/self/status. (getrusage's ru_maxrss is no use
/// here: Linux carries it across fork and exec, so a child of a large parent reports the parent's peak.)
func peakRSSMiB() -> Double {
    if let f = fopen("/proc/self/status", "r") {
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), f) != nil {
            let text = String(cString: line)
            guard text.hasPrefix("VmHWM:") else { continue }
            // "VmHWM:\t  123456 kB"
            if let kib = text.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap({ Int($0) }) {
                return Double(kib) / 1024
            }
        }
    }
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// The median of `values` (which must not be empty).
func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Throughput of one configuration: prefill and decode tokens per second, one value per repeat.
struct BenchResult {
    var prefill: [Double] = []
    var decode: [Double] = []
    /// With --bandwidth: decode tokens per second of each burst and the read GB/s measured right after it.
    var pairs: [(decode: Double, read: Double)] = []
}

/// Decode steps per burst, and bursts, of `moert bench --bandwidth`; the bytes of its plain read (beyond any
/// last-level cache, so that it reads memory as a decode's weights do).
let bandwidthBurstSteps = 16, bandwidthPairs = 16, bandwidthReadBytes = 256 << 20

/// `bandwidthPairs` turns of `bandwidthBurstSteps` greedy decode steps (after a 16-token prompt, starting over when
/// the context is full), each followed by a plain read of `buffer` on the worker threads
/// (`plainReadBytesPerSecond`): decode speed and the bandwidth a plain reader reaches in the same seconds, so that a
/// shared machine's slow and fast phases (they last seconds) fall on both.
func measureBandwidthPairs(_ session: Session, prompt: [Int32], buffer: UnsafeRawBufferPointer) throws -> [(decode: Double, read: Double)] {
    var logits = [Float](repeating: 0, count: session.model.config.vocabSize)
    var pairs: [(decode: Double, read: Double)] = []
    var next: Int32 = 0
    session.reset()
    for _ in 0..<bandwidthPairs {
        if session.position == 0 || session.position + bandwidthBurstSteps > session.contextLength {
            session.reset()
            next = try evaluateGreedy(session, prompt.prefix(16), logits: &logits)
        }
        let decodeSeconds = try timedDecodeSteps(session, bandwidthBurstSteps, next: &next, logits: &logits)
        pairs.append((Double(bandwidthBurstSteps) / decodeSeconds, plainReadBytesPerSecond(buffer) / 1e9))
    }
    return pairs
}

/// The protocol of shared/bench/peer_bench.py, so figures compare with llama.cpp and transformers: a warm-up
/// prefill, then `repeats` timed prefills of `prompt` (last-position logits); then, `repeats` times, a 16-token
/// prompt (untimed) followed by `decode` timed greedy single-token steps with the KV cache.
func measure(_ session: Session, prompt: [Int32], decode: Int, repeats: Int) throws -> BenchResult {
    var logits = [Float](repeating: 0, count: session.model.config.vocabSize)
    var result = BenchResult()
    session.reset()
    try evaluateGreedy(session, prompt[...], logits: &logits)  // warm-up: materialises the experts the prompt uses
    for _ in 0..<repeats {
        session.reset()
        let t0 = monotonicSeconds()
        try evaluateGreedy(session, prompt[...], logits: &logits)
        result.prefill.append(Double(prompt.count) / (monotonicSeconds() - t0))
    }
    guard decode > 0 else { return result }
    for _ in 0..<repeats {
        session.reset()
        var next = try evaluateGreedy(session, prompt.prefix(16), logits: &logits)
        result.decode.append(Double(decode) / (try timedDecodeSteps(session, decode, next: &next, logits: &logits)))
    }
    return result
}

/// Evaluates `tokens` with the last position's logits into `logits` (vocab floats) and returns its greedy token.
@discardableResult
func evaluateGreedy(_ session: Session, _ tokens: ArraySlice<Int32>, logits: inout [Float]) throws -> Int32 {
    try tokens.withUnsafeBufferPointer { p in
        try logits.withUnsafeMutableBufferPointer { try session.evaluate(p, mode: .last, logits: $0.baseAddress, capacity: $0.count) }
    }
    return Int32(logits.withUnsafeBufferPointer { argmax($0) } ?? 0)
}

/// Seconds of `steps` greedy decode steps from token `next`, which ends as the token the last step chose.
func timedDecodeSteps(_ session: Session, _ steps: Int, next: inout Int32, logits: inout [Float]) throws -> Double {
    let t0 = monotonicSeconds()
    for _ in 0..<steps { next = try evaluateGreedy(session, [next], logits: &logits) }
    return monotonicSeconds() - t0
}

/// The lines every `moert bench` starts with: the model, threads, kernels and load time.
func printBenchHeader(_ args: Arguments, model: Model, loadSeconds: Double) throws {
    print("model    \(try args.required("--model")) (\(model.config.architecture.rawValue), \(model.storageDType?.rawValue ?? "mixed"))")
    print("threads  \(Threads.current)")
    printModelKernels(model, label: "kernel", width: 8)
    print("blas     \(Threads.blasKernels)")
    print("load     \(oneDecimal(loadSeconds * 1000)) ms")
}

/// "123.4" with one decimal.
func oneDecimal(_ v: Double) -> String {
    let t = Int((v * 10).rounded())
    return "\(t / 10).\(abs(t % 10))"
}

/// Decode steps `moert bench --depth` times at each depth.
let depthDecodeSteps = 64

/// `count` pseudo-random token ids below `vocab` (xorshift from a fixed seed): the same in every run.
func benchTokens(count: Int, vocab: Int) -> [Int32] {
    var state: UInt32 = 2463534242
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 17; state ^= state << 5
        return Int32(state % UInt32(vocab))
    }
}

/// Decode steps of one timed burst: each round alternates bursts between the depths, so that a slow or fast phase
/// of a shared machine (they last seconds) falls on every depth alike.
let depthBurstSteps = 16

/// One round of one depth of `moert bench --depth`: seconds per decode step, and of those the seconds spent in
/// attention over the KV cache (`Session.timesDecodeAttention`).
struct DepthRound {
    var stepSeconds: Double
    var attentionSeconds: Double
    /// Decode steps per second.
    var tokensPerSecond: Double { 1 / stepSeconds }
}

/// `depthDecodeSteps` greedy decode steps after each depth of `context`, one array per depth with one value per
/// round. Each depth has its own session; a round fills each to its depth (untimed), then times the steps in bursts
/// of `depthBurstSteps`, taking the depths in turn (in reverse order every other burst).
func measureDepths(_ sessions: [Session], context: [Int32], depths: [Int], rounds: Int) throws -> [[DepthRound]] {
    var logits = [Float](repeating: 0, count: sessions[0].model.config.vocabSize)
    var results = [[DepthRound]](repeating: [], count: depths.count)
    for session in sessions { session.timesDecodeAttention = true }
    defer { for session in sessions { session.timesDecodeAttention = false } }
    for _ in 0..<rounds {
        var next = [Int32](repeating: 0, count: depths.count)
        var seconds = [Double](repeating: 0, count: depths.count)
        for (i, depth) in depths.enumerated() {
            sessions[i].reset()
            // At depth 0 the first step evaluates the context's first token into the empty cache.
            next[i] = depth == 0 ? context[0] : try evaluateGreedy(sessions[i], context[0..<depth], logits: &logits)
            sessions[i].decodeAttentionSeconds = 0
        }
        for burst in 0..<depthDecodeSteps / depthBurstSteps {
            for i in burst % 2 == 0 ? Array(depths.indices) : depths.indices.reversed() {
                seconds[i] += try timedDecodeSteps(sessions[i], depthBurstSteps, next: &next[i], logits: &logits)
            }
        }
        for i in depths.indices {
            let steps = Double(depthDecodeSteps)
            results[i].append(DepthRound(stepSeconds: seconds[i] / steps,
                                         attentionSeconds: sessions[i].decodeAttentionSeconds / steps))
        }
    }
    return results
}

/// `moert bench --depth N1,N2,...`: decode speed after each depth of context.
func benchDepths(_ args: Arguments, depths: [Int], model: Model, loadSeconds: Double) throws {
    let repeats = try args.int("--repeat", default: 3)
    guard repeats >= 1 else { throw UsageError("--repeat must be >= 1") }
    let deepest = depths.max()! + depthDecodeSteps
    var options = SessionOptions()
    options.kvType = try kvType(args)
    options.contextLength = try args.int("--ctx", default: 0)
    if options.contextLength == 0 { options.contextLength = deepest }
    guard deepest <= options.contextLength else {
        throw UsageError("depth \(depths.max()!) + \(depthDecodeSteps) decode steps do not fit --ctx \(options.contextLength)")
    }
    guard options.contextLength <= model.contextLength else {
        throw UsageError("depth \(depths.max()!) + \(depthDecodeSteps) decode steps exceed the model's context \(model.contextLength)")
    }
    // One session per depth (each with the whole --ctx), so that the rounds can alternate between them.
    let sessions = try depths.map { _ in try Session(model: model, options: options) }
    for session in sessions { try applyRouterOverride(args, to: session) }
    let session = sessions[0]
    let context = benchTokens(count: deepest, vocab: model.config.vocabSize)
    let c = model.config
    let layerBytes = c.kvCacheBytesPerPosition(session.kvType)  // one position of one layer
    try printBenchHeader(args, model: model, loadSeconds: loadSeconds)
    // Sliding-window layers keep a ring buffer of their window (fixed bytes) once the window is shorter than the context.
    let rings = c.layerWindows.compactMap { $0.flatMap { $0 < session.contextLength ? $0 : nil } }
    let ringBytes = rings.isEmpty ? "" : ", \(rings.reduce(0, +) * layerBytes) bytes fixed (\(rings.count) sliding-window layers)"
    print("kv cache \(session.kvType.rawValue), \((c.numHiddenLayers - rings.count) * layerBytes) bytes per token\(ringBytes), context \(session.contextLength)")
    // Warm-up, as the default protocol's: a prefill that touches the weights (mapped pages, materialised experts).
    try context.prefix(512).withUnsafeBufferPointer { try session.evaluate($0, mode: .none, logits: nil, capacity: 0) }
    let rounds = try measureDepths(sessions, context: context, depths: depths, rounds: repeats)
    let rates = rounds.map { $0.map(\.tokensPerSecond) }
    for (i, depth) in depths.enumerated() {
        print("depth \(depth) decode \(oneDecimal(median(rates[i]))) tok/s")
        let attended = depth + depthDecodeSteps / 2  // mean positions a step attends over; a ring at most its window
        let rows = (c.numHiddenLayers - rings.count) * attended + rings.reduce(0) { $0 + min($1, attended) }
        let kvBytes = Double(rows * layerBytes)
        let kvMiB = oneDecimal(kvBytes / Double(1 << 20))
        print("  runs \(rates[i].map(oneDecimal).joined(separator: " ")); KV read per step \(kvMiB) MiB (mean)")
        // The same steps split in two: attention over the cache, and the rest (the weights' products, mostly), so
        // that the cache's read speed compares with the weights' in the same seconds.
        let attention = median(rounds[i].map(\.attentionSeconds))
        let rest = median(rounds[i].map { $0.stepSeconds - $0.attentionSeconds })
        let kvSpeed = oneDecimal(kvBytes / max(attention, 1e-12) / 1e9)
        print("  attention \(format3(attention * 1e3)) ms per step, KV read at \(kvSpeed) GB/s; "
              + "the rest of the step \(format3(rest * 1e3)) ms (medians)")
        if i > 0 {
            // Paired within each round: the ratio of two depths measured in alternating bursts.
            let ratios = rates[i].indices.map { rates[i][$0] / rates[0][$0] }
            print("  speed / depth \(depths[0])'s \(fixed(median(ratios))) (median of the rounds' ratios)")
        }
    }
    print("peak RSS \(oneDecimal(peakRSSMiB())) MiB")
}

/// The comma-separated depths of --depth, or nil without it.
func parseDepths(_ args: Arguments) throws -> [Int]? {
    guard let text = args.string("--depth") else { return nil }
    let depths = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingSpaces) }
    guard !depths.isEmpty, depths.allSatisfy({ ($0 ?? -1) >= 0 }) else {
        throw UsageError("--depth takes comma-separated token counts >= 0, e.g. 0,1000,4000; got '\(text)'")
    }
    return depths.map { $0! }
}

/// `moert bench`.
func benchCommand(_ args: Arguments) throws {
    if let depths = try parseDepths(args) {
        for option in ["--prompt", "--decode", "--baseline", "--bandwidth"] where args.string(option) != nil || args.has(option) {
            throw UsageError("\(option) does not go with --depth")
        }
        let t0 = monotonicSeconds()
        let model = try loadModel(args)
        try benchDepths(args, depths: depths, model: model, loadSeconds: monotonicSeconds() - t0)
        return
    }
    let promptLength = try args.int("--prompt", default: 512)
    let decode = try args.int("--decode", default: 128)
    let repeats = try args.int("--repeat", default: 3)
    guard promptLength >= 1, decode >= 0, repeats >= 1 else { throw UsageError("--prompt >= 1, --decode >= 0 and --repeat >= 1 are required") }
    let t0 = monotonicSeconds()
    let model = try loadModel(args)
    let loadSeconds = monotonicSeconds() - t0
    var options = SessionOptions()
    options.kvType = try kvType(args)
    options.contextLength = max(try args.int("--ctx", default: 0), promptLength, 16 + decode,
                                args.has("--bandwidth") ? 16 + bandwidthBurstSteps : 0)
    guard options.contextLength <= model.contextLength else {
        throw UsageError("--prompt or 16 + --decode exceeds the model's context \(model.contextLength)")
    }
    let prompt = benchTokens(count: promptLength, vocab: model.config.vocabSize)

    try printBenchHeader(args, model: model, loadSeconds: loadSeconds)
    print("kv cache \(options.kvType.rawValue)")
    var configurations: [(String, Session)] = []
    if args.has("--baseline") || (args.string("--router") == nil && args.string("--moe-top-k") == nil) {
        configurations.append(("model routers", try Session(model: model, options: options)))
    }
    if args.string("--router") != nil || args.string("--moe-top-k") != nil {
        let session = try Session(model: model, options: options)
        try applyRouterOverride(args, to: session)
        configurations.append(("router " + (args.string("--router") ?? "topk k=" + (args.string("--moe-top-k") ?? "")), session))
    }
    // --bandwidth: a buffer for the plain reads, its pages written once before any timing.
    let readBuffer = args.has("--bandwidth") ? UnsafeMutableRawBufferPointer.allocate(byteCount: bandwidthReadBytes, alignment: 4096) : nil
    defer { readBuffer?.deallocate() }
    if let b = readBuffer { b.initializeMemory(as: UInt8.self, repeating: 0) }
    var medians: [(prefill: Double, decode: Double)] = []
    for (name, session) in configurations {
        var r = try measure(session, prompt: prompt, decode: decode, repeats: repeats)
        if let b = readBuffer { r.pairs = try measureBandwidthPairs(session, prompt: prompt, buffer: UnsafeRawBufferPointer(b)) }
        let p = median(r.prefill), d = r.decode.isEmpty ? 0 : median(r.decode)
        medians.append((p, d))
        print("\(name):")
        print("  prefill \(promptLength) tokens  \(oneDecimal(p)) tok/s median  (runs: \(r.prefill.map(oneDecimal).joined(separator: " ")))")
        if decode > 0 {
            print("  decode  \(decode) tokens  \(oneDecimal(d)) tok/s median  (runs: \(r.decode.map(oneDecimal).joined(separator: " ")))")
        }
        if !r.pairs.isEmpty {
            print("  bandwidth  \(oneDecimal(median(r.pairs.map(\.read)))) GB/s median of \(r.pairs.count) plain reads of \(bandwidthReadBytes >> 20) MiB, each right after a decode burst of \(bandwidthBurstSteps) tokens (\(oneDecimal(median(r.pairs.map(\.decode)))) tok/s median)")
            print("  pairs   decode tok/s:read GB/s \(r.pairs.map { "\(oneDecimal($0.decode)):\(oneDecimal($0.read))" }.joined(separator: " "))")
        }
    }
    if medians.count == 2 {
        print("ratio router/model: prefill \(format3(medians[1].prefill / medians[0].prefill)), decode \(format3(medians[1].decode / max(medians[0].decode, 1e-9)))")
    }
    print("peak RSS \(oneDecimal(peakRSSMiB())) MiB")
}

/// Applies the router override the arguments ask for (--router with --router-params, or --moe-top-k) to
/// `session`; without them the session keeps the model's routers.
/// - Throws: `UsageError` for options that do not go together, `MoertError` from the session.
func applyRouterOverride(_ args: Arguments, to session: Session) throws {
    if let k = args.string("--moe-top-k") {
        guard args.string("--router") == nil else { throw UsageError("--moe-top-k and --router exclude each other") }
        guard let v = Int(k), v >= 1 else { throw UsageError("--moe-top-k must be an integer >= 1") }
        try session.setTopK(v)
    } else if let kind = args.string("--router") {
        try session.setRouter(kind: kind, paramsJSON: args.string("--router-params"), what: "--router-params")
    } else if args.string("--router-params") != nil {
        throw UsageError("--router-params needs --router")
    }
}

/// "1.234".
func format3(_ v: Double) -> String {
    let t = Int((v * 1000).rounded())
    return "\(t / 1000).\(String(repeating: "0", count: 3 - String(t % 1000).count))\(t % 1000)"
}
