// ScaledCheckpointTests: block-wise FP8 and MXFP4 weights read from a checkpoint — values against the formats'
// definitions and transformers' dequantization, and lying files (scales missing, misshapen, NaN or infinite; NaN
// weights; e8m0 255) refused with a message naming the tensor.

import Testing
import MoertFormats
import MoertTensor
import MoertTestSupport

/// A checkpoint directory holding `tensors` (name, dtype, shape, bytes) in one model.safetensors.
func scaledCheckpoint(_ tensors: [(String, String, [Int], [UInt8])]) throws -> TemporaryDirectory {
    let dir = try TemporaryDirectory()
    var entries: [String] = [], data: [UInt8] = []
    for (name, dtype, shape, bytes) in tensors {
        entries.append("\"\(name)\": {\"dtype\": \"\(dtype)\", \"shape\": \(shape), \"data_offsets\": [\(data.count), \(data.count + bytes.count)]}")
        data += bytes
    }
    try dir.write("model.safetensors", safetensorsBytes(header: "{" + entries.joined(separator: ", ") + "}", data: data))
    return dir
}

func float32Bytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
}

@Suite("FP8 and MXFP4 weights")
struct ScaledCheckpointTests {
    // MARK: - FP8

    /// a.weight [3, 5] in blocks of 2 × 4: scale rows cover rows 0-1 and 2 (partial), scale columns 0-3 and 4.
    static let fp8Bytes: [UInt8] = [0x38, 0x40, 0x01, 0x7E, 0xB8,
                                    0x30, 0x00, 0x80, 0x3C, 0x44,
                                    0x08, 0x07, 0x48, 0x50, 0xC0]
    /// The same values by the OCP E4M3 definition (bias 7; subnormals m × 2^-9; 0x7E is the largest, 448).
    static let fp8Values: [Float] = [1, 2, 0x1p-9, 448, -1,
                                     0.5, 0, -0.0, 1.5, 3,
                                     0x1p-6, 7 * 0x1p-9, 4, 8, -2]
    static let fp8Scales: [Float] = [0.5, 3, 0.25, 10]
    static let block = QuantizationConfig.fp8(FP8Quantization(blockRows: 2, blockColumns: 4))

    func fp8Checkpoint(weight: [UInt8] = fp8Bytes, scales: [Float]? = fp8Scales, scaleShape: [Int] = [2, 2],
                       native: QuantizationConfig? = block, extra: [(String, String, [Int], [UInt8])] = []) throws
        -> (TemporaryDirectory, Checkpoint) {
        var tensors: [(String, String, [Int], [UInt8])] = [("a.weight", "F8_E4M3", [3, 5], weight)]
        if let scales { tensors.append(("a.weight_scale_inv", "F32", scaleShape, float32Bytes(scales))) }
        let dir = try scaledCheckpoint(tensors + extra)
        return (dir, try Checkpoint(directory: dir.path, native: native))
    }

    @Test("e4m3 times the scale of its block, partial blocks included; the same through the expert store's path")
    func fp8Values() throws {
        let (_, checkpoint) = try fp8Checkpoint()
        var expected: [Float] = []
        for r in 0..<3 {
            for c in 0..<5 { expected.append(Self.fp8Values[r * 5 + c] * Self.fp8Scales[(r / 2) * 2 + c / 4]) }
        }
        let w = try checkpoint.matrix("a.weight", shape: [3, 5])
        #expect(w.storage == .f32)
        #expect(Array(UnsafeBufferPointer(start: w.data, count: 15)) == expected)
        let stored = try checkpoint.storedTensor("a.weight", shape: [3, 5])
        #expect(stored.storage == .f32 && stored.count == 15)
        var decoded = [Float](repeating: .nan, count: 15)
        try decoded.withUnsafeMutableBytes { try stored.decode(into: $0.baseAddress!, as: .f32) }
        #expect(decoded == expected)
        #expect(checkpoint.unusedTensors.isEmpty)  // the scales count as read
        #expect(checkpoint.storedFormat(of: "a.weight") == "fp8_e4m3" && checkpoint.storedFormat(of: "a.weight_scale_inv") == nil)
    }

    static let fp8Lies: [(String, MoertError.Code, String)] = [
        ("missing scale", .format, "needs its scale tensor a.weight_scale_inv"),
        ("scale shape of full blocks only", .format, "expected shape [2, 2]"),
        ("scale grid transposed", .format, "expected shape [2, 2]"),
        ("NaN scale", .format, "a.weight_scale_inv: the scale of block [1, 0] is nan"),
        ("infinite scale", .format, "a.weight_scale_inv: the scale of block [0, 1] is inf"),
        ("NaN weight", .format, "a.weight: element [1, 3] is NaN (e4m3 byte 0x7f)"),
        ("negative NaN weight", .format, "a.weight: element [2, 4] is NaN (e4m3 byte 0xff)"),
        ("no fp8 quantization_config", .unsupported, "needs config.json's quantization_config with quant_method \"fp8\""),
        ("module kept unquantized", .format, "modules_to_not_convert keeps a unquantized"),
        ("orphan scale", .format, "b.weight_scale_inv in model.safetensors: a scale tensor without its weight b.weight"),
        ("scale of a float weight", .format, "the scales of c.weight, which is stored as F32"),
        ("integer scales", .unsupported, "dtype I32 is not supported for scales"),
    ]

    @Test("lying FP8 files are refused, naming the tensor", arguments: fp8Lies)
    func fp8Lie(_ c: (String, MoertError.Code, String)) throws {
        var dir: TemporaryDirectory?
        let error = moertError {
            var weight = Self.fp8Bytes, scales = Self.fp8Scales
            switch c.0 {
            case "missing scale": (dir, _) = try fp8Checkpoint(scales: nil)
            case "scale shape of full blocks only": (dir, _) = try fp8Checkpoint(scales: [1, 2], scaleShape: [1, 2])
            case "scale grid transposed":
                (dir, _) = try fp8Checkpoint(scales: [1, 2, 3, 4, 5, 6], scaleShape: [3, 2])
            case "NaN scale":
                scales[2] = .nan
                _ = try fp8Checkpoint(scales: scales).1.weight("a.weight", shape: [3, 5])
            case "infinite scale":
                scales[1] = .infinity
                _ = try fp8Checkpoint(scales: scales).1.matrix("a.weight", shape: [3, 5])
            case "NaN weight":
                weight[8] = 0x7F
                _ = try fp8Checkpoint(weight: weight).1.matrix("a.weight", shape: [3, 5])
            case "negative NaN weight":
                weight[14] = 0xFF
                let (d, checkpoint) = try fp8Checkpoint(weight: weight)  // the mapping outlives the decode
                dir = d
                let stored = try checkpoint.storedTensor("a.weight", shape: [3, 5])
                var out = [Float](repeating: 0, count: 15)
                try out.withUnsafeMutableBytes { try stored.decode(into: $0.baseAddress!, as: .f32) }
                withExtendedLifetime(checkpoint) {}
            case "no fp8 quantization_config": (dir, _) = try fp8Checkpoint(native: nil)
            case "module kept unquantized":
                (dir, _) = try fp8Checkpoint(native: .fp8(FP8Quantization(blockRows: 2, blockColumns: 4, modulesToNotConvert: ["lm_head", "a"])))
            case "orphan scale":
                (dir, _) = try fp8Checkpoint(extra: [("b.weight_scale_inv", "F32", [1, 1], float32Bytes([1]))])
            case "scale of a float weight":
                (dir, _) = try fp8Checkpoint(extra: [("c.weight", "F32", [1, 1], float32Bytes([1])),
                                                     ("c.weight_scale_inv", "F32", [1, 1], float32Bytes([1]))])
            case "integer scales":
                let d = try scaledCheckpoint([("a.weight", "F8_E4M3", [3, 5], Self.fp8Bytes),
                                              ("a.weight_scale_inv", "I32", [2, 2], float32Bytes(Self.fp8Scales))])
                dir = d
                _ = try Checkpoint(directory: d.path, native: Self.block)
            default: Issue.record("no case \(c.0)")
            }
        }
        _ = dir
        let e = try #require(error, "\(c.0) was accepted")
        #expect(e.code == c.1, "\(c.0): \(e.message)")
        #expect(e.message.contains(c.2), "\(c.0): \(e.message)")
    }

    @Test("BF16 scales (some checkpoints store them so) are widened exactly")
    func bf16Scales() throws {
        let bf16: [UInt8] = Self.fp8Scales.flatMap { v -> [UInt8] in let b = UInt16(v.bitPattern >> 16); return [UInt8(b & 0xFF), UInt8(b >> 8)] }
        let dir = try scaledCheckpoint([("a.weight", "F8_E4M3", [3, 5], Self.fp8Bytes), ("a.weight_scale_inv", "BF16", [2, 2], bf16)])
        let checkpoint = try Checkpoint(directory: dir.path, native: Self.block)  // owns the converted values
        let w = try checkpoint.weight("a.weight", shape: [3, 5])
        #expect(w.data[14] == -2 * 10 && w.data[0] == 0.5 && w.data[2] == 0x1p-9 * 0.5)
    }

    // MARK: - MXFP4

    static let prefix = "model.layers.0.mlp.experts."
    static let (experts, hidden, width) = (3, 64, 32)

    func decodeBits(_ t: StoredTensor) throws -> [UInt16] {
        var out = [UInt16](repeating: 0xFFFF, count: t.count)
        try out.withUnsafeMutableBytes { try t.decode(into: $0.baseAddress!, as: .bf16) }
        return out
    }

    @Test("every expert's gate, up and down equal transformers' convert_moe_packed_tensors bit for bit")
    func mxfp4MatchesTransformers() throws {
        let checkpoint = try Checkpoint(directory: fixturesDirectory + "/mxfp4", native: .mxfp4(modulesToNotConvert: []))
        let (gateUpBytes, gateUpShape) = try fixtureTensor("mxfp4/reference.safetensors", "gate_up_proj")
        let (downBytes, downShape) = try fixtureTensor("mxfp4/reference.safetensors", "down_proj")
        let (e, h, i) = (Self.experts, Self.hidden, Self.width)
        #expect(gateUpShape == [e, h, 2 * i] && downShape == [e, i, h])
        func bf16(_ bytes: [UInt8], _ index: Int) -> UInt16 { UInt16(bytes[2 * index]) | UInt16(bytes[2 * index + 1]) << 8 }
        for x in 0..<e {
            let (gate, up, down) = try checkpoint.mxfp4Expert(Self.prefix, expert: x, experts: e, hidden: h, intermediate: i)
            #expect(gate.storage == .bf16 && gate.count == i * h && down.count == h * i)
            let g = try decodeBits(gate), u = try decodeBits(up), d = try decodeBits(down)
            // GptOssExperts: gate_up = x @ gate_up_proj[e] ([H] x [H, 2I]), gate = columns 0, 2, ..., up = 1, 3, ...;
            // out = act @ down_proj[e] ([I] x [I, H]). As [out, in] matrices: gate[r][c] = gate_up_proj[e][c][2r].
            var gateOK = true, upOK = true, downOK = true
            for r in 0..<i {
                for c in 0..<h {
                    gateOK = gateOK && g[r * h + c] == bf16(gateUpBytes, (x * h + c) * 2 * i + 2 * r)
                    upOK = upOK && u[r * h + c] == bf16(gateUpBytes, (x * h + c) * 2 * i + 2 * r + 1)
                }
            }
            for r in 0..<h {
                for c in 0..<i { downOK = downOK && d[r * i + c] == bf16(downBytes, (x * i + c) * h + r) }
            }
            #expect(gateOK && upOK && downOK, "expert \(x): gate \(gateOK), up \(upOK), down \(downOK)")
        }
        #expect(checkpoint.unusedTensors.isEmpty)
        #expect(checkpoint.storedFormat(of: Self.prefix + "down_proj_blocks") == "mxfp4")
    }

    /// A copy of the MXFP4 fixture with byte `index` of tensor `name` set to `value`, opened.
    func patchedMXFP4(_ patches: [(String, Int, UInt8)]) throws -> (TemporaryDirectory, Checkpoint) {
        let dir = try TemporaryDirectory.copy(of: "mxfp4")
        var bytes = try dir.readBytes("model.safetensors")
        let file = try SafetensorsFile(path: fixturesDirectory + "/mxfp4/model.safetensors")
        for (name, index, value) in patches { bytes[try #require(file.tensors[name]).offset + index] = value }
        try dir.write("model.safetensors", bytes)
        return (dir, try Checkpoint(directory: dir.path, native: .mxfp4(modulesToNotConvert: [])))
    }

    @Test("an e8m0 scale of 255 (NaN) and one that makes a value overflow are refused; so are wrong shapes and a missing config")
    func mxfp4Lies() throws {
        let (e, h, i) = (Self.experts, Self.hidden, Self.width)
        let groups = h / 32
        // Expert 1, source row 2 (its gate's row 1), block 1.
        let block = (1 * 2 * i + 2) * groups + 1
        let (d1, nan) = try patchedMXFP4([(Self.prefix + "gate_up_proj_scales", block, 255)])
        let nanError = moertError { _ = try decodeBits(try nan.mxfp4Expert(Self.prefix, expert: 1, experts: e, hidden: h, intermediate: i).gate) }
        #expect(nanError?.message.contains("the e8m0 scale of block 1 of row 1 is 255 (NaN)") == true, "\(String(describing: nanError))")
        // 6 × 2^(254 - 127) = 1.5 × 2^129 overflows float32 and bf16.
        let (d2, big) = try patchedMXFP4([(Self.prefix + "gate_up_proj_scales", block, 254),
                                          (Self.prefix + "gate_up_proj_blocks", block * 16, 0x77)])
        let bigError = moertError { _ = try decodeBits(try big.mxfp4Expert(Self.prefix, expert: 1, experts: e, hidden: h, intermediate: i).gate) }
        #expect(bigError?.message.contains("2^127, makes a value overflow") == true, "\(String(describing: bigError))")
        _ = (d1, d2)
        let checkpoint = try Checkpoint(directory: fixturesDirectory + "/mxfp4", native: .mxfp4(modulesToNotConvert: []))
        let shape = moertError { _ = try checkpoint.mxfp4Expert(Self.prefix, expert: 0, experts: e, hidden: h, intermediate: 2 * i) }
        #expect(shape?.message.contains("gate_up_proj_blocks in model.safetensors: expected U8 [3, 128, 2, 16], got U8 [3, 64, 2, 16]") == true, "\(String(describing: shape))")
        let partial = moertError { _ = try checkpoint.mxfp4Expert(Self.prefix, expert: 0, experts: e, hidden: h, intermediate: 40) }
        #expect(partial?.message.contains("whole blocks of 32") == true)
        let range = moertError { _ = try checkpoint.mxfp4Expert(Self.prefix, expert: 3, experts: e, hidden: h, intermediate: i) }
        #expect(range?.message.contains("expert 3 of 3") == true)
        let plain = try Checkpoint(directory: fixturesDirectory + "/mxfp4")
        let config = moertError { _ = try plain.mxfp4Expert(Self.prefix, expert: 0, experts: e, hidden: h, intermediate: i) }
        #expect(config?.code == .unsupported && config?.message.contains("quant_method \"mxfp4\"") == true)
    }
}
