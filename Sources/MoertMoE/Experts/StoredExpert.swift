// StoredExpert: a routed SwiGLU expert whose weights live in the model's ExpertStore.

import CKernels
import MoertTensor

/// F(x) = W_down (silu(W_gate x) ⊙ W_up x), with [W_gate; W_up; W_down] fetched from the store for each call
/// (materialised on first use, possibly evicted between calls under a residency budget).
public final class StoredExpert: Expert {
    let store: ExpertStore
    let slot: Int
    let hidden: Int
    let intermediate: Int
    /// How its weights are stored.
    public let storage: WeightStorage
    /// Shapes of [W_gate; W_up] and W_down, made once: a weight's shape is an array, and building one per call
    /// would allocate.
    let gateUpShape: [Int], downShape: [Int]

    public var kind: String { BuiltinKind.expert }
    public var output: ExpertOutput { .computed }
    public var isZeroCompute: Bool { false }

    /// Registers the three projections (gate [I, H], up [I, H], down [H, I]) with the store.
    package init(store: ExpertStore, gate: StoredTensor, up: StoredTensor, down: StoredTensor, hidden: Int,
                 intermediate: Int, moeLayer: Int) {
        self.store = store
        self.hidden = hidden
        self.intermediate = intermediate
        slot = store.register([gate, up, down], moeLayer: moeLayer)
        storage = store.storage(of: slot)
        gateUpShape = [2 * intermediate, hidden]
        downShape = [hidden, intermediate]
    }

    /// The [n, 2I] gate/up products and, for several rows, the [n, I] activation; then what the products need.
    public func scratchCount(tokens n: Int) -> Int {
        let i = intermediate, h = hidden
        let products = max(Linear.scratchCount(storage: storage, outFeatures: 2 * i, inFeatures: h, rows: n),
                           Linear.scratchCount(storage: storage, outFeatures: h, inFeatures: i, rows: n))
        return (n == 1 ? 2 : 3) * n * i + products
    }

    public func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                        scratch: UnsafeMutablePointer<Float>) throws {
        let w = try store.acquire(slot)
        defer { store.release(slot) }
        let i = intermediate, h = hidden
        let activations = (n == 1 ? 2 : 3) * n * i
        let products = UnsafeMutableBufferPointer(start: scratch + activations, count: scratchCount(tokens: n) - activations)
        // The store keeps W_gate and W_up adjacent, so together they are one [2I, H] matrix: one GEMM (or GEMV)
        // instead of two, then SwiGLU on the halves of each row.
        let gateUp = Linear(weight: Weight(raw: w, storage: storage, shape: gateUpShape))
        let down = Linear(weight: Weight(raw: w + storage.bytes(2 * i * h), storage: storage, shape: downShape))
        gateUp.apply(x, rows: n, into: scratch, scratch: products)    // [n, H] -> [n, 2I]: row r is (gate_r, up_r)
        // [n, 2I] -> [n, I]: in place for one row, else after the products
        let act = n == 1 ? scratch : scratch + 2 * n * i
        swiglu(scratch, rows: n, width: i, into: act)
        down.apply(act, rows: n, into: y, scratch: products)          // [n, I] -> [n, H]
    }
}
