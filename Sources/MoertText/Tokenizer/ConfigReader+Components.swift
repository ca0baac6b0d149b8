// ConfigReader+Components: normalizers, pre-tokenizers, post-processors and decoders read from tokenizer.json.

import MoertFormats
import MoertTensor

extension ConfigReader {
    /// A `pattern` value: `{"String": s}` (matched literally) or `{"Regex": r}`.
    func pattern(_ value: TokenizerJSON?, _ path: String) throws -> Regex {
        guard let value else { throw malformed(path, "missing") }
        let o = try object(value, path)
        guard o.count == 1, let (key, inner) = o.first, key == "String" || key == "Regex" else {
            throw malformed(path, "expected {\"String\": ...} or {\"Regex\": ...}")
        }
        return try Regex(try string(inner, path + "." + key), literal: key == "String", what: "\(source): \(path)")
    }

    func behavior(_ value: TokenizerJSON?, _ path: String, default fallback: SplitBehavior? = nil) throws -> SplitBehavior {
        if let fallback, value == nil || value!.isNull { return fallback }
        let s = try string(value, path)
        guard let b = SplitBehavior(rawValue: s) else { throw malformed(path, "unknown split behavior \"\(s)\"") }
        return b
    }

    /// Metaspace's `prepend_scheme` (default `always`), reconciled with the older `add_prefix_space` as tokenizers
    /// does: `false` means `never` and contradicts any other declared scheme.
    func prependScheme(_ o: JSONObject, _ path: String) throws -> PrependScheme {
        var scheme = PrependScheme.always
        if let v = o["prepend_scheme"], !v.isNull {
            let s = try string(v, path + ".prepend_scheme")
            guard let p = PrependScheme(rawValue: s) else { throw malformed(path + ".prepend_scheme", "unknown scheme \"\(s)\"") }
            scheme = p
        }
        if try bool(o["add_prefix_space"], path + ".add_prefix_space", default: true) == false {
            guard scheme == .never || o["prepend_scheme"] == nil else {
                throw malformed(path, "add_prefix_space false does not match prepend_scheme \"\(scheme.rawValue)\"")
            }
            scheme = .never
        }
        return scheme
    }

    // MARK: - Normalizers

    func normalizers(_ value: TokenizerJSON?, _ path: String, into steps: inout [NormalizerStep], depth: Int = 0) throws {
        guard let value, !value.isNull else { return }
        guard depth < 16 else { throw malformed(path, "sequences nested too deeply") }
        let o = try object(value, path)
        switch try type(o, path) {
        case "NFC": steps.append(.nfc)
        case "NFKC": steps.append(.nfkc)
        case "NFD": steps.append(.nfd)
        case "NFKD": steps.append(.nfkd)
        case "Lowercase": steps.append(.lowercase)
        case "Strip":
            steps.append(.strip(left: try bool(o["strip_left"], path + ".strip_left", default: false),
                                right: try bool(o["strip_right"], path + ".strip_right", default: false)))
        case "Prepend": steps.append(.prepend(Array(try string(o["prepend"], path + ".prepend").utf8)))
        case "Replace":
            steps.append(.replace(try pattern(o["pattern"], path + ".pattern"),
                                  Array(try string(o["content"], path + ".content").utf8)))
        case "Sequence":
            for (i, n) in try array(o["normalizers"], path + ".normalizers").enumerated() {
                try normalizers(n, "\(path).normalizers[\(i)]", into: &steps, depth: depth + 1)
            }
        case let t: throw unsupported(path, "normalizer type \"\(t)\" is not supported")
        }
    }

    // MARK: - Pre-tokenizers

    func preTokenizers(_ value: TokenizerJSON?, _ path: String, into steps: inout [PreTokenizerStep], depth: Int = 0) throws {
        guard let value, !value.isNull else { return }
        guard depth < 16 else { throw malformed(path, "sequences nested too deeply") }
        let o = try object(value, path)
        switch try type(o, path) {
        case "Split":
            steps.append(.split(try pattern(o["pattern"], path + ".pattern"),
                                try behavior(o["behavior"], path + ".behavior"),
                                invert: try bool(o["invert"], path + ".invert", default: false)))
        case "ByteLevel":
            steps.append(.byteLevel(addPrefixSpace: try bool(o["add_prefix_space"], path + ".add_prefix_space", default: true),
                                    useRegex: try bool(o["use_regex"], path + ".use_regex", default: true)))
        case "Metaspace":
            let replacement = try character(o["replacement"], path + ".replacement")
            steps.append(.metaspace(replacement: Array(String(replacement).utf8), scheme: try prependScheme(o, path),
                                    split: try bool(o["split"], path + ".split", default: true)))
        case "Digits":
            steps.append(.digits(individual: try bool(o["individual_digits"], path + ".individual_digits", default: false)))
        case "Punctuation": steps.append(.punctuation(try behavior(o["behavior"], path + ".behavior", default: .isolated)))
        case "Whitespace": steps.append(.whitespace)
        case "WhitespaceSplit": steps.append(.whitespaceSplit)
        case "Sequence":
            for (i, p) in try array(o["pretokenizers"], path + ".pretokenizers").enumerated() {
                try preTokenizers(p, "\(path).pretokenizers[\(i)]", into: &steps, depth: depth + 1)
            }
        case let t: throw unsupported(path, "pre-tokenizer type \"\(t)\" is not supported")
        }
    }

    // MARK: - Post-processors

    func postProcessors(_ value: TokenizerJSON?, _ path: String, into steps: inout [PostProcessorStep], depth: Int = 0) throws {
        guard let value, !value.isNull else { return }
        guard depth < 16 else { throw malformed(path, "sequences nested too deeply") }
        let o = try object(value, path)
        switch try type(o, path) {
        case "TemplateProcessing":
            var specials: [String: [Int32]] = [:]
            if let st = o["special_tokens"], !st.isNull {
                for (name, entry) in try object(st, path + ".special_tokens") {
                    let p = "\(path).special_tokens.\(name)"
                    let e = try object(entry, p)
                    specials[name] = try array(e["ids"], p + ".ids").enumerated().map { try tokenId($1, "\(p).ids[\($0)]") }
                }
            }
            let single = try template(o["single"], path + ".single", specials: specials, strict: true)
            if single.contains(where: { if case .sequence(true) = $0 { return true }; return false }) {
                throw malformed(path + ".single", "uses sequence B, which a single sequence does not have")
            }
            // The pair template is parsed but never used: tokenizers loads files whose pair names unknown tokens.
            if let pair = o["pair"], !pair.isNull { _ = try template(pair, path + ".pair", specials: specials, strict: false) }
            steps.append(.template(single))
        case "ByteLevel": break
        case "BertProcessing", "RobertaProcessing":
            func pair(_ key: String) throws -> Int32 {
                let a = try array(o[key], path + "." + key)
                guard a.count == 2 else { throw malformed(path + "." + key, "expected [token, id]") }
                _ = try string(a[0], "\(path).\(key)[0]")
                return try tokenId(a[1], "\(path).\(key)[1]")
            }
            steps.append(.wrap(first: try pair("cls"), last: try pair("sep")))
        case "Sequence":
            for (i, p) in try array(o["processors"], path + ".processors").enumerated() {
                try postProcessors(p, "\(path).processors[\(i)]", into: &steps, depth: depth + 1)
            }
        case let t: throw unsupported(path, "post-processor type \"\(t)\" is not supported")
        }
    }

    /// A template: pieces `{"Sequence": {"id": "A"|"B", "type_id": n}}` or `{"SpecialToken": {"id": name, ...}}`.
    /// `strict`: every special token must be in `special_tokens` (tokenizers would fail when applying it).
    private func template(_ value: TokenizerJSON?, _ path: String, specials: [String: [Int32]], strict: Bool) throws -> [TemplatePiece] {
        try array(value, path).enumerated().map { i, item in
            let p = "\(path)[\(i)]"
            let o = try object(item, p)
            guard o.count == 1, let (kind, inner) = o.first else { throw malformed(p, "expected one of Sequence, SpecialToken") }
            let body = try object(inner, p + "." + kind)
            let id = try string(body["id"], p + "." + kind + ".id")
            switch kind {
            case "Sequence":
                guard id == "A" || id == "B" else { throw malformed(p + ".Sequence.id", "expected \"A\" or \"B\", found \"\(id)\"") }
                return .sequence(isB: id == "B")
            case "SpecialToken":
                guard let ids = specials[id] else {
                    if strict { throw malformed(p, "special token \"\(id)\" is not in special_tokens") }
                    return .special([])
                }
                return .special(ids)
            default:
                throw malformed(p, "expected one of Sequence, SpecialToken, found \"\(kind)\"")
            }
        }
    }

    // MARK: - Decoders

    func decoders(_ value: TokenizerJSON?, _ path: String, into steps: inout [DecoderStep], depth: Int = 0) throws {
        guard let value, !value.isNull else { return }
        guard depth < 16 else { throw malformed(path, "sequences nested too deeply") }
        let o = try object(value, path)
        switch try type(o, path) {
        case "ByteLevel": steps.append(.byteLevel)
        case "ByteFallback": steps.append(.byteFallback)
        case "Fuse": steps.append(.fuse)
        case "Strip":
            steps.append(.strip(content: try character(o["content"], path + ".content").value,
                                start: Int(try int(o["start"], path + ".start", in: 0...1_000_000)),
                                stop: Int(try int(o["stop"], path + ".stop", in: 0...1_000_000))))
        case "Replace":
            steps.append(.replace(try pattern(o["pattern"], path + ".pattern"),
                                  Array(try string(o["content"], path + ".content").utf8)))
        case "Metaspace":
            steps.append(.metaspace(replacement: try character(o["replacement"], path + ".replacement").value,
                                    scheme: try prependScheme(o, path)))
        case "Sequence":
            for (i, d) in try array(o["decoders"], path + ".decoders").enumerated() {
                try decoders(d, "\(path).decoders[\(i)]", into: &steps, depth: depth + 1)
            }
        case let t: throw unsupported(path, "decoder type \"\(t)\" is not supported")
        }
    }
}
