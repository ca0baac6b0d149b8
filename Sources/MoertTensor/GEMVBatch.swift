// GEMVBatch: one-row products that do not depend on each other, gathered to run as one job on the worker pool.

import CKernels

/// Decode products (`Linear.apply` of one row) gathered and run together by `moert_gemv_batch`: each output gets the
/// bits its own GEMV would give, but the threads claim the parts of all the products in turn and meet once, and a
/// product too small to split runs beside the others instead of alone. Made once per session (it holds room for
/// the quantized inputs); adding and running allocate nothing.
public final class GEMVBatch {
    /// The most products gathered before they run.
    public static let capacity = Int(MOERT_GEMV_BATCH_MAX)
    private let items: UnsafeMutablePointer<moert_gemv_item>
    /// The products with a bias, to add after the run (nil for the others).
    private var biased: [Linear?]
    /// Each product's quantized input row, `activationStride` floats apart.
    private let activations: FloatBuffer
    private let activationStride: Int
    private let maxInFeatures: Int
    /// Products gathered and not yet run.
    public private(set) var count = 0

    /// A batch for products of up to `maxInFeatures` inputs.
    /// - Throws: `MoertError` (`.outOfMemory`).
    public init(maxInFeatures: Int) throws {
        self.maxInFeatures = maxInFeatures
        activationStride = (Int(moert_quant_activation_bytes(Int64(maxInFeatures))) + 63) / 64 * 16
        activations = try FloatBuffer(count: Self.capacity * activationStride)
        items = .allocate(capacity: Self.capacity)
        items.initialize(repeating: moert_gemv_item(), count: Self.capacity)
        biased = Array(repeating: nil, count: Self.capacity)
    }

    deinit { items.deallocate() }

    /// Gathers y[out] = W x[in] (+ b). A product that cannot join (float32 weights on OpenBLAS, more inputs than
    /// the batch has room for) runs at once; a full batch runs first. `x` must stay valid and unchanged, and `y`
    /// unread, until `run`.
    public func add(_ linear: Linear, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        let storage = linear.weight.storage, kernel = KernelProduct.gemv(storage).chosen
        guard linear.inFeatures <= maxInFeatures, storage != .f32 || kernel != .blas else {
            linear.apply(x, rows: 1, into: y, scratch: .init(start: activations.pointer, count: 0))
            return
        }
        if count == Self.capacity { run() }
        items[count] = moert_gemv_item(w: linear.weight.raw, type: storage.kernelType, kernel: kernel.rawValue, x: x,
                                       xq: UnsafeMutableRawPointer(activations.pointer + count * activationStride),
                                       y: y, rows: Int64(linear.outFeatures), cols: Int64(linear.inFeatures))
        biased[count] = linear.bias == nil ? nil : linear
        count += 1
    }

    /// Runs the gathered products, then adds their biases.
    public func run() {
        guard count > 0 else { return }
        let done = moert_gemv_batch(items, Int32(count))
        precondition(done == 1, "moert_gemv_batch refused products GEMVBatch.add accepted")
        for i in 0..<count {
            if let linear = biased[i] {
                linear.addBias(rows: 1, to: items[i].y)
                biased[i] = nil
            }
        }
        count = 0
    }
}
