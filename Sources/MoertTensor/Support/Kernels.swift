// Kernels: the products whose kernel is chosen at run time, the kernels, and the identity of the CPU they run on.

import CKernels

/// A product moert runs on one of several kernels (`Sources/CKernels/choice.c`).
public enum KernelProduct: Int32, CaseIterable, Sendable {
    case gemvF32, gemvF16, gemvBF16, gemvQ8_0, gemvQ4_0, gemvQ3_0, gemvQ4_K
    case gemmF32, gemmF16, gemmBF16
    case attentionPrefill, attentionDecode
    case swiglu

    /// Its name in `MOERT_KERNELS`, the cache file and `moert info`: "gemv.f16", "attention.decode", ...
    public var name: String { String(cString: moert_product_name(rawValue)) }

    /// The product of `name`, if any.
    public init?(name: String) {
        guard let product = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = product
    }

    /// Every kernel the product has (whatever the CPU), widest vectors first.
    public var kernels: [Kernel] {
        [Kernel.avx512, .avx2x4, .avx2, .avx2hw, .avx2l2, .blas, .portable].filter { moert_kernel_exists(rawValue, $0.rawValue) != 0 }
    }

    /// The kernels this CPU can run (AVX-512 also needs `MOERT_AVX512` not "0").
    public var available: [Kernel] { kernels.filter { moert_kernel_available(rawValue, $0.rawValue) != 0 } }

    /// The kernel it runs now.
    public var chosen: Kernel { Kernel(rawValue: moert_kernel_chosen(rawValue)) ?? .portable }

    /// The decode GEMV of weights of `storage`.
    public static func gemv(_ storage: WeightStorage) -> KernelProduct {
        switch storage {
        case .f32: .gemvF32
        case .f16: .gemvF16
        case .bf16: .gemvBF16
        case .q8_0: .gemvQ8_0
        case .q4_0: .gemvQ4_0
        case .q3_0: .gemvQ3_0
        case .q4_k: .gemvQ4_K
        }
    }

    /// The prefill GEMM of weights of `storage` (quantized weights are read back to float32 for it, except where
    /// `multipliesInIntegers` says).
    public static func gemm(_ storage: WeightStorage) -> KernelProduct {
        switch storage {
        case .f16: .gemmF16
        case .bf16: .gemmBF16
        default: .gemmF32
        }
    }

    /// Whether the prefill GEMM on `kernel` multiplies `storage` weights by activations quantized to 8 bits per block,
    /// in integers as the decode GEMV does (q4_0, q3_0 and q4_k on avx2, and on avx512 when the CPU has AVX-512
    /// VNNI; q8_0 on avx512 with VNNI); otherwise it multiplies float32 activations.
    public static func multipliesInIntegers(_ storage: WeightStorage, kernel: Kernel) -> Bool {
        switch storage {
        case .q4_0, .q3_0, .q4_k: kernel == .avx2 || (kernel == .avx512 && moert_kernels_have_avx512_vnni() != 0)
        case .q8_0: kernel == .avx512 && moert_kernels_have_avx512_vnni() != 0
        default: false
        }
    }
}

/// A kernel family: plain loops, OpenBLAS, AVX2 (with FMA and F16C), AVX-512 (F, BW, VL), or AVX2 reading four
/// weight rows at a time as four streams, or one row at a time without software prefetch (decode GEMVs; which of
/// avx2, avx2x4 and avx2hw is faster depends on the CPU), or AVX2 with its software prefetch into the second-level
/// cache (decode attention; which of avx2 and avx2l2 is faster depends on the CPU).
public enum Kernel: Int32, CaseIterable, Sendable {
    case portable, blas, avx2, avx512, avx2x4, avx2hw, avx2l2

    /// Its name: "portable", "blas", "avx2", "avx512", "avx2x4", "avx2hw", "avx2l2".
    public var name: String { String(cString: moert_kernel_name(rawValue)) }

    /// The kernel of `name`, if any.
    public init?(name: String) {
        guard let kernel = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = kernel
    }
}

/// Which CPU this is: what keys the kernel choices cached per CPU, and what the table of measured defaults matches.
public struct CPUIdentity: Equatable, Sendable {
    /// "AuthenticAMD", "GenuineIntel", ... (empty when CPUID does not say).
    public var vendor: String
    /// The brand string ("AMD EPYC 9B14", ...), trimmed.
    public var brand: String
    /// Family, model and stepping as /proc/cpuinfo shows them.
    public var family: Int, model: Int, stepping: Int
    /// The features the kernels use that the CPU has ("avx2", "fma", "f16c", "avx512f", ...), plus "avx512-off" when
    /// `MOERT_AVX512=0` hides AVX-512: the kernels that can run, which is what a measured choice depends on.
    public var features: [String]

    /// This CPU.
    public static let current: CPUIdentity = {
        var id = moert_cpu_identity()
        moert_cpu_identify(&id)
        let vendor = withUnsafeBytes(of: id.vendor) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let brand = withUnsafeBytes(of: id.brand) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let bits = moert_cpu_features()
        let named: [(UInt32, String)] = [
            (UInt32(MOERT_CPU_AVX2), "avx2"), (UInt32(MOERT_CPU_FMA), "fma"), (UInt32(MOERT_CPU_F16C), "f16c"),
            (UInt32(MOERT_CPU_AVX512F), "avx512f"), (UInt32(MOERT_CPU_AVX512BW), "avx512bw"),
            (UInt32(MOERT_CPU_AVX512VL), "avx512vl"), (UInt32(MOERT_CPU_AVX512VNNI), "avx512vnni"),
            (UInt32(MOERT_CPU_AVX512BF16), "avx512bf16"),
        ]
        var features = named.filter { bits & $0.0 != 0 }.map(\.1)
        if bits & UInt32(MOERT_CPU_AVX512F) != 0, moert_kernels_have_avx512() == 0 { features.append("avx512-off") }
        return CPUIdentity(vendor: vendor, brand: brand.trimmingSpaces, family: Int(id.family), model: Int(id.model),
                           stepping: Int(id.stepping), features: features)
    }()

    /// One line naming it, as the cache file keys entries: "AuthenticAMD family 23 model 1 stepping 2 [avx2 fma f16c]
    /// AMD EPYC". Tabs and line breaks in the brand become spaces.
    public var key: String {
        let brandText = String(brand.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : $0 })
        return "\(vendor) family \(family) model \(model) stepping \(stepping) [\(features.joined(separator: " "))] \(brandText)"
    }

    /// For people: "AMD EPYC (AuthenticAMD family 23 model 1; avx2 fma f16c)".
    public var description: String {
        "\(brand.isEmpty ? "unknown CPU" : brand) (\(vendor) family \(family) model \(model); \(features.joined(separator: " ")))"
    }
}

extension String {
    /// Without leading and trailing spaces.
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
