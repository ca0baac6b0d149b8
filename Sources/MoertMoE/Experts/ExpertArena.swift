// ExpertArena: the allocator of expert weights — a dedicated jemalloc arena when jemalloc can be had, else
// 64-byte-aligned malloc — with byte accounting that does not depend on which one is in use.

import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// Where expert memory comes from.
public enum ArenaBackend: String, Sendable {
    /// jemalloc was already in the process (linked by the host, or LD_PRELOAD).
    case jemallocInProcess = "jemalloc (in process)"
    /// jemalloc was dlopen()ed by moert.
    case jemallocLoaded = "jemalloc (loaded)"
    /// posix_memalign/free with moert's own accounting.
    case aligned = "aligned malloc"
}

/// jemalloc's entry points, resolved at run time so that libmoert.so never depends on jemalloc at load time
/// (Debian's libjemalloc.so.2 needs static TLS that a dlopen()ed library cannot count on).
struct JemallocFunctions: @unchecked Sendable {
    typealias Mallocx = @convention(c) (Int, Int32) -> UnsafeMutableRawPointer?
    typealias Dallocx = @convention(c) (UnsafeMutableRawPointer?, Int32) -> Void
    typealias Mallctl = @convention(c) (UnsafePointer<CChar>?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?,
                                        UnsafeMutableRawPointer?, Int) -> Int32
    let mallocx: Mallocx
    let dallocx: Dallocx
    let mallctl: Mallctl
    let backend: ArenaBackend

    /// jemalloc in the process, then a dlopen() that may fail (static TLS), else nil.
    static let resolved: JemallocFunctions? = {
        if getenv("MOERT_NO_JEMALLOC") != nil { return nil }
        let global = UnsafeMutableRawPointer(bitPattern: 0)  // RTLD_DEFAULT
        if let f = lookup(global, backend: .jemallocInProcess) { return f }
        guard let handle = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_LOCAL) else { return nil }
        return lookup(handle, backend: .jemallocLoaded)
    }()

    private static func lookup(_ handle: UnsafeMutableRawPointer?, backend: ArenaBackend) -> JemallocFunctions? {
        guard let m = dlsym(handle, "mallocx"), let d = dlsym(handle, "dallocx"), let c = dlsym(handle, "mallctl") else { return nil }
        return JemallocFunctions(mallocx: unsafeBitCast(m, to: Mallocx.self), dallocx: unsafeBitCast(d, to: Dallocx.self),
                                 mallctl: unsafeBitCast(c, to: Mallctl.self), backend: backend)
    }
}

/// One model's expert memory. Thread-safe: allocations and frees may come from any thread.
public final class ExpertArena: @unchecked Sendable {
    /// The allocator in use.
    public let backend: ArenaBackend
    private let jemalloc: JemallocFunctions?
    private let arenaIndex: UInt32
    /// jemalloc flags: MALLOCX_ARENA(index) | MALLOCX_TCACHE_NONE | MALLOCX_ALIGN(64), from jemalloc.h.
    private let flags: Int32
    private let lock = Lock()
    private var allocated = 0

    /// Creates a dedicated arena (or the fallback).
    public init() {
        var index: UInt32 = 0
        var size = MemoryLayout<UInt32>.size
        if let je = JemallocFunctions.resolved, je.mallctl("arenas.create", &index, &size, nil, 0) == 0 {
            jemalloc = je
            backend = je.backend
            arenaIndex = index
            flags = Int32((Int(index) + 1) << 20) | Int32((-1 + 2) << 8) | 6  // lg(64) = 6
            // Return freed expert pages to the system at once instead of after jemalloc's default 10 s decay, so
            // that the resident memory follows the residency budget.
            for setting in ["dirty_decay_ms", "muzzy_decay_ms"] {
                var immediately = 0  // ssize_t milliseconds
                _ = je.mallctl("arena.\(index).\(setting)", nil, nil, &immediately, MemoryLayout<Int>.size)
            }
        } else {
            jemalloc = nil
            backend = .aligned
            arenaIndex = 0
            flags = 0
        }
    }

    deinit {
        if let je = jemalloc { _ = je.mallctl("arena.\(arenaIndex).destroy", nil, nil, nil, 0) }
    }

    /// 64-byte-aligned memory for `bytes` bytes.
    /// - Throws: `MoertError` (`.outOfMemory`).
    public func allocate(_ bytes: Int) throws -> UnsafeMutableRawPointer {
        let n = max(bytes, 64)
        var p: UnsafeMutableRawPointer?
        if let je = jemalloc {
            p = je.mallocx(n, flags)
        } else if posix_memalign(&p, 64, n) != 0 {
            p = nil
        }
        guard let p else { throw MoertError(.outOfMemory, "cannot allocate \(bytes) bytes of expert weights") }
        lock.withLock { allocated += n }
        return p
    }

    /// Frees memory from `allocate` (with the allocator it came from).
    public func deallocate(_ p: UnsafeMutableRawPointer, bytes: Int) {
        if let je = jemalloc { je.dallocx(p, flags) } else { free(p) }
        lock.withLock { allocated -= max(bytes, 64) }
    }

    /// Bytes currently allocated, by moert's own count.
    public var allocatedBytes: Int { lock.withLock { allocated } }

    /// jemalloc's view of the arena (active and mapped bytes), or nil for the fallback.
    public var jemallocStats: (active: Int, mapped: Int)? {
        guard let je = jemalloc else { return nil }
        var epoch: UInt64 = 1
        _ = je.mallctl("epoch", nil, nil, &epoch, MemoryLayout<UInt64>.size)
        var pactive = 0, mapped = 0, page = 0
        var size = MemoryLayout<Int>.size
        _ = je.mallctl("arenas.page", &page, &size, nil, 0)
        size = MemoryLayout<Int>.size
        _ = je.mallctl("stats.arenas.\(arenaIndex).pactive", &pactive, &size, nil, 0)
        size = MemoryLayout<Int>.size
        _ = je.mallctl("stats.arenas.\(arenaIndex).mapped", &mapped, &size, nil, 0)
        return (pactive * page, mapped)
    }
}
