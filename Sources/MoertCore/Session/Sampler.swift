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
    public let options: SamplerOptions
    private var rng: Xoshiro256

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

        // Candidates sorted by logit, descending; lower id first on ties.
        var ids = (0..<logits.count).filter { !logits[$0].isNaN }
        ids.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if options.topK > 0 && options.topK < ids.count { ids.removeSubrange(options.topK...) }
        let t = options.temperature
        let top = logits[ids[0]] / t
        var probs = ids.map { expf(logits[$0] / t - top) }
        var sum = probs.reduce(0, +)
        if options.topP < 1 {
            var cumulative: Float = 0
            var keep = probs.count
            for (i, p) in probs.enumerated() {
                cumulative += p / sum
                if cumulative >= options.topP { keep = i + 1; break }
            }
            probs.removeSubrange(keep...)
            sum = probs.reduce(0, +)
        }
        let r = Float(rng.nextUnitDouble()) * sum
        var acc: Float = 0
        for (i, p) in probs.enumerated() {
            acc += p
            if r < acc { return Int32(ids[i]) }
        }
        return Int32(ids[probs.count - 1])
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
