// ThreadLocalText: a message kept per thread, behind moert_last_error() and a plugin's host->set_error.

#if canImport(Glibc)
import Glibc
#endif

/// One text slot per thread: a malloc'd C string, freed when it is replaced or cleared, or when its thread ends.
package final class ThreadLocalText: @unchecked Sendable {
    private let key: pthread_key_t

    /// Creates an empty slot (for the life of the process: the key is never deleted).
    package init() {
        var k = pthread_key_t()
        pthread_key_create(&k) { free($0) }
        key = k
    }

    /// Stores `message` for this thread.
    package func set(_ message: String) {
        let old = pthread_getspecific(key)
        pthread_setspecific(key, strdup(message))
        free(old)
    }

    /// Empties this thread's slot.
    package func clear() {
        free(pthread_getspecific(key))
        pthread_setspecific(key, nil)
    }

    /// This thread's text as a C string, valid until the next `set` or `clear` on this thread; nil when empty.
    package var cString: UnsafePointer<CChar>? {
        pthread_getspecific(key).map { UnsafePointer($0.assumingMemoryBound(to: CChar.self)) }
    }

    /// This thread's text, emptying the slot; nil when it was empty.
    package func take() -> String? {
        guard let p = cString else { return nil }
        let s = String(cString: p)
        clear()
        return s
    }
}
