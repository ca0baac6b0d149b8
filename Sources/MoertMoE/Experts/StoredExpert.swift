// StoredExpert: a routed SwiGLU expert whose weights live in the model's ExpertStore.

import CKernels
import MoertTensor

/// The activation between an expert's gate/up products and its down projection.
public enum ExpertActivation: Sendable, Equatable {
    /// silu(gate) · up (Mixtral, Qwen, OLMoE, DeepSeek).
    case swiglu
    /// gpt-oss: (clamp(up, ±limit) + 1) · g · sigmoid(alpha · g) with g = min(gate, limit).
    case clampedSwiGLU(alpha: Float, limit: Float)
}

/// F(x) = W_down act(W_gate x + b_gate, W_up x + b_up) + b_down, with [W_gate; W_up; W_down] fetched from the store
/// for each call (materialised on first use, possibly evicted between calls under a residency budget); the biases
/// (gpt-oss) stay resident.
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
    /// The activation.
    public let activation: ExpertActivation
    /// [b_gate; b_up] (2I floats) and b_down (H floats), when the expert has biases.
    let biases: FloatBuffer?

    public var kind: String { BuiltinKind.expert }
    public var output: ExpertOutput { .computed }
    public var isZeroCompute: Bool { false }

    /// Registers the projections with the store: gate [I, H] and up [I, H] (or both as one [2I, H] `gate`, `up` nil)
    /// and down [H, I]. `biases`: [b_gate; b_up; b_down] (2I + H floats), owned by the expert.
    package init(store: ExpertStore, gate: StoredTensor, up: StoredTensor?, down: StoredTensor, hidden: Int,
                 intermediate: Int, moeLayer: Int, activation: ExpertActivation = .swiglu, biases: FloatBuffer? = nil) {
        precondition(biases == nil || biases!.count == 2 * intermediate + hidden)
        self.store = store
        self.hidden = hidden
        self.intermediate = intermediate
        self.activation = activation
        self.biases = biases
        slot = store.register(up.map { [gate, $0, down] } ?? [gate, down], moeLayer: moeLayer)
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
        let i = intermediate
        let activations = (n == 1 ? 2 : 3) * n * i
        let products = UnsafeMutableBufferPointer(start: scratch + activations, count: scratchCount(tokens: n) - activations)
        gateUp(w).apply(x, rows: n, into: scratch, scratch: products)   // [n, H] -> [n, 2I]: row r is (gate_r, up_r)
        // [n, 2I] -> [n, I]: in place for one row, else after the products
        let act = n == 1 ? scratch : scratch + 2 * n * i
        activate(scratch, rows: n, into: act)
        down(w).apply(act, rows: n, into: y, scratch: products)         // [n, I] -> [n, H]
        addDownBias(y, rows: n)
    }

    /// Floats of one token's gate/up products (2I) and output (H): `MoEBlock`'s batched decode.
    var decodeWidth: Int { 2 * intermediate + hidden }

    /// [W_gate; W_up] in weights `w` (from the store): the store keeps them adjacent, so together they are one
    /// [2I, H] matrix, one GEMM (or GEMV) instead of two, then SwiGLU on the halves of each row.
    func gateUp(_ w: UnsafeRawPointer) -> Linear {
        Linear(weight: Weight(raw: w, storage: storage, shape: gateUpShape))
    }

    /// W_down in weights `w` (from the store).
    func down(_ w: UnsafeRawPointer) -> Linear {
        Linear(weight: Weight(raw: w + storage.bytes(2 * intermediate * hidden), storage: storage, shape: downShape))
    }

    /// [n, 2I] gate/up products (without biases) -> [n, I] activations: the biases added, then the activation.
    func activate(_ gateUp: UnsafeMutablePointer<Float>, rows n: Int, into act: UnsafeMutablePointer<Float>) {
        let i = intermediate
        if let b = biases?.pointer { addRowBias(gateUp, rows: n, width: 2 * i, bias: b) }
        switch activation {
        case .swiglu: swiglu(gateUp, rows: n, width: i, into: act)
        case let .clampedSwiGLU(alpha, limit): clampedSwiGLU(gateUp, rows: n, width: i, alpha: alpha, limit: limit, into: act)
        }
    }

    /// Adds b_down to the [n, H] outputs of the down projection, when the expert has biases.
    func addDownBias(_ y: UnsafeMutablePointer<Float>, rows n: Int) {
        if let b = biases?.pointer { addRowBias(y, rows: n, width: hidden, bias: b + 2 * intermediate) }
    }
}
