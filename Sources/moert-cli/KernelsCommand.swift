// `moert kernels`, and the kernel lines of `moert info` and `moert bench`: which kernel each product runs, and why.

import MoertCore
import MoertTensor

/// "gemv.f16          avx2 (measured: avx2 21.3 GB/s, portable 1.9 GB/s (screened out))" for each decision.
func kernelLines(_ decisions: [KernelDecision]) -> [String] {
    decisions.map { d in
        let why = d.detail.isEmpty ? d.reason.rawValue : "\(d.reason.rawValue): \(d.detail)"
        return "\(d.product.name.padding(to: 18)) \(d.kernel.name) (\(why))"
    }
}

/// The CPU line and one line per product `model` runs, each prefixed with `label` padded to `width`.
func printModelKernels(_ model: Model, label: String, width: Int) {
    let products = model.kernelWorkload.products
    let cost = KernelChoice.measurementMilliseconds
    let measured = cost > 0 ? ", \(oneDecimal(cost)) ms spent measuring kernels" : ""
    print("\("cpu".padding(to: width)) \(CPUIdentity.current.description)\(measured)")
    for line in kernelLines(KernelChoice.current.filter { products.contains($0.product) }) {
        print("\(label.padding(to: width)) \(line)")
    }
}

/// moert kernels [--available] [--threads N]
func kernelsCommand(_ args: Arguments) throws {
    let threads = try args.int("--threads", default: 0)
    guard threads >= 0 else { throw UsageError("--threads must be >= 0, got \(threads)") }
    try Threads.set(threads)
    if args.has("--available") {
        let kernels = Kernel.allCases.filter { k in KernelProduct.allCases.contains { $0.available.contains(k) } }
        for k in kernels { print(k.name) }
        return
    }
    let settings = try KernelSettings.fromEnvironment()
    print("cpu      \(CPUIdentity.current.description)")
    print("threads  \(Threads.current)")
    print("cache    \(settings.cachePath ?? "off (MOERT_KERNEL_CACHE=off, or no home directory)")")
    let entries = settings.cachePath.map { KernelCache.read(path: $0) } ?? []
    let cpu = CPUIdentity.current
    // Without a model there is no shape: a cached choice for any shape is shown, with its shape.
    let chooser = KernelChooser(cpu: cpu, threads: Threads.current, shape: "", settings: settings)
    for p in KernelProduct.allCases {
        let available = p.available
        let kernels = p.kernels.map { available.contains($0) ? $0.name : "(\($0.name))" }.joined(separator: ",")
        let cached = entries.last { $0.cpu == cpu.key && $0.threads == Threads.current && $0.product == p.name }
        let choice: String
        if let d = chooser.settled(p, cached: cached) {
            let why = d.reason == .cached ? "cached for \(cached!.shape)" : d.reason.rawValue
            choice = "\(d.kernel.name) (\(why)\(d.detail.isEmpty ? "" : ": " + d.detail))"
        } else {
            let (kernel, source) = KernelTable.choice(for: p, cpu: cpu, available: available)
            let when = settings.cachePath == nil ? "table" : "measured when a model first runs it; else table"
            choice = "\(kernel.name) (\(when): \(source))"
        }
        print("\(p.name.padding(to: 18)) \(kernels.padding(to: 27)) \(choice)")
    }
}

extension String {
    /// Padded with spaces to at least `width` characters.
    func padding(to width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
