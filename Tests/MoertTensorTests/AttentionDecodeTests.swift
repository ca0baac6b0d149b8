// AttentionDecodeTests: decode attention over every KV cache type against softmax attention written out in double
// precision on the cached values read back; the cache types' rounding against outside references.

import CKernels
import Foundation
import Testing
import MoertTestSupport

@Suite("Decode attention and KV cache types")
struct AttentionDecodeTests {
    static let types: [(String, Int32)] = [("f32", MOERT_KV_F32), ("f16", MOERT_KV_F16), ("bf16", MOERT_KV_BF16),
                                           ("q8_0", MOERT_KV_Q8_0)]

    /// Rows of random keys or values ~ N-ish(0, 1) stored as `type`: the stored bytes and the values read back.
    func cached(rows: Int, width: Int, type: Int32, seed: UInt64) -> ([UInt8], [Float]) {
        var rng = TestRandom(seed: seed)
        let values = (0..<rows * width).map { _ in Float(rng.nextUnitDouble() * 4 - 2) }
        var bytes = [UInt8](repeating: 0, count: rows * Int(moert_kv_row_bytes(type, Int64(width))))
        moert_kv_store(type, values, &bytes, Int64(values.count))
        var back = [Float](repeating: .nan, count: values.count)
        moert_kv_load(type, bytes, &back, Int64(values.count))
        return (bytes, back)
    }

    /// softmax(scale q_h . K_g) V_g for every head over rows `rows` (default 0 ..< total), in double precision; a
    /// sink logit per head joins the softmax and is dropped (modeling_gpt_oss.py `eager_attention_forward`).
    func reference(q: [Float], keys: [Float], values: [Float], heads: Int, kvHeads: Int, headDim: Int, total: Int,
                   scale: Float, rows: [Int]? = nil, sinks: [Float]? = nil) -> [Float] {
        let group = heads / kvHeads, width = kvHeads * headDim, rows = rows ?? Array(0..<total)
        var out = [Float]()
        out.reserveCapacity(heads * headDim)
        // Plain loops over buffer pointers: this runs over 1,100 positions in debug and sanitizer builds.
        q.withUnsafeBufferPointer { q in
            keys.withUnsafeBufferPointer { keys in
                values.withUnsafeBufferPointer { values in
                    var s = [Double](repeating: 0, count: rows.count), acc = [Double](repeating: 0, count: headDim)
                    for h in 0..<heads {
                        let g = (h / group) * headDim
                        for (i, j) in rows.enumerated() {
                            var dot = 0.0
                            for d in 0..<headDim { dot += Double(q[h * headDim + d]) * Double(keys[j * width + g + d]) }
                            s[i] = Double(scale) * dot
                        }
                        let m = max(s.max() ?? -.infinity, sinks.map { Double($0[h]) } ?? -.infinity)
                        var sum = sinks.map { exp(Double($0[h]) - m) } ?? 0
                        for d in 0..<headDim { acc[d] = 0 }
                        for (i, j) in rows.enumerated() {
                            let e = exp(s[i] - m)
                            sum += e
                            for d in 0..<headDim { acc[d] += e * Double(values[j * width + g + d]) }
                        }
                        for d in 0..<headDim { out.append(Float(acc[d] / sum)) }
                    }
                }
            }
        }
        return out
    }

    /// (heads, kv heads, head_dim): grouped (2 and 3 heads per key/value head), one key/value head, head_dims off
    /// the 32-wide value tiles (80 = 64 + 16, 40 = 32 + 8) and not a multiple of 8 (36: the portable loops).
    /// Totals: one position, a tail of the 8-row key blocks, one chunk, and many chunks split among the threads.
    @Test("matches softmax attention written out, every cache type and path",
          arguments: [(8, 4, 64), (6, 2, 96), (4, 1, 128), (2, 2, 80), (3, 3, 40), (4, 2, 36)])
    func matchesReference(heads: Int, kvHeads: Int, headDim: Int) {
        let width = kvHeads * headDim
        for (name, type) in Self.types where type != MOERT_KV_Q8_0 || headDim % 32 == 0 {
            for total in [1, 13, 200, 1100] {
                let (kBytes, k) = cached(rows: total, width: width, type: type, seed: UInt64(total * 7 + headDim))
                let (vBytes, v) = cached(rows: total, width: width, type: type, seed: UInt64(total * 11 + headDim))
                var rng = TestRandom(seed: UInt64(heads * 100 + total))
                let q = (0..<heads * headDim).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
                let scale = 1 / Float(headDim).squareRoot()
                let want = reference(q: q, keys: k, values: v, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                     total: total, scale: scale)
                var scratch = [Float](repeating: .nan, count: Int(moert_attention_decode_scratch(Int32(heads), Int32(headDim), Int64(total))))
                var fast = [Float](repeating: .nan, count: heads * headDim), portable = fast
                moert_attention_decode(q, kBytes, vBytes, type, Int32(heads), Int32(kvHeads), Int32(headDim), 0,
                                       Int64(total), Int64(total), nil, scale, &scratch, &fast)
                moert_attention_decode_kernel(Int32(MOERT_KERNEL_PORTABLE), q, kBytes, vBytes, type, Int32(heads), Int32(kvHeads), Int32(headDim),
                                              0, Int64(total), Int64(total), nil, scale, &scratch, &portable)
                // Weighted means of values within ±2: float32 sums over `total` terms stay within 1e-5 of them.
                #expect(relativeError(fast[...], want[...]) <= 1e-5, "\(name) total \(total)")
                #expect(relativeError(portable[...], want[...]) <= 1e-5, "\(name) total \(total), portable")
            }
        }
    }

    /// Multi-head latent attention's absorbed form: every head attends over the same rows [latent | rope key], the
    /// whole row as key and its first `rank` values as value. (heads, width, rank): DeepSeek-V2-like rows (128 + 32),
    /// an odd head count (a head without a pair), a rank off the 32-wide value tiles, and a width not a multiple of 8
    /// (the portable loops). Totals as above, up to many chunks split among the threads.
    @Test("latent attention decode matches softmax attention written out, every cache type and path",
          arguments: [(8, 160, 128), (3, 96, 64), (4, 48, 40), (2, 36, 28)])
    func latentMatchesReference(heads: Int, width: Int, rank: Int) {
        for (name, type) in Self.types where type != MOERT_KV_Q8_0 || width % 32 == 0 {
            for total in [1, 13, 200, 1100] {
                let (bytes, rows) = cached(rows: total, width: width, type: type, seed: UInt64(total * 5 + width))
                var rng = TestRandom(seed: UInt64(heads * 31 + total))
                let q = (0..<heads * width).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
                let scale = 1 / Float(width).squareRoot()
                // The whole row as value, then each head's first `rank` outputs.
                let full = reference(q: q, keys: rows, values: rows, heads: heads, kvHeads: 1, headDim: width,
                                     total: total, scale: scale)
                let want = (0..<heads).flatMap { full[$0 * width ..< $0 * width + rank] }
                var scratch = [Float](repeating: .nan, count: Int(moert_attention_decode_scratch(Int32(heads), Int32(width), Int64(total))))
                var avx2: [Float] = []
                for kernel in [MOERT_KERNEL_AVX2, MOERT_KERNEL_AVX2L2, MOERT_KERNEL_PORTABLE] {
                    var out = [Float](repeating: .nan, count: heads * rank)
                    moert_latent_attention_decode(Int32(kernel), q, bytes, type, Int32(heads), Int32(width), Int32(rank),
                                                  Int64(total), scale, &scratch, &out)
                    // As above: weighted means of values within ±2.
                    #expect(relativeError(out[...], want[...]) <= 1e-5, "\(name) kernel \(kernel) total \(total)")
                    // avx2l2 differs from avx2 only in where it prefetches: the same bits.
                    if kernel == MOERT_KERNEL_AVX2 { avx2 = out }
                    if kernel == MOERT_KERNEL_AVX2L2 { #expect(out == avx2, "\(name) avx2l2 total \(total)") }
                }
            }
        }
    }

    /// A ring buffer of `ring` rows whose window of `total` positions starts at row `first` (wrapping past the end
    /// or not), with and without sinks (one far above the scores, which takes most of the weight, one near them).
    @Test("a window in a ring buffer, with and without sinks, every cache type and path",
          arguments: [(5, 2, 5), (5, 0, 3), (300, 250, 300), (300, 17, 120), (1200, 900, 1200)])
    func ringWindowAndSinks(ring: Int, first: Int, total: Int) {
        let heads = 4, kvHeads = 2, headDim = 64, width = kvHeads * headDim
        for (name, type) in Self.types {
            let (kBytes, k) = cached(rows: ring, width: width, type: type, seed: UInt64(ring + first))
            let (vBytes, v) = cached(rows: ring, width: width, type: type, seed: UInt64(ring * 3 + first))
            var rng = TestRandom(seed: UInt64(ring * 5 + total))
            let q = (0..<heads * headDim).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
            let scale = 1 / Float(headDim).squareRoot(), rows = (0..<total).map { (first + $0) % ring }
            for sinks in [nil, [Float(8), -1, 0.5, 2]] {
                let want = reference(q: q, keys: k, values: v, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                     total: total, scale: scale, rows: rows, sinks: sinks)
                var scratch = [Float](repeating: .nan, count: Int(moert_attention_decode_scratch(Int32(heads), Int32(headDim), Int64(total))))
                var avx2: [Float] = []
                for kernel in [MOERT_KERNEL_AVX2, MOERT_KERNEL_AVX2L2, MOERT_KERNEL_PORTABLE] {
                    var out = [Float](repeating: .nan, count: heads * headDim)
                    if let sinks {
                        moert_attention_decode_kernel(Int32(kernel), q, kBytes, vBytes, type, Int32(heads), Int32(kvHeads),
                                                      Int32(headDim), Int64(first), Int64(total), Int64(ring), sinks, scale,
                                                      &scratch, &out)
                    } else {
                        moert_attention_decode_kernel(Int32(kernel), q, kBytes, vBytes, type, Int32(heads), Int32(kvHeads),
                                                      Int32(headDim), Int64(first), Int64(total), Int64(ring), nil, scale,
                                                      &scratch, &out)
                    }
                    // As above: weighted means of values within ±2 (a sink only shrinks them).
                    #expect(relativeError(out[...], want[...]) <= 1e-5,
                            "\(name) kernel \(kernel) ring \(ring) first \(first) total \(total) sinks \(sinks != nil)")
                    // avx2l2 differs from avx2 only in where it prefetches: the same bits.
                    if kernel == MOERT_KERNEL_AVX2 { avx2 = out }
                    if kernel == MOERT_KERNEL_AVX2L2 { #expect(out == avx2, "\(name) avx2l2 ring \(ring) total \(total)") }
                }
            }
        }
    }

    @Test("f16 rounding is the compiler's Float16 conversion (to nearest even, overflow to infinity)")
    func f16Rounding() {
        var rng = TestRandom(seed: 5)
        var values: [Float] = [0, -0, 65504, 65519.99, 65520, -70000, 1e-8, 5.96e-8, 2.98e-8, 2.99e-8, 6.1e-5, .infinity]
        values += (0..<4000).map { _ in Float(rng.nextUnitDouble() * 2 - 1) * Float(pow(2.0, Double(Int(rng.next() % 40) - 26))) }
        var bytes = [UInt16](repeating: 0, count: values.count)
        moert_kv_store(MOERT_KV_F16, values, &bytes, Int64(values.count))
        for (x, h) in zip(values, bytes) {
            #expect(h == Float16(x).bitPattern, "\(x)")
        }
    }

    @Test("bf16 and q8_0 match gguf-py's quantizers (fixture from tools/make_kv_fixtures.py)")
    func ggufReference() throws {
        let url = URL(fileURLWithPath: fixturesDirectory + "/kv-cache/reference.json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let values = (json["values"] as! [NSNumber]).map { Float(truncating: $0) }
        for (name, type) in [("bf16", MOERT_KV_BF16), ("q8_0", MOERT_KV_Q8_0)] {
            let want = hexBytes(json[name] as! String)
            var got = [UInt8](repeating: 0, count: Int(moert_kv_row_bytes(type, Int64(values.count))))
            moert_kv_store(type, values, &got, Int64(values.count))
            #expect(got == want, "\(name)")
            // Read back as gguf-py dequantizes.
            let back = (json[name + "_dequantized"] as! [NSNumber]).map { Float(truncating: $0) }
            var ours = [Float](repeating: .nan, count: values.count)
            moert_kv_load(type, want, &ours, Int64(values.count))
            #expect(ours == back, "\(name) read back")
        }
    }

    func hexBytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = [], chars = Array(hex.utf8)
        while chars.count >= 2 {
            out.append(UInt8(String(decoding: chars[0..<2], as: UTF8.self), radix: 16)!)
            chars.removeFirst(2)
        }
        return out
    }
}
