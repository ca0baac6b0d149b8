// Router: what a router sees of a batch, and the interface every router (built-in or plugin) implements.

/// What a router sees for one batch of tokens at one MoE layer.
public struct RouterInput {
    /// The MoE block's input (post-attention-norm hidden states), [n, hidden].
    public let x: UnsafePointer<Float>
    /// Tokens in the batch.
    public let count: Int
    /// Width of each row of `x`.
    public let hidden: Int
    /// Token ids [n].
    public let tokens: UnsafePointer<Int32>
    /// Positions in the sequence [n].
    public let positions: UnsafePointer<Int32>
    /// The id before each token [n], -1 at position 0.
    public let previousTokens: UnsafePointer<Int32>
    /// Decoder layer index (0-based).
    public let layer: Int
    /// Per-token state carried across MoE layers in this forward pass, [n, stateStride]; nil when unused.
    public let state: UnsafeMutablePointer<Float>?
    /// Floats per token in `state`.
    public let stateStride: Int
    /// The previous MoE layer's router logits [n, previousLogitsWidth]; nil at the first MoE layer.
    public let previousLogits: UnsafePointer<Float>?
    /// Width of `previousLogits` rows (that layer's expert count), 0 when nil.
    public let previousLogitsWidth: Int

    /// Creates the input of one route call.
    public init(x: UnsafePointer<Float>, count: Int, hidden: Int, tokens: UnsafePointer<Int32>,
                positions: UnsafePointer<Int32>, previousTokens: UnsafePointer<Int32>, layer: Int,
                state: UnsafeMutablePointer<Float>?, stateStride: Int, previousLogits: UnsafePointer<Float>?,
                previousLogitsWidth: Int) {
        self.x = x
        self.count = count
        self.hidden = hidden
        self.tokens = tokens
        self.positions = positions
        self.previousTokens = previousTokens
        self.layer = layer
        self.state = state
        self.stateStride = stateStride
        self.previousLogits = previousLogits
        self.previousLogitsWidth = previousLogitsWidth
    }
}

/// Computes per-token expert ids and weights for a batch. Instances are shared by sessions and must not keep
/// per-call state; per-call scratch comes from the caller.
public protocol Router: AnyObject {
    /// The kind name ("topk" or a plugin kind).
    var kind: String { get }
    /// Floats of layer-to-layer state this router uses per token.
    var stateSize: Int { get }
    /// Floats of scratch `route` needs for `n` tokens.
    func scratchCount(tokens n: Int) -> Int
    /// Routes `input` into `table` (cleared by the caller, with room for every expert of every token). `logits`
    /// ([n, experts], prefilled with NaN) may receive the raw router logits; `scratch` holds `scratchCount(tokens:)`
    /// floats.
    /// - Throws: `MoertError` when the router fails or produces invalid output.
    func route(_ input: RouterInput, into table: inout RoutingTable, logits: UnsafeMutablePointer<Float>,
               scratch: UnsafeMutablePointer<Float>) throws
}
