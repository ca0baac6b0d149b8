// UTF8: checks that text arriving as bytes is valid UTF-8, naming the first bad byte.

import MoertTensor

/// Text from bytes that must be valid UTF-8.
package enum UTF8Text {
    /// The bytes as a String.
    /// - Throws: `MoertError` (`.invalidArgument`) naming `what` and the byte offset of the first byte that does not
    ///   start or continue a valid UTF-8 sequence (overlong forms, surrogates and values above U+10FFFF included).
    package static func decode(_ bytes: UnsafeRawBufferPointer, what: String) throws -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        throw MoertError.invalid("\(what): invalid UTF-8 at byte \(firstInvalidOffset(bytes))")
    }

    /// The offset of the first byte where `bytes` stops being valid UTF-8 (bytes.count when it is valid).
    package static func firstInvalidOffset(_ bytes: UnsafeRawBufferPointer) -> Int {
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            let length: Int, low: UInt8, high: UInt8
            switch b {
            case 0x00...0x7F: i += 1; continue
            case 0xC2...0xDF: length = 2; low = 0x80; high = 0xBF
            case 0xE0: length = 3; low = 0xA0; high = 0xBF        // no overlong forms
            case 0xE1...0xEC, 0xEE...0xEF: length = 3; low = 0x80; high = 0xBF
            case 0xED: length = 3; low = 0x80; high = 0x9F        // no surrogates
            case 0xF0: length = 4; low = 0x90; high = 0xBF        // no overlong forms
            case 0xF1...0xF3: length = 4; low = 0x80; high = 0xBF
            case 0xF4: length = 4; low = 0x80; high = 0x8F        // nothing above U+10FFFF
            default: return i
            }
            guard i + 1 < n, bytes[i + 1] >= low, bytes[i + 1] <= high else { return i }
            for k in 2..<length {
                guard i + k < n, bytes[i + k] >= 0x80, bytes[i + k] <= 0xBF else { return i }
            }
            i += length
        }
        return n
    }
}
