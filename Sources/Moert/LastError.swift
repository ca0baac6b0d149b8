// LastError: the thread-local message behind moert_last_error() and the mapping of errors to status codes.

import CMoert
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// This thread's last error message.
private let lastError = ThreadLocalText()

/// An empty C string with static lifetime.
nonisolated(unsafe) private let emptyCString: UnsafePointer<CChar> = UnsafePointer(strdup("")!)

/// Stores `message` as this thread's last error.
func setLastError(_ message: String) { lastError.set(message) }

/// This thread's last error message (never NULL).
func lastErrorCString() -> UnsafePointer<CChar> { lastError.cString ?? emptyCString }

/// Runs `body`, mapping a thrown error to its status code and this thread's last error.
func withStatus(_ body: () throws -> Void) -> moert_status {
    do {
        try body()
        return MOERT_OK
    } catch let e as MoertError {
        setLastError(e.message)
        return e.code.rawValue
    } catch {
        setLastError("internal error: \(error)")
        return MOERT_ERR_INTERNAL
    }
}

/// Fails with `.invalidArgument` when `pointer` is NULL.
func require<T>(_ pointer: T?, _ name: String) throws -> T {
    guard let pointer else { throw MoertError(.invalidArgument, "\(name) is NULL") }
    return pointer
}

/// Copies a host options struct into `defaults`, honouring its `struct_size` (older, shorter structs keep the
/// defaults for the fields they lack). NULL gives the defaults.
func readSized<T>(_ p: UnsafePointer<T>?, defaults: T, name: String) throws -> T {
    guard let p else { return defaults }
    let size = Int(UnsafeRawPointer(p).load(as: UInt32.self))
    guard size >= MemoryLayout<UInt32>.size else {
        throw MoertError(.invalidArgument, "\(name).struct_size is \(size); initialise the struct with its _init function")
    }
    var out = defaults
    withUnsafeMutableBytes(of: &out) { dst in
        _ = memcpy(dst.baseAddress!, UnsafeRawPointer(p), min(size, MemoryLayout<T>.size))
    }
    return out
}

/// Copies `value` into a host struct, writing only the bytes its `struct_size` covers.
func writeSized<T>(_ value: T, to p: UnsafeMutablePointer<T>, name: String) throws {
    let size = Int(UnsafeRawPointer(p).load(as: UInt32.self))
    guard size >= MemoryLayout<UInt32>.size else {
        throw MoertError(.invalidArgument, "\(name).struct_size is \(size); set it to sizeof the struct")
    }
    var v = value
    withUnsafeBytes(of: &v) { src in
        let n = min(size, MemoryLayout<T>.size)
        // Skip struct_size itself so the host's value stays.
        _ = memcpy(UnsafeMutableRawPointer(p) + 4, src.baseAddress! + 4, n - 4)
    }
}

/// Writes `defaults` into the first `size` bytes of a host struct and sets its struct_size to the bytes written,
/// so that an older host's smaller struct is never overrun.
func writeDefaults<T>(_ defaults: T, to p: UnsafeMutablePointer<T>?, size: Int) {
    guard let p, size >= MemoryLayout<UInt32>.size else { return }
    var value = defaults
    let n = min(size, MemoryLayout<T>.size)
    withUnsafeMutableBytes(of: &value) { raw in
        raw.storeBytes(of: UInt32(n), toByteOffset: 0, as: UInt32.self)
        _ = memcpy(UnsafeMutableRawPointer(p), raw.baseAddress!, n)
    }
}
