// HostAPI: the moert_host_api table handed to plugins.

import CMoert
import COpenBLAS
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// The message a plugin sets with host->set_error before returning a failure, per thread; moert takes it to build
/// the error it reports.
let pluginError = ThreadLocalText()

/// The host API table given to every plugin.
enum HostAPI {
    /// The table at a fixed address for the life of the process: plugins keep the pointer they are given.
    nonisolated(unsafe) static let pointer: UnsafePointer<moert_host_api> = {
        let p = UnsafeMutablePointer<moert_host_api>.allocate(capacity: 1)
        p.initialize(to: table)
        return UnsafePointer(p)
    }()

    /// The largest `alloc` honoured: 1 TiB less 1 MiB.
    static let maxAllocation = (1 << 40) - (1 << 20)

    private static let table: moert_host_api = moert_host_api(
        struct_size: UInt32(MemoryLayout<moert_host_api>.size),
        abi_version: UInt32(MOERT_PLUGIN_ABI_VERSION),
        alloc: { size, alignment in
            // size_t arrives as Int: a size or alignment above Int.max shows up negative, and is impossible. Sizes
            // near a terabyte and above are refused without asking the allocator (no machine moert runs on has
            // them, and sanitizer allocators abort on such requests instead of failing).
            guard size >= 0, size <= maxAllocation, alignment >= 0 else { return nil }
            var p: UnsafeMutableRawPointer?
            let a = alignment == 0 ? 64 : max(alignment, MemoryLayout<UnsafeRawPointer>.size)
            guard a & (a - 1) == 0, posix_memalign(&p, a, max(size, 1)) == 0 else { return nil }
            return p
        },
        free: { Glibc.free($0) },
        log: { level, message in
            guard let message else { return }
            Log.write(rawLevel: level, String(cString: message))
        },
        set_error: { message in pluginError.set(message.map { String(cString: $0) } ?? "") },
        register_router: { _, ops in
            registration { try PluginRegistry.shared.register(router: try notNull(ops, "ops").pointee) }
        },
        register_expert: { _, ops in
            registration { try PluginRegistry.shared.register(expert: try notNull(ops, "ops").pointee) }
        },
        layer_tensor: { ctx, name, out in
            tensorLookup(ctx, name, out, relative: true)
        },
        model_tensor: { ctx, name, out in
            tensorLookup(ctx, name, out, relative: false)
        },
        param_number: { ctx, key, out in
            guard let c = CreateContext.from(ctx), let key, let out else { return MOERT_ERR_INVALID_ARGUMENT }
            let k = String(cString: key)
            guard let v = c.param(k) else { return MOERT_ERR_OUT_OF_RANGE }
            if let d = v.double { out.pointee = d; return MOERT_OK }
            if let b = v.bool { out.pointee = b ? 1 : 0; return MOERT_OK }
            pluginError.set("parameter \(k) is not a number")
            return MOERT_ERR_FORMAT
        },
        param_string: { ctx, key, out in
            guard let c = CreateContext.from(ctx), let key, let out else { return MOERT_ERR_INVALID_ARGUMENT }
            let k = String(cString: key)
            guard let v = c.param(k) else { return MOERT_ERR_OUT_OF_RANGE }
            guard let s = v.string else {
                pluginError.set("parameter \(k) is not a string")
                return MOERT_ERR_FORMAT
            }
            out.pointee = c.keep(s)
            return MOERT_OK
        },
        sgemm: { ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc in
            cblas_sgemm(CblasRowMajor, ta != 0 ? CblasTrans : CblasNoTrans, tb != 0 ? CblasTrans : CblasNoTrans,
                        m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        })

    private static func notNull<T>(_ p: T?, _ what: String) throws -> T {
        guard let p else { throw MoertError(.invalidArgument, "\(what) is NULL") }
        return p
    }

    /// Runs a registration a plugin asked for through the host table, which moert_plugin.h allows only from the
    /// library's moert_plugin_init (a kind registered later, e.g. from route(), would change a registry other
    /// threads are reading and outlive the checks of the load).
    private static func registration(_ body: () throws -> Void) -> moert_status {
        do {
            guard PluginRegistry.shared.isInitializingOnThisThread() else {
                throw MoertError(.plugin, "register_router and register_expert may be called only from moert_plugin_init")
            }
            try body()
            return MOERT_OK
        } catch let e as MoertError {
            pluginError.set(e.message)
            PluginRegistry.shared.noteRegistrationFailure(e)
            return e.code.rawValue
        } catch {
            return MOERT_ERR_INTERNAL
        }
    }

    private static func tensorLookup(_ ctx: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                                     _ out: UnsafeMutablePointer<moert_tensor>?, relative: Bool) -> moert_status {
        guard let c = CreateContext.from(ctx), let name, let out else { return MOERT_ERR_INVALID_ARGUMENT }
        let full = (relative ? c.prefix : "") + String(cString: name)
        do {
            let t = try c.checkpoint.pluginTensor(full)
            guard Int(out.pointee.struct_size) >= MemoryLayout<moert_tensor>.size else {
                throw MoertError(.invalidArgument, "moert_tensor.struct_size \(out.pointee.struct_size) is too small")
            }
            guard t.shape.count <= 4 else { throw MoertError.format("\(full): \(t.shape.count) dimensions, at most 4 supported") }
            var shape: (Int64, Int64, Int64, Int64) = (1, 1, 1, 1)
            withUnsafeMutableBytes(of: &shape) { raw in
                for (i, d) in t.shape.enumerated() { raw.storeBytes(of: Int64(d), toByteOffset: 8 * i, as: Int64.self) }
            }
            out.pointee = moert_tensor(struct_size: out.pointee.struct_size, dtype: t.isInteger ? MOERT_TENSOR_I32 : MOERT_TENSOR_F32,
                                       data: t.data, ndim: Int32(t.shape.count), shape: shape)
            return MOERT_OK
        } catch let e as MoertError {
            pluginError.set(e.message)
            return e.code.rawValue
        } catch {
            return MOERT_ERR_INTERNAL
        }
    }
}
