// ExpertStore: routed expert weights materialised on first use into the arena, evicted least-recently-used under a
// residency budget, and re-materialised from the memory-mapped checkpoint when needed again.

import CKernels
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// Memory counters of a store.
public struct ExpertStoreStats: Sendable {
    /// All experts in their compute layout.
    public var totalBytes = 0
    /// Experts materialised now.
    public var residentBytes = 0
    /// The cap; nil: none.
    public var budgetBytes: Int?
    /// Uses that found the weights resident.
    public var hits = 0
    /// Uses that materialised them.
    public var misses = 0
    /// Bytes materialised so far.
    public var bytesLoaded = 0
    /// Experts evicted under the budget.
    public var evictions = 0
    /// Resident experts per MoE layer.
    public var residentPerLayer: [Int] = []
}

/// The expert weights of one model. Thread-safe; sessions on several threads share it.
public final class ExpertStore: @unchecked Sendable {
    /// One expert's slot: its sources in the mapping and, while resident, its copy in the arena in the compute
    /// layout — the sources concatenated, kept as stored when they share one type other than float32 (f16, bf16,
    /// q8_0, q4_0: the kernels read them as such), float32 otherwise.
    final class Slot {
        let sources: [StoredTensor]
        let elements: Int
        let storage: WeightStorage
        let moeLayer: Int
        var buffer: UnsafeMutableRawPointer?
        var inUse = 0
        var lastUse: UInt64 = 0
        /// The scales of quantized sources were found finite (at the first materialisation).
        var checked = false

        init(sources: [StoredTensor], moeLayer: Int) {
            self.sources = sources
            self.elements = sources.reduce(0) { $0 + $1.count }
            self.moeLayer = moeLayer
            let stored = Set(sources.map(\.storage))
            storage = stored.count == 1 ? stored.first! : .f32
        }

        var bytes: Int { storage.bytes(elements) }
    }

    /// Where materialised experts live.
    public let arena: ExpertArena
    /// Cap on resident bytes; nil = no cap. Set once, while the model is being built.
    public package(set) var budget: Int?
    private var slots: [Slot] = []
    private let lock = Lock()
    private var clock: UInt64 = 0
    private var stats = ExpertStoreStats()
    private var warned = false

    /// Whether the sources are pages of a file mapping, which may be handed back to the kernel once copied.
    private let releasesSources: Bool

    /// Creates an empty store without a budget. `sourcesAreMapped`: the experts' sources are a file mapping (whose
    /// pages can be dropped and read again), not memory of their own (which dropping would zero).
    public init(sourcesAreMapped: Bool = true) {
        arena = ExpertArena()
        releasesSources = sourcesAreMapped
    }

    deinit {
        for s in slots { if let b = s.buffer { arena.deallocate(b, bytes: s.bytes) } }
    }

    /// Adds an expert made of `sources` (concatenated in order when materialised); returns its slot id.
    package func register(_ sources: [StoredTensor], moeLayer: Int) -> Int {
        lock.withLock {
            slots.append(Slot(sources: sources, moeLayer: moeLayer))
            stats.totalBytes += slots.last!.bytes
            while stats.residentPerLayer.count <= moeLayer { stats.residentPerLayer.append(0) }
            return slots.count - 1
        }
    }

    /// Total bytes of all experts in their compute layout.
    public var totalBytes: Int { lock.withLock { stats.totalBytes } }

    /// The weights of slot `id` in its compute layout (see `storage(of:)`), materialising them if needed. Pair
    /// with `release`.
    /// - Throws: `MoertError` (`.outOfMemory`).
    func acquire(_ id: Int) throws -> UnsafeRawPointer {
        try lock.withLock {
            let slot = slots[id]
            clock &+= 1
            slot.lastUse = clock
            slot.inUse += 1
            if let b = slot.buffer {
                stats.hits += 1
                return UnsafeRawPointer(b)
            }
            stats.misses += 1
            do {
                // An evicted expert of the same size hands over its buffer: no free and allocation, no fresh pages
                // to fault in, and the process never holds more than the budget.
                let b = try makeRoom(for: slot.bytes) ?? arena.allocate(slot.bytes)
                var offset = 0
                for s in slot.sources {
                    if slot.storage == s.storage {
                        // Stored as computed: a copy (by all worker threads when untransposed).
                        s.copy(to: b + offset)
                    } else {
                        s.convert(to: (b + offset).bindMemory(to: Float.self, capacity: s.count))
                    }
                    if releasesSources { releasePages(s) }
                    if !slot.checked {
                        do {
                            try checkScales(s.name, b + offset, slot.storage, count: s.count)
                        } catch {
                            arena.deallocate(b, bytes: slot.bytes)
                            throw error
                        }
                    }
                    offset += slot.storage.bytes(s.count)
                }
                slot.checked = true
                slot.buffer = b
                stats.residentBytes += slot.bytes
                stats.bytesLoaded += slot.bytes
                stats.residentPerLayer[slot.moeLayer] += 1
                return UnsafeRawPointer(b)
            } catch {
                slot.inUse -= 1
                throw error
            }
        }
    }

    /// The element type of slot `id` in its compute layout.
    func storage(of id: Int) -> WeightStorage { lock.withLock { slots[id].storage } }

    /// Ends a use begun by `acquire`.
    func release(_ id: Int) {
        lock.withLock { slots[id].inUse -= 1 }
    }

    /// Evicts least-recently-used experts not in use until `bytes` more fit the budget, and returns the buffer of
    /// an evicted expert of exactly `bytes` bytes for reuse (the others are freed). When every resident expert is
    /// in use the budget is exceeded for now (with one warning), so that a budget smaller than one layer's chosen
    /// experts still works.
    private func makeRoom(for bytes: Int) -> UnsafeMutableRawPointer? {
        guard let budget else { return nil }
        var reusable: UnsafeMutableRawPointer?
        while stats.residentBytes + bytes > budget {
            var victim: Slot?
            for s in slots where s.buffer != nil && s.inUse == 0 {
                if victim == nil || s.lastUse < victim!.lastUse { victim = s }
            }
            guard let v = victim else {
                if !warned {
                    warned = true
                    Log.write(.warning, "expert budget of \(budget) bytes is smaller than the experts one step needs; running over it")
                }
                return reusable
            }
            if reusable == nil && v.bytes == bytes {
                reusable = v.buffer
            } else {
                arena.deallocate(v.buffer!, bytes: v.bytes)
            }
            v.buffer = nil
            stats.residentBytes -= v.bytes
            stats.evictions += 1
            stats.residentPerLayer[v.moeLayer] -= 1
        }
        return reusable
    }

    /// Returns the whole pages inside a source tensor to the kernel: they are clean file pages of a private
    /// mapping, so they are re-read from the file if the expert is materialised again. They are first marked cold,
    /// so that under memory pressure (a container's memory limit) the page cache drops them before pages still in
    /// use, such as the embeddings; without pressure they stay cached and a re-materialisation is a copy.
    private func releasePages(_ s: StoredTensor) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: s.data), end = start + s.byteCount
        let lo = (start + page - 1) / page * page, hi = end / page * page
        guard hi > lo, let p = UnsafeMutableRawPointer(bitPattern: lo) else { return }
        madvise(p, hi - lo, MADV_COLD)  // Linux 5.4+; older kernels reject it (EINVAL), which is harmless
        madvise(p, hi - lo, MADV_DONTNEED)
    }

    /// A snapshot of the counters.
    public var statistics: ExpertStoreStats {
        lock.withLock {
            var s = stats
            s.budgetBytes = budget
            return s
        }
    }
}
