// Decoder: tokenizers' decoders (ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, Sequence) on token texts.

/// One decoder of tokenizer.json; a `Sequence` is flattened into a list of these. Each turns the list of token
/// texts into a new list (tokenizers' `decode_chain`); the texts are then joined.
enum DecoderStep {
    /// `pre_tokenizers/byte_level.rs`: every character back to its byte (a token with a character outside the map
    /// stays as it is), all tokens joined into one text, invalid UTF-8 replaced.
    case byteLevel
    /// `decoders/byte_fallback.rs`: runs of `<0xXX>` tokens become their bytes, or one U+FFFD per byte when
    /// those bytes are not valid UTF-8.
    case byteFallback
    /// `decoders/fuse.rs`: all tokens joined into one.
    case fuse
    /// `decoders/strip.rs`: up to `start` leading and `stop` trailing `content` characters removed from each token.
    case strip(content: UInt32, start: Int, stop: Int)
    /// `normalizers/replace.rs` as a decoder: every match of the pattern in each token replaced by the content.
    case replace(Regex, [UInt8])
    /// `pre_tokenizers/metaspace.rs` as a decoder: the replacement character becomes a space, and disappears from
    /// the first token unless the scheme is `never`.
    case metaspace(replacement: UInt32, scheme: PrependScheme)
}

/// U+FFFD as UTF-8.
let replacementCharacter: [UInt8] = [0xEF, 0xBF, 0xBD]

extension DecoderStep {
    /// Rewrites `tokens` (each valid UTF-8).
    func apply(_ tokens: inout [[UInt8]], regex: RegexScratch) throws {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens { Self.unmapBytes(token, into: &bytes) }
            tokens = [Array(String(decoding: bytes, as: UTF8.self).utf8)]
        case .byteFallback:
            tokens = Self.byteFallback(tokens)
        case .fuse:
            tokens = [Array(tokens.joined())]
        case .strip(let content, let start, let stop):
            tokens = tokens.map { Self.strip($0, content: content, start: start, stop: stop) }
        case .replace(let pattern, let content):
            tokens = try tokens.map { token in
                var out: [UInt8] = []
                var last = 0
                try token.withUnsafeBytes { raw in
                    try pattern.forEachMatch(in: raw, scratch: regex) { s, e in
                        out.append(contentsOf: raw[last..<s])
                        out.append(contentsOf: content)
                        last = e
                    }
                }
                out.append(contentsOf: token[last...])
                return out
            }
        case .metaspace(let replacement, let scheme):
            for index in tokens.indices {
                var out: [UInt8] = []
                tokens[index].withUnsafeBytes { raw in
                    var i = 0
                    while i < raw.count {
                        let (s, length) = UTF8Scalar.decode(raw, at: i)
                        if s == replacement {
                            if !(index == 0 && scheme != .never) { out.append(0x20) }
                        } else {
                            out.append(contentsOf: raw[i..<i + length])
                        }
                        i += length
                    }
                }
                tokens[index] = out
            }
        }
    }

    /// Appends the bytes `token` stands for in GPT-2's map, or `token` itself when one of its characters is not
    /// in the map.
    static func unmapBytes(_ token: [UInt8], into out: inout [UInt8]) {
        let mark = out.count
        let mapped = token.withUnsafeBytes { raw -> Bool in
            var i = 0
            while i < raw.count {
                let (s, length) = UTF8Scalar.decode(raw, at: i)
                guard s < 0x144, case let b = ByteLevelAlphabet.byteOfScalar[Int(s)], b >= 0 else { return false }
                out.append(UInt8(b))
                i += length
            }
            return true
        }
        if !mapped {
            out.removeSubrange(mark...)
            out.append(contentsOf: token)
        }
    }

    /// The byte of a `<0xXX>` token: six bytes, `<0x`, two characters Rust's `u8::from_str_radix(_, 16)` takes
    /// (hex digits, or `+` and one digit), `>`.
    static func fallbackByte(_ token: [UInt8]) -> UInt8? {
        guard token.count == 6, token[0] == 0x3C, token[1] == 0x30, token[2] == 0x78, token[5] == 0x3E else {
            return nil
        }
        func digit(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        if token[3] == 0x2B { return digit(token[4]) }
        guard let hi = digit(token[3]), let lo = digit(token[4]) else { return nil }
        return hi << 4 | lo
    }

    private static func byteFallback(_ tokens: [[UInt8]]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        out.reserveCapacity(tokens.count)
        var pending: [UInt8] = []
        func flush() {
            if pending.isEmpty { return }
            if String(validating: pending, as: UTF8.self) != nil {
                out.append(pending)
            } else {
                for _ in pending { out.append(replacementCharacter) }
            }
            pending.removeAll()
        }
        for token in tokens {
            if let b = fallbackByte(token) {
                pending.append(b)
            } else {
                flush()
                out.append(token)
            }
        }
        flush()
        return out
    }

    /// Strip: counts characters as tokenizers does, and never cuts past the other end (tokenizers would panic).
    private static func strip(_ token: [UInt8], content: UInt32, start: Int, stop: Int) -> [UInt8] {
        var scalars: [(UInt32, Int, Int)] = []  // scalar, byte start, byte end
        token.withUnsafeBytes { raw in
            var i = 0
            while i < raw.count {
                let (s, length) = UTF8Scalar.decode(raw, at: i)
                scalars.append((s, i, i + length))
                i += length
            }
        }
        var startCut = 0
        for (i, c) in scalars.enumerated().prefix(start) {
            if c.0 != content { break }
            startCut = i + 1
        }
        var stopCut = scalars.count
        for i in 0..<min(stop, scalars.count) {
            let index = scalars.count - i - 1
            if scalars[index].0 != content { break }
            stopCut = index
        }
        if stopCut <= startCut { return [] }
        return Array(token[scalars[startCut].1..<scalars[stopCut - 1].2])
    }
}
