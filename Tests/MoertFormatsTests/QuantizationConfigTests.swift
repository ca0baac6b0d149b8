// QuantizationConfigTests: config.json's quantization_config — fp8 and mxfp4 accepted with their keys checked, every
// other method or option refused naming the key; modules_to_not_convert matched as transformers matches it.

import Testing
import MoertFormats
import MoertTensor
import MoertTestSupport

@Suite("quantization_config")
struct QuantizationConfigTests {
    func parse(_ text: String) throws -> QuantizationConfig? {
        try QuantizationConfig.parse(try JSON.parse(text, what: "test"), source: "config.json")
    }

    @Test("fp8 with its block size and skip list; MiniMax's ignored_layers; mxfp4")
    func accepted() throws {
        let fp8 = try parse(#"{"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [16, 32], "modules_to_not_convert": ["lm_head"]}"#)
        #expect(fp8 == .fp8(FP8Quantization(blockRows: 16, blockColumns: 32, modulesToNotConvert: ["lm_head"])))
        let minimax = try parse(#"{"quant_method": "fp8", "fmt": "float8_e4m3fn", "activation_scheme": "dynamic", "weight_block_size": [128, 128], "ignored_layers": ["gate"]}"#)
        #expect(minimax?.modulesToNotConvert == ["gate"])
        let mxfp4 = try parse(#"{"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "lm_head"]}"#)
        #expect(mxfp4 == .mxfp4(modulesToNotConvert: ["model.layers.*.self_attn", "lm_head"]))
        #expect(try parse("null") == nil)
    }

    static let refused: [(String, String, MoertError.Code, String)] = [
        ("another method", #"{"quant_method": "gptq", "bits": 4}"#, .unsupported, "quant_method \"gptq\""),
        ("no method", #"{"weight_block_size": [128, 128]}"#, .format, "quant_method"),
        ("fmt e5m2", #"{"quant_method": "fp8", "fmt": "e5m2", "weight_block_size": [128, 128]}"#, .unsupported, "fmt"),
        ("static activations", #"{"quant_method": "fp8", "activation_scheme": "static", "weight_block_size": [128, 128]}"#, .unsupported, "activation_scheme"),
        ("no block size", #"{"quant_method": "fp8", "activation_scheme": "dynamic"}"#, .format, "weight_block_size"),
        ("per-tensor scales", #"{"quant_method": "fp8", "weight_block_size": null}"#, .format, "weight_block_size"),
        ("zero block", #"{"quant_method": "fp8", "weight_block_size": [0, 128]}"#, .format, "weight_block_size"),
        ("one number", #"{"quant_method": "fp8", "weight_block_size": [128]}"#, .format, "weight_block_size"),
        ("fractional block", #"{"quant_method": "fp8", "weight_block_size": [12.5, 128]}"#, .format, "weight_block_size"),
        ("e8m0 scales", #"{"quant_method": "fp8", "weight_block_size": [128, 128], "scale_fmt": "ue8m0"}"#, .unsupported, "scale_fmt"),
        ("fp4 experts", #"{"quant_method": "fp8", "weight_block_size": [128, 128], "expert_dtype": "fp4"}"#, .unsupported, "expert_dtype"),
        ("unknown key", #"{"quant_method": "fp8", "weight_block_size": [128, 128], "group_size": 64}"#, .unsupported, "group_size"),
        ("skip list not a list", #"{"quant_method": "fp8", "weight_block_size": [128, 128], "modules_to_not_convert": "lm_head"}"#, .format, "modules_to_not_convert"),
        ("mxfp4 with a block size", #"{"quant_method": "mxfp4", "weight_block_size": [1, 32]}"#, .unsupported, "weight_block_size"),
        ("not an object", #"["fp8"]"#, .format, "quantization_config"),
    ]

    @Test("refused, naming the key", arguments: refused)
    func refusedConfig(_ c: (String, String, MoertError.Code, String)) throws {
        let error = try #require(moertError { _ = try parse(c.1) }, "\(c.0)")
        #expect(error.code == c.2, "\(c.0): \(error.message)")
        #expect(error.message.contains(c.3), "\(c.0): \(error.message)")
        #expect(error.message.contains("quantization_config"), "\(c.0): \(error.message)")
    }

    @Test("ModelConfig accepts the FP8 fixture's config and refuses another method naming the key")
    func modelConfig() throws {
        let dir = try TemporaryDirectory.copy(of: "qwen3_moe_fp8")
        let (config, _) = try ModelConfig.read(directory: dir.path)
        #expect(config.quantization == .fp8(FP8Quantization(blockRows: 16, blockColumns: 32,
                                                            modulesToNotConvert: ["lm_head", "model.layers.0.mlp.gate", "model.layers.1.mlp.gate"])))
        try dir.editConfig { $0["quantization_config"] = ["quant_method": "awq", "bits": 4] }
        let error = try #require(moertError { _ = try ModelConfig.read(directory: dir.path) })
        #expect(error.code == .unsupported && error.message.contains("quantization_config.quant_method"))
    }

    /// (module, pattern, kept unquantized) as transformers 5.25's `should_convert_module` answers (negated).
    static let matches: [(String, String, Bool)] = [
        ("lm_head", "lm_head", true),
        ("model.layers.11.mlp", "model.layers.1", false),
        ("model.layers.1.mlp", "model.layers.1", true),
        ("model.layers.3.mlp.gate", "model.layers.*.mlp.gate", true),
        ("model.layers.3.mlp.gate_proj", "model.layers.*.mlp.gate", false),
        ("model.decoder.layers.23.fc1", "fc1", true),
        ("model.layers.0.self_attn.q_proj", "model.layers.*.self_attn", true),
        ("model.layers.0.mlp.experts.1.up_proj", "mlp.gate", false),
        ("model_layers_0_mlp", "model.layers.0.mlp", true),
        ("model.layers.0.mlp.gate", "layers.0.mlp", false),
        ("model.layers.0.self_attn.q_proj", "model.layers.0.", true),
        ("model.layers.10.self_attn.q_proj", #"model\.layers\.1\d"#, true),
    ]

    @Test("modules_to_not_convert matches as transformers' should_convert_module", arguments: matches)
    func moduleMatch(_ c: (String, String, Bool)) throws {
        #expect(try ModuleMatcher([c.1], source: "config.json").matches(c.0) == c.2, "\(c.0) against \(c.1)")
    }

    @Test("a pattern that is not a regular expression is refused")
    func badPattern() {
        let error = moertError { _ = try ModuleMatcher(["model.layers.(0"], source: "config.json") }
        #expect(error?.message.contains("modules_to_not_convert") == true)
    }
}
