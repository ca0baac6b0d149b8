// QuantizationSection: the "quantization" entry of the moert section — which tensors are stored block-quantized.

import MoertTensor

/// The storage types of a checkpoint's block-quantized tensors (docs/model-format.md, "Quantized weights"). A
/// quantized tensor is a U8 tensor of shape [rows, columns / block values × block bytes] (32 values a block; 256 for
/// q4_k); its type is named here, so that the safetensors header stays readable by any safetensors reader.
public struct QuantizationSection: Sendable {
    /// The current version of the entry.
    public static let version = 1

    /// Tensor name → its quantized storage type.
    public var tensors: [String: WeightStorage]
    /// What the writer recorded about the choice (types asked for, calibration): shown, never interpreted.
    public var notes: JSON?

    /// An entry naming `tensors`.
    public init(tensors: [String: WeightStorage], notes: JSON? = nil) {
        self.tensors = tensors
        self.notes = notes
    }

    /// Parses the entry from `json`, found at `source` (for messages).
    /// - Throws: `MoertError` (`.format`) for a malformed entry, (`.unsupported`) for an unknown version or type.
    public init(json: JSON, source: String) throws {
        guard let o = json.object else { throw MoertError.format("\(source): quantization must be an object") }
        if let bad = o.keys.sorted().first(where: { !["version", "tensors", "notes"].contains($0) }) {
            throw MoertError.format("\(source): quantization: unknown key \"\(bad)\" (allowed: notes, tensors, version)")
        }
        guard let v = o["version"]?.int else { throw MoertError.format("\(source): quantization: missing integer \"version\"") }
        guard v == Self.version else {
            throw MoertError.unsupported("\(source): quantization version \(v) is not supported (\(Self.version) is)")
        }
        guard let map = o["tensors"]?.object else {
            throw MoertError.format("\(source): quantization: missing \"tensors\" object (tensor name → type)")
        }
        var tensors: [String: WeightStorage] = [:]
        for (name, value) in map {
            guard let text = value.string else {
                throw MoertError.format("\(source): quantization: the type of \(name) must be a string")
            }
            guard let type = WeightStorage(rawValue: text), type.isQuantized else {
                let known = WeightStorage.allCases.filter(\.isQuantized).map(\.rawValue).joined(separator: ", ")
                throw MoertError.unsupported("\(source): quantization: \(name) has unknown type \"\(text)\" (known: \(known))")
            }
            tensors[name] = type
        }
        self.tensors = tensors
        notes = o["notes"]
    }

    /// The entry as JSON.
    public var json: JSON {
        var o: [String: JSON] = ["version": .int(Int64(Self.version)),
                                 "tensors": .object(tensors.mapValues { .string($0.rawValue) })]
        if let notes { o["notes"] = notes }
        return .object(o)
    }
}
