// FuzzKernels: libFuzzer target for the two texts of kernel choice: the kernel cache file and MOERT_KERNELS.

import MoertTensor

/// Parses the input as a kernel cache file and as a MOERT_KERNELS value (on a simulated CPU that runs every kernel).
/// Parsed entries must have a positive thread count and no field with a tab or line break; an accepted value must
/// force only kernels the products have.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
    for e in KernelCache.parse(text) {
        invariant(e.threads > 0, "thread count below 1")
        for field in [e.cpu, e.product, e.shape, e.kernel, e.detail] {
            invariant(!field.unicodeScalars.contains { $0 == "\t" || $0 == "\n" || $0 == "\r" }, "separator inside a field")
        }
    }
    invariant(KernelCache.parse(KernelCache.format(KernelCache.parse(text))) == KernelCache.parse(text), "round trip")
    var settings = KernelSettings()
    expectingMoertError {
        try settings.force(text) { $0.kernels }
        for (product, kernel) in settings.forced { invariant(product.kernels.contains(kernel), "forced a missing kernel") }
    }
    return 0
}
