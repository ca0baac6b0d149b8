// ChatJinjaSemanticsTests: small templates probing Jinja semantics render as in transformers' Jinja2 environment.

import MoertFormats
import MoertTensor
import MoertTestSupport
@testable import MoertText
import Testing

@Suite("Jinja semantics")
struct ChatJinjaSemanticsTests {
    static let cases: [[String: JSON]] = (try? readJSONLines(chatFixtures + "/jinja_cases.jsonl")) ?? []
    static let names: [String] = cases.compactMap { $0["name"]?.string }

    /// Python exception types whose message moert reproduces word for word (after its "chat template line N: ").
    static let sameMessage: Set<String> = ["TemplateError", "UndefinedError", "SecurityError", "TemplateRuntimeError",
                                           "TemplateAssertionError"]

    @Test("every probe renders or fails as in Jinja2", arguments: names)
    func probe(name: String) throws {
        let c = try #require(Self.cases.first { $0["name"]?.string == name })
        let source = try #require(c["template"]?.string)
        let variables = try #require(c["variables"]?.string)
        switch try ChatExpectation(c) {
        case .rendered(let expected):
            let template = try ChatTemplate(source: source)
            let got = try template.render(variablesJSON: variables, fixedTime: chatFixedTime)
            #expect(got == expected)
            if got != expected { firstDifference(got, expected, name) }
        case .error(let type, let message):
            let e = moertError { _ = try ChatTemplate(source: source).render(variablesJSON: variables, fixedTime: chatFixedTime) }
            #expect(e != nil, "expected \(type): \(message)")
            if type == "TemplateError" { #expect(e?.message == message) }
            if Self.sameMessage.contains(type) || type == "TypeError" || type == "ValueError" || type == "ZeroDivisionError" {
                #expect(e?.message.hasSuffix(message) == true, "\(e?.message ?? "no error") vs \(message)")
            }
        }
    }

    @Test("the probes are present")
    func present() {
        #expect(Self.cases.count >= 60)
    }
}
