// QuantKernelTests: the q8_0/q4_0/q4_k formats against llama.cpp's own quantizer and q3_0 against a numpy
// transcription of its definition (fixtures of tools/make_quant_fixtures.py), and the quantized GEMV and blocked
// products against double-precision loops.

import CKernels
import Foundation
import Testing
import MoertTensor
import MoertTestSupport

@Suite("Quantized kernels")
struct QuantKernelTests {
    static let types: [WeightStorage] = [.q8_0, .q4_0, .q3_0, .q4_k]

    /// Columns of the test matrices: `blocks` blocks of `type`.
    static func columns(_ type: WeightStorage, blocks: Int) -> Int { blocks * type.blockValues }

    @Test("quantizing gives the reference bytes (GGML's for q8_0, q4_0 and q4_k, the fixture script's numpy q3_0), reading them back the reference values",
          arguments: types)
    func matchesGGML(type: WeightStorage) throws {
        // q4_k's rows are two super-blocks of 256 (the fixture's values_256), the others' four blocks of 32.
        let width = type == .q4_k ? 512 : 128
        let values = try fixtureFloats("quant/blocks.safetensors", type == .q4_k ? "values_256" : "values")
        let (expected, shape) = try fixtureTensor("quant/blocks.safetensors", type.rawValue)
        let dequantized = try fixtureFloats("quant/blocks.safetensors", type.rawValue + "_dequantized")
        #expect(shape == [values.count / width, type.bytes(width)])
        var bytes = [UInt8](repeating: 0, count: type.bytes(values.count))
        convertFromFloat(values, storage: type, count: values.count, into: &bytes)
        #expect(bytes == expected)
        for portable in [false, true] {
            var back = [Float](repeating: .nan, count: values.count)
            if portable {
                moert_dequantize_portable(type.kernelType, expected, &back, Int64(values.count))
            } else {
                moert_dequantize(type.kernelType, expected, &back, Int64(values.count))
            }
            #expect(back.map(\.bitPattern) == dequantized.map(\.bitPattern), "portable \(portable)")
        }
    }

    /// Random weights [rows, cols] quantized to `type`, and their values read back.
    func weights(rows: Int, cols: Int, type: WeightStorage, seed: UInt64) -> ([UInt8], [Float]) {
        var rng = TestRandom(seed: seed)
        let w = rng.floats(rows * cols)
        var q = [UInt8](repeating: 0, count: type.bytes(rows * cols))
        convertFromFloat(w, storage: type, count: w.count, into: &q)
        var back = [Float](repeating: 0, count: w.count)
        moert_dequantize_portable(type.kernelType, q, &back, Int64(w.count))
        return (q, back)
    }

    /// The first `k` values of `row` as the 8-bit activation blocks of moert_quantize_activation hold them (scale
    /// times quant): what the integer products of q4_0 weights multiply.
    static func activationValues(_ row: ArraySlice<Float>, k: Int) -> [Float] {
        var xq = [UInt8](repeating: 0, count: Int(moert_quant_activation_bytes(Int64(k))))
        Array(row.prefix(k)).withUnsafeBufferPointer { moert_quantize_activation($0.baseAddress, &xq, Int64(k)) }
        return (0..<k).map { c in
            let block = c / 32 * Int(MOERT_QA_BLOCK_BYTES)
            let d = xq.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: block, as: Float.self) }
            return d * Float(Int8(bitPattern: xq[block + 4 + c % 32]))
        }
    }

    @Test("q4_k's refits in AVX2 vectors give the bytes of the one-step-at-a-time loop")
    func q4kVectorRefits() {
        // 3,000 super-blocks: normal values at several scales, offsets, outliers, one-signed, a few integer levels,
        // and zero and constant super-blocks (the references' special cases).
        var rng = TestRandom(seed: 21)
        var x = [Float]()
        for b in 0..<3000 {
            for _ in 0..<256 {
                let g = (-2 * log(rng.nextUnitDouble() + 1e-300)).squareRoot() * cos(2 * Double.pi * rng.nextUnitDouble())
                let v: Double
                switch b % 7 {
                case 0: v = g
                case 1: v = g * 1e-3 + 0.5
                case 2: v = rng.nextUnitDouble() < 0.02 ? 50 * g : g
                case 3: v = abs(g) * 1e-6
                case 4: v = -3 * abs(g)
                case 5: v = Double(Int(rng.nextUnitDouble() * 7) - 3)
                default: v = b % 14 == 6 ? 0 : 1.5
                }
                x.append(Float(v))
            }
        }
        let bytes = Int(MOERT_Q4_K_BLOCK_BYTES) * x.count / 256
        var vector = [UInt8](repeating: 0, count: bytes), portable = vector
        moert_quantize(MOERT_QUANT_Q4_K, x, &vector, Int64(x.count))
        moert_quantize_portable(MOERT_QUANT_Q4_K, x, &portable, Int64(x.count))
        // the first differing super-block, not the arrays (their rendering alone would take minutes)
        let differing = vector.indices.first { vector[$0] != portable[$0] }.map { $0 / Int(MOERT_Q4_K_BLOCK_BYTES) }
        #expect(differing == nil, "super-block \(differing ?? -1) differs")
    }

    @Test("the GEMV equals a double-precision loop over the quantized values on every kernel this CPU can run (portable, avx2, and avx512: VNNI, to avx2's bits)",
          arguments: types)
    func gemv(type: WeightStorage) {
        let kernels = KernelProduct.gemv(type).available  // portable last: xq is left in its layout
        #expect(kernels.last == .portable)
        // 2048 x 16 blocks is above the threading threshold; 7 x 3 blocks has an odd block count (the two-block loop's
        // tail).
        for (rows, blocks) in [(7, 3), (2048, type == .q4_k ? 2 : 16), (33, 1)] {
            let cols = Self.columns(type, blocks: blocks)
            let (q, w) = weights(rows: rows, cols: cols, type: type, seed: UInt64(rows + cols))
            var rng = TestRandom(seed: 5)
            let x = (0..<cols).map { _ in Float(rng.nextUnitDouble() * 4 - 2) }
            var xq = [UInt8](repeating: 0, count: Int(moert_quant_activation_bytes(Int64(cols))))
            var results: [Kernel: [Float]] = [:]
            var activations: [Kernel: [UInt8]] = [:]
            for kernel in kernels {
                var y = [Float](repeating: .nan, count: rows)
                moert_gemv_quant_kernel(kernel.rawValue, q, type.kernelType, x, &xq, &y, Int64(rows), Int64(cols))
                results[kernel] = y
                activations[kernel] = xq
            }
            // VNNI's vpdpbusd forms the same exact integer sums as AVX2's vpmaddubsw and vpmaddwd.
            if let vnni = results[.avx512] { #expect(vnni == results[.avx2], "\(type) \(rows)x\(cols): avx512 differs from avx2") }
            if type == .q8_0, let vector = activations[.avx2] {
                #expect(vector == activations[.portable], "the vector and plain activation quantizers agree")
            }
            // The activation as the kernels used it (the portable run's layout; the AVX2 q4_0 path holds the same
            // values in pairs of blocks): per block of 32 a float32 scale, then 32 int8.
            let a: [Double] = (0..<cols).map { c in
                let block = c / 32 * 36
                let d = xq.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: block, as: Float.self) }
                return Double(d) * Double(Int8(bitPattern: xq[block + 4 + c % 32]))
            }
            var worst = 0.0, worstVsFloat = 0.0, scale = 0.0
            for r in 0..<rows {
                var exact = 0.0, unquantized = 0.0
                for c in 0..<cols {
                    exact += Double(w[r * cols + c]) * a[c]
                    unquantized += Double(w[r * cols + c]) * Double(x[c])
                }
                scale = max(scale, abs(unquantized))
                for y in results.values { worst = max(worst, abs(Double(y[r]) - exact)) }
                worstVsFloat = max(worstVsFloat, abs(Double(results[.portable]![r]) - unquantized))
            }
            // Integer sums are exact; what remains is float32 rounding of the scaled block sums.
            #expect(worst <= 1e-5 * max(scale, 1), "\(type) \(rows)x\(cols): \(worst)")
            // The 8-bit activation moves each product by at most half a step of its block (max|x| / 254).
            #expect(worstVsFloat <= 0.02 * max(scale, 1), "\(type) \(rows)x\(cols) against float x: \(worstVsFloat)")
        }
    }

    @Test("several rows (on every gemm kernel: read as stored by avx2, read back to float32 for the others) and one row without scratch equal float32 weights (q4_0, q3_0 and q4_k on avx2, and on avx512 with VNNI: times 8-bit rows)",
          arguments: types)
    func blocked(type: WeightStorage) {
        let rows = 300, cols = Self.columns(type, blocks: type == .q4_k ? 3 : 4), n = 5  // q4_k: two slices of its GEMM
        let (q, w) = weights(rows: rows, cols: cols, type: type, seed: 3)
        var rng = TestRandom(seed: 8)
        let x = (0..<n * cols).map { _ in Float(rng.nextUnitDouble() - 0.5) }
        q.withUnsafeBytes { qb in
            w.withUnsafeBufferPointer { wb in
                let quantized = Linear(weight: Weight(raw: qb.baseAddress!, storage: type, shape: [rows, cols]))
                let full = Linear(weight: Weight(data: wb.baseAddress!, shape: [rows, cols]))
                var expected = [Float](repeating: .nan, count: n * rows)
                full.apply(x, rows: n, into: &expected, scratch: .init(start: nil, count: 0))
                // avx2 (and avx512 with VNNI) multiplies q4_0, q3_0 and q4_k weights by the rows of x quantized to 8 bits,
                // as the GEMV does.
                let xq = (0..<n).flatMap { Self.activationValues(x[(cols * $0)...], k: cols) }
                var expectedXq = [Float](repeating: .nan, count: n * rows)
                full.apply(xq, rows: n, into: &expectedXq, scratch: .init(start: nil, count: 0))
                for kernel in KernelProduct.gemm(type).available {
                    let integer = KernelProduct.multipliesInIntegers(type, kernel: kernel)
                    for withScratch in [true, false] {
                        var y = [Float](repeating: .nan, count: n * rows)
                        var scratch = [Float](repeating: .nan, count: withScratch ? quantized.scratchCount(rows: n) : 0)
                        scratch.withUnsafeMutableBufferPointer {
                            quantized.apply(x, rows: n, into: &y, scratch: $0, kernel: kernel)
                        }
                        // The same float32 products (summation order aside). Without scratch, a kernel other than
                        // avx2 has nowhere to widen the weights: each row is read back block by block, also float32.
                        #expect(relativeError(y[...], (integer ? expectedXq : expected)[...]) <= 1e-5,
                                "\(type) \(kernel.name) scratch \(withScratch)")
                    }
                }
                #expect(quantized.scratchCount(rows: 1) <= quantized.scratchCount(rows: n))
            }
        }
    }

    @Test("a scale that is infinite or NaN is found (q4_k: d or dmin)", arguments: types)
    func nonFiniteScale(type: WeightStorage) {
        var (q, _) = weights(rows: 4, cols: Self.columns(type, blocks: 2), type: type, seed: 1)
        #expect(moert_quant_first_nonfinite(type.kernelType, q, 8) == -1)
        for offset in type == .q4_k ? [0, 2] : [0] {
            let block = 5 * type.blockBytes + offset, saved = (q[block], q[block + 1])
            q[block] = 0x00; q[block + 1] = 0x7c  // +inf
            #expect(moert_quant_first_nonfinite(type.kernelType, q, 8) == 5)
            q[block + 1] = 0x7e  // NaN
            #expect(moert_quant_first_nonfinite(type.kernelType, q, 8) == 5)
            (q[block], q[block + 1]) = saved
        }
    }
}
