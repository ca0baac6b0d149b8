// Sampler: greedy, temperature, top-k and top-p token selection with a seeded random stream.

import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// Sampling parameters (defaults: greedy).
public struct SamplerOptions: Sendable, Equatable {
    /// 0 = greedy; > 0 divides the logits.
    public var temperature: Float = 0
    /// Keep the k most likely tokens; 0 = all.
    public var topK: Int = 0
    /// Keep the smallest most-likely set whose probability reaches p, in (0, 1].
    public var topP: Float = 1
    /// Seed of the random stream.
    public var seed: UInt64 = 0
    /// Greedy.
    public init() {}

    /// Rejects values outside their ranges.
    /// - Throws: `MoertError` (`.invalidArgument`).
    public func validate() throws {
        guard temperature.isFinite && temperature >= 0 else { throw MoertError.invalid("temperature must be finite and >= 0, got \(temperature)") }
        guard topK >= 0 else { throw MoertError.invalid("top_k must be >= 0, got \(topK)") }
        guard topP > 0 && topP <= 1 else { throw MoertError.invalid("top_p must be in (0, 1], got \(topP)") }
    }
}

/// Draws tokens from logits. Equal options and seeds give equal draws.
public struct Sampler: Sendable {
    /// The sampling parameters.
    public let options: SamplerOptions
    private var rng: Xoshiro256
    /// Candidate ids, most likely first, and their weights: kept between draws, so that only the first draw
    /// allocates.
    private var candidates: [Int32] = []
    private var weights: [Float] = []

    /// Creates a sampler.
    /// - Throws: `MoertError` (`.invalidArgument`) for out-of-range options.
    public init(options: SamplerOptions) throws {
        try options.validate()
        self.options = options
        rng = Xoshiro256(seed: options.seed)
    }

    /// Chooses a token from `logits`.
    /// - Throws: `MoertError` (`.invalidArgument`) for an empty row or one with no finite logit.
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) throws -> Int32 {
        guard !logits.isEmpty else { throw MoertError.invalid("empty logits row") }
        guard let best = argmax(logits) else { throw MoertError.invalid("logits hold no comparable value (all NaN)") }
        if options.temperature == 0 || options.topK == 1 { return Int32(best) }

        // Room for a whole row, taken once: appending then never grows the buffers, so that a sampler allocates
        // the same on every call however many candidates a row leaves.
        if candidates.capacity < logits.count { candidates.reserveCapacity(logits.count) }
        if weights.capacity < logits.count { weights.reserveCapacity(logits.count) }
        // The top-k candidates (all without top-k) by logit, descending; lower id first on ties.
        candidates.removeAll(keepingCapacity: true)
        for i in 0..<logits.count where !logits[i].isNaN { candidates.append(Int32(i)) }
        let kept = options.topK > 0 ? min(options.topK, candidates.count) : candidates.count
        candidates.withUnsafeMutableBufferPointer { mostLikelyFirst($0, keeping: kept, logits: logits) }
        let t = options.temperature
        let top = logits[Int(candidates[0])] / t
        weights.removeAll(keepingCapacity: true)
        var sum: Float = 0
        for j in 0..<kept {
            let p = expf(logits[Int(candidates[j])] / t - top)
            weights.append(p)
            sum += p
        }
        var count = kept
        if options.topP < 1 {
            var cumulative: Float = 0
            for (i, p) in weights.enumerated() {
                cumulative += p / sum
                if cumulative >= options.topP { count = i + 1; break }
            }
            sum = 0
            for j in 0..<count { sum += weights[j] }
        }
        let r = Float(rng.nextUnitDouble()) * sum
        var acc: Float = 0
        for j in 0..<count {
            acc += weights[j]
            if r < acc { return candidates[j] }
        }
        return candidates[count - 1]
    }
}

/// Moves the `k` most likely ids of `ids` to its front, most likely first (a larger logit, then the lower id), in
/// place: a heap of the best k so far whose root is the least likely, then that heap sorted out. O(n log k).
private func mostLikelyFirst(_ ids: UnsafeMutableBufferPointer<Int32>, keeping k: Int, logits: UnsafeBufferPointer<Float>) {
    guard k > 0 else { return }
    func likelier(_ a: Int32, _ b: Int32) -> Bool {
        let x = logits[Int(a)], y = logits[Int(b)]
        return x > y || (x == y && a < b)
    }
    /// Restores the heap property below `root` in ids[0 ..< size]: no child is less likely than its parent.
    func siftDown(_ root: Int, _ size: Int) {
        var i = root
        while true {
            let left = 2 * i + 1, right = left + 1
            var least = i
            if left < size && likelier(ids[least], ids[left]) { least = left }
            if right < size && likelier(ids[least], ids[right]) { least = right }
            if least == i { return }
            ids.swapAt(i, least)
            i = least
        }
    }
    for i in stride(from: k / 2 - 1, through: 0, by: -1) { siftDown(i, k) }
    for i in k..<ids.count where likelier(ids[i], ids[0]) {
        ids.swapAt(0, i)
        siftDown(0, k)
    }
    // Repeatedly move the least likely to the end of the shrinking heap: the front k end most likely first.
    for end in stride(from: k - 1, to: 0, by: -1) {
        ids.swapAt(0, end)
        siftDown(0, end)
    }
}

/// Index of the largest value (lowest index on ties), ignoring NaN; nil when all are NaN.
public func argmax(_ x: UnsafeBufferPointer<Float>) -> Int? {
    var best: Int?
    for i in 0..<x.count where !x[i].isNaN {
        if best == nil || x[i] > x[best!] { best = i }
    }
    return best
}

/// xoshiro256** seeded through splitmix64 (Blackman & Vigna): small, fast, reproducible across platforms.
struct Xoshiro256: Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    init(seed: UInt64) {
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    mutating func nextUnitDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}
