// KindNameCache: interned C strings for kind names handed out through the C API.

#if canImport(Glibc)
import Glibc
#endif

/// Interns strings as C strings that are never freed (kind names are few and short).
final class KindNameCache: @unchecked Sendable {
    private var strings: [String: UnsafeMutablePointer<CChar>] = [:]
    private var mutex = pthread_mutex_t()

    init() { pthread_mutex_init(&mutex, nil) }

    /// The interned C string for `s`.
    func cString(_ s: String) -> UnsafePointer<CChar> {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        if let p = strings[s] { return UnsafePointer(p) }
        let p = strdup(s)!
        strings[s] = p
        return UnsafePointer(p)
    }
}
