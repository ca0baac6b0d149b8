// KernelChoice: picks the kernel of each product a model runs, once per process: forced by MOERT_KERNELS, else the
// choice measured earlier on this CPU (the cache file), else a short measurement on the model's own shapes (then
// cached), else — caching off or the cache unwritable — the table of measured defaults.

import CKernels
#if canImport(Glibc)
import Glibc
#endif

/// How a product's kernel was chosen.
public enum KernelReason: String, Sendable {
    /// The only kernel this CPU can run for it.
    case only
    /// `MOERT_KERNELS` named it.
    case forced
    /// Timed on the model's shapes at this load, and cached.
    case measured
    /// Timed by an earlier run on this CPU with this thread count (the cache file).
    case cached
    /// The table of measured defaults (caching off, or the cache unwritable).
    case table
    /// Nothing chose yet (no loaded model runs the product): the widest vectors first.
    case preferred
}

/// The kernel a product runs, and why.
public struct KernelDecision: Sendable {
    public let product: KernelProduct
    public let kernel: Kernel
    public let reason: KernelReason
    /// The measurement ("avx2 21.4 GB/s, portable 2.0 GB/s"), the table's source or the `MOERT_KERNELS` entry.
    public let detail: String
}

/// What moert's environment says about kernels: `MOERT_KERNELS` and the cache file.
public struct KernelSettings: Sendable {
    /// Products forced to a kernel.
    public var forced: [KernelProduct: Kernel] = [:]
    /// The `MOERT_KERNELS` entry that forced each product.
    public var forcedBy: [KernelProduct: String] = [:]
    /// The cache file; nil when caching is off.
    public var cachePath: String?

    public init(forced: [KernelProduct: Kernel] = [:], cachePath: String? = nil) {
        self.forced = forced
        self.cachePath = cachePath
    }

    /// The settings of this process's environment.
    /// - Throws: `MoertError` (`.invalidArgument`) naming a `MOERT_KERNELS` entry that is not understood or cannot run.
    public static func fromEnvironment() throws -> KernelSettings {
        var settings = KernelSettings(cachePath: KernelCache.path())
        if let text = getenv("MOERT_KERNELS") { try settings.force(String(cString: text)) }
        return settings
    }

    /// Adds the choices of a `MOERT_KERNELS` value: comma-separated entries, each a kernel for every product that has
    /// it ("avx2"), or PRODUCT=KERNEL, where PRODUCT is a product ("gemv.f16") or a group ("gemv", "gemm",
    /// "attention": those of its products that have the kernel). Later entries override earlier ones.
    /// - Throws: `MoertError` (`.invalidArgument`) for an unknown name, or a kernel this CPU cannot run.
    public mutating func force(_ text: String, available: (KernelProduct) -> [Kernel] = { $0.available }) throws {
        let kernelNames = Kernel.allCases.map(\.name).joined(separator: ", ")
        for raw in text.split(separator: ",") {
            let entry = String(raw.filter { $0 != " " })
            if entry.isEmpty { continue }
            let parts = entry.split(separator: "=", omittingEmptySubsequences: false).map(String.init)
            guard parts.count <= 2, let kernel = Kernel(name: parts[parts.count - 1]) else {
                throw MoertError.invalid("MOERT_KERNELS: '\(entry)' is not KERNEL or PRODUCT=KERNEL (kernels: \(kernelNames))")
            }
            if parts.count == 1 {
                let products = KernelProduct.allCases.filter { available($0).contains(kernel) }
                guard !products.isEmpty else {
                    throw MoertError.invalid("MOERT_KERNELS: no product can run \(kernel.name) on this CPU")
                }
                for p in products { set(p, kernel, entry) }
                continue
            }
            let exact = KernelProduct.allCases.filter { $0.name == parts[0] }
            let group = KernelProduct.allCases.filter { $0.name.hasPrefix(parts[0] + ".") }
            guard !exact.isEmpty || !group.isEmpty else {
                let names = KernelProduct.allCases.map(\.name).joined(separator: ", ")
                throw MoertError.invalid("MOERT_KERNELS: unknown product '\(parts[0])' (products: \(names); or gemv, gemm, attention)")
            }
            // A group forces those of its products that have the kernel.
            let products = exact.isEmpty ? group.filter { $0.kernels.contains(kernel) } : exact
            guard !products.isEmpty else {
                throw MoertError.invalid("MOERT_KERNELS: no \(parts[0]) product has the \(kernel.name) kernel")
            }
            for p in products {
                guard available(p).contains(kernel) else {
                    let reason = p.kernels.contains(kernel) ? "this CPU cannot run it" : "the product has no such kernel"
                    let can = available(p).map(\.name).joined(separator: ", ")
                    throw MoertError.invalid("MOERT_KERNELS: \(p.name) cannot run \(kernel.name): \(reason) (it can run: \(can))")
                }
                set(p, kernel, entry)
            }
        }
    }

    private mutating func set(_ product: KernelProduct, _ kernel: Kernel, _ entry: String) {
        forced[product] = kernel
        forcedBy[product] = entry
    }
}

/// Chooses kernels for one CPU, thread count and model shape; `KernelChoice` holds the process's choices.
public struct KernelChooser {
    public var cpu: CPUIdentity
    public var threads: Int
    /// The shapes measured on (`KernelWorkload.shape`): a choice cached for other shapes does not apply.
    public var shape: String
    public var settings: KernelSettings
    /// The kernels a product may choose from.
    public var available: (KernelProduct) -> [Kernel] = { $0.available }

    public init(cpu: CPUIdentity, threads: Int, shape: String, settings: KernelSettings) {
        self.cpu = cpu
        self.threads = threads
        self.shape = shape
        self.settings = settings
    }

    /// True when `e` was measured here: this CPU, thread count and shape.
    func isOurs(_ e: KernelCache.Entry) -> Bool { e.cpu == cpu.key && e.threads == threads && e.shape == shape }

    /// The decision for `product` that needs no measurement: forced by `MOERT_KERNELS`, the only kernel it can run,
    /// or `cached` when that entry names a kernel it can run and its measurement timed every kernel it can run (an
    /// entry written before a kernel was added is measured again); nil when it is to be measured or the table decides.
    public func settled(_ product: KernelProduct, cached: KernelCache.Entry?) -> KernelDecision? {
        let candidates = available(product)
        if let kernel = settings.forced[product] {
            return KernelDecision(product: product, kernel: kernel, reason: .forced,
                                  detail: "MOERT_KERNELS=\(settings.forcedBy[product] ?? kernel.name)")
        }
        if candidates.count <= 1 {
            return KernelDecision(product: product, kernel: candidates.first ?? .portable, reason: .only, detail: "")
        }
        if let e = cached, let kernel = Kernel(name: e.kernel), candidates.contains(kernel),
           candidates.allSatisfy({ e.timedKernels.contains($0.name) }) {
            return KernelDecision(product: product, kernel: kernel, reason: .cached, detail: e.detail)
        }
        return nil
    }

    /// Decisions for `products`; `measure(products)` times the candidates of those that need a measurement and
    /// returns each one's fastest kernel with a line describing the timings (it is called at most once, and only when
    /// the result can be cached).
    public func decide(_ products: [KernelProduct],
                       measure: ([KernelProduct]) -> [KernelProduct: (Kernel, String)]) -> [KernelDecision] {
        var decisions: [KernelProduct: KernelDecision] = [:]
        var open: [KernelProduct] = []
        let entries = settings.cachePath.map { KernelCache.read(path: $0) } ?? []
        for p in products {
            if let d = settled(p, cached: entries.last { isOurs($0) && $0.product == p.name }) {
                decisions[p] = d
            } else {
                open.append(p)
            }
        }
        if !open.isEmpty, let path = settings.cachePath, KernelCache.isWritable(path: path) {
            let measured = measure(open)
            var kept = entries.filter { e in !(isOurs(e) && open.contains { $0.name == e.product }) }
            for p in open {
                guard let (kernel, detail) = measured[p] else { continue }
                kept.append(KernelCache.Entry(cpu: cpu.key, threads: threads, product: p.name, shape: shape,
                                              kernel: kernel.name, detail: detail))
            }
            if (try? KernelCache.write(kept, path: path)) != nil {
                for p in open {
                    guard let (kernel, detail) = measured[p] else { continue }
                    decisions[p] = KernelDecision(product: p, kernel: kernel, reason: .measured, detail: detail)
                }
            }
        }
        for p in open where decisions[p] == nil {
            let (kernel, source) = KernelTable.choice(for: p, cpu: cpu, available: available(p))
            decisions[p] = KernelDecision(product: p, kernel: kernel, reason: .table, detail: source)
        }
        return products.compactMap { decisions[$0] }
    }
}

/// The process's kernel choices: made once per product, by the first model that runs it, and kept.
public enum KernelChoice {
    private static let lock = Lock()
    nonisolated(unsafe) private static var decisions: [KernelProduct: KernelDecision] = [:]
    nonisolated(unsafe) private static var measuredMilliseconds = 0.0

    /// The environment's settings, read once.
    private static let environment: Result<KernelSettings, MoertError> = {
        do { return .success(try KernelSettings.fromEnvironment()) } catch let e as MoertError { return .failure(e) } catch {
            return .failure(MoertError(.internal, "\(error)"))
        }
    }()

    /// Chooses the kernels of the products `workload` runs that have none yet, and makes them run.
    /// - Throws: `MoertError` (`.invalidArgument`) when `MOERT_KERNELS` is not understood or names a kernel this CPU
    ///   cannot run.
    public static func prepare(for workload: KernelWorkload) throws {
        let settings = try environment.get()
        try lock.withLock {
            let products = workload.products.filter { decisions[$0] == nil }
            guard !products.isEmpty else { return }
            let chooser = KernelChooser(cpu: CPUIdentity.current, threads: Threads.current, shape: workload.shape,
                                        settings: settings)
            var elapsed = 0.0
            let made = chooser.decide(products) { open in
                let start = monotonicSeconds()
                defer { elapsed = monotonicSeconds() - start }
                return KernelMeasurement.fastest(open, workload: workload) { product in
                    KernelTable.measured(for: product, cpu: chooser.cpu, available: chooser.available(product))
                }
            }
            for d in made {
                guard moert_kernel_choose(d.product.rawValue, d.kernel.rawValue) != 0 else {
                    throw MoertError(.internal, "kernel \(d.kernel.name) of \(d.product.name) cannot run")
                }
                decisions[d.product] = d
            }
            measuredMilliseconds += elapsed * 1e3
        }
        Threads.configureBLAS()
    }

    /// Every product's kernel now, and why.
    public static var current: [KernelDecision] {
        lock.withLock {
            KernelProduct.allCases.map {
                decisions[$0] ?? KernelDecision(product: $0, kernel: $0.chosen, reason: .preferred, detail: "")
            }
        }
    }

    /// Time spent measuring kernels in this process, in milliseconds.
    public static var measurementMilliseconds: Double { lock.withLock { measuredMilliseconds } }

    /// True when a product with large shapes runs on OpenBLAS (the float32 decode GEMV, a prefill GEMM or prefill
    /// attention on blas): OpenBLAS then gets moert's thread count, else one thread.
    static var largeProductsUseBLAS: Bool {
        [KernelProduct.gemvF32, .gemmF32, .gemmF16, .gemmBF16, .attentionPrefill].contains { $0.chosen == .blas }
    }
}
