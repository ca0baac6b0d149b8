// ByteLevelAlphabet: GPT-2's map of the 256 byte values to printable characters, and the `<0xXX>` fallback names.

/// The byte-to-unicode map of GPT-2's `encoder.py` (`bytes_to_unicode`), which tokenizers' ByteLevel pre-tokenizer
/// and decoder use (`pre_tokenizers/byte_level.rs`, `bytes_char`): printable Latin-1 bytes stand for themselves, the
/// other 68 take the code points from U+0100 up, in byte order.
enum ByteLevelAlphabet {
    /// The code point of each byte value.
    static let scalars: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// The UTF-8 of each byte value's character, 1 or 2 bytes, packed for a direct copy.
    private static let encoded: [[UInt8]] = scalars.map { Array(String(Character(Unicode.Scalar($0)!)).utf8) }

    /// The UTF-8 bytes of `byte`'s character.
    @inline(__always)
    static func utf8(of byte: UInt8) -> [UInt8] { encoded[Int(byte)] }

    /// The length in UTF-8 of `byte`'s character.
    @inline(__always)
    static func utf8Length(of byte: UInt8) -> Int { scalars[Int(byte)] < 0x80 ? 1 : 2 }

    /// Appends the UTF-8 of `byte`'s character to `out`.
    @inline(__always)
    static func append(_ byte: UInt8, to out: inout [UInt8]) {
        let s = scalars[Int(byte)]
        if s < 0x80 {
            out.append(UInt8(s))
        } else {
            out.append(UInt8(0xC0 | (s >> 6)))
            out.append(UInt8(0x80 | (s & 0x3F)))
        }
    }

    /// The byte each mapped character stands for, by code point (0..<0x144); -1 for the others.
    static let byteOfScalar: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in scalars.enumerated() { table[Int(s)] = Int16(b) }
        return table
    }()

    /// `<0xXX>`: the name of a byte's token under `byte_fallback`, as tokenizers formats it (`<{b:#04X}>`).
    static func fallbackName(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        return String(decoding: [UInt8(ascii: "<"), UInt8(ascii: "0"), UInt8(ascii: "x"),
                                 digits[Int(byte >> 4)], digits[Int(byte & 15)], UInt8(ascii: ">")], as: UTF8.self)
    }
}
