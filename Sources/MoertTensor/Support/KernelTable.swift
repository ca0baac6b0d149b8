// KernelTable: kernel choices measured on particular CPUs, which decide when a choice cannot be measured and kept
// (caching off, or the cache file unwritable): the same choice on every run, free of measurement noise.

/// Measured defaults per CPU family and model.
public enum KernelTable {
    /// One measured choice: on CPUs of `vendor` and `family` whose model is in `models` (every model when empty),
    /// `product` runs `kernel`.
    struct Row {
        var vendor: String
        var family: Int
        var models: [ClosedRange<Int>]
        var product: KernelProduct
        var kernel: Kernel
        /// Where the figure comes from, for `moert info`.
        var source: String

        func matches(_ cpu: CPUIdentity) -> Bool {
            cpu.vendor == vendor && cpu.family == family && (models.isEmpty || models.contains { $0.contains(cpu.model) })
        }
    }

    /// AMD Zen 4 models (family 25): Genoa, Raphael, Phoenix, Bergamo and their kin.
    static let zen4Models: [ClosedRange<Int>] = [0x10...0x1f, 0x60...0x7f, 0xa0...0xaf]

    static let rows: [Row] = [
        // Zen 4 runs AVX-512 as two 256-bit halves; measured on a 2-core EPYC of family 25, model 17 (a KVM guest),
        // forced kernels in paired rounds of `moert bench` (BENCHMARKS.md, "Zen 4"): f16 decode on avx2 1.26x avx512
        // (small preset) and 1.66x (medium; 74.5-76.9 against 56.5-59.0 tok/s in an earlier report). bf16 loads the
        // same way. The float32 GEMV: avx2x4 and avx2 tie, avx512 6% behind. q4_k decode on avx512 (VNNI) 1.07x
        // avx2; q8_0 and q4_0 tie (memory-bound). Prefill: moert's AVX-512 GEMM 1.06-1.83x the AVX2 one (q8_0,
        // q4_0 and q4_k in integers with VNNI).
        Row(vendor: "AuthenticAMD", family: 25, models: zen4Models, product: .gemvF16, kernel: .avx2,
            source: "Zen 4: f16 decode on avx2 1.26-1.66x avx512"),
        Row(vendor: "AuthenticAMD", family: 25, models: zen4Models, product: .gemvBF16, kernel: .avx2,
            source: "Zen 4: as f16"),
        Row(vendor: "AuthenticAMD", family: 25, models: zen4Models, product: .gemvF32, kernel: .avx2x4,
            source: "Zen 4: f32 decode on avx2x4 1.07x avx512, even with avx2"),
        Row(vendor: "AuthenticAMD", family: 25, models: zen4Models, product: .gemvQ4_K, kernel: .avx512,
            source: "Zen 4: q4_k decode on avx512 (VNNI) 1.07x avx2"),
        Row(vendor: "AuthenticAMD", family: 25, models: zen4Models, product: .gemmF32, kernel: .avx512,
            source: "Zen 4: prefill on avx512 1.06x avx2 (f32), 1.18-1.83x (q4_k, q4_0, q8_0 with VNNI)"),
        // benchmarks/attention_decode.c (8 layers of the small preset's attention at depth 4,000, 2 threads):
        // prefetching into the second-level cache read the cache 1.9-2.0x as fast (f32), 1.0-1.9x (f16, from run to
        // run), 1.2-1.5x (bf16); never slower.
        Row(vendor: "AuthenticAMD", family: 25, models: zen4Models, product: .attentionDecode, kernel: .avx2l2,
            source: "Zen 4: decode attention at depth 4,000 on avx2l2 1.0-2.0x avx2 (f16, f32 caches)"),
        // A 2-core EPYC of family 25, model 1 (Zen 3; a KVM guest, AVX2, no AVX-512, 32 MiB of L3), small bench
        // preset, `moert bench` decode after a 16-token prompt, interleaved rounds (BENCHMARKS.md, "Four-stream GEMV").
        Row(vendor: "AuthenticAMD", family: 25, models: [1...1], product: .gemvF32, kernel: .avx2x4,
            source: "family 25 model 1: f32 decode 143 tok/s on avx2x4, 107 on avx2, 101 on blas"),
        Row(vendor: "AuthenticAMD", family: 25, models: [1...1], product: .gemvF16, kernel: .avx2x4,
            source: "family 25 model 1: f16 decode 1.24x on avx2x4 against avx2"),
        Row(vendor: "AuthenticAMD", family: 25, models: [1...1], product: .gemvBF16, kernel: .avx2x4,
            source: "family 25 model 1: as f16 (the same two bytes per weight; not timed)"),
        // The same EPYC, prefill-512 of the small preset (`moert bench`, 5 interleaved rounds, BENCHMARKS.md "AVX2
        // prefill"): moert's AVX2 GEMM and attention against OpenBLAS's sgemm beside moert's own threads.
        Row(vendor: "AuthenticAMD", family: 25, models: [1...1], product: .gemmF32, kernel: .avx2,
            source: "family 25 model 1: f32 prefill 1.21x on avx2 against blas"),
        Row(vendor: "AuthenticAMD", family: 25, models: [1...1], product: .gemmF16, kernel: .avx2,
            source: "family 25 model 1: f16 prefill 1.44x on avx2 against blas"),
        Row(vendor: "AuthenticAMD", family: 25, models: [1...1], product: .gemmBF16, kernel: .avx2,
            source: "family 25 model 1: as f16 (not timed)"),
        Row(vendor: "AuthenticAMD", family: 25, models: [1...1], product: .attentionPrefill, kernel: .avx2,
            source: "family 25 model 1: prefill 1.21-1.44x with gemm and attention on avx2 against blas"),
        // A 2-core EPYC of family 23 (a KVM guest reporting model 1; AVX2, no AVX-512), small bench preset,
        // benchmarks/kernel_choice.py, medians of 5 rounds (BENCHMARKS.md, "Kernel choice per CPU").
        Row(vendor: "AuthenticAMD", family: 23, models: [1...1], product: .gemvF32, kernel: .avx2,
            source: "family 23: f32 decode 98.1 tok/s on avx2, 93.1 on blas"),
        Row(vendor: "AuthenticAMD", family: 23, models: [1...1], product: .gemvF16, kernel: .avx2,
            source: "family 23: f16 decode 177.2 tok/s on avx2, 18.6 on portable"),
        Row(vendor: "AuthenticAMD", family: 23, models: [1...1], product: .attentionDecode, kernel: .avx2,
            source: "family 23: f16 decode 177.2 tok/s on avx2, 165.8 on portable"),
        Row(vendor: "AuthenticAMD", family: 23, models: [1...1], product: .swiglu, kernel: .avx2,
            source: "family 23: f16 prefill 639 tok/s on avx2, 598 on portable"),
    ]

    /// The order used for a product no row covers: the widest vectors first (avx2x4, avx2hw and avx2l2, faster on
    /// some CPUs only, after avx2: they need a measurement or a row).
    static let defaultOrder: [Kernel] = [.avx512, .avx2, .blas, .portable, .avx2x4, .avx2hw, .avx2l2]

    /// The row measured on CPUs like `cpu` for `product`, naming one of `available`, if any.
    static func row(for product: KernelProduct, cpu: CPUIdentity, available: [Kernel]) -> Row? {
        rows.first { $0.product == product && $0.matches(cpu) && available.contains($0.kernel) }
    }

    /// The kernel a row measured on CPUs like `cpu` gives `product` among `available`, if any.
    public static func measured(for product: KernelProduct, cpu: CPUIdentity, available: [Kernel]) -> Kernel? {
        row(for: product, cpu: cpu, available: available)?.kernel
    }

    /// The kernel the table gives `product` on `cpu` among `available` (non-empty), and why.
    public static func choice(for product: KernelProduct, cpu: CPUIdentity, available: [Kernel]) -> (Kernel, String) {
        if let row = row(for: product, cpu: cpu, available: available) { return (row.kernel, row.source) }
        let kernel = defaultOrder.first(where: available.contains) ?? available[0]
        return (kernel, "no measurement for this CPU: widest vectors first")
    }
}
