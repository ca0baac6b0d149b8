// KernelChoiceTests: how a product's kernel is chosen — MOERT_KERNELS, the cache file keyed by CPU, thread count and
// shape, the table when caching is off or the cache unwritable — on simulated CPUs, without touching the process's
// own choices.

import CKernels
import MoertTestSupport
import Testing
@testable import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

@Suite("Kernel choice")
struct KernelChoiceTests {
    /// A simulated CPU on which every product can run every kernel it has.
    static func everything(_ p: KernelProduct) -> [Kernel] { p.kernels }
    /// A simulated CPU without AVX-512.
    static func noAVX512(_ p: KernelProduct) -> [Kernel] { p.kernels.filter { $0 != .avx512 } }
    /// The detail of a measurement that timed every kernel `p` has, as KernelMeasurement writes it.
    static func timed(_ p: KernelProduct) -> String { p.kernels.map { "\($0.name) 1.0 GB/s" }.joined(separator: ", ") }

    static let zen2 = CPUIdentity(vendor: "AuthenticAMD", brand: "AMD EPYC 7B12", family: 23, model: 49, stepping: 0,
                                  features: ["avx2", "fma", "f16c"])
    static let zen4 = CPUIdentity(vendor: "AuthenticAMD", brand: "AMD EPYC 9B14", family: 25, model: 17, stepping: 1,
                                  features: ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl"])

    func chooser(_ cpu: CPUIdentity, path: String?, shape: String = "hidden 64", threads: Int = 2,
                 available: @escaping (KernelProduct) -> [Kernel] = KernelChoiceTests.everything) -> KernelChooser {
        var c = KernelChooser(cpu: cpu, threads: threads, shape: shape, settings: KernelSettings(cachePath: path))
        c.available = available
        return c
    }

    // ---- MOERT_KERNELS ----

    @Test("a kernel name forces every product that has it; PRODUCT=KERNEL and groups one or several; later entries win")
    func forcedEntries() throws {
        var s = KernelSettings()
        try s.force("avx2, gemv.f32=blas,attention=avx512", available: Self.everything)
        #expect(s.forced[.gemvF16] == .avx2 && s.forced[.gemvQ4_0] == .avx2 && s.forced[.swiglu] == .avx2)
        #expect(s.forced[.gemvF32] == .blas)
        #expect(s.forced[.attentionPrefill] == .avx512 && s.forced[.attentionDecode] == .avx2)  // decode has no avx512
        #expect(s.forced[.gemmF32] == .avx2 && s.forced[.gemmBF16] == .avx2)
        #expect(s.forcedBy[.gemvF32] == "gemv.f32=blas")
        var g = KernelSettings()
        try g.force("gemv=portable", available: Self.everything)
        #expect(Set(g.forced.keys) == [.gemvF16, .gemvBF16, .gemvQ8_0, .gemvQ4_0, .gemvQ3_0, .gemvQ4_K])  // gemv.f32 has no portable
        try g.force("", available: Self.everything)
        #expect(g.forced.count == 6)
    }

    @Test("MOERT_KERNELS errors name the entry", arguments: [
        ("avx3", "not KERNEL or PRODUCT=KERNEL"), ("gemv.f16=fast", "not KERNEL or PRODUCT=KERNEL"),
        ("a=b=avx2", "not KERNEL or PRODUCT=KERNEL"), ("gemx=avx2", "unknown product 'gemx'"),
        ("gemv.q8_0=blas", "the product has no such kernel"), ("gemm=portable", "no gemm product has the portable kernel"), ("gemv.f16=avx512", "this CPU cannot run it"),
        ("avx512", "no product can run avx512 on this CPU"),
    ])
    func forcedErrors(text: String, message: String) {
        var s = KernelSettings()
        do {
            try s.force(text, available: Self.noAVX512)
            Issue.record("\(text) was accepted")
        } catch let e as MoertError {
            #expect(e.code == .invalidArgument && e.message.contains(message) && e.message.hasPrefix("MOERT_KERNELS"), "\(e.message)")
        } catch {
            Issue.record("\(error)")
        }
    }

    // ---- The cache file ----

    @Test("the cache path: MOERT_KERNEL_CACHE, else XDG_CACHE_HOME, else HOME; 0 or off turns caching off")
    func cachePath() {
        func path(_ env: [String: String]) -> String? { KernelCache.path { env[$0] } }
        #expect(path(["MOERT_KERNEL_CACHE": "/x/k.tsv", "HOME": "/h"]) == "/x/k.tsv")
        #expect(path(["MOERT_KERNEL_CACHE": "off", "HOME": "/h"]) == nil)
        #expect(path(["MOERT_KERNEL_CACHE": "0", "HOME": "/h"]) == nil)
        #expect(path(["XDG_CACHE_HOME": "/c", "HOME": "/h"]) == "/c/moert/kernels.tsv")
        #expect(path(["XDG_CACHE_HOME": "relative", "HOME": "/h"]) == "/h/.cache/moert/kernels.tsv")
        #expect(path([:]) == nil)
    }

    @Test("cache entries survive a round trip; comments, short lines, bad thread counts and odd bytes are skipped")
    func cacheParse() {
        let e = KernelCache.Entry(cpu: "cpu\tone", threads: 2, product: "gemv.f16", shape: "hidden 64", kernel: "avx2",
                                  detail: "avx2 1 GB/s\nportable 0.1 GB/s")
        let back = KernelCache.parse(KernelCache.format([e]))
        #expect(back.count == 1 && back[0].cpu == "cpu one" && back[0].detail == "avx2 1 GB/s portable 0.1 GB/s")
        let text = "# comment\nx\t2\tgemv.f16\n\tzero\t0\tp\ts\tk\nc\t-1\tp\ts\tk\nc\t3\tp\ts\tk\n\u{FFFD}\t\t\t\n"
        let parsed = KernelCache.parse(text)
        #expect(parsed.count == 1 && parsed[0].threads == 3 && parsed[0].detail == "")
    }

    @Test("an oversized cache file is read up to its first MiB")
    func cacheOversized() throws {
        let dir = try TemporaryDirectory(), path = dir.path + "/kernels.tsv"
        let line = "c\t1\tgemv.f16\ts\tavx2\t" + String(repeating: "d", count: 1000) + "\n"
        let fd = open(path, O_WRONLY | O_CREAT, 0o644)
        for _ in 0..<2048 { _ = line.withCString { write(fd, $0, strlen($0)) } }
        close(fd)
        let entries = KernelCache.read(path: path)
        #expect(entries.count >= 1000 && entries.count < 1100)
    }

    // ---- Choosing ----

    @Test("measured once and cached; later choosers on the same CPU, threads and shape read the cache")
    func measuredThenCached() throws {
        let dir = try TemporaryDirectory(), path = dir.path + "/sub/dir/kernels.tsv"
        var calls: [[KernelProduct]] = []
        let measure: ([KernelProduct]) -> [KernelProduct: (Kernel, String)] = { open in
            calls.append(open)
            return Dictionary(uniqueKeysWithValues: open.map { ($0, ($0.kernels.last!, Self.timed($0))) })
        }
        let first = chooser(Self.zen2, path: path).decide([.gemvF16, .gemvF32, .swiglu], measure: measure)
        #expect(first.map(\.reason) == [.measured, .measured, .measured])
        #expect(first.map(\.kernel) == [.portable, .blas, .portable])  // what the measurement said, not the default
        #expect(calls.count == 1 && calls[0] == [.gemvF16, .gemvF32, .swiglu])

        let second = chooser(Self.zen2, path: path).decide([.gemvF16, .gemvF32, .swiglu], measure: measure)
        #expect(second.map(\.reason) == [.cached, .cached, .cached] && second.map(\.kernel) == first.map(\.kernel))
        #expect(calls.count == 1)

        // Another thread count, another shape, another CPU: measured anew, the others' entries kept.
        _ = chooser(Self.zen2, path: path, threads: 1).decide([.gemvF16], measure: measure)
        _ = chooser(Self.zen2, path: path, shape: "hidden 4096").decide([.gemvF16], measure: measure)
        var moved = Self.zen2
        moved.model = 113
        let other = chooser(moved, path: path).decide([.gemvF16], measure: measure)
        #expect(other[0].reason == .measured && calls.count == 4)
        #expect(KernelCache.read(path: path).count == 6)
        #expect(chooser(Self.zen2, path: path).decide([.gemvF16], measure: measure)[0].reason == .cached)
    }

    @Test("a cached kernel this CPU cannot run is measured again")
    func cachedButUnavailable() throws {
        let dir = try TemporaryDirectory(), path = dir.path + "/kernels.tsv"
        _ = chooser(Self.zen4, path: path).decide([.gemvF16]) { _ in [.gemvF16: (.avx512, Self.timed(.gemvF16))] }
        var measured = false
        let d = chooser(Self.zen4, path: path, available: Self.noAVX512).decide([.gemvF16]) { _ in
            measured = true
            return [.gemvF16: (.avx2, Self.timed(.gemvF16))]
        }
        #expect(measured && d[0].kernel == .avx2 && d[0].reason == .measured)
    }

    @Test("a cached choice whose measurement did not time every kernel the product has now is measured again")
    func cachedBeforeAKernelWasAdded() throws {
        let dir = try TemporaryDirectory(), path = dir.path + "/kernels.tsv"
        // As a build without avx2x4 wrote it: avx2 timed against portable only.
        _ = chooser(Self.zen2, path: path, available: { p in p.kernels.filter { $0 != .avx2x4 } }).decide([.gemvF16]) { _ in
            [.gemvF16: (.avx2, "avx2 21.0 GB/s, portable 2.0 GB/s (screened out)")]
        }
        var asked: [KernelProduct] = []
        let d = chooser(Self.zen2, path: path, available: Self.noAVX512).decide([.gemvF16]) { open in
            asked = open
            return [.gemvF16: (.avx2x4, "avx2x4 30.0 GB/s, avx2 21.0 GB/s, avx2hw 20.0 GB/s, portable 2.0 GB/s (screened out)")]
        }
        #expect(asked == [.gemvF16] && d[0].kernel == .avx2x4 && d[0].reason == .measured)
        let again = chooser(Self.zen2, path: path, available: Self.noAVX512).decide([.gemvF16]) { _ in [:] }
        #expect(again[0].kernel == .avx2x4 && again[0].reason == .cached)
    }

    @Test("with caching off or an unwritable cache the table decides, without measuring",
          arguments: [nil, "/proc/version/kernels.tsv", "/dev/null/x/kernels.tsv"])
    func tableWithoutCache(path: String?) {
        var measured = false
        let zen4 = chooser(Self.zen4, path: path).decide([.gemvF16, .gemvF32, .gemmF16]) { _ in
            measured = true
            return [:]
        }
        #expect(!measured)
        #expect(zen4.map(\.reason) == [.table, .table, .table])
        #expect(zen4.map(\.kernel) == [.avx2, .avx2x4, .avx512])  // Zen 4's GEMV rows; widest vectors for gemm.f16
        let unknown = chooser(CPUIdentity(vendor: "GenuineIntel", brand: "", family: 6, model: 143, stepping: 8,
                                          features: []), path: path).decide([.gemvF16]) { _ in [:] }
        #expect(unknown[0].kernel == .avx512 && unknown[0].reason == .table)
    }

    @Test("MOERT_KERNELS and single-kernel products are never measured; a product the measurement skipped gets the table")
    func forcedAndOnly() throws {
        let dir = try TemporaryDirectory(), path = dir.path + "/kernels.tsv"
        let unknown = CPUIdentity(vendor: "Test", brand: "", family: 1, model: 1, stepping: 1, features: [])
        // A CPU on which only OpenBLAS runs the prefill products.
        var c = chooser(unknown, path: path) { p in
            p == .gemmF32 || p == .attentionPrefill ? [.blas] : Self.noAVX512(p)
        }
        c.settings.forced = [.gemvF16: .portable]
        var asked: [KernelProduct] = []
        let d = c.decide([.gemvF16, .gemmF32, .attentionPrefill, .gemvF32]) { open in
            asked = open
            return [:]
        }
        #expect(asked == [.gemvF32])
        #expect(d.map(\.reason) == [.forced, .only, .only, .table])
        #expect(d.map(\.kernel) == [.portable, .blas, .blas, .avx2])
        #expect(KernelCache.read(path: path).isEmpty)
    }

    @Test("OpenBLAS wins a measurement only by more than blasMargin; the screening decides when nothing was timed further")
    func blasMargin() {
        func winner(_ rounds: [Kernel: [Double]], screen: [Kernel: Double]) -> Kernel {
            let t = KernelMeasurement.Timing(candidates: [.avx2, .blas], screen: screen, rounds: rounds)
            return KernelMeasurement.decide(t, work: 1, describe: { "\($0) s" }).0
        }
        let screen: [Kernel: Double] = [.avx2: 1.0, .blas: 1.0]
        let margin = KernelMeasurement.blasMargin
        #expect(winner([.avx2: [1.0, 1.0, 1.0], .blas: [0.95, 0.95, 0.95]], screen: screen) == .avx2)
        #expect(winner([.avx2: [1.0, 1.0, 1.0], .blas: [0.9 / margin, 0.9 / margin, 2]], screen: screen) == .blas)
        #expect(winner([.avx2: [1.0, 0.9, 5.0], .blas: [1.2, 1.2, 1.2]], screen: screen) == .avx2)  // medians
        // Rounds outweigh the screening: avx2's screening fell behind, its rounds did not.
        #expect(winner([.avx2: [1.0, 1.0, 1.0], .blas: [1.1, 1.1, 1.1]], screen: [.avx2: 3.0, .blas: 1.0]) == .avx2)
        // Only the screening: avx2 alone passed it (blas over screenRatio slower), or blas alone by far.
        #expect(winner([:], screen: [.avx2: 1.0, .blas: 2.0]) == .avx2)
        #expect(winner([:], screen: [.avx2: 2.0, .blas: 1.0]) == .blas)
    }

    @Test("a kernel the table measured faster on this kind of CPU wins a near tie (within tieMargin), never more")
    func tableBreaksNearTies() {
        func winner(_ rounds: [Kernel: [Double]], preferred: Kernel?) -> Kernel {
            let t = KernelMeasurement.Timing(candidates: [.avx2x4, .avx2, .portable],
                                             screen: [.avx2x4: 1, .avx2: 1, .portable: 9], rounds: rounds)
            return KernelMeasurement.decide(t, work: 1, preferred: preferred, describe: { "\($0) s" }).0
        }
        let margin = KernelMeasurement.tieMargin
        // avx2 measured 2% faster: noise; the table's avx2x4 keeps the product.
        #expect(winner([.avx2x4: [1.02, 1.02, 1.02], .avx2: [1, 1, 1]], preferred: .avx2x4) == .avx2x4)
        let t = KernelMeasurement.Timing(candidates: [.avx2x4, .avx2], screen: [:], rounds: [.avx2x4: [1.02], .avx2: [1]])
        #expect(KernelMeasurement.decide(t, work: 1, preferred: .avx2x4, describe: { "\($0) s" }).1.contains("table"))
        #expect(winner([.avx2x4: [1.02, 1.02, 1.02], .avx2: [1, 1, 1]], preferred: nil) == .avx2)
        // Further apart than the margin: the measurement decides.
        #expect(winner([.avx2x4: [1 + 2 * margin, 1 + 2 * margin, 1 + 2 * margin], .avx2: [1, 1, 1]], preferred: .avx2x4) == .avx2)
        // A kernel screened out (no rounds) is no near tie.
        #expect(winner([.avx2: [1, 1, 1], .avx2x4: [1.01, 1.01, 1.01]], preferred: .portable) == .avx2)
    }

    @Test("evicting a buffer from the caches keeps its contents (x86: done; elsewhere: refused, nothing done)")
    func cacheEvict() {
        var values = (0..<100_000).map { Float($0) }
        let done = values.withUnsafeBytes { moert_cache_evict($0.baseAddress, Int64($0.count)) }
        #if arch(x86_64)
        #expect(done == 1 && moert_cache_evict(nil, 0) == 1)
        #else
        #expect(done == 0)
        #endif
        #expect(values.enumerated().allSatisfy { $0.element == Float($0.offset) })
        values[0] = 1
        #expect(values[0] == 1)
    }

    // ---- This CPU ----

    @Test("this CPU's identity names its vendor, family and features; its key holds them")
    func identity() {
        let cpu = CPUIdentity.current
        #expect(!cpu.vendor.isEmpty && cpu.family > 0)
        #expect(cpu.key.contains("family \(cpu.family) model \(cpu.model)"))
        #expect(cpu.features.contains("avx2") == (KernelProduct.gemvF16.available.contains(.avx2)))
        #expect(!cpu.key.contains("\t") && !cpu.key.contains("\n"))
    }

    @Test("the measurement picks an available kernel of each product with more than one, on a model's shapes")
    func measurement() {
        let w = KernelWorkload(storages: [.f16, .q8_0, .f32], hidden: 64, intermediate: 96, heads: 4, kvHeads: 2, headDim: 16)
        let products = w.products
        #expect(products == [.gemvF32, .gemmF32, .gemvF16, .gemmF16, .gemvQ8_0, .attentionPrefill, .attentionDecode, .swiglu])
        let result = KernelMeasurement.fastest(products, workload: w)
        for p in products {
            if p.available.count > 1 {
                let (kernel, detail) = result[p]!
                #expect(p.available.contains(kernel), "\(p.name)")
                for k in p.available { #expect(detail.contains(k.name), "\(p.name): \(detail)") }
            } else {
                #expect(result[p] == nil)
            }
        }
    }

    @Test("a quantized GEMV is measured on rows of whole blocks: q4_k beside experts narrower than its super-block")
    func measurementOfNarrowRows() {
        // q4_k attention (hidden 256) with experts of 96 (q4_0 in such a checkpoint): 96 alone is no whole q4_k row.
        let w = KernelWorkload(storages: [.q4_k, .q4_0], hidden: 256, intermediate: 96, heads: 4, kvHeads: 2, headDim: 64)
        let result = KernelMeasurement.fastest([.gemvQ4_K], workload: w)
        let (kernel, detail) = result[.gemvQ4_K]!
        #expect(KernelProduct.gemvQ4_K.available.contains(kernel), "\(detail)")
    }
}
