// HalfKernelTests: f16/bf16 weights used through the half-precision kernels equal the float32 path.

import Testing
import MoertTensor
import MoertTestSupport

@Suite("Half-precision kernels")
struct HalfKernelTests {
    /// Random weights rounded to `storage`, as raw 16-bit values, and the same values widened to float32.
    func weights(rows: Int, cols: Int, storage: WeightStorage, seed: UInt64) -> ([UInt16], [Float]) {
        var rng = TestRandom(seed: seed)
        var raw: [UInt16] = [], wide: [Float] = []
        for _ in 0..<rows * cols {
            let v = Float(rng.nextUnitDouble() * 2 - 1)
            let bits: UInt16 = storage == .f16 ? Float16(v).bitPattern : UInt16(v.bitPattern >> 16)
            raw.append(bits)
            wide.append(storage == .f16 ? Float(Float16(bitPattern: bits)) : Float(bitPattern: UInt32(bits) << 16))
        }
        return (raw, wide)
    }

    /// Storage, rows of x, and whether the product gets the scratch it asks for (without it, several rows on a CPU
    /// without the AVX-512 GEMM take the one-GEMV-per-row path).
    @Test("GEMV and blocked GEMM match float32 weights",
          arguments: [(WeightStorage.f16, 1, true), (.bf16, 1, true), (.f16, 5, true), (.bf16, 3, true), (.f16, 5, false), (.bf16, 3, false)])
    func matchesFloat(storage: WeightStorage, n: Int, withScratch: Bool) {
        // Sizes off the vector widths (33 columns: a 32-wide body plus a tail; 1001 rows: odd, above the
        // threading threshold at 1001 × 300) exercise every path of the kernels.
        for (rows, cols) in [(7, 33), (1001, 300), (64, 64)] {
            let (raw, wide) = weights(rows: rows, cols: cols, storage: storage, seed: UInt64(rows * cols))
            var rng = TestRandom(seed: 99)
            let x = (0..<n * cols).map { _ in Float(rng.nextUnitDouble() - 0.5) }
            var yHalf = [Float](repeating: .nan, count: n * rows), yWide = yHalf
            raw.withUnsafeBytes { r in
                wide.withUnsafeBufferPointer { w in
                    let half = Linear(weight: Weight(raw: r.baseAddress!, storage: storage, shape: [rows, cols]))
                    let full = Linear(weight: Weight(data: w.baseAddress!, shape: [rows, cols]))
                    var scratch = [Float](repeating: .nan, count: withScratch ? half.scratchCount(rows: n) : 0)
                    scratch.withUnsafeMutableBufferPointer { half.apply(x, rows: n, into: &yHalf, scratch: $0) }
                    #expect(full.scratchCount(rows: n) == 0)
                    full.apply(x, rows: n, into: &yWide, scratch: .init(start: nil, count: 0))
                }
            }
            // Same products, different summation order: allow float32 rounding of a length-`cols` dot product.
            let scale = yWide.map(abs).max() ?? 1
            #expect(relativeError(yHalf[...], yWide[...]) <= 1e-5 * Float(cols).squareRoot() / max(scale, 1) + 1e-6, "\(rows)x\(cols)")
        }
    }
}
