// ModelAPI: loading, describing and freeing models.

import CMoert
import MoertCore

/// Default model options. The C entry point is `moert_model_options_init`.
@c @implementation public func moert_model_options_init(_ options: UnsafeMutablePointer<moert_model_options>!) {
    guard let options else { return }
    options.pointee = moert_model_options(struct_size: UInt32(MemoryLayout<moert_model_options>.size), flags: 0, max_context: 0)
}

/// Loads a checkpoint directory. The C entry point is `moert_model_load`.
@c @implementation public func moert_model_load(_ path: UnsafePointer<CChar>!, _ options: UnsafePointer<moert_model_options>!,
                                                _ outModel: UnsafeMutablePointer<OpaquePointer?>!) -> moert_status {
    outModel?.pointee = nil
    return withStatus {
        let out = try require(outModel, "out_model")
        let path = String(cString: try require(path, "path"))
        var defaults = moert_model_options()
        moert_model_options_init(&defaults)
        let o = try readSized(options, defaults: defaults, name: "moert_model_options")
        guard o.flags == 0 else { throw MoertError(.invalidArgument, "moert_model_options.flags must be 0, got \(o.flags)") }
        var load = ModelLoadOptions()
        guard o.max_context >= 0, o.max_context <= Int64(Int32.max) else {
            throw MoertError(.invalidArgument, "max_context must be in [0, 2^31), got \(o.max_context)")
        }
        load.maxContext = Int(o.max_context)
        out.pointee = retainedHandle(ModelHandle(try Model(path: path, options: load)))
    }
}

/// Frees a model. The C entry point is `moert_model_free`.
@c @implementation public func moert_model_free(_ model: OpaquePointer!) {
    guard let model else { return }
    releaseHandle(model, as: ModelHandle.self)
}

/// Describes a model. The C entry point is `moert_model_get_info`.
@c @implementation public func moert_model_get_info(_ model: OpaquePointer!, _ info: UnsafeMutablePointer<moert_model_info>!) -> moert_status {
    withStatus {
        let handle = object(try require(model, "model"), as: ModelHandle.self)
        let info = try require(info, "info")
        let m = handle.model, c = m.config
        let dtype: Int32
        switch m.storageDType {
        case .f32?: dtype = MOERT_DTYPE_F32
        case .f16?: dtype = MOERT_DTYPE_F16
        case .bf16?: dtype = MOERT_DTYPE_BF16
        default: dtype = MOERT_DTYPE_MIXED
        }
        let value = moert_model_info(
            struct_size: UInt32(MemoryLayout<moert_model_info>.size),
            architecture: UnsafePointer(handle.architecture),
            vocab_size: Int32(c.vocabSize), hidden_size: Int32(c.hiddenSize), n_layers: Int32(c.numHiddenLayers),
            n_moe_layers: Int32(m.moeLayerCount), n_experts: Int32(c.numExperts), n_experts_per_tok: Int32(c.numExpertsPerTok),
            n_heads: Int32(c.numAttentionHeads), n_kv_heads: Int32(c.numKeyValueHeads), head_dim: Int32(c.headDim),
            dtype: dtype, context_length: Int64(m.contextLength), n_params: Int64(m.parameterCount),
            file_bytes: Int64(m.checkpoint.mappedBytes), weight_bytes: Int64(m.checkpoint.convertedBytes),
            bos_token_id: c.bosTokenId ?? -1, eos_token_id: c.eosTokenIds.first ?? -1)
        try writeSized(value, to: info, name: "moert_model_info")
    }
}
