// Normalizer: tokenizers' normalizers (NFC, NFKC, NFD, NFKD, Lowercase, Strip, Prepend, Replace, Sequence) on bytes.

import CUtf8proc
#if canImport(Glibc)
import Glibc
#endif
import MoertTensor

/// One normalizer of tokenizer.json; a `Sequence` is flattened into a list of these.
enum NormalizerStep {
    /// Unicode normalization forms (`normalizers/unicode.rs`), done by utf8proc.
    case nfc, nfkc, nfd, nfkd
    /// Rust's `char::to_lowercase` on every character (`NormalizedString::lowercase`).
    case lowercase
    /// Removes White_Space characters at the start and/or end (`normalizers/strip.rs`).
    case strip(left: Bool, right: Bool)
    /// Puts the text in front of a non-empty string (`normalizers/prepend.rs`).
    case prepend([UInt8])
    /// Replaces every match of the pattern with the content (`normalizers/replace.rs`).
    case replace(Regex, [UInt8])
}

/// Text on its way through the normalizers, with how much of its start still lies at offset 0 of the input.
///
/// tokenizers keeps an alignment for every byte; ids depend on it only through Metaspace's `prepend_scheme:
/// "first"`, which asks whether a piece starts at offset 0 of the original text. `zero` is the number of leading
/// bytes whose original offset is 0 (0 when the text does not start there): what a later split needs to tell.
struct NormalizingText {
    var bytes: [UInt8]
    var zero: Int
}

extension NormalizerStep {
    /// Applies this step to `text`.
    func apply(_ text: inout NormalizingText, regex: RegexScratch) throws {
        switch self {
        case .nfc: try Self.utf8proc(&text, options: UTF8PROC_STABLE.rawValue | UTF8PROC_COMPOSE.rawValue)
        case .nfkc:
            try Self.utf8proc(&text, options: UTF8PROC_STABLE.rawValue | UTF8PROC_COMPOSE.rawValue | UTF8PROC_COMPAT.rawValue)
        case .nfd: try Self.utf8proc(&text, options: UTF8PROC_STABLE.rawValue | UTF8PROC_DECOMPOSE.rawValue)
        case .nfkd:
            try Self.utf8proc(&text, options: UTF8PROC_STABLE.rawValue | UTF8PROC_DECOMPOSE.rawValue | UTF8PROC_COMPAT.rawValue)
        case .lowercase: Self.lowercase(&text)
        case .strip(let left, let right): Self.strip(&text, left: left, right: right)
        case .prepend(let prefix):
            if text.bytes.isEmpty { return }
            text.bytes.insert(contentsOf: prefix, at: 0)
            // The prepended characters take the alignment of the first character.
            if text.zero > 0 { text.zero += prefix.count }
        case .replace(let pattern, let content):
            try Self.replace(&text, pattern: pattern, content: content, regex: regex)
        }
    }

    /// A normalization form through `utf8proc_map` (no `UTF8PROC_NULLTERM`: the text may hold NUL characters).
    /// ASCII text is left as it is, which every form would do.
    private static func utf8proc(_ text: inout NormalizingText, options: UInt32) throws {
        if !text.bytes.contains(where: { $0 >= 0x80 }) { return }
        var result: UnsafeMutablePointer<utf8proc_uint8_t>? = nil
        let n = text.bytes.withUnsafeBufferPointer {
            utf8proc_map($0.baseAddress, utf8proc_ssize_t($0.count), &result, utf8proc_option_t(options))
        }
        defer { free(result) }
        guard n >= 0, let result else {
            throw MoertError(.outOfMemory, "normalizer: utf8proc failed: \(String(cString: utf8proc_errmsg(n)))")
        }
        let output = Array(UnsafeBufferPointer(start: result, count: Int(n)))
        if text.zero > 0 && !output.isEmpty {
            // The characters the first one becomes keep its alignment (ﬁ → fi under NFKC: both at offset 0), as
            // does a character it composes into (e + U+0301 → é under NFC); a character that composes with a later
            // mark does not (ﬁ + U+0301 → f í: only f stays at 0, as tokenizers aligns them). So: what the output
            // shares with the first character normalized alone, and at least the output's first character.
            var alone: UnsafeMutablePointer<utf8proc_uint8_t>? = nil
            let first = UTF8Scalar.length(lead: text.bytes[0])
            let m = text.bytes.withUnsafeBufferPointer {
                utf8proc_map($0.baseAddress, utf8proc_ssize_t(first), &alone, utf8proc_option_t(options))
            }
            var common = 0
            if m > 0, let alone {
                while common < min(Int(m), output.count) && alone[common] == output[common] { common += 1 }
                while common < output.count && common > 0 && output[common] & 0xC0 == 0x80 { common -= 1 }
            }
            free(alone)
            text.zero = max(UTF8Scalar.length(lead: output[0]), common)
        } else if output.isEmpty {
            text.zero = 0
        }
        text.bytes = output
    }

    private static func lowercase(_ text: inout NormalizingText) {
        var out: [UInt8] = []
        out.reserveCapacity(text.bytes.count)
        var zero = text.zero
        text.bytes.withUnsafeBytes { raw in
            var i = 0
            while i < raw.count {
                // The characters one becomes all keep its alignment: the run at offset 0 covers what the characters
                // starting in it become (İ → i + U+0307).
                if i == text.zero { zero = out.count }
                let b = raw[i]
                if b < 0x80 {
                    out.append(b >= 0x41 && b <= 0x5A ? b + 0x20 : b)
                    i += 1
                    continue
                }
                let (s, length) = UTF8Scalar.decode(raw, at: i)
                if let scalar = Unicode.Scalar(s) {
                    out.append(contentsOf: scalar.properties.lowercaseMapping.utf8)
                } else {
                    out.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[i..<i + length]))
                }
                i += length
            }
        }
        text.zero = text.zero >= text.bytes.count ? out.count : zero
        text.bytes = out
    }

    private static func strip(_ text: inout NormalizingText, left: Bool, right: Bool) {
        var start = 0, end = text.bytes.count
        text.bytes.withUnsafeBytes { raw in
            if left {
                while start < end {
                    let (s, length) = UTF8Scalar.decode(raw, at: start)
                    if !UnicodeClasses.isWhitespace(s) { break }
                    start += length
                }
            }
            if right {
                while end > start {
                    let (s, length) = UTF8Scalar.decode(raw, before: end)
                    if !UnicodeClasses.isWhitespace(s) { break }
                    end -= length
                }
            }
        }
        if start > 0 { text.zero = 0 }
        if start > 0 || end < text.bytes.count { text.bytes = Array(text.bytes[start..<end]) }
        text.zero = min(text.zero, text.bytes.count)
    }

    /// tokenizers' `NormalizedString::replace`: matches found as the pattern's `find_matches` finds them; inserted
    /// content takes the alignment of the last byte of the match (offset 0 for an empty match at the start).
    private static func replace(_ text: inout NormalizingText, pattern: Regex, content: [UInt8],
                                regex: RegexScratch) throws {
        if text.bytes.isEmpty { return }
        var out: [UInt8] = []
        out.reserveCapacity(text.bytes.count)
        var last = 0
        var zero = -1  // output length where the run of offset-0 bytes ended; -1 while it goes on
        let oldZero = text.zero
        try text.bytes.withUnsafeBytes { raw in
            try pattern.forEachMatch(in: raw, scratch: regex) { s, e in
                Self.copyTracking(raw, last, s, oldZero, &out, &zero)
                let contentIsZero = e == 0 || e - 1 < oldZero
                if !contentIsZero && zero < 0 { zero = out.count }
                out.append(contentsOf: content)
                last = e
            }
            Self.copyTracking(raw, last, raw.count, oldZero, &out, &zero)
        }
        text.zero = zero < 0 ? out.count : zero
        text.bytes = out
    }

    private static func copyTracking(_ raw: UnsafeRawBufferPointer, _ from: Int, _ to: Int, _ oldZero: Int,
                                     _ out: inout [UInt8], _ zero: inout Int) {
        if from >= to { return }
        if zero < 0 && to > oldZero { zero = out.count + max(0, oldZero - from) }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[from..<to]))
    }
}
