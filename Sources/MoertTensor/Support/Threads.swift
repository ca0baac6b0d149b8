// Threads: the process-wide worker thread count shared by moert's kernels and OpenBLAS.

import CKernels
import COpenBLAS
#if canImport(Glibc)
import Glibc
#endif

/// Process-wide thread settings.
public enum Threads {
    /// The most threads moert uses; larger counts mean this many (the kernels' pool holds no more).
    public static let maxCount = 64

    /// Number of online CPUs (at least 1).
    public static var available: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// Sets the thread count of moert's kernels (0 = all online CPUs) and the matching count of OpenBLAS
    /// (`blasThreads(for:)`).
    /// - Throws: `MoertError` (`.invalidArgument`) for a negative count.
    public static func set(_ n: Int) throws {
        guard n >= 0 else { throw MoertError.invalid("thread count must be >= 0 (0 = default), got \(n)") }
        let count = min(n == 0 ? available : n, maxCount)
        openblas_set_num_threads(blasThreads(for: count))
        moert_kernels_set_threads(Int32(count))
    }

    /// OpenBLAS's thread count for `count` moert threads: one while moert's AVX-512 kernels compute every large
    /// product — OpenBLAS then only serves small ones (router gates, plugins' host sgemm), and its idle workers,
    /// which spin for a long while after each call, took turns on the cores moert's threads compute on (prefill-512
    /// on the small bench model: a steady 4200 tok/s, against frequent drops to 2400-3000 with two OpenBLAS
    /// threads); else `count`.
    static func blasThreads(for count: Int) -> Int32 { moert_kernels_have_avx512() != 0 ? 1 : Int32(count) }

    /// Gives OpenBLAS one thread while the AVX-512 kernels are in use (as `set` does), once per process; called when
    /// a model loads, so that hosts which never call `set` get it too. Otherwise leaves OpenBLAS's own default.
    package static func configureBLASDefault() { _ = blasDefault }
    private static let blasDefault: Void = {
        if moert_kernels_have_avx512() != 0 { openblas_set_num_threads(1) }
    }()

    /// The thread count in effect for moert's kernels (every online CPU until `set` is called).
    public static var current: Int { max(1, Int(moert_kernels_threads())) }

    /// Which of moert's own kernels run: "AVX-512" (prefill GEMM and attention, decode GEMV; the AVX2 GEMV for
    /// quantized weights), "AVX2" (half-precision and quantized decode GEMV; OpenBLAS for the rest) or "portable C", and whether
    /// `MOERT_AVX512=0` switched AVX-512 off.
    public static var kernels: String {
        if moert_kernels_have_avx512() != 0 {
            return "AVX-512 (prefill GEMM and attention, decode GEMV; AVX2 GEMV for q8_0/q4_0)"
        }
        let family = moert_kernels_have_avx2() != 0 ? "AVX2 (half-precision and q8_0/q4_0 decode GEMV; OpenBLAS for the rest)"
                                                    : "portable C (OpenBLAS for float32 products)"
        if let setting = getenv("MOERT_AVX512"), String(cString: setting) == "0" { return family + " (MOERT_AVX512=0)" }
        return family
    }

    /// The kernel family OpenBLAS chose for this CPU (e.g. "Haswell" for AVX2, "SkylakeX" or "Cooperlake" for
    /// AVX-512), with the `OPENBLAS_CORETYPE` setting that forced it, if any, and OpenBLAS's thread count. Without
    /// moert's AVX-512 kernels prefill speed depends on it.
    public static var blasKernels: String {
        let core = openblas_get_corename().map { String(cString: $0) } ?? "unknown"
        let threads = openblas_get_num_threads()
        let count = "\(threads) thread\(threads == 1 ? "" : "s")"
        guard let forced = getenv("OPENBLAS_CORETYPE") else { return "OpenBLAS \(core), \(count)" }
        return "OpenBLAS \(core) (OPENBLAS_CORETYPE=\(String(cString: forced))), \(count)"
    }
}
