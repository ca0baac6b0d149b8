// QuantizePlan: which storage type `moert quantize` gives each tensor of a checkpoint.

import MoertFormats
import MoertTensor

/// The classes of tensors the quantize options address, from their Hugging Face names.
public enum TensorClass: String, Sendable, CaseIterable {
    /// q/k/v/o projections of attention.
    case attention
    /// Routed experts' projections.
    case experts = "routed experts"
    /// Shared experts and dense MLPs.
    case shared = "shared experts and dense MLPs"
    /// Token embeddings and the output layer.
    case output = "embeddings and output layer"
    /// Router gates (gpt-oss: `router`; and Qwen2-MoE's shared-expert gate): kept as stored, so routing does not flip
    /// on rounding.
    case gate = "router gates"
    /// Everything else (norms, biases, plugin tensors): kept as stored.
    case other = "other tensors"

    /// The class of tensor `name`.
    public static func of(_ name: String) -> TensorClass {
        if name == "model.embed_tokens.weight" || name == "lm_head.weight" { return .output }
        guard name.hasSuffix("_proj.weight") || name.hasSuffix(".w1.weight") || name.hasSuffix(".w2.weight")
              || name.hasSuffix(".w3.weight") || name.hasSuffix("gate.weight") || name.hasSuffix(".router.weight")
        else { return .other }
        if name.hasSuffix(".gate.weight") || name.hasSuffix("shared_expert_gate.weight") || name.hasSuffix(".router.weight") {
            return .gate
        }
        if name.contains(".self_attn.") { return .attention }
        if name.contains(".shared_expert.") || name.contains(".shared_experts.") { return .shared }
        if name.contains(".experts.") { return .experts }
        if name.contains(".mlp.") { return .shared }
        return .other
    }

    /// The decoder layer and expert id of a routed expert's tensor ("model.layers.<l>.….experts.<e>.…"); nil for
    /// any other name.
    public static func routedExpert(_ name: String) -> (layer: Int, expert: Int)? {
        let parts = name.split(separator: ".")
        guard let l = parts.firstIndex(of: "layers"), l + 1 < parts.count, let layer = Int(parts[l + 1]),
              let x = parts.firstIndex(of: "experts"), x + 1 < parts.count, let expert = Int(parts[x + 1]) else { return nil }
        return (layer, expert)
    }
}

/// The storage types asked for, per class (`moert quantize --type ... --attention ... --experts ... --shared ...
/// --output-type ...`).
public struct QuantizeOptions: Sendable {
    /// Every linear weight's type unless its class has its own.
    public var type: WeightStorage
    /// Attention projections; nil: `type`.
    public var attention: WeightStorage?
    /// Routed experts; nil: `type`.
    public var experts: WeightStorage?
    /// Shared experts and dense MLPs; nil: `type`.
    public var shared: WeightStorage?
    /// Embeddings and output layer; nil: q8_0 when `type` has fewer than 8 bits per weight, else `type`.
    public var outputType: WeightStorage?
    /// Per-tensor types that take precedence over the classes (per-expert bit widths).
    public var tensors: [String: WeightStorage] = [:]
    /// Types by name pattern (`--tensor-type`), before `tensors` and the classes: the first rule that matches a
    /// tensor's name decides its type.
    public var rules: [TensorTypeRule] = []

    /// Options giving `type` to every linear weight.
    public init(type: WeightStorage) { self.type = type }

    /// The type asked for a tensor of `cls`; nil: kept as stored.
    public func type(for cls: TensorClass) -> WeightStorage? {
        switch cls {
        case .attention: return attention ?? type
        case .experts: return experts ?? type
        case .shared: return shared ?? type
        case .output: return outputType ?? (type.isQuantized && type.bitsPerWeight < 8 ? .q8_0 : type)
        case .gate, .other: return nil
        }
    }
}

/// `--tensor-type PATTERN=TYPE`: the tensors whose name the regular expression PATTERN matches (anywhere in the name,
/// as llama.cpp's `llama-quantize --tensor-type` matches) are stored as TYPE.
public struct TensorTypeRule: @unchecked Sendable {
    /// The text the rule came from.
    public let text: String
    /// The type it gives.
    public let type: WeightStorage
    private let regex: Regex<AnyRegexOutput>

    /// Parses "PATTERN=TYPE" (the last "=" separates them).
    /// - Throws: `MoertError` (`.invalidArgument`) for a missing "=", an unknown type or a pattern that does not
    ///   compile.
    public init(_ text: String) throws {
        self.text = text
        guard let eq = text.lastIndex(of: "="), eq != text.startIndex else {
            throw MoertError.invalid("--tensor-type takes PATTERN=TYPE, got '\(text)'")
        }
        let name = String(text[text.index(after: eq)...]).lowercased()
        guard let type = WeightStorage(rawValue: name) else {
            throw MoertError.invalid("--tensor-type '\(text)': unknown type '\(name)' (known: \(WeightStorage.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.type = type
        do {
            regex = try Regex(String(text[..<eq]))
        } catch {
            throw MoertError.invalid("--tensor-type '\(text)': the pattern does not compile (\(error))")
        }
    }

    /// True when the pattern matches somewhere in `name`.
    public func matches(_ name: String) -> Bool { name.contains(regex) }
}

/// One tensor of the plan.
public struct PlannedTensor: Sendable {
    /// Name in the checkpoint.
    public var name: String
    /// Its class.
    public var cls: TensorClass
    /// Shape as the model reads it (a quantized tensor's [rows, columns]).
    public var shape: [Int]
    /// The source's storage; nil for a tensor that is not a weight (integers), copied as it is.
    public var source: WeightStorage?
    /// The source's dtype in its file.
    public var sourceDType: TensorDType
    /// The source's bytes in its file.
    public var sourceBytes: Int
    /// The type written; equal to `source` when kept.
    public var target: WeightStorage?
    /// Why the asked type was not used (rows not whole blocks), or nil.
    public var fallback: String?

    /// Bytes written.
    public var outputBytes: Int {
        guard let target else { return shape.reduce(1, *) * sourceDType.size }
        return target.bytes(shape.reduce(1, *))
    }
}

/// The plan of a whole checkpoint.
public struct QuantizePlan: Sendable {
    /// Every tensor, sorted by name (the order they are written in).
    public var tensors: [PlannedTensor]

    /// Plans `checkpoint` under `options`: each tensor of a class with a type gets it when its rows are whole
    /// blocks, else the type of the same size in smaller blocks (q4_0 for q4_k) when they fit, else keeps its stored
    /// type (as llama.cpp falls back), with the reason recorded. A routed expert's projections share one type (the
    /// store keeps them as one buffer): one projection that takes the smaller blocks takes the whole expert with it,
    /// and one that cannot take either keeps the whole expert as stored.
    /// - Throws: `MoertError` (`.format`) when a tensor cannot be read, (`.invalidArgument`) when a rule matches no
    ///   tensor.
    public init(checkpoint: Checkpoint, options: QuantizeOptions) throws {
        var planned: [PlannedTensor] = []
        var used = [Bool](repeating: false, count: options.rules.count)
        for name in checkpoint.tensorNames {
            let rule = options.rules.firstIndex { $0.matches(name) }
            if let rule { used[rule] = true }
            let (info, _) = try checkpoint.info(name)
            let shape = try checkpoint.logicalShape(name)
            let source = checkpoint.quantized[name] ?? info.dtype.weightStorage
            let cls = TensorClass.of(name)
            var p = PlannedTensor(name: name, cls: cls, shape: shape, source: source, sourceDType: info.dtype, sourceBytes: info.byteCount,
                                  target: source, fallback: nil)
            let asked = rule.map { options.rules[$0].type } ?? options.tensors[name] ?? options.type(for: cls)
            if let source, shape.count == 2, let asked, asked != source {
                if asked.fits(columns: shape[1]) {
                    p.target = asked
                } else if let smaller = Self.smallerBlocks(asked), smaller.fits(columns: shape[1]) {
                    p.target = smaller
                    p.fallback = "\(shape[1]) columns are not whole blocks of \(asked.blockValues): \(smaller.rawValue) instead of \(asked.rawValue)"
                } else {
                    p.fallback = "\(shape[1]) columns are not whole blocks of \(asked.blockValues): kept \(source.rawValue) instead of \(asked.rawValue)"
                }
            }
            planned.append(p)
        }
        if let unused = used.firstIndex(of: false) {
            throw MoertError.invalid("--tensor-type '\(options.rules[unused].text)': the pattern matches no tensor (or only tensors an earlier rule matched)")
        }
        // One type per routed expert.
        var byExpert: [String: [Int]] = [:]
        for (i, p) in planned.enumerated() where p.cls == .experts {
            if let (layer, expert) = TensorClass.routedExpert(p.name) { byExpert["layer \(layer) expert \(expert)", default: []].append(i) }
        }
        for (expert, members) in byExpert where Set(members.map { planned[$0].target }).count > 1 {
            let targets = Set(members.compactMap { planned[$0].target })
            if let smaller = targets.first(where: { t in targets.contains { Self.smallerBlocks($0) == t } }),
               targets.count == 2, members.allSatisfy({ planned[$0].source != nil }) {
                for i in members where planned[i].target != smaller {
                    planned[i].target = smaller
                    planned[i].fallback = "\(smaller.rawValue) with the rest of \(expert) (its projections share one type)"
                }
                continue
            }
            for i in members {
                if planned[i].target != planned[i].source {
                    planned[i].fallback = "kept \(planned[i].source!.rawValue) with the rest of \(expert) (its projections share one type)"
                }
                planned[i].target = planned[i].source
            }
        }
        tensors = planned
    }

    /// The type of the same bits per weight in blocks of 32 that a tensor gets when its rows are not whole blocks of
    /// `type` (q4_0 for q4_k's 256-value super-blocks); nil when there is none.
    static func smallerBlocks(_ type: WeightStorage) -> WeightStorage? { type == .q4_k ? .q4_0 : nil }

    /// The quantized tensors of the output and their types (the moert section's quantization entry).
    public var quantizedTensors: [String: WeightStorage] {
        var map: [String: WeightStorage] = [:]
        for p in tensors { if let t = p.target, t.isQuantized { map[p.name] = t } }
        return map
    }
}
