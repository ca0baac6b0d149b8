// Lock: a pthread mutex for the few shared structures (plugin registry, live model count, expert store), and a
// condition variable to wait on with it.

#if canImport(Glibc)
import Glibc
#endif

/// A non-recursive mutual-exclusion lock.
final class Lock: @unchecked Sendable {
    fileprivate let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` while holding the lock.
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A condition variable, waited on while holding a `Lock`.
final class Condition: @unchecked Sendable {
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    init() {
        cond = .allocate(capacity: 1)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        cond.deallocate()
    }

    /// Releases `lock` (which the caller holds, inside `withLock`), waits for a broadcast, and takes it again.
    func wait(_ lock: Lock) { pthread_cond_wait(cond, lock.mutex) }

    /// Wakes every waiter.
    func broadcast() { pthread_cond_broadcast(cond) }
}
