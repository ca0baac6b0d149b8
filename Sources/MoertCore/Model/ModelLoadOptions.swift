// ModelLoadOptions: how a model is loaded — a context cap and a residency budget for routed experts.

import MoertTensor

/// Options for loading a model.
public struct ModelLoadOptions: Sendable {
    /// Cap on the context length; 0 keeps the model's.
    public var maxContext: Int = 0
    /// Cap on resident routed-expert weights; nil = all may stay resident.
    public var expertBudget: ExpertBudget?
    /// Let the checkpoint's moert section name plugin libraries by path (relative to the model directory); without
    /// it only bare names, found in the host's plugin directories, are loaded.
    public var trustPluginPaths = false
    /// Map the safetensors files (the default) rather than read them into memory. Mapping loads at once and shares
    /// pages with the page cache, but a file truncated while the model is loaded can then fault the process.
    public var mapWeights = true
    /// The defaults: the model's own context, no budget.
    public init() {}
}

/// A residency budget for routed expert weights.
public enum ExpertBudget: Sendable, Equatable {
    /// At most this many bytes.
    case bytes(Int)
    /// At most this share (0 < share <= 1) of all routed expert bytes.
    case fraction(Double)

    /// Parses "512M", "2G", "1048576" or "25%".
    /// - Throws: `MoertError` (`.invalidArgument`).
    public init(parsing text: String) throws {
        let bad = MoertError.invalid("expert budget '\(text)' must be bytes (e.g. 512M, 2G, 1048576) or a share (e.g. 25%)")
        if text.hasSuffix("%") {
            guard let v = Double(text.dropLast()), v > 0, v <= 100 else { throw bad }
            self = .fraction(v / 100)
            return
        }
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = Substring(text), scale = 1
        if let last = text.last?.uppercased().first, let u = units[last] {
            scale = u
            digits = text.dropLast()
        }
        guard let v = Double(digits), v > 0, v * Double(scale) < 9e18 else { throw bad }
        self = .bytes(Int(v * Double(scale)))
    }
}
