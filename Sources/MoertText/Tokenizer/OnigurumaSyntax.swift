// OnigurumaSyntax: rewrites the shorthand classes whose meaning differs between Oniguruma and PCRE2.

/// tokenizers compiles its patterns with Oniguruma (Ruby syntax, `utils/onig.rs`); moert with PCRE2. The two agree
/// on everything real split patterns use except three shorthands, which this rewrites into explicit classes
/// before compiling:
/// - `\s`: Oniguruma's is White_Space; PCRE2's also matches U+180E (MONGOLIAN VOWEL SEPARATOR, no longer a space
///   since Unicode 6.3). In Qwen2's pattern that changed the ids of 38 of 3,000 random lines.
/// - `\w`: Oniguruma's is Alphabetic, marks, decimal digits, connector punctuation and Join_Control; PCRE2 10.42's
///   is letters, all numbers and `_`.
/// - `\h`: a hexadecimal digit in Ruby syntax, horizontal space in PCRE2.
/// Inside a character class the replacement is the class's items; a negated shorthand (`\S`, `\W`, `\H`) inside a
/// class is left as PCRE2 reads it.
enum OnigurumaSyntax {
    static let space = #"\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}"#
    static let word = #"\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}"#
    static let hex = "0-9a-fA-F"

    /// `pattern` with `\s`, `\S`, `\w`, `\W`, `\h`, `\H` written out for PCRE2.
    static func translate(_ pattern: String) -> String {
        let scalars = Array(pattern.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        var inClass = false
        var classStart = -1  // index just after the class's '[' (and '^')
        func append(_ s: String) { out.append(contentsOf: s.unicodeScalars) }
        while i < scalars.count {
            let c = scalars[i]
            if c == "\\" && i + 1 < scalars.count {
                let e = scalars[i + 1]
                let items: String?
                switch e {
                case "s", "S": items = space
                case "w", "W": items = word
                case "h", "H": items = hex
                default: items = nil
                }
                let negated = e == "S" || e == "W" || e == "H"
                if let items, !inClass {
                    append(negated ? "[^" + items + "]" : "[" + items + "]")
                } else if let items, !negated {
                    append(items)
                } else {
                    out.append(c)
                    out.append(e)
                }
                i += 2
                continue
            }
            if inClass {
                if c == "[" && i + 1 < scalars.count && scalars[i + 1] == ":" {
                    // A POSIX class such as [:alpha:] inside a class: copy it through its ":]".
                    var j = i + 2
                    while j + 1 < scalars.count && !(scalars[j] == ":" && scalars[j + 1] == "]") { j += 1 }
                    let end = min(j + 2, scalars.count)
                    for k in i..<end { out.append(scalars[k]) }
                    i = end
                    continue
                }
                if c == "]" && i != classStart { inClass = false }
            } else if c == "[" {
                inClass = true
                out.append(c)
                i += 1
                if i < scalars.count && scalars[i] == "^" { out.append(scalars[i]); i += 1 }
                classStart = i
                continue
            }
            out.append(c)
            i += 1
        }
        return String(out)
    }
}
