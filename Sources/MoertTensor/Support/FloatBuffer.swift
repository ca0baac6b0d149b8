// FloatBuffer: 64-byte-aligned float storage, the one allocator abstraction for weights and scratch.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An owned, 64-byte-aligned, zero-initialised array of `Float`, freed when released.
/// All large allocations of the runtime go through here, so there is one place to change the allocator.
public final class FloatBuffer: @unchecked Sendable {
    /// Number of floats.
    public let count: Int
    /// First element (64-byte aligned; non-nil even when `count` is 0).
    public let pointer: UnsafeMutablePointer<Float>
    /// Bytes obtained from mmap (0: from posix_memalign).
    private let mappedBytes: Int

    /// Buffers from this size up are mapped: the kernel hands out zero pages and commits each when it is first
    /// written, so a workspace sized for the largest batch costs memory only for what evaluation touches, and the
    /// pages return to the system as soon as the buffer is freed.
    static let mapThreshold = 1 << 20

    /// Allocates `count` zeroed floats; `populated` maps every page of a mapped buffer at once (MAP_POPULATE: faster
    /// than faulting them in one by one, for a buffer that will be read whole).
    /// - Throws: `MoertError` (`.outOfMemory`) when the size overflows or the allocation fails.
    public init(count: Int, populated: Bool = false) throws {
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
        guard !overflow, count >= 0 else { throw MoertError(.outOfMemory, "cannot allocate \(count) floats: size overflows") }
        var raw: UnsafeMutableRawPointer?
        if bytes >= Self.mapThreshold {
            let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (populated ? MAP_POPULATE : 0),
                         -1, 0)
            guard let p, p != MAP_FAILED else { throw MoertError(.outOfMemory, "cannot allocate \(bytes) bytes") }
            raw = p
            mappedBytes = bytes
        } else {
            guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
                throw MoertError(.outOfMemory, "cannot allocate \(bytes) bytes")
            }
            memset(raw, 0, bytes)
            mappedBytes = 0
        }
        self.count = count
        self.pointer = raw!.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    deinit {
        if mappedBytes > 0 { munmap(pointer, mappedBytes) } else { free(pointer) }
    }

    /// Bytes held.
    public var byteCount: Int { count * MemoryLayout<Float>.stride }
}
