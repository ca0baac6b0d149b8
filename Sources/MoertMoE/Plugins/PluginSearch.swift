// PluginSearch: where moert looks for a plugin library named without a path.

import CSystem
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// Resolves plugin names to files.
enum PluginSearch {
    /// The directory holding the binary that contains moert (libmoert.so, or the executable linking it).
    static let ownDirectory: String? = {
        var info = csystem_dl_info()
        // Any address inside this module identifies it: take a C function pointer defined here.
        let marker: @convention(c) () -> Void = markerFunction
        guard csystem_dladdr(unsafeBitCast(marker, to: UnsafeRawPointer.self), &info) != 0,
              let name = info.dli_fname else { return nil }
        let path = String(cString: name)
        guard let slash = path.lastIndex(of: "/") else { return nil }
        return String(path[..<slash])
    }()

    /// The directories searched for bare names, in order.
    static var directories: [String] {
        var dirs: [String] = []
        if let env = getenv("MOERT_PLUGIN_PATH") {
            dirs += String(cString: env).split(separator: ":").map(String.init).filter { !$0.isEmpty }
        }
        if let own = ownDirectory {
            // Next to libmoert.so, its moert/plugins subdirectory, and ../lib for executables in bin/.
            dirs += [own, own + "/moert/plugins", own + "/../lib"]
        }
        return dirs
    }

    /// A path for `nameOrPath`: paths (containing "/") are used as given (relative ones against `base` when set);
    /// bare names are tried as `libmoert_<name>.so` and `<name>` in each search directory (never the working
    /// directory or a model directory).
    /// - Throws: `MoertError` (`.io`) listing every path tried.
    static func resolve(_ nameOrPath: String, relativeTo base: String?) throws -> String {
        if nameOrPath.contains("/") {
            let path = nameOrPath.hasPrefix("/") || base == nil ? nameOrPath : base! + "/" + nameOrPath
            guard access(path, R_OK) == 0 else { throw MoertError(.io, "plugin \(path): no such file") }
            return path
        }
        guard !nameOrPath.isEmpty else { throw MoertError(.invalidArgument, "empty plugin name") }
        var tried: [String] = []
        for dir in directories {
            for file in ["libmoert_\(nameOrPath).so", nameOrPath] {
                let path = dir + "/" + file
                tried.append(path)
                if access(path, R_OK) == 0 { return path }
            }
        }
        throw MoertError(.io, "plugin \(nameOrPath) not found; tried: \(tried.isEmpty ? "no directory (MOERT_PLUGIN_PATH is unset and libmoert's own directory is unknown)" : tried.joined(separator: ", "))")
    }
}

/// A function whose address identifies this module for dladdr.
private func markerFunction() {}
