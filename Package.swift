// swift-tools-version:6.0
// moert: an embeddable Mixture-of-Experts inference runtime with a stable C ABI.
import Foundation
import PackageDescription

/// MOERT_ABI_VERSION of include/moert.h (the one source of the versions): the number in the library's SONAME.
let abiVersion: String = {
    let header = Context.packageDirectory + "/include/moert.h"
    let text = (try? String(contentsOfFile: header, encoding: .utf8)) ?? ""
    let prefix = "#define MOERT_ABI_VERSION "
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }),
          let number = line.dropFirst(prefix.count).split(separator: " ").first.flatMap({ Int($0) }) else {
        fatalError("\(header) does not define MOERT_ABI_VERSION")
    }
    return String(number)
}()

/// Release builds of the shared library carry the Swift runtime statically (hosts need no Swift installed)
/// and the SONAME `libmoert.so.<ABI major>`. Debug builds stay dynamic so that `swift test` links.
let releaseOnly = BuildSettingCondition.when(configuration: .release)
/// Exports only the `moert_*` C entry points from libmoert.so.
let exportsMap = Context.packageDirectory + "/tools/exports.map"

/// A plugin written in C, in `Plugins/<directory>`, compiled against `include/moert_plugin.h`. Its library also
/// links the helpers of `Plugins/common` (`MoertPluginSupport`), hidden, so that it still exports one symbol.
func cPlugin(_ name: String, _ directory: String) -> Target {
    .target(name: name, dependencies: ["MoertPluginSupport"], path: "Plugins/" + directory, publicHeadersPath: ".",
            cSettings: [.headerSearchPath("../../include"), .unsafeFlags(["-Wall", "-Werror", "-std=c11"])])
}

let package = Package(
    name: "moert",
    products: [
        .library(name: "moert", type: .dynamic, targets: ["Moert"]),
        .executable(name: "moert-cli", targets: ["moert-cli"]),
        // Router and expert plugins, each its own shared library (see docs/model-format.md).
        .library(name: "moert_gru", type: .dynamic, targets: ["GRUPlugin"]),
        .library(name: "moert_hash", type: .dynamic, targets: ["HashPlugin"]),
        .library(name: "moert_comet", type: .dynamic, targets: ["COMETPlugin"]),
        .library(name: "moert_moepp", type: .dynamic, targets: ["MoEPPPlugin"]),
        .library(name: "moert_dynamic", type: .dynamic, targets: ["DynamicPlugin"]),
    ],
    targets: [
        // The public header, imported by Swift so that `@c @implementation` checks every export against it.
        .systemLibrary(name: "CMoert", path: "include"),
        .systemLibrary(name: "CSystem"),
        .systemLibrary(name: "CJemalloc", pkgConfig: "jemalloc", providers: [.apt(["libjemalloc-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // Tokenizers: PCRE2 (with its JIT) runs the split regexes of tokenizer.json, utf8proc normalizes (NFC, NFKC).
        .systemLibrary(name: "CPCRE2", pkgConfig: "libpcre2-8", providers: [.apt(["libpcre2-dev"])]),
        .systemLibrary(name: "CUtf8proc", pkgConfig: "libutf8proc", providers: [.apt(["libutf8proc-dev"])]),
        // The C kernels (GEMV, GEMM, attention, SwiGLU; run-time CPU dispatch) and the worker pool they share.
        // DWARF 4: valgrind 3.19 (Debian 12) gives up on a library with more than one DWARF 5 C unit.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-std=c11", "-Wall", "-Werror", "-gdwarf-4"])]),
        // The Swift layers, each importing only those above it in this list (docs/ARCHITECTURE.md):
        // tensors and kernels' Swift side; file formats; text (tokenizers, chat templates) beside routers, experts and
        // plugins; model and session.
        .target(name: "MoertTensor", dependencies: ["CKernels", "COpenBLAS"]),
        .target(name: "MoertFormats", dependencies: ["MoertTensor"]),
        .target(name: "MoertText", dependencies: ["MoertFormats", "MoertTensor", "CPCRE2", "CUtf8proc", "CSystem"]),
        .target(name: "MoertMoE", dependencies: ["MoertFormats", "MoertTensor", "CMoert", "CKernels", "COpenBLAS", "CSystem"]),
        .target(name: "MoertCore", dependencies: ["MoertMoE", "MoertText", "MoertFormats", "MoertTensor", "CMoert", "CKernels", "COpenBLAS"]),
        // The thin C-ABI layer: converts, calls, maps errors. Builds libmoert.so.
        .target(name: "Moert", dependencies: ["MoertCore", "MoertMoE", "MoertText", "MoertFormats", "MoertTensor", "CMoert"],
                swiftSettings: [.unsafeFlags(["-static-stdlib"], releaseOnly)],
                linkerSettings: [.unsafeFlags(["-static-stdlib", "-Xlinker", "-soname=libmoert.so." + abiVersion], releaseOnly),
                                 .unsafeFlags(["-Xlinker", "--version-script=" + exportsMap])]),
        // The `moert` command line tool.
        .executableTarget(name: "moert-cli", dependencies: ["MoertCore", "MoertMoE", "MoertText", "MoertFormats", "MoertTensor", "CJemalloc"]),
        // Times tokenizer.json loading and encoding for benchmarks/tokenizer_speed.py.
        .executableTarget(name: "moert-tokenizer-bench", dependencies: ["MoertText"], path: "benchmarks/tokenizer_bench"),
        // Tests, one target per layer. --export-dynamic: under `swift test --sanitize=thread` the TSan runtime lives in
        // the test executable, and the instrumented Swift plugin the tests dlopen() must bind to it.
        .target(name: "MoertTestSupport", dependencies: ["MoertCore", "MoertFormats", "MoertTensor"],
                path: "Tests/MoertTestSupport"),
        .testTarget(name: "MoertTensorTests", dependencies: ["MoertTensor", "MoertTestSupport", "CKernels"]),
        .testTarget(name: "MoertFormatsTests", dependencies: ["MoertFormats", "MoertTensor", "MoertTestSupport"]),
        .testTarget(name: "MoertTextTests", dependencies: ["MoertText", "MoertFormats", "MoertTensor", "MoertTestSupport"]),
        .testTarget(name: "MoertMoETests", dependencies: ["MoertMoE", "MoertFormats", "MoertTensor", "MoertTestSupport", "CMoert"]),
        .testTarget(name: "MoertCoreTests", dependencies: ["MoertCore", "MoertMoE", "MoertText", "MoertFormats", "MoertTensor", "MoertTestSupport", "CMoert"],
                    linkerSettings: [.unsafeFlags(["-Xlinker", "--export-dynamic"])]),
        // Plugins depend on the header only; the C ones also link the helpers they share (Plugins/common), each its
        // own copy. C plugins: Makefile also builds them with gcc for installation.
        .target(name: "MoertPluginSupport", path: "Plugins/common", publicHeadersPath: ".",
                cSettings: [.headerSearchPath("../../include"), .unsafeFlags(["-Wall", "-Werror", "-std=c11"])]),
        cPlugin("GRUPlugin", "gru"),
        cPlugin("HashPlugin", "hash"),
        cPlugin("COMETPlugin", "comet"),
        cPlugin("MoEPPPlugin", "moepp"),
        .target(name: "DynamicPlugin", dependencies: ["CMoert"], path: "Plugins/dynamic",
                swiftSettings: [.unsafeFlags(["-static-stdlib"], releaseOnly)],
                linkerSettings: [.unsafeFlags(["-static-stdlib"], releaseOnly)]),
    ]
)
