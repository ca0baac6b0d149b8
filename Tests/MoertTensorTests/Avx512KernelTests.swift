// Avx512KernelTests: the AVX-512 kernels (prefill GEMM and attention, decode GEMV, SwiGLU) against plain
// double-precision loops. Each call names the avx512 kernel: the kernel a product has chosen (measured, cached or
// forced) may be another one.

import CKernels
#if canImport(Glibc)
import Glibc
#endif
import Testing
import MoertTensor
import MoertTestSupport

/// Random values in [-1, 1).
private func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var rng = TestRandom(seed: seed)
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

/// silu(g) * u in double precision.
private func swiGLU(_ g: Double, _ u: Double) -> Double { g / (1 + exp(-g)) * u }

@Suite("AVX-512 kernels", .enabled(if: moert_kernels_have_avx512() != 0, "the CPU has no AVX-512 (or MOERT_AVX512=0)"))
struct Avx512KernelTests {
    /// The kernel every call here names.
    let avx512 = Int32(MOERT_KERNEL_AVX512)

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
                ? moert_gemm_nt_kernel(avx512, Int64(m), Int64(n), Int64(k), a, Int64(lda), b, dtype, Int64(ldb), &c,
                                       Int64(ldc))
                : moert_gemm_nt_kernel(avx512, Int64(m), Int64(n), Int64(k), a, Int64(lda), raw, dtype, Int64(ldb), &c,
                                       Int64(ldc))
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
            case .f32: #expect(moert_gemv_f32_kernel(avx512, w, x, &y, Int64(rows), Int64(cols)) == 1)
            case .f16: moert_gemv_half_kernel(avx512, raw, MOERT_HALF_F16, x, &y, Int64(rows), Int64(cols))
            case .bf16: moert_gemv_half_kernel(avx512, raw, MOERT_HALF_BF16, x, &y, Int64(rows), Int64(cols))
            case .q8_0, .q4_0, .q3_0, .q4_k: Issue.record("not a float type")
            }
            let want = (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + Double(w[r * cols + $1]) * Double(x[$1]) } }
            let (error, scale) = maxError(Array(y[..<rows]), want)
            #expect(error <= 1e-6 * Double(cols).squareRoot() * max(scale, 1), "\(rows)x\(cols) \(storage): error \(error)")
            #expect(y[rows].isNaN, "\(rows)x\(cols): wrote past the last row")
        }
    }

    @Test("SwiGLU matches silu(g) * u in double precision, out to where e^-g overflows")
    func swiglu() {
        for (rows, width) in [(1, 1), (1, 1408), (3, 15), (2, 16), (5, 17), (40, 300)] {
            // gates over [-100, 100): past both ends of expf's finite range
            let gateUp = randomFloats(rows * 2 * width, seed: UInt64(rows * width)).enumerated().map { i, v in
                (i / width) % 2 == 0 ? v * 100 : v
            }
            var out = [Float](repeating: .nan, count: rows * width + 1)
            #expect(moert_swiglu_kernel(avx512, gateUp, Int64(rows), Int64(width), &out) == 1)
            for r in 0..<rows {
                for c in 0..<width {
                    let g = Double(gateUp[r * 2 * width + c]), u = Double(gateUp[r * 2 * width + width + c])
                    let want = swiGLU(g, u), got = Double(out[r * width + c])
                    #expect(abs(got - want) <= 1e-6 * abs(want) + 1e-30, "\(rows)x\(width) g \(g) u \(u): \(got) vs \(want)")
                }
            }
            #expect(out[rows * width].isNaN, "\(rows)x\(width): wrote past the output")
        }
        // One row may be computed in place.
        var row = randomFloats(2 * 33, seed: 5)
        let want = (0..<33).map { swiGLU(Double(row[$0]), Double(row[33 + $0])) }
        let done = row.withUnsafeMutableBufferPointer { moert_swiglu_kernel(avx512, $0.baseAddress!, 1, 33, $0.baseAddress!) }
        #expect(done == 1)
        #expect(maxError(Array(row[..<33]), want).error <= 1e-6)
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
            let done = moert_attention_prefill_kernel(avx512, q, keys, values, Int64(n), Int64(position), 0, nil, Int32(heads),
                                                      Int32(kvHeads), Int32(dim), scale, &scores, Int64(capacity), &out)
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
