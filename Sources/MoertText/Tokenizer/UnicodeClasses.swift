// UnicodeClasses: the character classes tokenizers' Rust code tests with `char` methods and `regex` classes.

/// Predicates on scalars with the meaning they have in tokenizers' Rust code, from the Unicode properties the Swift
/// standard library carries (no tables of our own). ASCII is answered without a property lookup.
enum UnicodeClasses {
    /// Rust's `char::is_whitespace` and the `regex` crate's `\s`: the White_Space property.
    @inline(__always)
    static func isWhitespace(_ s: UInt32) -> Bool {
        if s < 0x80 { return s == 0x20 || (s >= 0x09 && s <= 0x0D) }
        return Unicode.Scalar(s)?.properties.isWhitespace ?? false
    }

    /// The `regex` crate's Unicode `\w` (UTS #18 word characters): Alphabetic, marks, decimal digits, connector
    /// punctuation and Join_Control. Used by the Whitespace pre-tokenizer and by `single_word` added tokens.
    static func isWord(_ s: UInt32) -> Bool {
        if s < 0x80 {
            return (s >= 0x30 && s <= 0x39) || (s >= 0x41 && s <= 0x5A) || (s >= 0x61 && s <= 0x7A) || s == 0x5F
        }
        guard let p = Unicode.Scalar(s)?.properties else { return false }
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    /// Rust's `char::is_numeric`: general categories Nd, Nl and No (the Digits pre-tokenizer).
    static func isNumeric(_ s: UInt32) -> Bool {
        if s < 0x80 { return s >= 0x30 && s <= 0x39 }
        guard let p = Unicode.Scalar(s)?.properties else { return false }
        switch p.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// The Punctuation pre-tokenizer's `is_punc`: ASCII punctuation (symbols such as `$` and `+` included) or a
    /// character of a Unicode punctuation category (Pc, Pd, Ps, Pe, Pi, Pf, Po).
    static func isPunctuation(_ s: UInt32) -> Bool {
        if s < 0x80 {
            return (s >= 0x21 && s <= 0x2F) || (s >= 0x3A && s <= 0x40) || (s >= 0x5B && s <= 0x60)
                || (s >= 0x7B && s <= 0x7E)
        }
        guard let p = Unicode.Scalar(s)?.properties else { return false }
        switch p.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
             .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }
}
