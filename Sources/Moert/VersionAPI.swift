// VersionAPI: versions, status strings, the last error, thread control and the log callback.

import CMoert
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) private let versionCString: UnsafePointer<CChar> = UnsafePointer(strdup(MOERT_VERSION)!)

/// Static texts of the status codes, indexed by code.
nonisolated(unsafe) private let statusTexts: [UnsafePointer<CChar>] = ([
    "success", "invalid argument", "I/O error", "malformed file", "unsupported", "out of memory",
    "out of range", "context full", "buffer too small", "plugin error", "internal error", "non-finite result",
] as [String]).map { UnsafePointer(strdup($0)!) }
nonisolated(unsafe) private let unknownStatus: UnsafePointer<CChar> = UnsafePointer(strdup("unknown status")!)

/// The library version text. The C entry point is `moert_version`.
@c @implementation public func moert_version() -> UnsafePointer<CChar>! { versionCString }

/// The library version number. The C entry point is `moert_version_number`.
@c @implementation public func moert_version_number() -> UInt32 { UInt32(MOERT_VERSION_NUMBER) }

/// The ABI version. The C entry point is `moert_abi_version`.
@c @implementation public func moert_abi_version() -> UInt32 { UInt32(MOERT_ABI_VERSION) }

/// Static text for a status code. The C entry point is `moert_status_string`.
@c @implementation public func moert_status_string(_ status: moert_status) -> UnsafePointer<CChar>! {
    status >= 0 && Int(status) < statusTexts.count ? statusTexts[Int(status)] : unknownStatus
}

/// This thread's last error message. The C entry point is `moert_last_error`.
@c @implementation public func moert_last_error() -> UnsafePointer<CChar>! { lastErrorCString() }

/// Sets the worker thread count. The C entry point is `moert_set_threads`.
@c @implementation public func moert_set_threads(_ n: Int32) -> moert_status {
    withStatus { try Threads.set(Int(n)) }
}

/// The worker thread count. The C entry point is `moert_get_threads`.
@c @implementation public func moert_get_threads() -> Int32 { Int32(Threads.current) }

/// Sends log messages to a host callback (NULL: stderr). The C entry point is `moert_set_log_callback`.
@c @implementation public func moert_set_log_callback(_ callback: moert_log_callback!, _ userData: UnsafeMutableRawPointer!) {
    Log.setCallback(callback, userData: userData)
}
