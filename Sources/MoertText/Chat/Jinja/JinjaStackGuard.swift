// JinjaStackGuard: stops parsing or rendering with an error before a deeply nested template overflows the stack.

import CSystem
import Glibc

/// The lowest stack address a parse or render may reach on the current thread. Parsing and rendering recurse once
/// per nested block, expression and macro call; the counted limits (`JinjaLimits`) bound that nesting, but how much
/// stack it takes depends on the build (a debug build's frames are several times larger) and on the caller's
/// thread, which may be small. So every nesting level also checks the stack pointer against this limit: a quarter
/// of the thread's stack (at most 1 MiB) is kept free for the work between two checks.
struct JinjaStackGuard {
    private let low: UInt
    private let high: UInt
    private let limit: UInt

    /// The guard of the calling thread (inactive when the thread's stack cannot be found).
    init() {
        var attributes = pthread_attr_t()
        var base: UnsafeMutableRawPointer?
        var size = 0
        guard csystem_pthread_getattr_np(pthread_self(), &attributes) == 0 else {
            (low, high, limit) = (0, 0, 0)
            return
        }
        pthread_attr_getstack(&attributes, &base, &size)
        pthread_attr_destroy(&attributes)
        low = UInt(bitPattern: base)
        high = low &+ UInt(size)
        limit = low &+ UInt(min(size / 4, 1 << 20))
    }

    /// Fails when the stack is nearly used up.
    /// - Throws: `JinjaFailure.limit` naming the nesting.
    func check() throws {
        let here = UInt(bitPattern: csystem_stack_address())
        // An address outside the stack the thread reported (a thread switched to another stack) says nothing.
        guard here <= low || here >= high || here > limit else {
            throw JinjaFailure.limit("the template nests too deeply for this thread's stack")
        }
    }
}
