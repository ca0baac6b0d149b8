// ModelConfig+Rope: the rotary embedding as config.json describes it (`rope_parameters`, or the older `rope_scaling`
// and top-level `rope_theta`), for every architecture.

import MoertTensor

extension ModelConfig {
    /// The rope of heads of `headDim`, as transformers' `standardize_rope_params` and `ROPE_INIT_FUNCTIONS` read
    /// it: `rope_scaling` (older files) or `rope_parameters` (transformers 5), `rope_type` (or `type`) default or
    /// yarn, `rope_theta` inside or at the top level (10000 when absent).
    /// - Throws: `MoertError` (`.format` for ill-typed values, `.unsupported` naming any other rope type).
    /// `partialRotary`: the architecture rotates only part of each head, by this factor when config.json names
    /// none (GLM-4.5: 0.5); nil when it rotates whole heads, for which another factor is refused.
    static func rope(_ keys: _ConfigReader, headDim: Int, maxPositionEmbeddings: Int, partialRotary: Double? = nil,
                     source: String) throws -> RopeConfig {
        var params: [String: JSON] = [:], key = "rope_parameters"
        for name in ["rope_scaling", "rope_parameters"] {
            guard let p = keys.raw(name), !p.isNull else { continue }
            guard let o = p.object else { throw MoertError.format("\(source): \(name) is not an object") }
            params = o
            key = name
            break
        }
        func number(_ name: String) throws -> Double? {
            guard let v = params[name], !v.isNull else { return nil }
            guard let d = v.double, d.isFinite else { throw MoertError.format("\(source): \(key).\(name) must be a number") }
            return d
        }
        let theta = try number("rope_theta") ?? keys.double("rope_theta", default: 10000)
        guard theta > 0, theta.isFinite else { throw MoertError.format("\(source): rope_theta must be a positive number") }
        var rope = RopeConfig(theta: theta, rotaryDim: headDim)
        let type = params["rope_type"]?.string ?? params["type"]?.string ?? "default"
        switch type {
        case "default":
            break
        case "yarn":
            // `original_max_position_embeddings` at the top level wins over the one inside (standardize_rope_params).
            let original: Int
            if keys.raw("original_max_position_embeddings").map({ !$0.isNull }) ?? false {
                original = try keys.int("original_max_position_embeddings", min: 1)
            } else if let o = try number("original_max_position_embeddings") {
                guard o >= 1, o <= Double(Int32.max), o == o.rounded() else {
                    throw MoertError.format("\(source): \(key).original_max_position_embeddings must be an integer >= 1")
                }
                original = Int(o)
            } else {
                original = maxPositionEmbeddings
            }
            // A missing factor is the ratio of the two contexts (DeepSeek-V3's convention in _compute_yarn_parameters).
            let factor = try number("factor") ?? Double(maxPositionEmbeddings) / Double(original)
            guard factor > 0 else { throw MoertError.format("\(source): \(key).factor must be positive, got \(factor)") }
            var y = YaRNParameters(factor: factor, originalMaxPositionEmbeddings: original)
            // `beta_fast or 32`, `beta_slow or 1`: absent, null and 0 all take the default.
            if let b = try number("beta_fast"), b != 0 { y.betaFast = b }
            if let b = try number("beta_slow"), b != 0 { y.betaSlow = b }
            guard y.betaFast > 0, y.betaSlow > 0 else { throw MoertError.format("\(source): \(key).beta_fast and beta_slow must be positive") }
            y.mscale = try number("mscale")
            y.mscaleAllDim = try number("mscale_all_dim")
            y.attentionFactor = try number("attention_factor")
            if let t = params["truncate"], !t.isNull {
                guard let b = t.bool else { throw MoertError.format("\(source): \(key).truncate must be true or false") }
                y.truncate = b
            }
            rope.scaling = .yarn(y)
        default:
            throw MoertError.unsupported("\(source): \(key) rope_type \"\(type)\" is not supported (supported: default, yarn)")
        }
        // Inside rope_parameters (transformers 5) or at the top level (older files).
        var factor = try number("partial_rotary_factor")
        if factor == nil, let top = keys.raw("partial_rotary_factor"), !top.isNull {
            guard let d = top.double, d.isFinite else { throw MoertError.format("\(source): partial_rotary_factor must be a number") }
            factor = d
        }
        if let defaultFactor = partialRotary {
            let f = factor ?? defaultFactor
            guard f > 0, f <= 1 else { throw MoertError.format("\(source): partial_rotary_factor must be in (0, 1], got \(f)") }
            let width = Int(Double(headDim) * f)  // int(head_dim * partial_rotary_factor)
            guard width >= 2, width % 2 == 0 else {
                throw MoertError.format("\(source): partial_rotary_factor \(f) rotates \(width) of the \(headDim) values of a head; an even number >= 2 is needed")
            }
            rope.rotaryDim = width
        } else if let f = factor, f != 1 {
            throw MoertError.unsupported("\(source): partial_rotary_factor \(f) is not supported for this architecture (it rotates whole heads)")
        }
        return rope
    }
}
