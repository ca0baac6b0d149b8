// SwiGLUExpertTests: the dense and shared MLP against its definition, and its one-row form with the gate and up
// products gathered into one job, bit for bit.

import Foundation
import MoertMoE
import MoertTensor
import MoertTestSupport
import Testing

@Suite("SwiGLU expert")
struct SwiGLUExpertTests {
    @Test("one row with gathered gate and up products gives forward's bits, and forward is down(silu(gate x) * up x)",
          arguments: [WeightStorage.f32, .f16, .q8_0])
    func gathered(storage: WeightStorage) throws {
        let h = 64, i = 96
        var rng = TestRandom(seed: 3)
        // [gate; up; down] stored as `storage`, and the values they hold
        let values = rng.floats(2 * i * h + h * i)
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: storage.bytes(values.count), alignment: 64)
        defer { bytes.deallocate() }
        convertFromFloat(values, storage: storage, count: values.count, into: bytes.baseAddress!)
        var stored = [Float](repeating: 0, count: values.count)
        let raw = UnsafeRawPointer(bytes.baseAddress!)
        Weight(raw: raw, storage: storage, shape: [values.count / h, h]).rows(0, count: values.count / h, into: &stored)
        func linear(_ offset: Int, _ rows: Int, _ cols: Int) -> Linear {
            Linear(weight: Weight(raw: raw + storage.bytes(offset), storage: storage, shape: [rows, cols]))
        }
        let expert = SwiGLUExpert(gate: linear(0, i, h), up: linear(i * h, i, h), down: linear(2 * i * h, h, i))
        let x = rng.floats(h)
        var scratch = [Float](repeating: .nan, count: expert.scratchCount(tokens: 1))
        var alone = [Float](repeating: .nan, count: h), gathered = alone
        expert.forward(x, rows: 1, into: &alone, scratch: &scratch)
        let batch = try GEMVBatch(maxInFeatures: i)
        expert.forward(x, into: &gathered, scratch: &scratch, batch: batch)
        #expect(gathered.map(\.bitPattern) == alone.map(\.bitPattern))

        // The definition, in double precision over the stored values (q8_0's GEMV quantizes x: a looser bound).
        var act = [Double](repeating: 0, count: i)
        for r in 0..<i {
            var g = 0.0, u = 0.0
            for c in 0..<h {
                g += Double(stored[r * h + c]) * Double(x[c])
                u += Double(stored[(i + r) * h + c]) * Double(x[c])
            }
            act[r] = g / (1 + exp(-g)) * u
        }
        var worst = 0.0, scale = 0.0
        for r in 0..<h {
            var y = 0.0
            for c in 0..<i { y += Double(stored[2 * i * h + r * i + c]) * act[c] }
            worst = max(worst, abs(y - Double(alone[r])))
            scale = max(scale, abs(y))
        }
        #expect(worst <= (storage.isQuantized ? 2e-2 : 1e-5) * max(scale, 1), "\(storage): \(worst)")
    }
}
