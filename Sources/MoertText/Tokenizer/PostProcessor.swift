// PostProcessor: what tokenizers' post-processors add around the ids of one sequence (TemplateProcessing & co).

/// A piece of a `TemplateProcessing` template.
enum TemplatePiece {
    /// The ids of sequence A (`$A`) or B (`$B`).
    case sequence(isB: Bool)
    /// The ids of a special token of the template's `special_tokens`.
    case special([Int32])
}

/// One post-processor of tokenizer.json; a `Sequence` is flattened into a list of these. Only single sequences are
/// encoded, so a pair template is checked when loading but never applied.
enum PostProcessorStep {
    /// `processors/template.rs`: the `single` template.
    case template([TemplatePiece])
    /// `processors/bert.rs` and `processors/roberta.rs` for one sequence: `cls` first and `sep` last.
    case wrap(first: Int32, last: Int32)

    /// Applies the step to `ids`; with `addSpecialTokens` false, special pieces add nothing (tokenizers still
    /// lays out the template's sequences).
    func apply(_ ids: [Int32], addSpecialTokens: Bool) -> [Int32] {
        switch self {
        case .template(let pieces):
            var out: [Int32] = []
            out.reserveCapacity(ids.count + 4)
            for piece in pieces {
                switch piece {
                case .sequence: out.append(contentsOf: ids)
                case .special(let special): if addSpecialTokens { out.append(contentsOf: special) }
                }
            }
            return out
        case .wrap(let first, let last):
            return addSpecialTokens ? [first] + ids + [last] : ids
        }
    }
}
