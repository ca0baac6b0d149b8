// GemmKernelTests: the AVX-512 kernels (prefill GEMM, prefill attention, decode GEMV) against plain double-precision
// loops.

import CKernels
#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import MoertCore

/// Random values in [-1, 1).
private func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var rng = Xoshiro256(seed: seed)
    return (0..<count).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
}

/// The largest |a - b| over all elements, and the largest |b|.
private func maxError(_ a: [Float], _ b: [Double]) -> (error: Double, scale: Double) {
    var error = 0.0, scale = 0.0
    for (x, y) in zip(a, b) {
        error = max(error, abs(Double(x) - y))
        scale = max(scale, abs(y))
    }
    return (error, scale)
}

@Suite("AVX-512 kernels", .enabled(if: moert_kernels_have_avx512() != 0, "the CPU has no AVX-512 (or MOERT_AVX512=0)"))
struct GemmKernelTests {
    /// Shapes around the tile sizes (14 rows, 32 columns, k slices of up to 256 in steps of 16), with leading
    /// dimensions wider than the matrices.
    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (2, 1, 1), (3, 17, 15), (13, 32, 16), (14, 33, 17), (15, 64, 256), (29, 100, 257), (130, 70, 600),
        (513, 40, 48), (64, 1000, 64),
    ]

    @Test("c = a b^T matches a double-precision loop for float32, f16 and bf16 weights",
          arguments: [WeightStorage.f32, .f16, .bf16])
    func transposed(storage: WeightStorage) {
        for (m, n, k) in Self.shapes {
            let lda = k + 3, ldb = k + 5, ldc = n + 7
            let a = randomFloats(m * lda, seed: UInt64(m * 31 + k))
            var b = randomFloats(n * ldb, seed: UInt64(n * 17 + k))
            // Weights rounded to the storage type; the reference uses the rounded values.
            let raw: [UInt16] = b.map { storage == .f16 ? Float16($0).bitPattern : UInt16($0.bitPattern >> 16) }
            if storage != .f32 {
                b = raw.map { storage == .f16 ? Float(Float16(bitPattern: $0)) : Float(bitPattern: UInt32($0) << 16) }
            }
            var c = [Float](repeating: .nan, count: m * ldc)
            let dtype = storage == .f32 ? MOERT_GEMM_F32 : storage == .f16 ? MOERT_HALF_F16 : MOERT_HALF_BF16
            let done = storage == .f32
                ? moert_gemm_nt(Int64(m), Int64(n), Int64(k), a, Int64(lda), b, dtype, Int64(ldb), &c, Int64(ldc))
                : moert_gemm_nt(Int64(m), Int64(n), Int64(k), a, Int64(lda), raw, dtype, Int64(ldb), &c, Int64(ldc))
            #expect(done == 1)
            var got: [Float] = [], want: [Double] = []
            for i in 0..<m {
                for j in 0..<n {
                    got.append(c[i * ldc + j])
                    want.append((0..<k).reduce(0.0) { $0 + Double(a[i * lda + $1]) * Double(b[j * ldb + $1]) })
                }
                // Columns past n are left alone.
                let past = c[i * ldc + n ..< (i + 1) * ldc].allSatisfy { $0.isNaN }
                #expect(past, "\(m)x\(n)x\(k): wrote past column \(n)")
            }
            let (error, scale) = maxError(got, want)
            #expect(error <= 1e-6 * Double(k).squareRoot() * max(scale, 1), "\(m)x\(n)x\(k) \(storage): error \(error)")
        }
    }

    @Test("decode GEMV matches a double-precision loop for float32, f16 and bf16 weights",
          arguments: [WeightStorage.f32, .f16, .bf16])
    func gemv(storage: WeightStorage) {
        // Rows around the four-row blocks and the threading threshold; columns around the 16-wide chunks and the
        // 128-byte steps.
        for (rows, cols) in [(1, 1), (3, 15), (4, 16), (5, 17), (7, 31), (9, 33), (6, 65), (13, 300), (1001, 300), (300, 1000)] {
            let x = randomFloats(cols, seed: UInt64(cols))
            var w = randomFloats(rows * cols, seed: UInt64(rows * 7 + cols))
            let raw: [UInt16] = w.map { storage == .f16 ? Float16($0).bitPattern : UInt16($0.bitPattern >> 16) }
            if storage != .f32 {
                w = raw.map { storage == .f16 ? Float(Float16(bitPattern: $0)) : Float(bitPattern: UInt32($0) << 16) }
            }
            var y = [Float](repeating: .nan, count: rows + 1)
            switch storage {
            case .f32: #expect(moert_gemv_f32(w, x, &y, Int64(rows), Int64(cols)) == 1)
            case .f16: moert_gemv_half(raw, MOERT_HALF_F16, x, &y, Int64(rows), Int64(cols))
            case .bf16: moert_gemv_half(raw, MOERT_HALF_BF16, x, &y, Int64(rows), Int64(cols))
            }
            let want = (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + Double(w[r * cols + $1]) * Double(x[$1]) } }
            let (error, scale) = maxError(Array(y[..<rows]), want)
            #expect(error <= 1e-6 * Double(cols).squareRoot() * max(scale, 1), "\(rows)x\(cols) \(storage): error \(error)")
            #expect(y[rows].isNaN, "\(rows)x\(cols): wrote past the last row")
        }
    }

    @Test("c = a b with b stored [k, n] matches a double-precision loop")
    func plain() {
        for (m, n, k) in Self.shapes {
            let lda = k + 1, ldb = n + 2, ldc = n + 3
            let a = randomFloats(m * lda, seed: UInt64(m + k)), b = randomFloats(k * ldb, seed: UInt64(n + k))
            var c = [Float](repeating: .nan, count: m * ldc)
            #expect(moert_gemm_serial(Int64(m), Int64(n), Int64(k), a, Int64(lda), b, 1, Int64(ldb), &c, Int64(ldc)) == 1)
            var got: [Float] = [], want: [Double] = []
            for i in 0..<m {
                for j in 0..<n {
                    got.append(c[i * ldc + j])
                    want.append((0..<k).reduce(0.0) { $0 + Double(a[i * lda + $1]) * Double(b[$1 * ldb + j]) })
                }
            }
            let (error, scale) = maxError(got, want)
            #expect(error <= 1e-6 * Double(k).squareRoot() * max(scale, 1), "\(m)x\(n)x\(k): error \(error)")
        }
    }

    @Test("prefill attention matches causal softmax attention written out", arguments: [
        (n: 1, position: 0), (n: 3, position: 5), (n: 70, position: 0), (n: 130, position: 40),
    ])
    func prefillAttention(n: Int, position: Int) {
        let heads = 4, kvHeads = 2, dim = 24, total = position + n
        let qw = heads * dim, kvw = kvHeads * dim, scale = 1 / Float(dim).squareRoot()
        let q = randomFloats(n * qw, seed: 1), keys = randomFloats(total * kvw, seed: 2)
        let values = randomFloats(total * kvw, seed: 3)
        var want = [Double](repeating: 0, count: n * qw)
        for t in 0..<n {
            for h in 0..<heads {
                let g = h / (heads / kvHeads), visible = position + t + 1
                let s = (0..<visible).map { j in
                    Double(scale) * (0..<dim).reduce(0.0) { $0 + Double(q[t * qw + h * dim + $1]) * Double(keys[j * kvw + g * dim + $1]) }
                }
                let top = s.max()!, e = s.map { exp($0 - top) }, sum = e.reduce(0, +)
                for i in 0..<dim {
                    want[t * qw + h * dim + i] = (0..<visible).reduce(0.0) { $0 + e[$1] / sum * Double(values[$1 * kvw + g * dim + i]) }
                }
            }
        }
        // Scratch for two parts, for exactly one part, and too little for any (refused: the caller computes it).
        let perPart = min(n, 64) * total
        for capacity in [2 * perPart, perPart, perPart - 1] {
            var scores = [Float](repeating: .nan, count: max(capacity, 1)), out = [Float](repeating: .nan, count: n * qw)
            let done = moert_attention_prefill(q, keys, values, Int64(n), Int64(position), Int32(heads), Int32(kvHeads),
                                               Int32(dim), scale, &scores, Int64(capacity), &out)
            if capacity < perPart {
                #expect(done == 0)
                continue
            }
            #expect(done == 1)
            let (error, _) = maxError(out, want)
            #expect(error <= 1e-5, "n \(n) position \(position) capacity \(capacity): error \(error)")
        }
    }
}
