// FuzzRegressionTests: every input the fuzzers of Tests/fuzz ever flagged, replayed through the same entry points.

import Foundation
import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport
import MoertText

/// Tests/fuzz/regressions: one file per finding, named `<target>-<kind>-<hash>` (target: safetensors, config,
/// loader, tokenizer, jinja or kernels, as in tools/fuzz.sh).
let fuzzRegressionsDirectory = fixturesDirectory + "/../fuzz/regressions"

/// The committed inputs, sorted by name.
let fuzzRegressionInputs: [String] = {
    ((try? FileManager.default.contentsOfDirectory(atPath: fuzzRegressionsDirectory)) ?? []).sorted()
}()

/// What an input does when replayed: parsed or loaded without error, or refused with a MoertError.
enum ReplayOutcome: Equatable {
    case accepted
    case refused(MoertError.Code)
}

/// Replays `bytes` through the entry points of fuzz target `target` (see Tests/fuzz/Fuzz*.swift).
func replay(target: String, _ bytes: [UInt8]) throws -> ReplayOutcome {
    do {
        switch target {
        case "safetensors":
            let dir = try TemporaryDirectory()
            try dir.write("input.safetensors", bytes)
            _ = try SafetensorsFile(path: dir.path + "/input.safetensors")
        case "config":
            let json = try bytes.withUnsafeBytes { try JSON.parse($0, what: "config.json") }
            _ = try ModelConfig(json: json, source: "config.json")
            _ = try MoESection(json: json.object?["moert"] ?? json, source: "moert.json")
        case "tokenizer":
            try replayTokenizer(bytes)
        case "loader":
            let dir = try TemporaryDirectory()
            let parts = split(bytes, separator: Array("\n#moert-fuzz-file#\n".utf8), limit: 3)
            for (part, name) in zip(parts, ["config.json", "model.safetensors", "moert.json"]) { try dir.write(name, part) }
            var options = ModelLoadOptions()
            options.maxContext = 8
            // moert quantize on the same directory, to the type the last byte picks; its output must load (as the
            // target does; the outcome stays the loader's)
            let types: [WeightStorage] = [.q8_0, .q4_0, .q4_k, .q3_0]
            let out = try TemporaryDirectory()
            do {
                try Quantizer(directory: dir.path, options: QuantizeOptions(type: types[Int(bytes.last ?? 0) % types.count]))
                    .write(to: out.path, overwrite: true) { _, _, _ in }
                _ = try allLogits(try Session(model: try Model(path: out.path, options: options)), [0])
            } catch is MoertError {}
            let model = try Model(path: dir.path, options: options)
            let vocab = model.config.vocabSize
            _ = try allLogits(try Session(model: model), [0, Int32(min(1, vocab - 1))])
        case "jinja":
            try replayJinja(bytes)
        case "kernels":
            let text = String(decoding: bytes, as: UTF8.self)
            let entries = KernelCache.parse(text)
            #expect(KernelCache.parse(KernelCache.format(entries)) == entries, "the cache file's round trip")
            var settings = KernelSettings()
            try settings.force(text) { $0.kernels }
        default:
            Issue.record("\(target): not a fuzz target")
        }
        return .accepted
    } catch let e as MoertError {
        return .refused(e.code)
    }
}

/// A chat template, optionally followed by a JSON array of messages (Tests/fuzz/FuzzJinja.swift): parsed, then
/// rendered with those messages, or with a short conversation when they are absent or refused.
func replayJinja(_ bytes: [UInt8]) throws {
    let parts = split(bytes, separator: Array("\n#moert-fuzz-messages#\n".utf8), limit: 2)
    let template = try ChatTemplate(source: String(decoding: parts[0], as: UTF8.self))
    let conversation = #"[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]"#
    for generationPrompt in [false, true] {
        if parts.count == 2, (try? template.render(messagesJSON: String(decoding: parts[1], as: UTF8.self),
                                                   addGenerationPrompt: generationPrompt, variablesJSON: nil,
                                                   fixedTime: 0, maxSteps: 200_000)) != nil {
            continue
        }
        _ = try template.render(messagesJSON: conversation, addGenerationPrompt: generationPrompt, variablesJSON: nil,
                                fixedTime: 0, maxSteps: 200_000)
    }
}

/// `bytes` cut at each occurrence of `separator`, into at most `limit` parts.
func split(_ bytes: [UInt8], separator: [UInt8], limit: Int) -> [[UInt8]] {
    var parts: [[UInt8]] = []
    var start = 0, i = 0
    while i + separator.count <= bytes.count && parts.count < limit - 1 {
        if Array(bytes[i..<i + separator.count]) == separator {
            parts.append(Array(bytes[start..<i]))
            i += separator.count
            start = i
        } else {
            i += 1
        }
    }
    parts.append(Array(bytes[start...]))
    return parts
}

@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    /// Outcomes that were checked by hand when each input was committed; an input not listed here must at least
    /// not crash (the test process would die).
    static let expected: [String: ReplayOutcome] = [
        // Invalid JSON in the header (0xFF bytes where data_offsets should be). Flagged as a 12-second timeout while
        // the machine was saturated; replaying it and 20,000 mutations of it takes under a second.
        "safetensors-timeout-13319285": .refused(.format),
        // Carriage returns inside and at the end of a cache line: the file's round trip changed the fields (a CR
        // before the added line feed made one CRLF character); fields now read a CR as a space. Not a valid
        // MOERT_KERNELS value.
        "kernels-crlf-round-trip": .refused(.invalidArgument),
    ]

    @Test("every committed fuzz finding is refused with a MoertError or accepted, never a crash",
          arguments: fuzzRegressionInputs)
    func replayInput(name: String) throws {
        let target = String(name.prefix { $0 != "-" })
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fuzzRegressionsDirectory + "/" + name)))
        let outcome = try replay(target: target, bytes)
        if let want = Self.expected[name] { #expect(outcome == want, "\(name)") }
    }

    @Test("the regression directory is not empty")
    func present() {
        #expect(!fuzzRegressionInputs.isEmpty)
    }

    @Test("the seed corpora replay without a crash, and the shrunken models load and evaluate")
    func seeds() throws {
        let corpus = fixturesDirectory + "/../fuzz/corpus"
        for target in ["safetensors", "config", "loader", "jinja", "kernels"] {
            for name in try FileManager.default.contentsOfDirectory(atPath: corpus + "/" + target).sorted() {
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: corpus + "/" + target + "/" + name)))
                let outcome = try replay(target: target, bytes)
                if target == "loader" { #expect(outcome == .accepted, "loader seed \(name)") }
            }
        }
    }
}
