// Jemalloc: the moert executable links jemalloc, so model arenas use it (libmoert.so finds it at run time).

import CJemalloc

/// jemalloc's version text, read through mallctl (this reference also keeps jemalloc linked).
let jemallocVersion: String? = {
    var version: UnsafePointer<CChar>?
    var size = MemoryLayout<UnsafePointer<CChar>?>.size
    guard mallctl("version", &version, &size, nil, 0) == 0, let version else { return nil }
    return String(cString: version)
}()
