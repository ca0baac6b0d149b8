// UTF8Scalar: decoding and encoding single scalars of UTF-8 text that is already known to be valid.

/// Small UTF-8 helpers for text already known to be valid.
enum UTF8Scalar {
    /// The length of the sequence a lead byte starts (1 for anything that is not a multi-byte lead).
    @inline(__always)
    static func length(lead: UInt8) -> Int {
        if lead < 0xC0 { return 1 }
        if lead < 0xE0 { return 2 }
        if lead < 0xF0 { return 3 }
        return 4
    }

    /// The scalar starting at `i` in valid UTF-8 `text`, and its length.
    @inline(__always)
    static func decode(_ text: UnsafeRawBufferPointer, at i: Int) -> (scalar: UInt32, length: Int) {
        let b0 = UInt32(text[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(text[i + 1] & 0x3F), 2) }
        if b0 < 0xF0 {
            return ((b0 & 0x0F) << 12 | UInt32(text[i + 1] & 0x3F) << 6 | UInt32(text[i + 2] & 0x3F), 3)
        }
        return ((b0 & 0x07) << 18 | UInt32(text[i + 1] & 0x3F) << 12 | UInt32(text[i + 2] & 0x3F) << 6
                | UInt32(text[i + 3] & 0x3F), 4)
    }

    /// The scalar ending just before `end` in valid UTF-8 `text`, and its length.
    static func decode(_ text: UnsafeRawBufferPointer, before end: Int) -> (scalar: UInt32, length: Int) {
        var start = end - 1
        while start > 0 && text[start] & 0xC0 == 0x80 { start -= 1 }
        return decode(text, at: start)
    }

    /// Appends the UTF-8 of `scalar` to `out`.
    static func append(_ scalar: UInt32, to out: inout [UInt8]) {
        if scalar < 0x80 {
            out.append(UInt8(scalar))
        } else if scalar < 0x800 {
            out.append(UInt8(0xC0 | (scalar >> 6)))
            out.append(UInt8(0x80 | (scalar & 0x3F)))
        } else if scalar < 0x10000 {
            out.append(UInt8(0xE0 | (scalar >> 12)))
            out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (scalar & 0x3F)))
        } else {
            out.append(UInt8(0xF0 | (scalar >> 18)))
            out.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (scalar & 0x3F)))
        }
    }
}
