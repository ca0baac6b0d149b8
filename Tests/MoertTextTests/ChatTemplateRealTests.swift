// ChatTemplateRealTests: real chat templates render every conversation exactly as transformers' apply_chat_template.

import MoertFormats
import MoertTensor
import MoertTestSupport
@testable import MoertText
import Testing

@Suite("Chat templates of real models")
struct ChatTemplateRealTests {
    static let cases: [[String: JSON]] = (try? readJSONLines(chatFixtures + "/cases.jsonl")) ?? []
    static let names: [String] = Array(Set(cases.compactMap { $0["template"]?.string })).sorted()

    /// The template of a case: a file of templates/, or the one a config of command-r/ or qwen2/ picks.
    static func template(for c: [String: JSON]) throws -> ChatTemplate {
        let name = c["template"]?.string ?? ""
        if let config = c["config"]?.string {
            let tokenizer = try #require(try TokenizerConfig.read(directory: chatFixtures + "/" + config))
            let hasTools = c["variables"]?.string?.contains("\"tools\"") ?? false
            let source = try #require(tokenizer.chatTemplate(named: c["template_name"]?.string, withTools: hasTools))
            return try ChatTemplate(source: source)
        }
        return try ChatTemplate(source: try readTextFile(chatFixtures + "/templates/" + name + ".jinja"))
    }

    /// The special tokens of a case: those of its config, or those its family was rendered with.
    static func specialTokens(for c: [String: JSON]) throws -> [String: JSON] {
        if let config = c["config"]?.string {
            return try #require(try TokenizerConfig.read(directory: chatFixtures + "/" + config)).templateVariables
        }
        return (familyTokens[c["template"]?.string ?? ""] ?? [:]).mapValues { .string($0) }
    }

    @Test("the fixtures are present")
    func present() {
        #expect(Self.cases.count > 500)
        #expect(Self.names.count >= 20)
    }

    @Test("every conversation renders as transformers renders it", arguments: names)
    func renders(name: String) throws {
        for c in Self.cases where c["template"]?.string == name {
            let conversation = c["conversation"]?.string ?? "?"
            let template = try Self.template(for: c)
            let messages = try #require(c["messages"]?.string)
            let generation = c["add_generation_prompt"]?.bool ?? false
            let tokens = try Self.specialTokens(for: c)
            let variables = c["variables"]?.string ?? "{}"
            let label = "\(name) / \(conversation) / add_generation_prompt=\(generation)"
            switch try ChatExpectation(c) {
            case .rendered(let expected):
                let got = try? template.render(messagesJSON: messages, addGenerationPrompt: generation, variables: tokens, variablesJSON: variables,
                                               fixedTime: chatFixedTime)
                #expect(got == expected, "\(label)")
                if let got, got != expected { firstDifference(got, expected, label) }
            case .error(let type, let message):
                let e = moertError {
                    _ = try template.render(messagesJSON: messages, addGenerationPrompt: generation, variables: tokens, variablesJSON: variables,
                                            fixedTime: chatFixedTime)
                }
                #expect(e != nil, "\(label): expected \(type): \(message)")
                if type == "TemplateError" { #expect(e?.message == message, "\(label)") }
                if type == "UndefinedError" { #expect(e?.message.hasSuffix(message) == true, "\(label): \(e?.message ?? "")") }
            }
        }
    }

    /// The special tokens tools/make_chat_fixtures.py gave each template family (FAMILIES there).
    static let familyTokens: [String: [String: String]] = {
        guard let json = try? JSON.parse(try readTextFile(chatFixtures + "/templates/special_tokens.json"), what: "special_tokens.json"),
              let object = json.object else { return [:] }
        return object.mapValues { ($0.object ?? [:]).compactMapValues { $0.string } }
    }()

    @Test("the shared qwen2 chat cases render with their tokenizer_config.json")
    func sharedQwen2() throws {
        let config = try #require(try TokenizerConfig.read(directory: chatFixtures + "/qwen2"))
        let template = try ChatTemplate(source: try #require(config.chatTemplate()))
        let cases = try readJSONLines(chatFixtures + "/qwen2/chat_cases.jsonl")
        #expect(!cases.isEmpty)
        for c in cases {
            let messages = try #require(c["messages"]?.array)
            let rendered = try #require(c["rendered"]?.string)
            let got = try template.render(messages: messages, addGenerationPrompt: c["add_generation_prompt"]?.bool ?? false,
                                          variables: config.templateVariables)
            #expect(got == rendered)
        }
    }
}

/// A JSON string literal (as json.dumps writes it).
func jsonString(_ s: String) -> String {
    (try? JinjaValue.string(s).toJSON()) ?? s
}

/// Records where two renderings first differ.
func firstDifference(_ got: String, _ expected: String, _ label: String) {
    let g = Array(got.unicodeScalars), e = Array(expected.unicodeScalars)
    var i = 0
    while i < g.count && i < e.count && g[i] == e[i] { i += 1 }
    let context = { (s: [Unicode.Scalar]) in String(String.UnicodeScalarView(s[max(0, i - 40)..<min(s.count, i + 40)])) }
    Issue.record("\(label): first difference at \(i): got \(jsonString(context(g))) expected \(jsonString(context(e)))")
}
