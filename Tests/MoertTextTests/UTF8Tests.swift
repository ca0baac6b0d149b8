// UTF8Tests: invalid UTF-8 in text is refused at the offset of the first bad byte, as a strict decoder finds it.

import MoertTensor
import MoertTestSupport
@testable import MoertText
import Testing

@Suite("UTF-8 input")
struct UTF8Tests {
    /// Bytes and the offset of their first invalid byte (the count when valid): the cases of the Unicode
    /// standard's table 3-7 boundaries and the usual offenders.
    static let cases: [([UInt8], Int)] = [
        ([], 0), (Array("héllo €😀".utf8), Array("héllo €😀".utf8).count),
        ([0x61, 0x80], 1),                    // a lone continuation byte
        ([0xC0, 0xAF], 0), ([0xC1, 0xBF], 0), // overlong two-byte forms
        ([0xE0, 0x80, 0xAF], 0),              // overlong three-byte form
        ([0xED, 0xA0, 0x80], 0),              // a surrogate
        ([0xF0, 0x8F, 0xBF, 0xBF], 0),        // overlong four-byte form
        ([0xF4, 0x90, 0x80, 0x80], 0),        // above U+10FFFF
        ([0xF5, 0x80, 0x80, 0x80], 0), ([0xFF], 0),
        ([0x61, 0x62, 0xE2, 0x82], 2),        // truncated at the end
        ([0xE2, 0x28, 0xA1], 0),              // a bad second byte
        ([0xF0, 0x9F, 0x98, 0x80, 0xF0, 0x9F, 0x98], 4),
    ]

    @Test("the first invalid byte is found where Swift's strict decoding fails", arguments: cases.indices)
    func offsets(index: Int) {
        let (bytes, expected) = Self.cases[index]
        bytes.withUnsafeBytes { raw in
            #expect(UTF8Text.firstInvalidOffset(raw) == expected)
            #expect((String(validating: raw, as: UTF8.self) != nil) == (expected == bytes.count))
            let e = moertError { _ = try UTF8Text.decode(raw, what: "text") }
            if expected == bytes.count {
                #expect(e == nil)
            } else {
                #expect(e?.code == .invalidArgument && e?.message == "text: invalid UTF-8 at byte \(expected)")
            }
        }
    }
}
