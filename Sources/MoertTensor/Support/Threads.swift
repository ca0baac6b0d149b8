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
    /// (`configureBLAS`).
    /// - Throws: `MoertError` (`.invalidArgument`) for a negative count.
    public static func set(_ n: Int) throws {
        guard n >= 0 else { throw MoertError.invalid("thread count must be >= 0 (0 = default), got \(n)") }
        moert_kernels_set_threads(Int32(min(n == 0 ? available : n, maxCount)))
        configureBLAS()
    }

    /// Gives OpenBLAS moert's thread count while a large product runs on it (`KernelChoice.largeProductsUseBLAS`),
    /// else one thread: OpenBLAS then only serves small products (router gates, plugins' host sgemm), and its idle
    /// workers, which spin for a long while after each call, took turns on the cores moert's threads compute on
    /// (prefill-512 on the small bench model with the AVX-512 kernels: a steady 4200 tok/s, against frequent drops to
    /// 2400-3000 with two OpenBLAS threads). Called by `set` and whenever kernels are chosen.
    package static func configureBLAS() {
        openblas_set_num_threads(KernelChoice.largeProductsUseBLAS ? Int32(current) : 1)
    }

    /// The thread count in effect for moert's kernels (every online CPU until `set` is called).
    public static var current: Int { max(1, Int(moert_kernels_threads())) }

    /// The kernel family OpenBLAS chose for this CPU (e.g. "Haswell" for AVX2, "SkylakeX" or "Cooperlake" for
    /// AVX-512), with the `OPENBLAS_CORETYPE` setting that forced it, if any, and OpenBLAS's thread count. The
    /// speed of every product running on blas depends on it.
    public static var blasKernels: String {
        let core = openblas_get_corename().map { String(cString: $0) } ?? "unknown"
        let threads = openblas_get_num_threads()
        let count = "\(threads) thread\(threads == 1 ? "" : "s")"
        guard let forced = getenv("OPENBLAS_CORETYPE") else { return "OpenBLAS \(core), \(count)" }
        return "OpenBLAS \(core) (OPENBLAS_CORETYPE=\(String(cString: forced))), \(count)"
    }
}
