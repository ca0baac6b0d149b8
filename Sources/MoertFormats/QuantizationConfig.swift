// QuantizationConfig: config.json's "quantization_config" — the formats checkpoints ship their weights in (block-wise
// FP8, MXFP4), validated key by key.

import MoertTensor

/// How a checkpoint stores its weights natively, as config.json's `quantization_config` says (transformers'
/// `FineGrainedFP8Config` and `Mxfp4Config`). The tensors themselves say which weights are stored this way (their
/// dtype and companion tensors); this is the format's parameters and the modules it leaves unquantized.
public enum QuantizationConfig: Sendable, Equatable {
    /// Block-wise FP8 (`quant_method` "fp8"): `X.weight` of dtype F8_E4M3 [out, in] with `X.weight_scale_inv` of
    /// float32 [ceil(out / blockRows), ceil(in / blockColumns)]; the weight is e4m3(w) × scale of its block.
    case fp8(FP8Quantization)
    /// MXFP4 (`quant_method` "mxfp4", gpt-oss experts): `<p>_blocks` U8 [..., rows, columns / 32, 16] of e2m1 pairs and
    /// `<p>_scales` U8 [..., rows, columns / 32] of e8m0 exponents.
    case mxfp4(modulesToNotConvert: [String])

    /// `quant_method` as config.json spells it.
    public var quantMethod: String {
        switch self {
        case .fp8: return "fp8"
        case .mxfp4: return "mxfp4"
        }
    }

    /// The modules the config leaves unquantized (`modules_to_not_convert`, or `ignored_layers`).
    public var modulesToNotConvert: [String] {
        switch self {
        case .fp8(let f): return f.modulesToNotConvert
        case .mxfp4(let m): return m
        }
    }

    /// One line for `moert info`: the format and its parameters.
    public var summary: String {
        switch self {
        case .fp8(let f): return "fp8 e4m3, blocks of \(f.blockRows)×\(f.blockColumns) with float32 scales"
        case .mxfp4: return "mxfp4 (e2m1, blocks of 32 with an e8m0 scale)"
        }
    }

    /// The keys each method may carry (transformers' config class arguments).
    private static let fp8Keys: Set<String> = ["quant_method", "fmt", "activation_scheme", "weight_block_size",
                                               "modules_to_not_convert", "ignored_layers", "modules_to_convert",
                                               "dequantize", "scale_fmt", "expert_dtype"]
    private static let mxfp4Keys: Set<String> = ["quant_method", "modules_to_not_convert", "dequantize"]

    /// Parses `quantization_config` (nil or null: the checkpoint is not quantized this way).
    /// - Parameter source: the file, for messages.
    /// - Returns: nil when `json` is nil or null.
    /// - Throws: `MoertError` (`.format`) for an ill-typed key, (`.unsupported`) for a method or option moert does
    ///   not read; each message names the key.
    public static func parse(_ json: JSON?, source: String) throws -> QuantizationConfig? {
        guard let json, !json.isNull else { return nil }
        let at = "\(source): quantization_config"
        guard let o = json.object else { throw MoertError.format("\(at) must be an object") }
        guard let method = o["quant_method"]?.string else {
            throw MoertError.format("\(at).quant_method must be a string (\"fp8\" or \"mxfp4\")")
        }
        let allowed: Set<String>
        switch method {
        case "fp8": allowed = fp8Keys
        case "mxfp4": allowed = mxfp4Keys
        default:
            throw MoertError.unsupported("\(at).quant_method \"\(method)\" is not supported (fp8, mxfp4)")
        }
        if let bad = o.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw MoertError.unsupported("\(at).\(bad) is not supported with quant_method \"\(method)\" (known: \(allowed.sorted().joined(separator: ", ")))")
        }
        if let d = o["dequantize"], !d.isNull, d.bool == nil {
            throw MoertError.format("\(at).dequantize must be true or false")
        }
        if method == "mxfp4" {
            return .mxfp4(modulesToNotConvert: try strings(o, "modules_to_not_convert", at))
        }
        return .fp8(try FP8Quantization(o, at))
    }

    /// A list of strings under `key`; [] when absent or null.
    static func strings(_ o: [String: JSON], _ key: String, _ at: String) throws -> [String] {
        guard let v = o[key], !v.isNull else { return [] }
        guard let a = v.array else { throw MoertError.format("\(at).\(key) must be a list of module names") }
        return try a.map {
            guard let s = $0.string else { throw MoertError.format("\(at).\(key) must hold strings") }
            return s
        }
    }
}

/// The parameters of block-wise FP8 (transformers' `FineGrainedFP8Config`, `integrations/finegrained_fp8.py`).
public struct FP8Quantization: Sendable, Equatable {
    /// Rows of a weight block (`weight_block_size[0]`, along the output features).
    public var blockRows: Int
    /// Columns of a weight block (`weight_block_size[1]`, along the input features).
    public var blockColumns: Int
    /// Modules kept in their original precision (`modules_to_not_convert`, or MiniMax's `ignored_layers`).
    public var modulesToNotConvert: [String]

    /// Block-wise FP8 with `blockRows` × `blockColumns` blocks.
    public init(blockRows: Int, blockColumns: Int, modulesToNotConvert: [String] = []) {
        self.blockRows = blockRows
        self.blockColumns = blockColumns
        self.modulesToNotConvert = modulesToNotConvert
    }

    init(_ o: [String: JSON], _ at: String) throws {
        if let fmt = o["fmt"], !fmt.isNull {
            // DeepSeek-V3 and Qwen3 write "e4m3", MiniMax "float8_e4m3fn": the same format.
            guard let f = fmt.string, f == "e4m3" || f == "float8_e4m3fn" else {
                throw MoertError.unsupported("\(at).fmt \(fmt.text) is not supported (only e4m3)")
            }
        }
        if let scheme = o["activation_scheme"], !scheme.isNull {
            // Dynamic: activations stay in the compute type, which is what a dequantized weight computes with.
            guard let s = scheme.string, s.lowercased() == "dynamic" else {
                throw MoertError.unsupported("\(at).activation_scheme \(scheme.text) is not supported (only dynamic)")
            }
        }
        if let fmt = o["scale_fmt"], !fmt.isNull, fmt.string != "float" {
            throw MoertError.unsupported("\(at).scale_fmt \(fmt.text) is not supported (only float: float32 scales)")
        }
        if let d = o["expert_dtype"], !d.isNull, d.string != "fp8" {
            throw MoertError.unsupported("\(at).expert_dtype \(d.text) is not supported (only fp8)")
        }
        // transformers substitutes [128, 128] for a missing key and one scale per tensor for null; moert reads the
        // block size only from the file, and a checkpoint that does not state it is refused.
        guard let size = o["weight_block_size"], !size.isNull else {
            throw MoertError.format("\(at).weight_block_size is missing (the [rows, columns] of a scale block)")
        }
        guard let pair = size.array, pair.count == 2,
              let r = pair[0].int, let c = pair[1].int, r >= 1, c >= 1, r <= Int64(Int32.max), c <= Int64(Int32.max)
        else {
            throw MoertError.format("\(at).weight_block_size must be two positive integers [rows, columns], got \(size.text)")
        }
        blockRows = Int(r)
        blockColumns = Int(c)
        var skip = try QuantizationConfig.strings(o, "modules_to_not_convert", at)
        if o["modules_to_not_convert"].map({ $0.isNull }) ?? true {
            skip = try QuantizationConfig.strings(o, "ignored_layers", at)
        }
        modulesToNotConvert = skip
        _ = try QuantizationConfig.strings(o, "modules_to_convert", at)
    }
}

/// The modules a quantization config keeps unquantized, matched by transformers' `should_convert_module`
/// (`quantizers/quantizers_utils.py`): a pattern matches a module name from the start up to a module boundary (after
/// a dot, before a dot, or at the end) as a regular expression, or matches it as a plain suffix.
public struct ModuleMatcher {
    private let patterns: [(text: [UInt8], regex: Regex<AnyRegexOutput>?)]

    /// Compiles `patterns` once (names of letters, digits, "_", "-" and "." are compared without a regex engine).
    /// - Throws: `MoertError` (`.format`) naming `source`'s key when a pattern is not a valid regular expression.
    public init(_ patterns: [String], source: String) throws {
        self.patterns = try patterns.map { p in
            let text = Array(p.utf8)
            let plain = text.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x5f || c == 0x2d || c == 0x2e
            }
            if plain { return (text, nil) }
            do {
                return (text, try Regex(p))
            } catch {
                throw MoertError.format("\(source): quantization_config.modules_to_not_convert: \"\(p)\" is not a valid regular expression")
            }
        }
    }

    /// True when a pattern matches module `name` (a weight's name without ".weight").
    public func matches(_ name: String) -> Bool {
        let chars = Array(name.utf8)
        func boundary(_ p: Int) -> Bool {
            p == chars.count || chars[p] == UInt8(ascii: ".") || (p > 0 && chars[p - 1] == UInt8(ascii: "."))
        }
        for (text, regex) in patterns {
            if chars.count >= text.count && Array(chars[(chars.count - text.count)...]) == text { return true }
            if let regex {
                // re.match(f"(?:{pattern})(?:(?<=\\.)|(?=\\.|$))", name): some prefix the pattern matches whole ends at
                // a boundary.
                var end = name.utf8.startIndex
                for p in 0...chars.count {
                    if boundary(p), (try? regex.wholeMatch(in: name[name.startIndex..<end])) != nil { return true }
                    if p < chars.count { end = name.utf8.index(after: end) }
                }
            } else if text.count <= chars.count, boundary(text.count),
                      zip(text, chars).allSatisfy({ $0 == UInt8(ascii: ".") || $0 == $1 }) {
                return true  // as a regex, "." matches any character
            }
        }
        return false
    }
}
