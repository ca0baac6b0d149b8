// PlainRead: the memory bandwidth a plain reader reaches on the worker threads, the yardstick of `moert bench
// --bandwidth`.

import CKernels

/// Reads `buffer` once on the worker threads (one sequential stream per thread, 256-byte steps, a shorter tail
/// left out) and returns the bytes read per second.
public func plainReadBytesPerSecond(_ buffer: UnsafeRawBufferPointer) -> Double {
    guard let base = buffer.baseAddress, buffer.count >= 256 else { return 0 }
    let t0 = monotonicSeconds()
    _ = moert_stream_read(base, Int64(buffer.count))
    return Double(buffer.count / 256 * 256) / (monotonicSeconds() - t0)
}
