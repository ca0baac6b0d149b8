// Clock: seconds on the monotonic clock, for every timing the runtime and its tools take.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Seconds on the monotonic clock (CLOCK_MONOTONIC, a vDSO call of a few tens of nanoseconds): the difference of two
/// readings is the time between them, unaffected by changes to the wall clock.
public func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
