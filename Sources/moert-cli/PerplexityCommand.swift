// `moert perplexity`: how well a model predicts a text, in windows of its context.

import MoertCore
import MoertFormats
import MoertTensor
import MoertText

/// `moert perplexity`.
func perplexityCommand(_ args: Arguments) throws {
    let path = try args.required("--model"), file = try args.required("--file")
    let text = try readTextArgument(file, option: "--file", limit: 256 << 20)
    let model = try loadModel(args)
    let tokens = try ModelText(path: path).tokenizer.encode(text, addSpecialTokens: false)
    let window = try args.int("--ctx", default: model.config.maxPositionEmbeddings)
    guard window >= 2 else { throw UsageError("--ctx must be at least 2, got \(window)") }
    let stride = try args.string("--stride").map { _ in try args.int("--stride", default: window) }
    if let stride, stride < 1 || stride > window { throw UsageError("--stride must be in [1, \(window)], got \(stride)") }
    let started = monotonicSeconds()
    var lastReport = started
    let scmoe = try selfContrastArguments(args)
    let result = try Perplexity.measure(model: model, tokens: tokens, window: window, stride: stride, kvType: try kvType(args),
                                        contrast: scmoe?.contrast,
                                        configure: { session in
                                            try applyRouterOverride(args, to: session)
                                            try scmoe?.apply(to: session)
                                        }) { done, total in
        let now = monotonicSeconds()
        if now - lastReport >= 2 || done == total {
            lastReport = now
            printError("perplexity: \(done)/\(total) tokens")
        }
    }
    let seconds = monotonicSeconds() - started
    let windows = "\(result.windows) windows of up to \(window)" + (stride.map { ", every \($0)" } ?? "")
    print("tokens            \(result.tokens) evaluated in \(windows); \(result.scored) scored")
    print("experts per token \(twoDecimals(result.expertsPerToken)) per MoE layer (\(model.moeLayerCount) MoE layers)")
    print("time              \(oneDecimal(seconds)) s (\(oneDecimal(Double(result.tokens) / max(seconds, 1e-9))) tok/s)")
    let accuracy = percent(result.correct, of: result.scored)
    if let scmoe {
        let c = scmoe.contrast
        print("accuracy          \(accuracy) next-token (argmax); SCMoE \(percent(result.contrastCorrect, of: result.scored)) (--scmoe \(scmoe.strongTopK),\(c.weakRank),\(c.beta), alpha \(c.alpha))")
    } else {
        print("accuracy          \(accuracy) next-token (argmax)")
    }
    print("perplexity \(result.perplexity)")
}

/// `part` of `whole` as a percentage with two decimals ("41.27%"); "-" when `whole` is 0.
private func percent(_ part: Int, of whole: Int) -> String {
    whole > 0 ? twoDecimals(100 * Double(part) / Double(whole)) + "%" : "-"
}

/// `x` with two decimals.
private func twoDecimals(_ x: Double) -> String {
    let hundredths = Int((x * 100).rounded())
    return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
}
