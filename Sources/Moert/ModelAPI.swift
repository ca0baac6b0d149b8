// ModelAPI: loading, describing and freeing models.

import CMoert
import MoertCore
import MoertTensor

/// The library's default model options.
nonisolated(unsafe) let defaultModelOptions = moert_model_options(struct_size: UInt32(MemoryLayout<moert_model_options>.size), flags: 0,
                                              max_context: 0, expert_budget_bytes: 0, expert_budget_percent: 0)

/// Default model options. The C entry point is `moert_model_options_init_sized`.
@c @implementation public func moert_model_options_init_sized(_ options: UnsafeMutablePointer<moert_model_options>!, _ size: Int) {
    writeDefaults(defaultModelOptions, to: options, size: size)
}

/// Loads a checkpoint directory. The C entry point is `moert_model_load`.
@c @implementation public func moert_model_load(_ path: UnsafePointer<CChar>!, _ options: UnsafePointer<moert_model_options>!,
                                                _ outModel: UnsafeMutablePointer<OpaquePointer?>!) -> moert_status {
    outModel?.pointee = nil
    return withStatus {
        let out = try require(outModel, "out_model")
        let path = String(cString: try require(path, "path"))
        let o = try readSized(options, defaults: defaultModelOptions, name: "moert_model_options")
        let known = MOERT_MODEL_TRUST_PLUGIN_PATHS | MOERT_MODEL_NO_MMAP
        guard o.flags & ~known == 0 else {
            throw MoertError(.invalidArgument, "moert_model_options.flags has unknown bits 0x\(String(o.flags & ~known, radix: 16))")
        }
        var load = ModelLoadOptions()
        load.trustPluginPaths = o.flags & MOERT_MODEL_TRUST_PLUGIN_PATHS != 0
        load.mapWeights = o.flags & MOERT_MODEL_NO_MMAP == 0
        guard o.max_context >= 0, o.max_context <= Int64(Int32.max) else {
            throw MoertError(.invalidArgument, "max_context must be in [0, 2^31), got \(o.max_context)")
        }
        load.maxContext = Int(o.max_context)
        guard o.expert_budget_bytes >= 0, o.expert_budget_percent >= 0, o.expert_budget_percent <= 100,
              !(o.expert_budget_bytes > 0 && o.expert_budget_percent > 0) else {
            throw MoertError(.invalidArgument, "expert budget: set one of expert_budget_bytes (>= 0) and expert_budget_percent (0...100)")
        }
        if o.expert_budget_bytes > 0 { load.expertBudget = .bytes(Int(o.expert_budget_bytes)) }
        if o.expert_budget_percent > 0 { load.expertBudget = .fraction(Double(o.expert_budget_percent) / 100) }
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
            n_moe_layers: Int32(m.moeLayerCount), n_experts: Int32(m.maxExpertsPerLayer), n_experts_per_tok: Int32(c.numExpertsPerTok),
            n_heads: Int32(c.numAttentionHeads), n_kv_heads: Int32(c.numKeyValueHeads), head_dim: Int32(c.headDim),
            dtype: dtype, context_length: Int64(m.contextLength), n_params: Int64(m.parameterCount),
            file_bytes: Int64(m.checkpoint.mappedBytes),
            weight_bytes: Int64(m.checkpoint.convertedBytes + m.experts.statistics.residentBytes),
            bos_token_id: c.bosTokenId ?? -1, eos_token_id: c.eosTokenIds.first ?? -1)
        try writeSized(value, to: info, name: "moert_model_info")
    }
}

/// Number of stop ids (those generation stops at). The C entry point is `moert_model_eos_token_count`.
@c @implementation public func moert_model_eos_token_count(_ model: OpaquePointer!) -> Int32 {
    guard let model else { return 0 }
    return Int32(object(model, as: ModelHandle.self).model.stopTokenIds.count)
}

/// One stop id. The C entry point is `moert_model_eos_token`.
@c @implementation public func moert_model_eos_token(_ model: OpaquePointer!, _ index: Int32) -> Int32 {
    guard let model else { return -1 }
    return tokenId(object(model, as: ModelHandle.self).model.stopTokenIds, at: index)
}

/// The storage type of one tensor. The C entry point is `moert_model_tensor_dtype`.
@c @implementation public func moert_model_tensor_dtype(_ model: OpaquePointer!, _ name: UnsafePointer<CChar>!) -> Int32 {
    guard let model, let name else { return -1 }
    switch object(model, as: ModelHandle.self).model.checkpoint.storage(of: String(cString: name)) {
    case .f32?: return MOERT_DTYPE_F32
    case .f16?: return MOERT_DTYPE_F16
    case .bf16?: return MOERT_DTYPE_BF16
    case .q8_0?: return MOERT_DTYPE_Q8_0
    case .q4_0?: return MOERT_DTYPE_Q4_0
    case .q3_0?: return MOERT_DTYPE_Q3_0
    case .q4_k?: return MOERT_DTYPE_Q4_K
    case nil: return -1
    }
}

/// Memory statistics. The C entry point is `moert_model_get_memory_stats`.
@c @implementation public func moert_model_get_memory_stats(_ model: OpaquePointer!, _ stats: UnsafeMutablePointer<moert_memory_stats>!) -> moert_status {
    withStatus {
        let m = object(try require(model, "model"), as: ModelHandle.self).model
        let out = try require(stats, "stats")
        let s = m.experts.statistics
        let je = m.experts.arena.jemallocStats
        let value = moert_memory_stats(
            struct_size: UInt32(MemoryLayout<moert_memory_stats>.size), allocator: kindNames.cString(m.experts.arena.backend.rawValue),
            expert_bytes_total: Int64(s.totalBytes), expert_bytes_resident: Int64(s.residentBytes),
            expert_budget_bytes: Int64(s.budgetBytes ?? 0), mapped_bytes: Int64(m.checkpoint.mappedBytes),
            converted_bytes: Int64(m.checkpoint.convertedBytes), arena_active_bytes: Int64(je?.active ?? -1),
            arena_mapped_bytes: Int64(je?.mapped ?? -1), hits: Int64(s.hits), misses: Int64(s.misses),
            bytes_loaded: Int64(s.bytesLoaded), evictions: Int64(s.evictions))
        try writeSized(value, to: out, name: "moert_memory_stats")
    }
}

/// Resident experts per MoE layer. The C entry point is `moert_model_get_resident_experts`.
@c @implementation public func moert_model_get_resident_experts(_ model: OpaquePointer!, _ counts: UnsafeMutablePointer<Int32>!,
                                                                _ capacity: Int, _ outLayers: UnsafeMutablePointer<Int32>!) -> moert_status {
    withStatus {
        let m = object(try require(model, "model"), as: ModelHandle.self).model
        let perLayer = m.experts.statistics.residentPerLayer
        let layers = m.moeLayerCount
        outLayers?.pointee = Int32(layers)
        guard let counts else { return }
        guard capacity >= layers else { throw MoertError(.bufferTooSmall, "counts holds \(UInt(bitPattern: capacity)) elements, \(layers) needed") }
        for i in 0..<layers { counts[i] = Int32(i < perLayer.count ? perLayer[i] : 0) }
    }
}
