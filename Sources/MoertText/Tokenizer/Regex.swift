// Regex: a PCRE2 pattern compiled once with its JIT, and tokenizers' way of walking its matches through a text.

import CPCRE2
#if canImport(Glibc)
import Glibc
#endif
import MoertTensor

/// A compiled split or replace pattern of tokenizer.json.
///
/// tokenizers runs these patterns with Oniguruma (`utils/onig.rs`, Ruby syntax). PCRE2 implements the same dialect
/// for everything the real patterns use (`\p{L}`, `\p{N}`, `\p{M}`, `\p{P}`, `\s`, `(?i:…)`, `(?!\S)`), matches on
/// UTF-8 bytes without building Strings, and its JIT makes the split of a megabyte of text take a few milliseconds;
/// Swift's `Regex` works on grapheme clusters by default and is far slower. Options: `PCRE2_UTF | PCRE2_UCP` so
/// that classes are Unicode-aware, and `PCRE2_MULTILINE` because `^` and `$` are line anchors in Ruby syntax.
/// The shorthands whose meaning differs (`\s`, `\w`, `\h`) are rewritten first (`OnigurumaSyntax`).
final class Regex: @unchecked Sendable {
    /// The pattern as written in the file.
    let pattern: String
    private let code: OpaquePointer
    /// A non-empty literal pattern's bytes: searched with `memchr` and `memcmp`, which find the same non-overlapping matches
    /// left to right without entering PCRE2 (Llama's normalizer and decoder replace " " and "▁" this way).
    private let literalBytes: [UInt8]?

    /// Compiles `pattern`; `literal` matches it as plain text (tokenizers escapes a `String` pattern).
    /// - Throws: `.format` naming `what`, the pattern and PCRE2's message and offset.
    init(_ pattern: String, literal: Bool, what: String) throws {
        self.pattern = pattern
        literalBytes = literal && !pattern.isEmpty ? Array(pattern.utf8) : nil
        // PCRE2_LITERAL takes no class or anchor options.
        let options = literal ? UInt32(PCRE2_UTF | PCRE2_LITERAL) : UInt32(PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE)
        var errorCode: Int32 = 0
        var errorOffset = 0
        var text = literal ? pattern : OnigurumaSyntax.translate(pattern)
        let compiled = text.withUTF8 { p in
            pcre2_compile_8(p.baseAddress ?? UnsafePointer(bitPattern: 1), p.count, options, &errorCode, &errorOffset, nil)
        }
        guard let compiled else {
            throw MoertError.format("\(what): cannot compile the pattern \(Self.quoted(pattern)) at offset \(errorOffset): \(Self.message(errorCode))")
        }
        code = compiled
        // A pattern the JIT cannot take still runs, interpreted.
        _ = pcre2_jit_compile_8(code, UInt32(PCRE2_JIT_COMPLETE))
    }

    deinit { pcre2_code_free_8(code) }

    /// Calls `body(start, end)` for each match in `text`, as the `onig` crate's `find_iter` yields them: searches
    /// resume at the end of the last match, and an empty match right where the previous match ended is skipped by
    /// moving one character on.
    /// - Throws: `.unsupported` when PCRE2 gives up (its match or depth limit, reached only by runaway backtracking).
    func forEachMatch(in text: UnsafeRawBufferPointer, scratch: RegexScratch,
                      _ body: (_ start: Int, _ end: Int) throws -> Void) throws {
        guard let base = text.baseAddress?.assumingMemoryBound(to: UInt8.self), !text.isEmpty else { return }
        let n = text.count
        if let literal = literalBytes {
            var i = 0
            try literal.withUnsafeBytes { lit in
                while i + lit.count <= n {
                    guard let found = memchr(base + i, Int32(lit[0]), n - lit.count + 1 - i) else { return }
                    let s = UnsafeRawPointer(found) - UnsafeRawPointer(base)
                    if memcmp(base + s, lit.baseAddress!, lit.count) == 0 {
                        try body(s, s + lit.count)
                        i = s + lit.count
                    } else {
                        i = s + 1
                    }
                }
            }
            return
        }
        var lastEnd = 0
        var lastMatchEnd = -1
        let ovector = pcre2_get_ovector_pointer_8(scratch.matchData)!
        while lastEnd <= n {
            // PCRE2_NO_UTF_CHECK: the text was checked once on entry, and lastEnd always falls on a character start.
            let rc = pcre2_match_8(code, base, n, lastEnd, UInt32(PCRE2_NO_UTF_CHECK), scratch.matchData, scratch.context)
            if rc == PCRE2_ERROR_NOMATCH { return }
            if rc < 0 {
                throw MoertError.unsupported("the pattern \(Self.quoted(pattern)) gave up on the input: \(Self.message(rc))")
            }
            let s = ovector[0], e = ovector[1]
            if s == e && lastMatchEnd == e {
                if lastEnd >= n { return }
                lastEnd += UTF8Scalar.length(lead: text[lastEnd])
                continue
            }
            lastEnd = e
            lastMatchEnd = e
            try body(s, e)
        }
    }

    /// The pattern in quotes, cut to 200 characters for messages.
    static func quoted(_ pattern: String) -> String {
        pattern.count > 200 ? "\"\(pattern.prefix(200))…\"" : "\"\(pattern)\""
    }

    /// PCRE2's text for an error code.
    static func message(_ code: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBufferPointer { pcre2_get_error_message_8(code, $0.baseAddress, 256) }
        return n > 0 ? String(decoding: buffer[0..<Int(n)], as: UTF8.self) : "PCRE2 error \(code)"
    }
}

/// The per-call state of matching: PCRE2 match data, a match context with limits, and a JIT stack. One encode call
/// makes one and uses it for every pattern, so matches allocate nothing.
final class RegexScratch {
    let matchData: OpaquePointer
    let context: OpaquePointer
    private let stack: OpaquePointer?

    init() {
        // One pair of offsets is all that is read; PCRE2 returns 0 ("ovector too small") for patterns with groups
        // and still fills the first pair.
        matchData = pcre2_match_data_create_8(1, nil)!
        context = pcre2_match_context_create_8(nil)!
        // The JIT's default 32 KiB stack on the machine stack runs out on long whitespace runs under `\s+(?!\S)`;
        // a private stack may grow to 8 MiB.
        stack = pcre2_jit_stack_create_8(64 << 10, 8 << 20, nil)
        if let stack { pcre2_jit_stack_assign_8(context, nil, UnsafeMutableRawPointer(stack)) }
        // Bounds on backtracking, so that a hostile pattern fails instead of running for hours.
        pcre2_set_match_limit_8(context, 50_000_000)
        pcre2_set_depth_limit_8(context, 1_000_000)
    }

    deinit {
        pcre2_match_data_free_8(matchData)
        pcre2_match_context_free_8(context)
        if let stack { pcre2_jit_stack_free_8(stack) }
    }
}
