// ExpertStore+Prefetch: materialises experts predicted for an upcoming layer on a background thread, so that under a
// residency budget the copy from the checkpoint overlaps the attention that runs before the layer's experts.

#if canImport(Glibc)
import Glibc
#endif

extension ExpertStore {
    /// Asks the prefetch thread to make slots `ids` resident, replacing requests not yet started. Returns at once;
    /// `acquire` of a slot being loaded waits for its copy. Without a budget every used expert stays resident after
    /// its first use, so requests are ignored.
    func prefetch(_ ids: [Int]) {
        guard budget != nil, !ids.isEmpty else { return }
        lock.withLock {
            guard !stopping else { return }
            if prefetcher == nil { startPrefetcher() }
            prefetchQueue = ids
            changed.broadcast()
        }
    }

    /// Starts the thread (lock held).
    private func startPrefetcher() {
        var thread = pthread_t()
        let context = Unmanaged.passUnretained(self).toOpaque()
        // The store outlives the thread: deinit stops and joins it before anything is freed.
        if pthread_create(&thread, nil, { context in
            Unmanaged<ExpertStore>.fromOpaque(context!).takeUnretainedValue().prefetchLoop()
            return nil
        }, context) == 0 {
            prefetcher = thread
        }
    }

    /// Stops and joins the prefetch thread, if it runs.
    func stopPrefetching() {
        let thread: pthread_t? = lock.withLock {
            stopping = true
            changed.broadcast()
            return prefetcher
        }
        if let thread { pthread_join(thread, nil) }
    }

    /// One step of the prefetch thread.
    private enum PrefetchStep {
        case stop, skip
        case load(Slot, UnsafeMutableRawPointer)
    }

    /// The thread's body: takes one request at a time; reserves room under the lock, copies without it.
    private func prefetchLoop() {
        while true {
            let step: PrefetchStep = lock.withLock {
                while prefetchQueue.isEmpty && !stopping { changed.wait(lock) }
                if stopping { return .stop }
                let slot = slots[prefetchQueue.removeFirst()]
                // Already resident or loading, or no room (every resident expert in use, or out of memory).
                guard slot.buffer == nil, !slot.loading, let b = try? reserve(slot, strict: true) else { return .skip }
                clock &+= 1
                slot.lastUse = clock
                slot.loading = true
                return .load(slot, b)
            }
            switch step {
            case .stop: return
            case .skip: continue
            case .load(let slot, let buffer):
                copySources(of: slot, into: buffer)
                lock.withLock {
                    slot.buffer = buffer
                    slot.loading = false
                    stats.prefetched += 1
                    changed.broadcast()
                }
            }
        }
    }
}
