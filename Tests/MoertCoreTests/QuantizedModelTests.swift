// QuantizedModelTests: checkpoints with q8_0/q4_0/q4_k weights against llama.cpp's quantizer (q3_0: a numpy
// transcription of its definition) and transformers (fixtures of tools/make_quant_fixtures.py), moert quantize against the same bytes,
// and bad quantized files.

import CKernels
import Foundation
import Testing
@testable import MoertCore
import MoertFormats
import MoertTensor
import MoertTestSupport

@Suite("Quantized weights")
struct QuantizedModelTests {
    /// (source fixture, type): each `<source>_<type>` fixture was quantized by libggml (q3_0 by numpy).
    static let fixtures: [(String, WeightStorage)] = [("mixtral", .q8_0), ("mixtral", .q4_0), ("qwen2_moe", .q4_0), ("qwen3_moe", .q8_0),
                                                      ("mixtral", .q3_0)]
    /// The fixtures with transformers' logits: also mixtral_q4_k, whose float32 source (rows of 256, made by the
    /// fixture script from a seed) is not kept; the quantizer's q4_k bytes are checked block by block instead
    /// (QuantKernelTests.matchesGGML).
    static let parityFixtures = fixtures + [("mixtral", .q4_k)]

    /// The fixture's tokens and transformers' logits over them, computed with the dequantized weights.
    func reference(_ name: String) throws -> (tokens: [Int32], logits: [Float]) {
        let (t, _) = try fixtureTensor(name + "/reference.safetensors", "tokens")
        let tokens = t.withUnsafeBytes { b in (0..<t.count / 4).map { b.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self) } }
        return (tokens, try fixtureFloats(name + "/reference.safetensors", "logits"))
    }

    @Test("prefill matches transformers on the dequantized weights; decode within the 8-bit activation's rounding",
          arguments: parityFixtures)
    func parity(source: String, type: WeightStorage) throws {
        let name = "\(source)_\(type.rawValue)"
        let model = try Model(path: fixturesDirectory + "/" + name)
        let (tokens, expected) = try reference(name)
        let vocab = model.config.vocabSize
        // Prefill: products of several rows read the weights back to float32, as transformers sees them. An expert
        // that receives one token of the chunk takes the GEMV with its 8-bit activation, hence more than float32
        // rounding. q4_0 and q3_0 weights on the avx2 GEMM (and on avx512 with VNNI) meet 8-bit activations in
        // every product, as at decode (and in llama.cpp): decode's bound.
        let prefill = try allLogits(try Session(model: model), tokens)
        let integerPrefill = KernelProduct.multipliesInIntegers(type, kernel: KernelProduct.gemm(type).chosen)
        #expect(relativeError(prefill[...], expected[...]) <= (integerPrefill ? 3e-2 : 2e-3), "\(name) prefill")
        // Decode: four tokens of prefill, then one token at a time through the quantized GEMV.
        let session = try Session(model: model)
        _ = try lastLogits(session, Array(tokens[..<4]))
        for t in 4..<tokens.count {
            let logits = try lastLogits(session, [tokens[t]])
            let row = expected[(t * vocab)..<((t + 1) * vocab)]
            #expect(relativeError(logits[...], row) <= 3e-2, "\(name) decode position \(t)")
        }
    }

    @Test("moert quantize writes the fixture's bytes (llama.cpp's quantizer; q3_0: numpy's) and quantization entry", arguments: fixtures)
    func quantizerMatchesGGML(source: String, type: WeightStorage) throws {
        let out = try TemporaryDirectory()
        let q = try Quantizer(directory: fixturesDirectory + "/" + source, options: QuantizeOptions(type: type))
        try q.write(to: out.path, overwrite: true) { _, _, _ in }
        let written = try Checkpoint(directory: out.path)
        let expected = try SafetensorsFile(path: fixturesDirectory + "/\(source)_\(type.rawValue)/model.safetensors")
        #expect(Set(written.tensorNames) == Set(expected.tensors.keys))
        for name in written.tensorNames {
            let (info, file) = try written.info(name)
            let e = try #require(expected.tensors[name])
            #expect(info.dtype == e.dtype && info.shape == e.shape, "\(name)")
            let a = UnsafeRawBufferPointer(start: file.data(info), count: info.byteCount)
            let b = UnsafeRawBufferPointer(start: expected.data(e), count: e.byteCount)
            #expect(a.elementsEqual(b), "\(name) bytes")
        }
        let config = try JSON.parse(try out.read("config.json"), what: "config.json")
        let section = try MoESection(json: try #require(config.object?["moert"]), source: "out")
        let fixtureConfig = try JSON.parse(try String(contentsOfFile: fixturesDirectory + "/\(source)_\(type.rawValue)/config.json", encoding: .utf8), what: "fixture")
        let fixtureSection = try MoESection(json: try #require(fixtureConfig.object?["moert"]), source: "fixture")
        #expect(section.quantization?.tensors == fixtureSection.quantization?.tensors)
        // Everything else of config.json is kept.
        var rest = config.object!, fixtureRest = fixtureConfig.object!
        rest["moert"] = nil
        fixtureRest["moert"] = nil
        #expect(JSON.object(rest) == JSON.object(fixtureRest))
    }

    @Test("a q8_0 copy of every tiny fixture keeps the float32 model's next token at 90% of positions or more",
          arguments: fixtureNames.filter { !$0.hasSuffix("_fp8") && !$0.hasSuffix("_mxfp4") })
    func topOneAgreement(fixture: String) throws {
        let out = try TemporaryDirectory()
        try Quantizer(directory: fixturesDirectory + "/" + fixture, options: QuantizeOptions(type: .q8_0))
            .write(to: out.path, overwrite: true) { _, _, _ in }
        var rng = TestRandom(seed: 21)
        let full = try Model(path: fixturesDirectory + "/" + fixture), quantized = try Model(path: out.path)
        // 256 positions (or the fixture's whole context): at 64, one flipped near-tie moves the share by 1.6 points.
        // With 8-bit activations in the prefill GEMM (q8_0 on avx512 with VNNI) 93-97% agree, 94-99% without.
        let tokens = (0..<min(256, full.config.maxPositionEmbeddings)).map { _ in Int32(rng.next() % UInt64(full.config.vocabSize)) }
        let a = try allLogits(try Session(model: full), tokens), b = try allLogits(try Session(model: quantized), tokens)
        let vocab = full.config.vocabSize
        func argmax(_ l: [Float], _ t: Int) -> Int { (0..<vocab).max { l[t * vocab + $0] < l[t * vocab + $1] }! }
        let agree = (0..<tokens.count).filter { argmax(a, $0) == argmax(b, $0) }.count
        #expect(Double(agree) >= 0.9 * Double(tokens.count), "\(fixture): \(agree) of \(tokens.count)")
    }

    @Test("a checkpoint stored as FP8 is refused with a message naming quantization_config")
    func refusesNativeQuantization() throws {
        let out = try TemporaryDirectory()
        let error = try #require(throws: MoertError.self) {
            try Quantizer(directory: fixturesDirectory + "/qwen3_moe_fp8", options: QuantizeOptions(type: .q8_0))
                .write(to: out.path, overwrite: true) { _, _, _ in }
        }
        #expect(error.message.contains("quantization_config"))
    }

    @Test("the residency budget counts quantized bytes and changes nothing")
    func budget() throws {
        let path = fixturesDirectory + "/mixtral_q4_0"
        let (tokens, _) = try reference("mixtral_q4_0")
        let full = try Model(path: path)
        let expected = try allLogits(try Session(model: full), tokens)
        // 4 experts x 2 layers, each [2 x 32 x 64] + [64 x 32] values at 18 bytes per 32.
        #expect(full.experts.totalBytes == 8 * WeightStorage.q4_0.bytes(3 * 32 * 64))
        var options = ModelLoadOptions()
        options.expertBudget = .fraction(0.5)
        let limited = try Model(path: path, options: options)
        #expect(try allLogits(try Session(model: limited), tokens) == expected)
        #expect(limited.experts.statistics.evictions > 0)
    }

    /// Every tensor of a safetensors file: dtype, shape, bytes.
    static func tensors(_ path: String) throws -> [String: (TensorDType, [Int], [UInt8])] {
        let file = try SafetensorsFile(path: path)
        var tensors: [String: (TensorDType, [Int], [UInt8])] = [:]
        for (name, info) in file.tensors {
            tensors[name] = (info.dtype, info.shape, Array(UnsafeRawBufferPointer(start: file.data(info), count: info.byteCount)))
        }
        return tensors
    }

    /// Writes `tensors` as the safetensors file `path`, in name order.
    static func write(_ tensors: [String: (TensorDType, [Int], [UInt8])], to path: String) throws {
        let names = tensors.keys.sorted()
        let writer = try SafetensorsWriter(path: path, entries: names.map { .init(name: $0, dtype: tensors[$0]!.0, shape: tensors[$0]!.1) })
        for n in names { try tensors[n]!.2.withUnsafeBytes { try writer.append($0) } }
        try writer.finish()
    }

    /// A copy of the mixtral_q8_0 fixture whose model.safetensors is rewritten by `edit` (name → bytes) and whose
    /// quantization entry by `entry`.
    func brokenCopy(of fixture: String = "mixtral_q8_0", edit: (inout [String: (TensorDType, [Int], [UInt8])]) -> Void = { _ in },
                    entry: (inout [String: Any]) -> Void = { _ in }) throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory.copy(of: fixture)
        var tensors = try Self.tensors(dir.path + "/model.safetensors")
        edit(&tensors)
        try Self.write(tensors, to: dir.path + "/model.safetensors")
        try dir.editConfig { config in
            var moert = config["moert"] as! [String: Any]
            var q = moert["quantization"] as! [String: Any]
            entry(&q)
            moert["quantization"] = q
            config["moert"] = moert
        }
        return dir
    }

    @Test("bad quantized files give a clear load error naming the tensor")
    func badFiles() throws {
        let q = "model.layers.0.self_attn.q_proj.weight"
        // A byte length that does not match the shape and type.
        var dir = try brokenCopy(edit: { t in t[q]!.1 = [128, 68]; t[q]!.2 = [UInt8](repeating: 0, count: 128 * 68) })
        var e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .format && e!.message.contains(q) && e!.message.contains("[128, 68]"), "\(String(describing: e))")
        // An unknown type.
        dir = try brokenCopy(entry: { e in var t = e["tensors"] as! [String: Any]; t[q] = "q3_k"; e["tensors"] = t })
        e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .unsupported && e!.message.contains(q) && e!.message.contains("q3_k"), "\(String(describing: e))")
        // A NaN scale in a matrix read at load, and in a routed expert (found when it is first materialised).
        for (name, atLoad) in [(q, true), ("model.layers.1.block_sparse_moe.experts.2.w2.weight", false)] {
            dir = try brokenCopy(edit: { t in t[name]!.2[34 * 3] = 0x00; t[name]!.2[34 * 3 + 1] = 0x7e })
            e = moertError {
                let model = try Model(path: dir.path)
                #expect(!atLoad, "the load should have failed")
                let session = try Session(model: model)
                _ = try allLogits(session, (0..<32).map { Int32($0 * 7 % 256) })
            }
            #expect(e?.code == .format && e!.message.contains(name) && e!.message.contains("block 3"), "\(String(describing: e))")
        }
        // q4_k: a NaN d or dmin of a super-block, at load and in a routed expert; a tensor named q4_k whose bytes are
        // not whole super-blocks of 144 (q8_0's [64, 68]).
        for (name, atLoad) in [(q, true), ("model.layers.0.block_sparse_moe.experts.2.w2.weight", false)] {
            for half in [0, 2] {
                dir = try brokenCopy(of: "mixtral_q4_k", edit: { t in t[name]!.2[144 + half] = 0x00; t[name]!.2[144 + half + 1] = 0x7c })
                e = moertError {
                    let model = try Model(path: dir.path)
                    #expect(!atLoad, "the load should have failed")
                    _ = try allLogits(try Session(model: model), (0..<32).map { Int32($0 * 7 % 256) })
                }
                #expect(e?.code == .format && e!.message.contains(name) && e!.message.contains("block 1")
                        && e!.message.contains("d or dmin"), "\(String(describing: e))")
            }
        }
        dir = try brokenCopy(entry: { e in var t = e["tensors"] as! [String: Any]; t[q] = "q4_k"; e["tensors"] = t })
        e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .format && e!.message.contains(q) && e!.message.contains("144"), "\(String(describing: e))")
        // An entry naming a tensor the files do not hold, and a U8 tensor the entry does not name.
        dir = try brokenCopy(entry: { e in var t = e["tensors"] as! [String: Any]; t["model.layers.0.nothing.weight"] = "q8_0"; e["tensors"] = t })
        e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .format && e!.message.contains("model.layers.0.nothing.weight"), "\(String(describing: e))")
        dir = try brokenCopy(entry: { e in var t = e["tensors"] as! [String: Any]; t[q] = nil; e["tensors"] = t })
        e = moertError { _ = try Model(path: dir.path) }
        #expect(e?.code == .unsupported && e!.message.contains("quantization entry"), "\(String(describing: e))")
    }

    @Test("moert quantize refuses weights that are not finite or too large for the type")
    func quantizerRefuses() throws {
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        let tensors = try Self.tensors(dir.path + "/model.safetensors")
        let name = "model.layers.0.self_attn.k_proj.weight"
        for (value, message) in [(Float.nan, "must be finite"), (Float(1e7), "too large for q8_0")] {
            var edited = tensors
            withUnsafeBytes(of: value) { edited[name]!.2.replaceSubrange(40..<44, with: $0) }
            try Self.write(edited, to: dir.path + "/model.safetensors")
            let out = try TemporaryDirectory()
            let e = moertError {
                try Quantizer(directory: dir.path, options: QuantizeOptions(type: .q8_0)).write(to: out.path, overwrite: true) { _, _, _ in }
            }
            #expect(e?.code == .format && e!.message.contains(name) && e!.message.contains(message), "\(String(describing: e))")
            #expect(!FileManager.default.fileExists(atPath: out.path + "/model.safetensors"), "no half-written checkpoint")
        }
    }

    @Test("a row wider than the quantizer's chunk of values is converted in pieces (it overflowed the chunk once)")
    func wideRow() throws {
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        var tensors = try Self.tensors(dir.path + "/model.safetensors")
        // One attention tensor of a single row of 2^20 + 2^11 values (the chunk is 2^20), values in [-1, 1).
        let name = "model.layers.0.self_attn.x_proj.weight", columns = (1 << 20) + (1 << 11)
        var rng = TestRandom(seed: 9)
        let wide = (0..<columns).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
        tensors[name] = (.f32, [1, columns], wide.withUnsafeBytes { Array($0) })
        try Self.write(tensors, to: dir.path + "/model.safetensors")
        for type in [WeightStorage.q8_0, .q4_k, .f16] {
            let out = try TemporaryDirectory()
            try Quantizer(directory: dir.path, options: QuantizeOptions(type: type)).write(to: out.path, overwrite: true) { _, _, _ in }
            let written = try SafetensorsFile(path: out.path + "/model.safetensors")
            let info = try #require(written.tensors[name])
            // The whole row at once, by the kernels directly.
            var expected = [UInt8](repeating: 0, count: type.bytes(columns))
            if type.isQuantized {
                moert_quantize(type.kernelType, wide, &expected, Int64(columns))
            } else {
                for (i, v) in wide.enumerated() { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { expected.replaceSubrange(2 * i..<2 * i + 2, with: $0) } }
            }
            #expect(Array(UnsafeRawBufferPointer(start: written.data(info), count: info.byteCount)) == expected, "\(type)")
        }
    }
}

@Suite("Per-expert bits")
struct ExpertBitsTests {
    @Test("bits go first where they remove the most expected error: equal use gets equal types, the most used more, unused experts the fewest")
    func plan() throws {
        var usage = ExpertUsage()
        usage.mass = [0: [0.5, 3.0, 1.0, 2.0], 3: [4.0, 0.0, 0.0, 1.0]]
        usage.counts = [0: [1, 6, 2, 5], 3: [8, 0, 1, 2]]
        // 4.0 bits: the four experts with the most mass leave q3_0 for q4_0 (a tie of mass and count: layer order).
        let four = try ExpertBitPlan(usage: usage, averageBits: 4.0)
        #expect(four.types[0] == [.q3_0, .q4_0, .q4_0, .q4_0] && four.types[3] == [.q4_0, .q3_0, .q3_0, .q3_0])
        #expect(four.averageBits == 4.0)
        // 6.5 bits: every used expert reaches q4_0, then the most used go on to q8_0 before the unused leave q3_0;
        // the last 2 bits of the budget lift the unused ones to q4_0 rather than a fifth expert to q8_0 (which
        // would overshoot to 6.75).
        let high = try ExpertBitPlan(usage: usage, averageBits: 6.5)
        #expect(high.types[0] == [.q4_0, .q8_0, .q8_0, .q8_0] && high.types[3] == [.q8_0, .q4_0, .q4_0, .q4_0])
        #expect(high.averageBits == 6.5)
        #expect(try ExpertBitPlan(usage: usage, averageBits: 3.5).types[0] == [.q3_0, .q3_0, .q3_0, .q3_0])
        #expect(try ExpertBitPlan(usage: usage, averageBits: 8.5).types[3] == [.q8_0, .q8_0, .q8_0, .q8_0])
        for bad in [3.0, 9.0, Double.nan] {
            #expect(moertError { _ = try ExpertBitPlan(usage: usage, averageBits: bad) }?.code == .invalidArgument, "\(bad)")
        }

        // Equal use at q4_0's size: uniform q4_0 (a 4-bit step up costs what four 1-bit steps down save, and
        // removes less error). One expert with 13 times the others' weight: q8_0 for it, paid for by q3_0 for four.
        var even = ExpertUsage()
        even.mass = [1: [Double](repeating: 1, count: 8)]
        #expect(try ExpertBitPlan(usage: even, averageBits: 4.5).types[1] == [WeightStorage](repeating: .q4_0, count: 8))
        even.mass[1]![0] = 13
        let skewed = try ExpertBitPlan(usage: even, averageBits: 4.5)
        #expect(skewed.types[1] == [.q8_0, .q4_0, .q4_0, .q4_0, .q3_0, .q3_0, .q3_0, .q3_0] && skewed.averageBits == 4.5)
    }

    @Test("--tensor-type rules: the first that matches a name decides, before per-expert plans and classes; a rule that matches nothing, a missing '=', an unknown type or a broken pattern is an error")
    func rules() throws {
        let source = fixturesDirectory + "/mixtral"
        var options = QuantizeOptions(type: .q4_0)
        options.rules = [try TensorTypeRule("layers\\.0\\..*experts\\.1\\.=q8_0"), try TensorTypeRule("experts=q3_0")]
        options.tensors = ["model.layers.1.block_sparse_moe.experts.0.w1.weight": .q8_0]  // a rule comes first
        let plan = try Quantizer(directory: source, options: options).plan
        for p in plan.tensors {
            let expected: WeightStorage? = switch p.cls {
            case .experts: p.name.contains("layers.0.block_sparse_moe.experts.1.") ? .q8_0 : .q3_0
            case .attention: .q4_0
            case .output: .q8_0
            default: p.source
            }
            #expect(p.target == expected, "\(p.name)")
        }
        options.rules.append(try TensorTypeRule("no_such_tensor=q8_0"))
        #expect(moertError { _ = try Quantizer(directory: source, options: options) }?.message.contains("no_such_tensor") == true)
        for bad in ["experts", "=q8_0", "experts=q9_9", "(experts=q8_0"] {
            #expect(moertError { _ = try TensorTypeRule(bad) }?.code == .invalidArgument, "\(bad)")
        }
    }

    @Test("usage counts every routing decision: top-k per token and layer, the same counts as the session's counters")
    func usage() throws {
        let model = try Model(path: fixturesDirectory + "/qwen2_moe")
        var rng = TestRandom(seed: 9)
        let tokens = (0..<300).map { _ in Int32(rng.next() % 256) }
        let usage = try ExpertUsage.measure(model: model, tokens: tokens, window: 128)
        #expect(usage.tokens == 300)
        let session = try Session(model: model)
        for start in stride(from: 0, to: 300, by: 128) {
            session.reset()
            let chunk = Array(tokens[start..<min(300, start + 128)])
            try chunk.withUnsafeBufferPointer { try session.evaluate($0, mode: .none, logits: nil, capacity: 0) }
        }
        let counted = session.expertCounts
        for (m, block) in model.moeBlocks.enumerated() {
            let layer = block.layer.layer
            #expect(usage.counts[layer]!.reduce(0, +) == 300 * model.config.numExpertsPerTok)
            #expect(usage.counts[layer]! == (0..<counted.experts).map { Int(counted.counts[m * counted.experts + $0]) })
            #expect(usage.mass[layer]!.allSatisfy { $0 >= 0 })
        }
    }

    @Test("q4_k where rows are whole super-blocks; q4_0 instead where they are only whole blocks of 32, with the rest of the routed expert; kept where neither")
    func q4kFallback() throws {
        let dir = try TemporaryDirectory()
        let e = "model.layers.0.block_sparse_moe.experts."
        // Expert 0: gate and up [288, 256] fit q4_k, down [256, 288] only q4_0. Expert 1: every projection [256, 256].
        // Attention: q [256, 256] fits q4_k, o [256, 96] only q4_0, k [16, 40] neither.
        let shapes: [(String, [Int])] = [
            (e + "0.w1.weight", [288, 256]), (e + "0.w2.weight", [256, 288]), (e + "0.w3.weight", [288, 256]),
            (e + "1.w1.weight", [256, 256]), (e + "1.w2.weight", [256, 256]), (e + "1.w3.weight", [256, 256]),
            ("model.layers.0.self_attn.q_proj.weight", [256, 256]), ("model.layers.0.self_attn.o_proj.weight", [256, 96]),
            ("model.layers.0.self_attn.k_proj.weight", [16, 40]),
        ]
        let writer = try SafetensorsWriter(path: dir.path + "/model.safetensors",
                                           entries: shapes.map { .init(name: $0.0, dtype: .f32, shape: $0.1) })
        for (_, shape) in shapes { try [Float](repeating: 0.5, count: shape[0] * shape[1]).withUnsafeBytes { try writer.append($0) } }
        try writer.finish()
        let plan = try QuantizePlan(checkpoint: try Checkpoint(directory: dir.path), options: QuantizeOptions(type: .q4_k))
        let target = Dictionary(uniqueKeysWithValues: plan.tensors.map { ($0.name, $0.target) })
        for p in ["w1", "w2", "w3"] {
            #expect(target[e + "0.\(p).weight"] == .q4_0, "expert 0 \(p)")
            #expect(target[e + "1.\(p).weight"] == .q4_k, "expert 1 \(p)")
        }
        #expect(target["model.layers.0.self_attn.q_proj.weight"] == .q4_k)
        #expect(target["model.layers.0.self_attn.o_proj.weight"] == .q4_0)
        #expect(target["model.layers.0.self_attn.k_proj.weight"] == .f32)
        let reasons = plan.tensors.compactMap(\.fallback).joined(separator: "\n")
        #expect(reasons.contains("288 columns are not whole blocks of 256: q4_0 instead of q4_k"), "\(reasons)")
        #expect(reasons.contains("q4_0 with the rest of layer 0 expert 0"), "\(reasons)")
        // A per-expert plan's q4_0 becomes q4_k where the expert's rows allow it; other types stay.
        var bits = try ExpertBitPlan(usage: ExpertUsage(tokens: 1, counts: [0: [1, 1, 1]], mass: [0: [1, 1, 1]]),
                                     averageBits: 4.5)
        bits.types = [0: [.q4_0, .q4_0, .q8_0]]
        #expect(try bits.preferringQ4K(try Checkpoint(directory: dir.path)).types[0] == [.q4_0, .q4_k, .q8_0])
    }

    @Test("a mixed checkpoint stores each expert at its planned type and loads")
    func mixedCheckpoint() throws {
        let source = fixturesDirectory + "/mixtral"
        let model = try Model(path: source)
        var rng = TestRandom(seed: 4)
        let usage = try ExpertUsage.measure(model: model, tokens: (0..<200).map { _ in Int32(rng.next() % 256) }, window: 64)
        let plan = try ExpertBitPlan(usage: usage, averageBits: 6.5)
        var options = QuantizeOptions(type: .q4_0)
        options.tensors = plan.tensorTypes(model.checkpoint)
        #expect(options.tensors.count == 2 * 4 * 3)
        let out = try TemporaryDirectory()
        try Quantizer(directory: source, options: options).write(to: out.path, overwrite: true) { _, _, _ in }
        let mixed = try Model(path: out.path)
        for (layer, types) in plan.types {
            for (e, type) in types.enumerated() {
                #expect(mixed.checkpoint.storage(of: "model.layers.\(layer).block_sparse_moe.experts.\(e).w2.weight") == type)
            }
        }
        let planned = plan.types.values.joined().reduce(0) { $0 + $1.bytes(3 * 32 * 64) }
        #expect(Set(plan.types.values.joined()).count > 1, "a mixed plan")
        #expect(mixed.experts.totalBytes == planned)
        _ = try allLogits(try Session(model: mixed), [1, 2, 3])
    }
}
