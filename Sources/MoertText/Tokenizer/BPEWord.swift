// BPEWord: one word's symbols merged pair by pair, lowest rank first, as tokenizers' `Word::merge_all` does.

/// Scratch for merging the symbols of one word, reused from word to word so that merging allocates nothing once
/// the buffers have grown to the longest word.
struct BPEWord {
    /// Symbol ids; a merged-away symbol keeps its slot with `length` 0.
    var ids: [Int32] = []
    /// Byte length of each symbol (0 once merged into its left neighbour).
    var lengths: [Int32] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    /// Min-heap of `rank << 32 | position`: the order of tokenizers' queue (rank, then leftmost position).
    private var heap: [UInt64] = []

    /// Empties the word.
    mutating func removeAll() {
        ids.removeAll(keepingCapacity: true)
        lengths.removeAll(keepingCapacity: true)
        prev.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
    }

    /// Appends a symbol of `byteLength` bytes.
    mutating func add(_ id: Int32, byteLength: Int) {
        let n = Int32(ids.count)
        if n > 0 { next[Int(n) - 1] = n }
        ids.append(id)
        lengths.append(Int32(truncatingIfNeeded: byteLength))
        prev.append(n - 1)
        next.append(-1)
    }

    /// Applies `merges` until no adjacent pair merges.
    ///
    /// The queue holds candidate merges keyed by rank then position. A popped entry is applied only if its
    /// position still starts a live symbol with a right neighbour and that pair still merges into the same id
    /// (tokenizers checks the merged id, not the rank, and so does this); otherwise it is stale and skipped.
    mutating func mergeAll(_ merges: MergeTable) {
        heap.removeAll(keepingCapacity: true)
        let n = ids.count
        if n < 2 { return }
        for i in 0..<(n - 1) {
            let r = merges.rank(ids[i], ids[i + 1])
            if r >= 0 { push(UInt64(r) << 32 | UInt64(i)) }
        }
        while let top = pop() {
            let rank = Int(top >> 32), pos = Int(top & 0xFFFF_FFFF)
            let newId = merges.newIdOfRank[rank]
            if lengths[pos] == 0 { continue }
            let right = Int(next[pos])
            if right < 0 { continue }
            let current = merges.rank(ids[pos], ids[right])
            if current < 0 || merges.newIdOfRank[current] != newId { continue }
            // Merge the right symbol into this one.
            ids[pos] = newId
            lengths[pos] += lengths[right]
            next[pos] = next[right]
            lengths[right] = 0
            let after = Int(next[pos])
            if after >= 0 { prev[after] = Int32(pos) }
            let before = Int(prev[pos])
            if before >= 0 {
                let r = merges.rank(ids[before], newId)
                if r >= 0 { push(UInt64(r) << 32 | UInt64(before)) }
            }
            if after >= 0 {
                let r = merges.rank(newId, ids[after])
                if r >= 0 { push(UInt64(r) << 32 | UInt64(pos)) }
            }
        }
    }

    /// Calls `body` with the id of each live symbol, in order.
    func forEachSymbol(_ body: (Int32) -> Void) {
        for i in 0..<ids.count where lengths[i] != 0 { body(ids[i]) }
    }

    // MARK: - Binary heap

    private mutating func push(_ x: UInt64) {
        heap.append(x)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) >> 1
            if heap[parent] <= x { break }
            heap[i] = heap[parent]
            i = parent
        }
        heap[i] = x
    }

    private mutating func pop() -> UInt64? {
        guard let last = heap.popLast() else { return nil }
        if heap.isEmpty { return last }
        let top = heap[0]
        let n = heap.count
        var i = 0
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            var c = l
            if l + 1 < n && heap[l + 1] < heap[l] { c = l + 1 }
            if heap[c] >= last { break }
            heap[i] = heap[c]
            i = c
        }
        heap[i] = last
        return top
    }
}
