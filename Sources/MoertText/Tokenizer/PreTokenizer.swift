// PreTokenizer: tokenizers' pre-tokenizers (Split, ByteLevel, Metaspace, Digits, Punctuation, Whitespace, ...).

/// When Metaspace puts its replacement character in front of a piece (`PrependScheme`).
enum PrependScheme: String {
    /// Only on a piece that starts at offset 0 of the input.
    case first
    /// Never.
    case never
    /// On every piece that does not already start with it.
    case always
}

/// One pre-tokenizer of tokenizer.json; a `Sequence` is flattened into a list of these.
enum PreTokenizerStep {
    /// `pre_tokenizers/split.rs`: split on the matches of a pattern (inverted: on what lies between them).
    case split(Regex, SplitBehavior, invert: Bool)
    /// `pre_tokenizers/byte_level.rs`: optional leading space, optional GPT-2 split, then GPT-2's byte map.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    /// `pre_tokenizers/metaspace.rs`: spaces become the replacement character, prepended by the scheme, then
    /// split before each replacement character.
    case metaspace(replacement: [UInt8], scheme: PrependScheme, split: Bool)
    /// `pre_tokenizers/digits.rs`: numeric characters apart from the rest, each alone or in runs.
    case digits(individual: Bool)
    /// `pre_tokenizers/punctuation.rs`.
    case punctuation(SplitBehavior)
    /// `pre_tokenizers/whitespace.rs` `Whitespace`: words (`\w+`) and runs of other non-space characters.
    case whitespace
    /// `WhitespaceSplit`: split on White_Space, dropping it.
    case whitespaceSplit
}

/// GPT-2's split pattern, which ByteLevel uses when `use_regex` is true (`pre_tokenizers/byte_level.rs`, `RE`).
let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

extension PreTokenizerStep {
    /// Rewrites `pieces` through this step, using `spare` as the next list.
    func apply(_ pieces: inout Pieces, spare: inout Pieces, gpt2: Regex, regex: RegexScratch) throws {
        if case .byteLevel = self {} else { pieces.materializeByteMap() }
        spare.removeAll()
        switch self {
        case .split(let pattern, let behavior, let invert):
            spare.bytes = pieces.bytes
            for i in 0..<pieces.count {
                let splits = try pieces.withPiece(i) { try Self.regexSplits($0, pattern, regex) }
                spare.split(pieces, i, invert ? splits.map { ($0.start, $0.end, !$0.match) } : splits, behavior)
            }
        case .byteLevel(let addPrefixSpace, let useRegex):
            var source = pieces
            if addPrefixSpace {
                source = Pieces()
                for i in 0..<pieces.count {
                    let lead = pieces.leads[i]
                    pieces.withPiece(i) { p in
                        if p.first == 0x20 {
                            source.append(p, lead: lead)
                        } else {
                            // The prepended space takes the alignment of the first character.
                            let spaced = [UInt8(0x20)] + Array(p)
                            spaced.withUnsafeBytes { source.append($0, lead: lead > 0 ? lead + 1 : lead) }
                        }
                    }
                }
            }
            if useRegex {
                spare.bytes = source.bytes
                for i in 0..<source.count {
                    let splits = try source.withPiece(i) { try Self.regexSplits($0, gpt2, regex) }
                    spare.split(source, i, splits, .isolated)
                }
            } else {
                spare = source
            }
            spare.byteMapped = true
        case .metaspace(let replacement, let scheme, let split):
            try Self.metaspace(pieces, into: &spare, replacement: replacement, scheme: scheme, split: split)
        case .digits(let individual):
            spare.bytes = pieces.bytes
            for i in 0..<pieces.count {
                let splits = pieces.withPiece(i) { Self.charSplits($0, UnicodeClasses.isNumeric) }
                spare.split(pieces, i, splits, individual ? .isolated : .contiguous)
            }
        case .punctuation(let behavior):
            spare.bytes = pieces.bytes
            for i in 0..<pieces.count {
                let splits = pieces.withPiece(i) { Self.charSplits($0, UnicodeClasses.isPunctuation) }
                spare.split(pieces, i, splits, behavior)
            }
        case .whitespace:
            spare.bytes = pieces.bytes
            for i in 0..<pieces.count {
                let splits = pieces.withPiece(i) { Self.wordSplits($0) }
                spare.split(pieces, i, splits, .removed)
            }
        case .whitespaceSplit:
            spare.bytes = pieces.bytes
            for i in 0..<pieces.count {
                let splits = pieces.withPiece(i) { Self.charSplits($0, UnicodeClasses.isWhitespace) }
                spare.split(pieces, i, splits, .removed)
            }
        }
        swap(&pieces, &spare)
    }

    // MARK: - Patterns (tokenizer/pattern.rs)

    /// A regex's `find_matches`: the gaps between matches (not matches) and the matches, empty ones included.
    static func regexSplits(_ text: UnsafeRawBufferPointer, _ pattern: Regex,
                            _ regex: RegexScratch) throws -> [(start: Int, end: Int, match: Bool)] {
        var splits: [(start: Int, end: Int, match: Bool)] = []
        var previous = 0
        try pattern.forEachMatch(in: text, scratch: regex) { s, e in
            if previous != s { splits.append((previous, s, false)) }
            splits.append((s, e, true))
            previous = e
        }
        if previous != text.count { splits.append((previous, text.count, false)) }
        return splits
    }

    /// A character predicate's `find_matches`: every matching character is a match of its own.
    static func charSplits(_ text: UnsafeRawBufferPointer,
                           _ predicate: (UInt32) -> Bool) -> [(start: Int, end: Int, match: Bool)] {
        var splits: [(start: Int, end: Int, match: Bool)] = []
        var last = 0, i = 0
        while i < text.count {
            let (s, length) = UTF8Scalar.decode(text, at: i)
            if predicate(s) {
                if last < i { splits.append((last, i, false)) }
                splits.append((i, i + length, true))
                last = i + length
            }
            i += length
        }
        if last < text.count { splits.append((last, text.count, false)) }
        return splits
    }

    /// `Whitespace`: the regex `\w+|[^\w\s]+` inverted, so its matches are the pieces kept and the rest (runs of
    /// White_Space) is removed. Written as a scan over the classes, which is what the regex computes.
    static func wordSplits(_ text: UnsafeRawBufferPointer) -> [(start: Int, end: Int, match: Bool)] {
        var splits: [(start: Int, end: Int, match: Bool)] = []
        var i = 0, previous = 0
        // Class of a scalar: 0 White_Space, 1 word, 2 other.
        func kind(_ s: UInt32) -> Int { UnicodeClasses.isWord(s) ? 1 : (UnicodeClasses.isWhitespace(s) ? 0 : 2) }
        while i < text.count {
            let (s, length) = UTF8Scalar.decode(text, at: i)
            let k = kind(s)
            if k == 0 { i += length; continue }
            let start = i
            i += length
            while i < text.count {
                let (s2, l2) = UTF8Scalar.decode(text, at: i)
                if kind(s2) != k { break }
                i += l2
            }
            // A regex match is a kept piece here (inverted), the gap before it removed.
            if previous != start { splits.append((previous, start, true)) }
            splits.append((start, i, false))
            previous = i
        }
        if previous != text.count { splits.append((previous, text.count, true)) }
        return splits
    }

    // MARK: - Metaspace

    private static func metaspace(_ pieces: Pieces, into out: inout Pieces, replacement: [UInt8],
                                  scheme: PrependScheme, split: Bool) throws {
        var rewritten = Pieces()
        rewritten.bytes.reserveCapacity(pieces.bytes.count + pieces.bytes.count / 2)
        for i in 0..<pieces.count {
            let start = rewritten.bytes.count
            var lead = pieces.leads[i]
            pieces.withPiece(i) { p in
                // normalized.replace(' ', replacement): the replacement takes the alignment of the space it
                // replaces, so the run of offset-0 bytes keeps its length in characters.
                for (k, b) in p.enumerated() {
                    if k == pieces.leads[i] { lead = rewritten.bytes.count - start }
                    if b == 0x20 { rewritten.bytes.append(contentsOf: replacement) } else { rewritten.bytes.append(b) }
                }
                if pieces.leads[i] >= p.count { lead = rewritten.bytes.count - start }
            }
            let startsWithReplacement = rewritten.bytes.count - start >= replacement.count
                && Array(rewritten.bytes[start..<start + replacement.count]) == replacement
            let prepend: Bool
            switch scheme {
            case .always: prepend = !startsWithReplacement
            case .first: prepend = !startsWithReplacement && pieces.leads[i] >= 0
            case .never: prepend = false
            }
            if prepend {
                rewritten.bytes.insert(contentsOf: replacement, at: start)
                if lead > 0 { lead += replacement.count }
            }
            rewritten.starts.append(start)
            rewritten.ends.append(rewritten.bytes.count)
            rewritten.leads.append(lead)
        }
        if !split {
            out = rewritten
            return
        }
        out.bytes = rewritten.bytes
        let r = replacement.withUnsafeBytes { UTF8Scalar.decode($0, at: 0).scalar }
        for i in 0..<rewritten.count {
            let splits = rewritten.withPiece(i) { charSplits($0, { $0 == r }) }
            out.split(rewritten, i, splits, .mergedWithNext)
        }
    }
}
