// KernelParityTests: every kernel this CPU can run, for the GEMV, GEMM, SwiGLU and prefill attention products,
// against double-precision loops (the kernel passed explicitly: the process's own choices stay untouched).

import CKernels
import Testing
@testable import MoertTensor
import MoertTestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite("Every kernel against double precision")
struct KernelParityTests {
    /// Random weights stored as `storage` (f32, f16 or bf16) and the same values as float32.
    func weights(rows: Int, cols: Int, storage: WeightStorage, seed: UInt64) -> ([UInt8], [Float]) {
        var rng = TestRandom(seed: seed)
        var raw: [UInt8] = [], wide: [Float] = []
        for _ in 0..<rows * cols {
            let v = Float(rng.nextUnitDouble() * 2 - 1)
            switch storage {
            case .f16:
                let h = Float16(v)
                raw += withUnsafeBytes(of: h.bitPattern.littleEndian, Array.init)
                wide.append(Float(h))
            case .bf16:
                let bits = UInt16(v.bitPattern >> 16)
                raw += withUnsafeBytes(of: bits.littleEndian, Array.init)
                wide.append(Float(bitPattern: UInt32(bits) << 16))
            default:
                raw += withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init)
                wide.append(v)
            }
        }
        return (raw, wide)
    }

    /// y[r, o] = sum_c x[r, c] w[o, c] in double precision.
    func reference(_ x: [Float], _ w: [Float], rows n: Int, outs: Int, cols: Int) -> [Float] {
        var y = [Float](repeating: 0, count: n * outs)
        for r in 0..<n {
            for o in 0..<outs {
                var s = 0.0
                for c in 0..<cols { s += Double(x[r * cols + c]) * Double(w[o * cols + c]) }
                y[r * outs + o] = Float(s)
            }
        }
        return y
    }

    @Test("GEMV (one row) and GEMM (several) on every available kernel",
          arguments: [WeightStorage.f32, .f16, .bf16], [1, 5, 70])
    func products(storage: WeightStorage, n: Int) {
        let product = n == 1 ? KernelProduct.gemv(storage) : KernelProduct.gemm(storage)
        // Sizes off the vector widths (33 columns: a body plus a tail; 1001 x 300: odd, above the threading threshold),
        // fewer rows than avx2x4's four streams (3 x 512: whole 256-byte steps only), and 4 x 1030: one row per stream.
        for (outs, cols) in [(7, 33), (1001, 300), (3, 512), (4, 1030)] {
            let (raw, wide) = weights(rows: outs, cols: cols, storage: storage, seed: UInt64(outs + cols))
            var rng = TestRandom(seed: 7)
            let x = (0..<n * cols).map { _ in Float(rng.nextUnitDouble() - 0.5) }
            let expected = reference(x, wide, rows: n, outs: outs, cols: cols)
            for kernel in product.available {
                var y = [Float](repeating: .nan, count: n * outs)
                raw.withUnsafeBytes { r in
                    let linear = Linear(weight: Weight(raw: r.baseAddress!, storage: storage, shape: [outs, cols]))
                    var scratch = [Float](repeating: .nan, count: linear.scratchCount(rows: n))
                    scratch.withUnsafeMutableBufferPointer { linear.apply(x, rows: n, into: &y, scratch: $0, kernel: kernel) }
                }
                #expect(relativeError(y[...], expected[...]) <= 2e-6 * Float(cols).squareRoot(),
                        "\(product.name) on \(kernel.name), \(outs)x\(cols)")
            }
        }
    }

    /// Shapes around the AVX2 GEMM's tile (6 rows, 16 columns), its k slices (up to 256 in whole 32-value blocks) and
    /// its blocks of 240 rows of A, with leading dimensions wider than the matrices. k is a multiple of 32 where the
    /// quantized types need it.
    static let avx2Shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 32), (5, 15, 32), (6, 16, 64), (7, 17, 96), (13, 33, 256), (29, 100, 288), (241, 40, 64),
        (130, 70, 608), (64, 1000, 32),
    ]

    @Test("the AVX2 GEMM reads float32, f16, bf16, q8_0, q4_0 and q3_0 weights as stored, with row strides",
          .enabled(if: moert_kernels_have_avx2() != 0, "the CPU has no AVX2"),
          arguments: [WeightStorage.f32, .f16, .bf16, .q8_0, .q4_0, .q3_0])
    func avx2Gemm(storage: WeightStorage) {
        for (index, (m, n, k)) in Self.avx2Shapes.enumerated() {
            // Float rows get a stride off the vector width; quantized rows a whole block more than k.
            let lda = k + 3, ldb = storage.isQuantized ? k + 32 : k + 5, ldc = n + 7
            var rng = TestRandom(seed: UInt64(m * 31 + n * 7 + k))
            var a = (0..<m * lda).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
            var w = (0..<n * ldb).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
            if index == 0 || index == Self.avx2Shapes.count - 1 {
                // The largest sums of the 16-bit lanes of q4_0's integer products: every activation quant 127 (rows
                // of 1) against weight quants of 7 (nibble 15; the block's -1 sets its scale to 1/8, nibble 0); for
                // q3_0 quants of 3 (7 unsigned: 0.875 rounds to 3.5 + 4.5 = 8, kept at 7).
                a = a.map { _ in 1 }
                w = w.indices.map { $0 % 32 == 0 ? -1 : 0.875 }
            }
            // The weights as stored, and the values they hold (the reference's).
            var raw = [UInt8](repeating: 0, count: storage.bytes(n * ldb)), wide = [Float](repeating: 0, count: n * ldb)
            convertFromFloat(w, storage: storage, count: w.count, into: &raw)
            raw.withUnsafeBytes { convertToFloat($0.baseAddress!, storage: storage, count: w.count, into: &wide) }
            var c = [Float](repeating: .nan, count: m * ldc)
            let done = moert_gemm_nt_kernel(Int32(MOERT_KERNEL_AVX2), Int64(m), Int64(n), Int64(k), a, Int64(lda), raw,
                                            storage.kernelType, Int64(ldb), &c, Int64(ldc))
            #expect(done == 1)
            var got: [Float] = [], want: [Float] = []
            for i in 0..<m {
                // q4_0 and q3_0 weights meet the 8-bit quantized rows of A (their integer sums are exact); the rest
                // meet A.
                let row = storage == .q4_0 || storage == .q3_0 ? QuantKernelTests.activationValues(a[(i * lda)...], k: k)
                                                               : Array(a[(i * lda)..<(i * lda + k)])
                wide.withUnsafeBufferPointer { wide in
                    for j in 0..<n {
                        var sum = 0.0
                        for p in 0..<k { sum += Double(row[p]) * Double(wide[j * ldb + p]) }
                        got.append(c[i * ldc + j])
                        want.append(Float(sum))
                    }
                }
                let past = c[i * ldc + n ..< (i + 1) * ldc].allSatisfy { $0.isNaN }
                #expect(past, "\(m)x\(n)x\(k): wrote past column \(n)")
            }
            // float32 sums of k products of values in [-1, 1]: rounding grows as sqrt(k), whatever the sum's size
            let worst = zip(got, want).map { abs($0 - $1) }.max()!, scale = want.map(abs).max()!
            #expect(worst <= 2e-6 * Float(k).squareRoot() * max(scale, 1), "\(storage) \(m)x\(n)x\(k): \(worst)")
            // With AVX-512 VNNI, q4_0 and q3_0 also run on vpdpbusd (the avx512 kernel): the same exact integer sums,
            // so the same bits as avx2.
            if (storage == .q4_0 || storage == .q3_0) && moert_kernels_have_avx512_vnni() != 0 {
                var v = [Float](repeating: .nan, count: m * ldc)
                let vnni = moert_gemm_nt_kernel(Int32(MOERT_KERNEL_AVX512), Int64(m), Int64(n), Int64(k), a,
                                                Int64(lda), raw, storage.kernelType, Int64(ldb), &v, Int64(ldc))
                #expect(vnni == 1 && v.map(\.bitPattern) == c.map(\.bitPattern), "\(storage) \(m)x\(n)x\(k): VNNI differs")
            }
        }
    }

    @Test("latent attention's per-head products at decode on every kernel of the GEMV of their type",
          arguments: [WeightStorage.f32, .f16, .bf16])
    func latentProducts(storage: WeightStorage) {
        // (heads, nope, value_dim, rank): odd rows and a rank off the 32-column tiles (44 = 32 + 8 + 4), then one
        // large enough to split the heads among the threads.
        for (heads, nope, vd, rank) in [(3, 5, 7, 44), (8, 64, 64, 272)] {
            let rows = heads * (nope + vd)
            let (raw, wide) = weights(rows: rows, cols: rank, storage: storage, seed: UInt64(rows + rank))
            var rng = TestRandom(seed: 11)
            let q = (0..<heads * (nope + 3)).map { _ in Float(rng.nextUnitDouble() - 0.5) }  // stride nope + 3
            let ctx = (0..<heads * rank).map { _ in Float(rng.nextUnitDouble() - 0.5) }
            var wantQuery = [Float](), wantOut = [Float]()
            for h in 0..<heads {
                let base = h * (nope + vd)
                for c in 0..<rank {
                    wantQuery.append(Float((0..<nope).reduce(0.0) {
                        $0 + Double(q[h * (nope + 3) + $1]) * Double(wide[(base + $1) * rank + c])
                    }))
                }
                for r in 0..<vd {
                    wantOut.append(Float((0..<rank).reduce(0.0) {
                        $0 + Double(ctx[h * rank + $1]) * Double(wide[(base + nope + r) * rank + $1])
                    }))
                }
            }
            for kernel in KernelProduct.gemv(storage).available + [.portable] {
                var query = [Float](repeating: .nan, count: heads * (rank + 2)), out = [Float](repeating: .nan, count: heads * vd)
                raw.withUnsafeBytes { r in
                    moert_latent_query(kernel.rawValue, r.baseAddress, storage.kernelType, q, Int64(nope + 3), Int32(heads),
                                       Int64(nope), Int64(vd), Int64(rank), &query, Int64(rank + 2))
                    moert_latent_output(kernel.rawValue, r.baseAddress, storage.kernelType, ctx, Int32(heads), Int64(nope),
                                        Int64(vd), Int64(rank), &out)
                }
                let gotQuery = (0..<heads).flatMap { h in query[h * (rank + 2) ..< h * (rank + 2) + rank] }
                #expect(relativeError(gotQuery[...], wantQuery[...]) <= 2e-6 * Float(nope).squareRoot(),
                        "query, \(storage) on \(kernel.name), \(heads)x\(nope)x\(rank)")
                #expect(relativeError(out[...], wantOut[...]) <= 2e-6 * Float(rank).squareRoot(),
                        "output, \(storage) on \(kernel.name), \(heads)x\(vd)x\(rank)")
                // The two padding floats between query rows are left alone.
                #expect((0..<heads).allSatisfy { h in query[h * (rank + 2) + rank].isNaN && query[h * (rank + 2) + rank + 1].isNaN })
            }
        }
    }

    @Test("SwiGLU on every available kernel, over the exponential's whole range, with gate and up together or apart")
    func swigluKernels() {
        let rows = 3, width = 37
        var rng = TestRandom(seed: 11)
        var gateUp = (0..<rows * 2 * width).map { _ in Float(rng.nextUnitDouble() * 8 - 4) }
        for (i, v) in [-200, -100, -88.5, -87, 30, 88.5, 100, 200, 0, -0.0].enumerated() { gateUp[i * 3] = Float(v) }
        var expected = [Float](repeating: 0, count: rows * width)
        for r in 0..<rows {
            for c in 0..<width {
                let g = Double(gateUp[r * 2 * width + c]), u = Double(gateUp[r * 2 * width + width + c])
                expected[r * width + c] = Float(g / (1 + exp(-g)) * u)
            }
        }
        for kernel in KernelProduct.swiglu.available {
            var input = gateUp
            var out = [Float](repeating: .nan, count: rows * width)
            input.withUnsafeMutableBufferPointer { swiglu($0.baseAddress!, rows: rows, width: width, into: &out, kernel: kernel) }
            for i in 0..<out.count {
                #expect(abs(out[i] - expected[i]) <= 1e-6 * abs(expected[i]) + 1e-30,
                        "\(kernel.name) [\(i)]: \(out[i]) vs \(expected[i])")
            }
            // Gate and up held apart ([rows, width] each), computed in place over the gate: the same bits per row.
            var gate = [Float](), up = [Float]()
            for r in 0..<rows {
                let start = r * 2 * width
                gate += gateUp[start..<(start + width)]
                up += gateUp[(start + width)..<(start + 2 * width)]
            }
            gate.withUnsafeMutableBufferPointer {
                swiglu(gate: $0.baseAddress!, up: up, rows: rows, width: width, into: $0.baseAddress!, kernel: kernel)
            }
            #expect(gate.map(\.bitPattern) == out.map(\.bitPattern), "\(kernel.name): gate and up apart")
        }
    }

    /// (cached positions, new rows, window, sinks): plain causal attention, then sliding windows shorter than the chunk,
    /// than the cached part and longer than everything, over blocks of 64 rows (70 new rows), with and without sinks.
    @Test("prefill attention on every available kernel, against cached positions, windows and sinks",
          arguments: [(0, 9, 0, false), (5, 70, 0, false), (0, 9, 0, true), (5, 70, 4, false), (5, 70, 4, true),
                      (30, 70, 20, true), (6, 9, 100, false), (3, 70, 1, true)])
    func attentionKernels(position: Int, n: Int, window: Int, withSinks: Bool) {
        let heads = 4, kvHeads = 2, hd = 16, total = position + n
        var rng = TestRandom(seed: UInt64(n))
        let q = (0..<n * heads * hd).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
        let keys = (0..<total * kvHeads * hd).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
        let values = (0..<total * kvHeads * hd).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
        let sinks: [Float]? = withSinks ? [3, -2, 0.25, 1] : nil
        let scale: Float = 0.25
        var expected = [Float](repeating: 0, count: n * heads * hd)
        for t in 0..<n {
            for h in 0..<heads {
                // position p sees keys j with p - window < j <= p (transformers' sliding_window_overlay)
                let g = h / (heads / kvHeads), p = position + t, lo = window > 0 ? max(0, p - window + 1) : 0
                var s = [Double](repeating: 0, count: p + 1 - lo)
                for j in lo...p {
                    for d in 0..<hd { s[j - lo] += Double(q[(t * heads + h) * hd + d]) * Double(keys[(j * kvHeads + g) * hd + d]) }
                    s[j - lo] *= Double(scale)
                }
                // the sink joins the softmax as one more logit and is dropped (modeling_gpt_oss.py)
                let m = max(s.max()!, sinks.map { Double($0[h]) } ?? -.infinity), e = s.map { exp($0 - m) }
                let sum = e.reduce(0, +) + (sinks.map { exp(Double($0[h]) - m) } ?? 0)
                for d in 0..<hd {
                    var o = 0.0
                    for j in lo...p { o += e[j - lo] / sum * Double(values[(j * kvHeads + g) * hd + d]) }
                    expected[(t * heads + h) * hd + d] = Float(o)
                }
            }
        }
        for kernel in KernelProduct.attentionPrefill.available {
            var out = [Float](repeating: .nan, count: n * heads * hd)
            var scores = [Float](repeating: .nan, count: 4 * n * total)
            sinks.withOptionalBuffer { sinkPointer in
                attentionPrefill(q: q, keys: keys, values: values, rows: n, position: position,
                                 window: window > 0 ? window : nil, sinks: sinkPointer, heads: heads, kvHeads: kvHeads,
                                 headDim: hd, scale: scale, scores: &scores, scoresCount: scores.count, into: &out,
                                 kernel: kernel)
            }
            #expect(relativeError(out[...], expected[...]) <= 1e-5, "\(kernel.name)")
        }
    }

    /// Multi-head latent attention's absorbed form: every head attends over the same cached rows [latent | rope key],
    /// the whole row as key and its first `rank` values as value; new rows after cached ones, over blocks of 64.
    @Test("prefill attention with values narrower than keys (latent attention) on every available kernel",
          arguments: [(0, 9), (5, 70), (130, 3)])
    func latentPrefill(position: Int, n: Int) {
        let heads = 3, width = 40, rank = 24, total = position + n
        var rng = TestRandom(seed: UInt64(n + position))
        let q = (0..<n * heads * width).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
        let rows = (0..<total * width).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
        let scale: Float = 0.3
        var expected = [Float](repeating: 0, count: n * heads * rank)
        for t in 0..<n {
            for h in 0..<heads {
                let p = position + t
                let s = (0...p).map { j in
                    (0..<width).reduce(0.0) { $0 + Double(q[(t * heads + h) * width + $1]) * Double(rows[j * width + $1]) } * Double(scale)
                }
                let m = s.max()!, e = s.map { exp($0 - m) }, sum = e.reduce(0, +)
                for d in 0..<rank {
                    expected[(t * heads + h) * rank + d] = Float((0...p).reduce(0.0) { $0 + e[$1] / sum * Double(rows[$1 * width + d]) })
                }
            }
        }
        for kernel in KernelProduct.attentionPrefill.available {
            var out = [Float](repeating: .nan, count: n * heads * rank)
            var scores = [Float](repeating: .nan, count: 4 * min(n, 64) * total)
            attentionPrefill(q: q, keys: rows, values: rows, rows: n, position: position, heads: heads, kvHeads: 1,
                             headDim: width, valueDim: rank, scale: scale, scores: &scores, scoresCount: scores.count,
                             into: &out, kernel: kernel)
            #expect(relativeError(out[...], expected[...]) <= 1e-5, "\(kernel.name)")
        }
    }
}

extension Optional where Wrapped == [Float] {
    /// Calls `body` with the array's storage, or nil.
    func withOptionalBuffer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let array = self else { return body(nil) }
        return array.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}
