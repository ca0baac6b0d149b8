// JSONTests: the strict config/header JSON parser.

import Testing
import MoertFormats
import MoertTensor
import MoertTestSupport

@Suite("JSON")
struct JSONTests {
    @Test("values, escapes and exact integers")
    func values() throws {
        let v = try JSON.parse(#"{"a": [1, -2.5e1, true, null, "x\u00e9\n"], "big": 9007199254740993}"#, what: "t")
        #expect(v.object?["a"]?.array == [.int(1), .double(-25), .bool(true), .null, .string("xé\n")])
        #expect(v.object?["big"]?.int == 9007199254740993)
    }

    @Test("malformed documents are refused", arguments: [
        "", "{", "[1,]", "{\"a\" 1}", "{\"a\":1}x", "\"\\q\"", "01x", "{\"a\":1,\"a\":2}", "\"\u{01}\"", "[" + String(repeating: "[", count: 100),
    ])
    func malformed(text: String) {
        #expect(moertError { _ = try JSON.parse(text, what: "t") }?.code == .format)
    }
}
