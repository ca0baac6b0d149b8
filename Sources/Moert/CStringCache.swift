// CStringCache: interned C strings lent out through the C API (kind names, vocabulary entries).

#if canImport(Glibc)
import Glibc
#endif

/// Interns strings as C strings that live as long as the cache. Thread-safe.
final class CStringCache: @unchecked Sendable {
    private var strings: [String: UnsafeMutablePointer<CChar>] = [:]
    private var mutex = pthread_mutex_t()

    init() { pthread_mutex_init(&mutex, nil) }

    deinit {
        for p in strings.values { free(p) }
        pthread_mutex_destroy(&mutex)
    }

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
