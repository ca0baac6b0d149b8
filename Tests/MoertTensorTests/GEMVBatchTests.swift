// GEMVBatchTests: decode products run as one job (moert_gemv_batch, GEMVBatch) give each output the bits of its own
// GEMV, for every weight type and kernel, mixed in one batch; refusals of what it cannot run.

import CKernels
import Testing
import MoertTensor
import MoertTestSupport

@Suite("Decode products as one job")
struct GEMVBatchTests {
    /// A product of the batch: weights of `storage` [rows, cols], an input and maybe a bias.
    struct Product {
        let storage: WeightStorage
        let rows: Int, cols: Int
        let bytes: UnsafeMutableRawBufferPointer
        let x: [Float]
        let bias: UnsafeMutableBufferPointer<Float>?

        var linear: Linear {
            Linear(weight: Weight(raw: bytes.baseAddress!, storage: storage, shape: [rows, cols]),
                   bias: bias.map { Weight(data: UnsafePointer($0.baseAddress!), shape: [rows]) })
        }

        /// y = W x (+ b when `withBias`) through Linear.apply alone, on `kernel` (nil: the chosen one).
        func alone(kernel: Kernel?, withBias: Bool) -> [Float] {
            let product = withBias ? linear : Linear(weight: linear.weight)
            var y = [Float](repeating: .nan, count: rows)
            var scratch = [Float](repeating: 0, count: product.scratchCount(rows: 1))
            scratch.withUnsafeMutableBufferPointer { product.apply(x, rows: 1, into: &y, scratch: $0, kernel: kernel) }
            return y
        }
    }

    /// Products of every type, below the threading threshold (one part, run beside the others) and above it
    /// (many parts), a third with biases: the shapes of a layer's attention and experts, and odd row counts.
    static func products(seed: UInt64) -> [Product] {
        var rng = TestRandom(seed: seed)
        let shapes: [(WeightStorage, Int, Int)] = [
            (.f16, 768, 512), (.f16, 160, 512), (.f16, 2816, 512), (.f16, 7, 512), (.f32, 5, 384), (.bf16, 1029, 512), (.f16, 7, 64),
            (.f32, 333, 256), (.f32, 1024, 512), (.q8_0, 2048, 512), (.q4_0, 1408, 512), (.q3_0, 99, 96),
            (.q4_0, 5, 32), (.q4_k, 700, 512), (.q4_k, 3, 256),
        ]
        return shapes.enumerated().map { i, shape in
            let (storage, rows, cols) = shape
            let w = rng.floats(rows * cols)
            let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: storage.bytes(rows * cols), alignment: 64)
            convertFromFloat(w, storage: storage, count: w.count, into: bytes.baseAddress!)
            var bias: UnsafeMutableBufferPointer<Float>?
            if i % 3 == 0 {
                bias = .allocate(capacity: rows)
                _ = bias!.initialize(from: rng.floats(rows))
            }
            return Product(storage: storage, rows: rows, cols: cols, bytes: bytes, x: rng.floats(cols), bias: bias)
        }
    }

    static func free(_ products: [Product]) {
        for p in products {
            p.bytes.deallocate()
            p.bias?.deallocate()
        }
    }

    /// The pool cuts a product into more or fewer parts by its thread count and by whether another caller holds it,
    /// and a batch into the parts each product would make: a row's bits must not depend on where its part starts.
    @Test("a GEMV row gets the same bits whatever rows are computed with it, each product type on each of its kernels")
    func rowBitsIndependentOfRange() {
        var rng = TestRandom(seed: 13)
        for (storage, cols) in [(WeightStorage.f16, 200), (.bf16, 520), (.f32, 136), (.q8_0, 224), (.q4_0, 96), (.q4_k, 256)] {
            let rows = 11
            let w = rng.floats(rows * cols), x = rng.floats(cols), rowBytes = storage.bytes(cols)
            let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: storage.bytes(rows * cols), alignment: 64)
            defer { bytes.deallocate() }
            convertFromFloat(w, storage: storage, count: w.count, into: bytes.baseAddress!)
            for kernel in KernelProduct.gemv(storage).available where kernel != .blas {
                func product(from first: Int) -> [Float] {
                    let p = Product(storage: storage, rows: rows - first, cols: cols,
                                    bytes: UnsafeMutableRawBufferPointer(rebasing: bytes[(first * rowBytes)...]), x: x, bias: nil)
                    return p.alone(kernel: kernel, withBias: false)
                }
                let all = product(from: 0)
                for first in 1..<rows {
                    #expect(product(from: first).map(\.bitPattern) == all[first...].map(\.bitPattern),
                            "\(storage) on \(kernel.name): rows \(first)..<\(rows) alone")
                }
            }
        }
    }

    @Test("moert_gemv_batch gives every output the bits of its own GEMV, each product type on each of its kernels")
    func sameBitsAsAlone() {
        let products = Self.products(seed: 11)
        defer { Self.free(products) }
        // Round r forces each type's r-th kernel (a type with fewer keeps its last).
        var kernels: [WeightStorage: [Kernel]] = [:]
        for p in products { kernels[p.storage] = KernelProduct.gemv(p.storage).available.filter { $0 != .blas } }
        for round in 0..<kernels.values.map(\.count).max()! {
            func kernel(_ s: WeightStorage) -> Kernel { kernels[s]![min(round, kernels[s]!.count - 1)] }
            let xs = products.map { p in UnsafeMutableBufferPointer<Float>.allocate(capacity: p.cols) }
            let ys = products.map { p in UnsafeMutableBufferPointer<Float>.allocate(capacity: p.rows) }
            let rooms = products.map { p in
                UnsafeMutableRawBufferPointer.allocate(byteCount: Int(moert_quant_activation_bytes(Int64(p.cols))), alignment: 64)
            }
            defer {
                xs.forEach { $0.deallocate() }
                ys.forEach { $0.deallocate() }
                rooms.forEach { $0.deallocate() }
            }
            var items: [moert_gemv_item] = []
            for (i, p) in products.enumerated() {
                _ = xs[i].initialize(from: p.x)
                ys[i].initialize(repeating: .nan)
                items.append(moert_gemv_item(w: p.bytes.baseAddress, type: p.storage.kernelType, kernel: kernel(p.storage).rawValue,
                                             x: xs[i].baseAddress, xq: rooms[i].baseAddress, y: ys[i].baseAddress,
                                             rows: Int64(p.rows), cols: Int64(p.cols)))
            }
            #expect(moert_gemv_batch(items, Int32(items.count)) == 1)
            for (i, p) in products.enumerated() {
                let want = p.alone(kernel: kernel(p.storage), withBias: false)
                #expect(Array(ys[i]).map(\.bitPattern) == want.map(\.bitPattern),
                        "round \(round): \(p.storage) \(p.rows)x\(p.cols) on \(kernel(p.storage).name)")
            }
        }
    }

    @Test("GEMVBatch gives each output what Linear.apply alone gives, biases added, running a full batch before taking more")
    func batchClass() throws {
        let products = Self.products(seed: 12)
        defer { Self.free(products) }
        // Three rounds of the products: more than a batch holds.
        let all = Array(repeating: products, count: 3).flatMap { $0 }
        #expect(all.count > GEMVBatch.capacity)
        let batch = try GEMVBatch(maxInFeatures: 512)
        // The inputs and outputs stay where they are until run.
        let xs = all.map { p in UnsafeMutableBufferPointer<Float>.allocate(capacity: p.cols) }
        let ys = all.map { p in UnsafeMutableBufferPointer<Float>.allocate(capacity: p.rows) }
        defer {
            xs.forEach { $0.deallocate() }
            ys.forEach { $0.deallocate() }
        }
        for (i, p) in all.enumerated() {
            _ = xs[i].initialize(from: p.x)
            ys[i].initialize(repeating: .nan)
            batch.add(p.linear, xs[i].baseAddress!, into: ys[i].baseAddress!)
        }
        #expect(batch.count > 0 && batch.count < all.count)
        batch.run()
        #expect(batch.count == 0)
        for (i, p) in all.enumerated() {
            #expect(Array(ys[i]).map(\.bitPattern) == p.alone(kernel: nil, withBias: true).map(\.bitPattern),
                    "product \(i): \(p.storage) \(p.rows)x\(p.cols), bias \(p.bias != nil)")
        }
    }

    @Test("refused, computing nothing: more products than MOERT_GEMV_BATCH_MAX, float32 on blas; no products is done")
    func refusals() {
        var w = [Float](repeating: 1, count: 64), x = [Float](repeating: 1, count: 8), y = [Float](repeating: .nan, count: 8)
        let item = w.withUnsafeMutableBytes { wb in
            moert_gemv_item(w: wb.baseAddress, type: Int32(MOERT_GEMM_F32), kernel: Kernel.blas.rawValue, x: nil, xq: nil,
                            y: nil, rows: 8, cols: 8)
        }
        x.withUnsafeMutableBufferPointer { xb in
            y.withUnsafeMutableBufferPointer { yb in
                var onBlas = item
                onBlas.x = UnsafePointer(xb.baseAddress)
                onBlas.y = yb.baseAddress
                #expect(moert_gemv_batch([onBlas], 1) == 0)
                var portable = onBlas
                portable.kernel = Kernel.portable.rawValue
                #expect(moert_gemv_batch(Array(repeating: portable, count: Int(MOERT_GEMV_BATCH_MAX) + 1),
                                         MOERT_GEMV_BATCH_MAX + 1) == 0)
            }
        }
        #expect(y.allSatisfy { $0.isNaN })
        #expect(moert_gemv_batch(nil, 0) == 1)
        _ = w
    }
}
