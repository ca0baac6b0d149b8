// Checkpoint+Scaled: weights stored in the checkpoint's own quantized formats — block-wise FP8 with its scale tensors,
// and gpt-oss's fused MXFP4 experts — checked from the headers and handed out for decoding.

import MoertTensor

extension Checkpoint {
    /// Checks every F8_E4M3 tensor and every `_scale_inv` tensor from the headers: an FP8 weight needs the fp8
    /// quantization_config, must be a matrix outside `modules_to_not_convert`, and has a float scale tensor of
    /// [ceil(out / block rows), ceil(in / block columns)]; a scale tensor belongs to an FP8 weight.
    /// - Throws: `MoertError` (`.format`, `.unsupported`) naming the tensor, its file and the config key.
    func checkScaledTensors() throws {
        var matcher: ModuleMatcher?
        for name in location.keys.sorted() {
            let (info, file) = try self.info(name)
            if info.dtype == .f8e4m3 {
                let at = "\(name) in \(file.fileName)"
                guard case .fp8(let fp8)? = nativeQuantization else {
                    throw MoertError.unsupported("\(at): dtype F8_E4M3 needs config.json's quantization_config with quant_method \"fp8\"")
                }
                guard info.shape.count == 2 else {
                    throw MoertError.format("\(at): an F8_E4M3 weight must be a matrix [out, in], got shape \(info.shape)")
                }
                let module = name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
                if matcher == nil { matcher = try ModuleMatcher(fp8.modulesToNotConvert, source: "config.json") }
                if matcher!.matches(module) {
                    throw MoertError.format("\(at): stored as F8_E4M3, but config.json's quantization_config.modules_to_not_convert keeps \(module) unquantized")
                }
                let scaleName = name + "_scale_inv"
                guard contains(scaleName) else {
                    throw MoertError.format("\(at): an F8_E4M3 weight needs its scale tensor \(scaleName), which no safetensors file holds")
                }
                let (scale, scaleFile) = try self.info(scaleName)
                guard [.f32, .bf16, .f16].contains(scale.dtype) else {
                    throw MoertError.unsupported("\(scaleName) in \(scaleFile.fileName): dtype \(scale.dtype.rawValue) is not supported for scales (F32, BF16, F16)")
                }
                let expected = [(info.shape[0] + fp8.blockRows - 1) / fp8.blockRows,
                                (info.shape[1] + fp8.blockColumns - 1) / fp8.blockColumns]
                guard scale.shape == expected else {
                    throw MoertError.format("\(scaleName) in \(scaleFile.fileName): expected shape \(expected) (one scale per \(fp8.blockRows)×\(fp8.blockColumns) block of quantization_config.weight_block_size over the \(info.shape) weight), got \(scale.shape)")
                }
            } else if name.hasSuffix("_scale_inv") {
                let weightName = String(name.dropLast("_scale_inv".count))
                guard let (weight, _) = try? self.info(weightName) else {
                    throw MoertError.format("\(name) in \(file.fileName): a scale tensor without its weight \(weightName)")
                }
                guard weight.dtype == .f8e4m3 else {
                    throw MoertError.format("\(name) in \(file.fileName): the scales of \(weightName), which is stored as \(weight.dtype.rawValue), not F8_E4M3")
                }
            }
        }
    }

    /// FP8 weight `name` (already checked by `checkScaledTensors`) with its scales, to decode to float32; marks both
    /// used. The caller holds the lock.
    func fp8Tensor(_ name: String, _ info: TensorInfo, _ file: SafetensorsFile) throws -> StoredTensor {
        guard case .fp8(let fp8)? = nativeQuantization else {
            throw MoertError.unsupported("\(name): dtype F8_E4M3 needs config.json's quantization_config with quant_method \"fp8\"")
        }
        let scaleName = name + "_scale_inv"
        let (scale, scaleFile) = try self.info(scaleName)
        used.insert(name)
        used.insert(scaleName)
        let source = FP8Source(scales: scaleFile.data(scale), scaleStorage: scale.dtype.weightStorage ?? .f32,
                               scaleName: scaleName, rows: info.shape[0], columns: info.shape[1],
                               blockRows: fp8.blockRows, blockColumns: fp8.blockColumns)
        return StoredTensor(name: name, data: file.data(info), storage: .f32, count: info.count, encoding: .fp8(source))
    }

    /// How tensor `name` is stored, for `moert info`: "fp8_e4m3" for FP8 weights, "mxfp4" for MXFP4 blocks, the
    /// storage type of other weights; nil for scale tensors and tensors that are not weights.
    public func storedFormat(of name: String) -> String? {
        guard let (info, _) = try? self.info(name) else { return nil }
        if info.dtype == .f8e4m3 { return "fp8_e4m3" }
        if case .mxfp4? = nativeQuantization, info.dtype == .u8 {
            if name.hasSuffix("_blocks") { return "mxfp4" }
            if name.hasSuffix("_scales") { return nil }
        }
        if name.hasSuffix("_scale_inv") && nativeQuantization != nil { return nil }
        return storage(of: name)?.rawValue
    }

    // MARK: - MXFP4 experts

    /// Expert `expert`'s gate [I, H], up [I, H] and down [H, I] projections (as `Linear` reads them: [out, in]) from
    /// the fused MXFP4 tensors of a gpt-oss MoE layer under `prefix` (e.g. "model.layers.0.mlp.experts."):
    /// `gate_up_proj_blocks` U8 [E, 2I, H / 32, 16] with `gate_up_proj_scales` U8 [E, 2I, H / 32], whose rows
    /// alternate gate and up, and `down_proj_blocks` [E, H, I / 32, 16] with `down_proj_scales` [E, H, I / 32]
    /// (transformers' `convert_moe_packed_tensors` turns these into `GptOssExperts.gate_up_proj` [E, H, 2I] and
    /// `down_proj` [E, I, H], which it multiplies from the right). Each decodes exactly to bf16 when the expert is
    /// materialised (`StoredTensor.decode`); this reads the headers only.
    /// - Parameters:
    ///   - experts: E, the layer's experts (config.json's num_local_experts).
    ///   - hidden: H (hidden_size), a multiple of 32.
    ///   - intermediate: I (intermediate_size, the expert width), a multiple of 32.
    /// - Throws: `MoertError` (`.format`) naming the tensor on a missing tensor, a wrong dtype or shape, an expert out
    ///   of range or sizes that are not whole blocks; (`.unsupported`) when config.json does not say mxfp4.
    package func mxfp4Expert(_ prefix: String, expert: Int, experts: Int, hidden: Int, intermediate: Int) throws
        -> (gate: StoredTensor, up: StoredTensor, down: StoredTensor) {
        guard case .mxfp4? = nativeQuantization else {
            throw MoertError.unsupported("\(prefix)gate_up_proj_blocks: MXFP4 experts need config.json's quantization_config with quant_method \"mxfp4\"")
        }
        guard hidden % 32 == 0, intermediate % 32 == 0, hidden > 0, intermediate > 0 else {
            throw MoertError.format("\(prefix)gate_up_proj_blocks: MXFP4 rows are whole blocks of 32 values, but hidden_size is \(hidden) and the expert width \(intermediate)")
        }
        guard expert >= 0, expert < experts else {
            throw MoertError.format("\(prefix)gate_up_proj_blocks: expert \(expert) of \(experts)")
        }
        return try lock.withLock {
            let gateUp = try mxfp4Pair(prefix + "gate_up_proj", experts: experts, rows: 2 * intermediate, columns: hidden)
            let down = try mxfp4Pair(prefix + "down_proj", experts: experts, rows: hidden, columns: intermediate)
            func rows(_ pair: (blocks: UnsafeRawPointer, scales: UnsafeRawPointer), _ name: String, total: Int,
                      first: Int, step: Int, columns: Int) -> StoredTensor {
                let groups = columns / 32, row = expert * total + first
                let source = MXFP4Source(scales: pair.scales + row * groups, rows: total / step, rowStep: step, groups: groups)
                return StoredTensor(name: name, data: pair.blocks + row * groups * 16, storage: .bf16,
                                    count: total / step * columns, encoding: .mxfp4(source))
            }
            let what = "\(prefix)gate_up_proj_blocks[\(expert)]"
            return (rows(gateUp, what + " (gate: even rows)", total: 2 * intermediate, first: 0, step: 2, columns: hidden),
                    rows(gateUp, what + " (up: odd rows)", total: 2 * intermediate, first: 1, step: 2, columns: hidden),
                    rows(down, "\(prefix)down_proj_blocks[\(expert)]", total: hidden, first: 0, step: 1, columns: intermediate))
        }
    }

    /// `name`_blocks U8 [experts, rows, columns / 32, 16] and `name`_scales U8 [experts, rows, columns / 32], checked
    /// and marked used. The caller holds the lock.
    private func mxfp4Pair(_ name: String, experts: Int, rows: Int, columns: Int) throws
        -> (blocks: UnsafeRawPointer, scales: UnsafeRawPointer) {
        let groups = columns / 32
        var pointers: [UnsafeRawPointer] = []
        for (suffix, shape) in [("_blocks", [experts, rows, groups, 16]), ("_scales", [experts, rows, groups])] {
            let (info, file) = try self.info(name + suffix)
            guard info.dtype == .u8, info.shape == shape else {
                throw MoertError.format("\(name + suffix) in \(file.fileName): expected U8 \(shape), got \(info.dtype.rawValue) \(info.shape)")
            }
            used.insert(name + suffix)
            pointers.append(file.data(info))
        }
        return (pointers[0], pointers[1])
    }
}
