// KernelMeasurement: times every kernel a product can run on a model's own shapes, for KernelChoice. A few
// milliseconds per product: decode GEMVs read weights from memory (a buffer evicted from the caches before each pass,
// or larger than the last-level cache), the other products run from cache as they do in a forward pass.

import CKernels
import COpenBLAS
#if canImport(Glibc)
import Glibc
#endif

/// The shapes a model runs, to measure kernels on.
public struct KernelWorkload: Sendable {
    /// Storage of the model's large matrices (experts, attention, dense MLPs, output layer).
    public var storages: [WeightStorage]
    /// Hidden size.
    public var hidden: Int
    /// The routed experts' intermediate size (the width of SwiGLU).
    public var intermediate: Int
    /// Attention heads, key/value heads and head width.
    public var heads: Int, kvHeads: Int, headDim: Int

    public init(storages: [WeightStorage], hidden: Int, intermediate: Int, heads: Int, kvHeads: Int, headDim: Int) {
        self.storages = storages
        self.hidden = hidden
        self.intermediate = intermediate
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
    }

    /// Its shapes in one line, as the kernel cache keys them: "hidden 512, experts 1408, heads 8/2 x 64".
    public var shape: String { "hidden \(hidden), experts \(intermediate), heads \(heads)/\(kvHeads) x \(headDim)" }

    /// The products it runs: a decode GEMV and a prefill GEMM per storage, attention and SwiGLU.
    public var products: [KernelProduct] {
        var products: [KernelProduct] = []
        for s in WeightStorage.allCases where storages.contains(s) {
            for p in [KernelProduct.gemv(s), .gemm(s)] where !products.contains(p) { products.append(p) }
        }
        return products + [.attentionPrefill, .attentionDecode, .swiglu]
    }
}

/// Timings of kernels.
public enum KernelMeasurement {
    /// Rounds of the measurement proper (the median counts); the order of the kernels rotates between rounds.
    static let rounds = 3
    /// A kernel whose screening round is this much slower than the fastest is not measured further.
    static let screenRatio = 1.5
    /// OpenBLAS is chosen only when it measures this much faster than moert's fastest own kernel. Timed alone it
    /// cannot show what it costs in a forward pass, where its threads, spinning after each call, and moert's
    /// workers, spinning after each job, take cores from each other: on a 2-core Zen 3 EPYC, sgemm measured within
    /// 10% of moert's AVX2 GEMM either way, and prefill ran 1.21-1.44x faster on the latter; in slow spells sgemv
    /// measured up to 1.5x avx2x4's bandwidth while decode ran 1.16-1.39x faster on avx2x4.
    static let blasMargin = 1.5

    /// The fastest available kernel of each product on `workload`'s shapes, with a line of the timings (for the
    /// cache file and `moert info`). moert's own kernels are timed first for every product, OpenBLAS last for all of
    /// them, at the thread count it runs with when chosen (`Threads.current`): its threads spin for a while after each
    /// call, and moert's workers timed meanwhile lost a core to them (on a 2-core EPYC, avx2x4 measured 21-25 GB/s
    /// after an sgemv and 33-41 without, and lost its choice to blas at 26-30).
    /// `preferred(product)`: the kernel measured faster on CPUs like this one in earlier runs (`KernelTable`), which
    /// wins a near tie (`tieMargin`).
    public static func fastest(_ products: [KernelProduct], workload w: KernelWorkload,
                               preferred: (KernelProduct) -> Kernel? = { _ in nil }) -> [KernelProduct: (Kernel, String)] {
        var started: [(product: KernelProduct, bench: Bench, timing: Timing)] = []
        var stream: FloatBuffer?  // the GEMVs' buffer, filled once for all of them
        for p in products {
            let candidates = p.available
            guard candidates.count > 1 else { continue }
            if p.isGEMV, stream == nil {
                // Zero weights (no kernel skips them), every page mapped at once: about 0.6 ms per MiB here against
                // 1 ms for faulting the pages in by writing them.
                guard let buffer = try? FloatBuffer(count: Bench.streamBytes / 4, populated: true) else { continue }
                stream = buffer
            }
            guard let bench = try? Bench(product: p, workload: w, stream: stream) else { continue }
            started.append((p, bench, timeOwn(candidates, bench: bench)))
        }
        if started.contains(where: { $0.timing.candidates.contains(.blas) }) {
            openblas_set_num_threads(Int32(Threads.current))
            defer { Threads.configureBLAS() }
            for i in started.indices where started[i].timing.candidates.contains(.blas) {
                timeBLAS(&started[i].timing, bench: started[i].bench)
            }
        }
        // A product OpenBLAS would win has its own kernels timed again: a disturbance of the machine during the first
        // phase (every own kernel at half speed once in 13 loads) must not hand the choice to a kernel timed in
        // another minute. Each kernel keeps its faster median; OpenBLAS's spinning threads can only slow the second.
        for i in started.indices where winner(started[i].timing) == .blas {
            retimeOwn(&started[i].timing, bench: started[i].bench)
        }
        var result: [KernelProduct: (Kernel, String)] = [:]
        for (p, bench, timing) in started {
            result[p] = decide(timing, work: bench.work, preferred: preferred(p), describe: bench.describe)
        }
        return result
    }

    /// Times the own kernels that have rounds once more (`rounds` rounds, rotating) and keeps, per kernel, the rounds
    /// of the faster median.
    private static func retimeOwn(_ t: inout Timing, bench: Bench) {
        let own = t.rounds.keys.filter { $0 != .blas }.sorted { $0.rawValue < $1.rawValue }
        for (k, times) in timeRounds(own, bench: bench) where median(times) < median(t.rounds[k]!) { t.rounds[k] = times }
    }

    /// `rounds` rounds of the whole work for each of `kernels`, their order rotating between rounds.
    private static func timeRounds(_ kernels: [Kernel], bench: Bench) -> [Kernel: [Double]] {
        var times: [Kernel: [Double]] = [:]
        for round in 0..<rounds {
            for i in 0..<kernels.count {
                let k = kernels[(i + round) % kernels.count]
                times[k, default: []].append(bench.time(k, part: nil))
            }
        }
        return times
    }

    /// The middle value of `x` (non-empty): the upper one of an even count.
    private static func median(_ x: [Double]) -> Double { x.sorted()[x.count / 2] }

    /// The timings of one product's kernels so far.
    struct Timing {
        /// The kernels timed (every available one).
        var candidates: [Kernel]
        /// Seconds per unit of work in the screening round (a byte of a GEMV's part; the whole work of the others).
        var screen: [Kernel: Double] = [:]
        /// Seconds of each round of the whole work, for the kernels that passed the screening.
        var rounds: [Kernel: [Double]] = [:]
    }

    /// A screening round (each kernel on two parts of the work, its own where there are parts enough, so that none
    /// reads what another left in the cache; the faster of the two counts, per unit of work, so that one interruption
    /// cannot screen a kernel out and parts of different sizes compare), then, when more than one kernel is within `screenRatio` of the fastest
    /// (or OpenBLAS, timed later, may be), `rounds` rounds of the whole work for those, in rotating order. OpenBLAS
    /// is left to `timeBLAS`.
    private static func timeOwn(_ candidates: [Kernel], bench: Bench) -> Timing {
        var t = Timing(candidates: candidates)
        let own = candidates.filter { $0 != .blas }
        for (i, k) in own.enumerated() {
            t.screen[k] = screenTime(k, index: i, bench: bench, best: t.screen.values.min())
        }
        let best = t.screen.values.min() ?? 0
        let finalists = own.filter { t.screen[$0]! <= best * screenRatio }
        guard finalists.count > 1 || (candidates.contains(.blas) && !finalists.isEmpty) else { return t }
        t.rounds = timeRounds(finalists, bench: bench)
        return t
    }

    /// OpenBLAS's screening round and, when it is within `screenRatio` of the fastest, its rounds.
    private static func timeBLAS(_ t: inout Timing, bench: Bench) {
        let best = t.screen.values.min() ?? .infinity
        t.screen[.blas] = screenTime(.blas, index: t.candidates.count - 1, bench: bench, best: best)
        guard t.screen[.blas]! <= best * screenRatio else { return }
        t.rounds[.blas] = timeRounds([.blas], bench: bench)[.blas]
    }

    /// Seconds per unit of work of kernel `k` on its two screening parts (2 index and 2 index + 1): the faster. With
    /// `best`, the fastest kernel's so far, a part stops (at a GEMV's next matrix) once it has taken `screenRatio`
    /// times what that kernel would: the kernel is screened out either way, and a portable loop ten times slower
    /// than the vector kernels no longer spends tens of milliseconds on a first load to show it.
    private static func screenTime(_ k: Kernel, index i: Int, bench: Bench, best: Double?) -> Double {
        func part(_ p: Int) -> Double {
            bench.rate(k, part: p, limit: best.map { $0 * screenRatio * bench.partWork(p) })
        }
        return min(part(2 * i), part(2 * i + 1))
    }

    /// The winner of a product's timings: the fastest median of the rounds (blas's weighed by `blasMargin`), or
    /// without rounds for two kernels, the fastest screening; `preferred` instead when it comes within `tieMargin`.
    static func winner(_ t: Timing, preferred: Kernel? = nil) -> Kernel {
        let medians = t.rounds.mapValues(median)
        // Rounds of the whole work outweigh the screening: every kernel that has them competes, even one whose
        // screening (a part, timed once) fell behind a kernel timed in another minute.
        let timed = t.candidates.filter { medians[$0] != nil }
        // blas's time as it weighs in a forward pass (blasMargin)
        func weighed(_ k: Kernel) -> Double {
            let seconds = timed.count > 1 ? medians[k] ?? .infinity : t.screen[k] ?? .infinity
            return k == .blas ? seconds * blasMargin : seconds
        }
        let best = (timed.count > 1 ? timed : t.candidates).min { weighed($0) < weighed($1) }!
        // A near tie is the machine's noise more than the kernels' difference (two AVX2 GEMVs 2.4% apart at a noisy
        // first load, 1.2x apart in decode): the kernel measured faster on this kind of CPU before keeps it.
        if let preferred, preferred != best, weighed(preferred) <= weighed(best) * (1 + tieMargin) { return preferred }
        return best
    }

    /// How close a kernel from the table must come to the fastest to be chosen instead (the issue's tolerance for a
    /// choice: within 3% of the fastest).
    static let tieMargin = 0.03

    /// The winner of a product's timings and the line of timings, each described by `describe` from seconds of the
    /// whole work (`work` units; screening times are per unit).
    static func decide(_ t: Timing, work: Double, preferred: Kernel? = nil,
                       describe: (Double) -> String) -> (Kernel, String) {
        let winner = Self.winner(t, preferred: preferred), medians = t.rounds.mapValues(median)
        let detail = t.candidates.map { k in
            if let m = medians[k] { return "\(k.name) \(describe(m))" }
            return "\(k.name) \(describe((t.screen[k] ?? 0) * work))\(k == winner ? "" : " (screened out)")"
        }.joined(separator: ", ")
        let tie = winner != Self.winner(t)
            ? "; within \(Int((tieMargin * 100).rounded()))% of the fastest, the table's kernel for this CPU" : ""
        return (winner, detail + tie)
    }
}

/// The data and the call of one product's measurement.
private struct Bench {
    let product: KernelProduct
    /// Whole-work bytes (GEMV) or floating-point operations (others), for describing a time.
    let work: Double
    /// Runs the product on a kernel: the whole work (nil), or screening part i (of `screenParts`), stopping early
    /// (GEMVs, between matrices) once the clock passes the deadline; returns the work done, in the units of
    /// `partWork`. Its buffers live as long as it.
    let run: (Kernel, Int?, _ deadline: Double) -> Double
    /// The work of screening part i, in the units of `work` (the whole work where a product has no parts).
    let partWork: (Int) -> Double
    /// Readies a run of the whole work (nil) or of screening part i, untimed: a GEMV evicts the weights it will read
    /// from the caches.
    var prepare: (Int?) -> Void = { _ in }

    /// Seconds of one run of the whole work (nil) or of screening part i.
    func time(_ kernel: Kernel, part: Int?) -> Double {
        prepare(part)
        let start = monotonicSeconds()
        _ = run(kernel, part, .infinity)
        return monotonicSeconds() - start
    }

    /// Seconds per unit of work of screening part i, stopped after about `limit` seconds (nil: the whole part).
    func rate(_ kernel: Kernel, part: Int, limit: Double?) -> Double {
        prepare(part)
        let start = monotonicSeconds()
        let done = run(kernel, part, limit.map { start + $0 } ?? .infinity)
        return (monotonicSeconds() - start) / max(done, 1e-30)
    }

    /// "21.3 GB/s" for GEMVs (bytes read per second), else "0.41 ms", for `seconds` of the whole work.
    func describe(_ seconds: Double) -> String {
        if product.isGEMV { return "\(rounded(work / seconds / 1e9)) GB/s" }
        return "\(rounded(seconds * 1e3)) ms"
    }

    private func rounded(_ v: Double) -> String {
        let scaled = (v * 100).rounded() / 100
        return "\(scaled)"
    }

    /// The most matrices one pass of a GEMV's measurement multiplies.
    static let maxMatrices = 1024

    /// True where the CPU can evict a buffer from its caches (moert_cache_evict: x86). A GEMV's pass then reads a
    /// 16 MiB buffer evicted just before, as a decode reads weights from memory; elsewhere it reads a buffer larger
    /// than the last-level cache. On a 2-core Zen 3 EPYC (32 MiB of L3) the evicted 16 MiB read at the speed of an
    /// uncached 48 MiB pass (13.5-17.8 against 13.7-16.1 GB/s; 20-22 cached), evicting it took 0.4-0.5 ms, and mapping
    /// 48 MiB had cost 27-57 ms of a measurement that took 105-150 ms.
    static let evicts = moert_cache_evict(nil, 0) != 0

    /// The screening round of a GEMV reads parts of this fraction of the buffer, kernel k parts 2k and 2k + 1 (modulo
    /// the count). Without eviction, eight parts so that no kernel reads what another left in the cache (mapping the
    /// buffer writes it from start to end, so the last-level cache may still hold the later parts: screening compares,
    /// it does not choose, and a kernel's rounds read the whole buffer); with it, four larger ones.
    static var screenParts: Int { evicts ? 4 : 8 }

    /// Bytes of the buffer the GEMVs stream: 16 MiB where the CPU can evict it (`evicts`), else one and a half times
    /// the last-level cache the C library reports, from 16 to 96 MiB (filling a fresh buffer costs about 0.4-1.1 ms
    /// per MiB on a virtual machine). A buffer no larger than the cache, not evicted, measures the cache instead of
    /// memory: on an EPYC with 32 MiB of L3, a 32 MiB buffer ranked OpenBLAS's sgemv above avx2x4, which decodes 1.4x
    /// as fast as it.
    static var streamBytes: Int {
        if evicts { return 16 << 20 }
        let l3 = Int(sysconf(Int32(_SC_LEVEL3_CACHE_SIZE)))
        return min(max(l3 + l3 / 2, 16 << 20), 96 << 20)
    }

    /// The measurement of `p` on `w`'s shapes; GEMVs read `stream` (`streamBytes`, filled).
    init(product p: KernelProduct, workload w: KernelWorkload, stream: FloatBuffer?) throws {
        product = p
        let h = w.hidden, i = w.intermediate
        switch p {
        case .gemvF32, .gemvF16, .gemvBF16, .gemvQ8_0, .gemvQ4_0, .gemvQ3_0, .gemvQ4_K:
            // A decode's mix of shapes in turn, one after another through a buffer larger than the cache: the
            // experts' [2I, H] gate-up and [H, I] down matrices and an [H, H] attention projection (fewer rows for
            // very large ones). Large matrices alone would favour a kernel whose cost per call is high (OpenBLAS's
            // sgemv ranked first on them on a Zen 3 EPYC, and decoded 1.4x slower than avx2x4).
            let storage = WeightStorage.allCases.first { KernelProduct.gemv($0) == p }!
            // Rows of whole blocks of the storage: a model's q4_k attention may sit beside experts narrower than a
            // 256-weight super-block (they fall back to q4_0), whose width alone would make empty rows.
            let block = storage.blockValues
            let h = (h + block - 1) / block * block, i = (i + block - 1) / block * block
            let limit = Bench.streamBytes / Bench.screenParts
            let shapes = [(max(1, min(2 * i, limit / storage.bytes(h))), h), (max(1, min(h, limit / storage.bytes(i))), i),
                          (max(1, min(h, limit / storage.bytes(h))), h)]
            guard let buffer = stream else { throw MoertError(.internal, "no buffer to stream") }
            // At most `maxMatrices` of them a pass: a model whose matrices are smaller than 16 KiB lives in the cache
            // anyway, and thousands of calls on tiny matrices would cost more than the budget of the measurement.
            var matrices: [(offset: Int, rows: Int, cols: Int)] = [], offset = 0
            while matrices.count < Bench.maxMatrices {
                let (rows, cols) = shapes[matrices.count % shapes.count], bytes = storage.bytes(rows * cols)
                guard offset + bytes <= buffer.byteCount else { break }
                matrices.append((offset, rows, cols))
                offset += bytes
            }
            let x = try filled(max(h, i), 0.01), y = try FloatBuffer(count: shapes.map(\.0).max()!)
            let scratch = try FloatBuffer(count: shapes.map {
                Linear.scratchCount(storage: storage, outFeatures: $0.0, inFeatures: $0.1, rows: 1)
            }.max()!)
            work = Double(offset)
            let share = matrices.count / Bench.screenParts
            func partMatrices(_ part: Int?) -> Range<Int> {
                guard let part else { return 0..<matrices.count }
                let first = part % Bench.screenParts * share
                return first..<first + share
            }
            partWork = { part in
                Double(partMatrices(part).reduce(0) { $0 + storage.bytes(matrices[$1].rows * matrices[$1].cols) })
            }
            prepare = { part in
                let range = partMatrices(part)
                guard Bench.evicts, let first = range.first, let last = range.last else { return }
                let end = matrices[last].offset + storage.bytes(matrices[last].rows * matrices[last].cols)
                moert_cache_evict(UnsafeRawPointer(buffer.pointer) + matrices[first].offset, Int64(end - matrices[first].offset))
            }
            run = { kernel, part, deadline in
                var done = 0.0
                for m in partMatrices(part) {
                    let (offset, rows, cols) = matrices[m]
                    let linear = Linear(weight: Weight(raw: UnsafeRawPointer(buffer.pointer) + offset, storage: storage,
                                                       shape: [rows, cols]))
                    linear.apply(x.pointer, rows: 1, into: y.pointer, scratch: scratch.span, kernel: kernel)
                    // A decode hands each product's result to a job on moert's own threads (norms, SwiGLU,
                    // attention): a kernel is timed in that company, where OpenBLAS's spinning threads cost cores.
                    moert_parallel({ _, _, _ in }, nil, Int32(Threads.current))
                    done += Double(storage.bytes(rows * cols))
                    if monotonicSeconds() > deadline { break }
                }
                return done
            }
        case .gemmF32, .gemmF16, .gemmBF16:
            // A prefill chunk's rows through one expert's gate-up matrix (a slice of it for large models).
            let storage = [WeightStorage.f32, .f16, .bf16].first { KernelProduct.gemm($0) == p }!
            let rows = 64, outs = min(2 * i, max(64, (1 << 24) / (rows * h)))
            let weights = try filled((storage.bytes(outs * h) + 3) / 4, 0.01)
            let x = try filled(rows * h, 0.01), y = try FloatBuffer(count: rows * outs)
            let scratch = try FloatBuffer(count: Linear.scratchCount(storage: storage, outFeatures: outs, inFeatures: h, rows: rows))
            work = Double(2 * rows * outs * h)
            partWork = { [work] _ in work }
            run = { [work] kernel, _, _ in
                let linear = Linear(weight: Weight(raw: UnsafeMutableRawPointer(weights.pointer), storage: storage, shape: [outs, h]))
                linear.apply(x.pointer, rows: rows, into: y.pointer, scratch: scratch.span, kernel: kernel)
                return work
            }
        case .attentionPrefill:
            let n = 64, qw = w.heads * w.headDim, kvw = w.kvHeads * w.headDim
            let q = try filled(n * qw, 0.01), out = try FloatBuffer(count: n * qw)
            let keys = try filled(n * kvw, 0.01), values = try filled(n * kvw, 0.01)
            let scores = try FloatBuffer(count: Threads.current * n * n)
            work = Double(4 * n * n * qw)
            partWork = { [work] _ in work }
            run = { [work] kernel, _, _ in
                attentionPrefill(q: q.pointer, keys: keys.pointer, values: values.pointer, rows: n, position: 0,
                                 heads: w.heads, kvHeads: w.kvHeads, headDim: w.headDim, scale: 0.125,
                                 scores: scores.pointer, scoresCount: scores.count, into: out.pointer, kernel: kernel)
                return work
            }
        case .attentionDecode:
            // Passes over a cache of 1,024 positions, each evicted before it where the CPU can (`evicts`), as a decode
            // at depth reads the cache from memory: how a kernel asks for the rows ahead decides its speed there, not
            // in the cache (on a Zen 4 EPYC avx2l2 read a cache in memory 1.0-2.0x as fast as avx2). The evictions,
            // the same for every kernel, are timed too; two passes a run steady a run of a tenth of a millisecond.
            let total = 1024, passes = 2, qw = w.heads * w.headDim, kvw = w.kvHeads * w.headDim
            let cacheBytes = Int64(total * kvw * MemoryLayout<Float>.size)
            let q = try filled(qw, 0.01), out = try FloatBuffer(count: qw)
            let keys = try filled(total * kvw, 0.01), values = try filled(total * kvw, 0.01)
            let scratch = try FloatBuffer(count: Int(moert_attention_decode_scratch(Int32(w.heads), Int32(w.headDim), Int64(total))))
            work = Double(4 * passes * total * qw)
            partWork = { [work] _ in work }
            run = { [work] kernel, _, _ in
                for _ in 0..<passes {
                    if Bench.evicts {
                        moert_cache_evict(keys.pointer, cacheBytes)
                        moert_cache_evict(values.pointer, cacheBytes)
                    }
                    moert_attention_decode_kernel(kernel.rawValue, q.pointer, keys.pointer, values.pointer,
                                                  Int32(MOERT_KV_F32), Int32(w.heads), Int32(w.kvHeads), Int32(w.headDim),
                                                  0, Int64(total), Int64(total), nil, 0.125, scratch.pointer, out.pointer)
                }
                return work
            }
        case .swiglu:
            let rows = 64
            let gateUp = try filled(rows * 2 * i, 0.5), out = try FloatBuffer(count: rows * i)
            work = Double(rows * i)
            partWork = { [work] _ in work }
            run = { [work] kernel, _, _ in
                swiglu(gateUp.pointer, rows: rows, width: i, into: out.pointer, kernel: kernel)
                return work
            }
        }
    }
}

/// A buffer of `count` floats, each `value`.
private func filled(_ count: Int, _ value: Float) throws -> FloatBuffer {
    let buffer = try FloatBuffer(count: count)
    buffer.pointer.update(repeating: value, count: count)
    return buffer
}

extension FloatBuffer {
    /// All of it, as a buffer pointer.
    fileprivate var span: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
}

extension KernelProduct {
    /// True for the decode GEMVs (measured in bytes per second).
    var isGEMV: Bool { [.gemvF32, .gemvF16, .gemvBF16, .gemvQ8_0, .gemvQ4_0, .gemvQ3_0, .gemvQ4_K].contains(self) }
}
