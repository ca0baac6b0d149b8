// TextCommands: `moert tokenize`, `detokenize`, `render-chat`, text generation and `chat`.

import MoertCore
import MoertFormats
import MoertTensor
import MoertText
#if canImport(Glibc)
import Glibc
#endif

/// The text side named by --model DIR (its tokenizer files only; no weights are read) or --tokenizer FILE.
func loadText(_ args: Arguments) throws -> ModelText {
    switch (args.string("--model"), args.string("--tokenizer")) {
    case (let dir?, nil): return try ModelText(path: dir)
    case (nil, let file?): return try ModelText(path: file)
    case (.some, .some): throw UsageError("--model and --tokenizer exclude each other")
    case (nil, nil): throw UsageError("missing --model or --tokenizer")
    }
}

/// The exact bytes of a file (no newline stripped).
/// - Throws: `MoertError` (`.io`).
func readBytes(_ path: String) throws -> [UInt8] {
    let file = try MappedFile(path: path)
    return Array(file.bytes)
}

/// Writes `text` to standard output at once (streamed text must not wait for a newline).
func emit(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var done = 0
        while done < bytes.count {
            let n = write(1, bytes.baseAddress! + done, bytes.count - done)
            guard n > 0 else { return }
            done += n
        }
    }
}

/// The lines of a text file, without their line ends; a last line without a newline counts, an empty last one does not.
func lines(_ path: String) throws -> [String] {
    let bytes = try readBytes(path)
    let text = try bytes.withUnsafeBytes { try UTF8Text.decode($0, what: path) }
    var result = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) }
    if result.last == "" { result.removeLast() }
    return result
}

/// `moert tokenize`.
func tokenizeCommand(_ args: Arguments) throws {
    let text = try loadText(args)
    let addSpecial = args.has("--add-special")
    func encode(_ bytes: UnsafeRawBufferPointer) throws -> String {
        try text.tokenizer.encode(bytes: bytes, addSpecialTokens: addSpecial, parseSpecialTokens: true)
            .map(String.init).joined(separator: " ")
    }
    let sources = ["--text", "--file", "--jsonl"].filter { args.string($0) != nil }
    guard sources.count == 1 else { throw UsageError("give exactly one of --text, --file and --jsonl") }
    if let path = args.string("--jsonl") {
        var out = ""
        for (n, line) in try lines(path).enumerated() {
            guard var text = try JSON.parse(line, what: "\(path):\(n + 1)").string else {
                throw MoertError.format("\(path):\(n + 1): expected a JSON string")
            }
            out += try text.withUTF8 { try encode(UnsafeRawBufferPointer($0)) } + "\n"
        }
        emit(out)
    } else if let path = args.string("--file") {
        let bytes = try readBytes(path)
        emit(try bytes.withUnsafeBytes { try encode($0) } + "\n")
    } else {
        var s = try args.required("--text")
        emit(try s.withUTF8 { try encode(UnsafeRawBufferPointer($0)) } + "\n")
    }
}

/// `moert detokenize`.
func detokenizeCommand(_ args: Arguments) throws {
    let text = try loadText(args)
    func decode(_ ids: [Int32]) throws -> String {
        try ids.withUnsafeBufferPointer { try text.tokenizer.decode($0, skipSpecialTokens: false) }
    }
    switch (args.string("--tokens"), args.string("--jsonl")) {
    case (let list?, nil):
        let ids = list.isEmpty ? [] : try args.tokens("--tokens")
        emit(try decode(ids) + "\n")
    case (nil, let path?):
        var out = ""
        for (n, line) in try lines(path).enumerated() {
            guard let array = try JSON.parse(line, what: "\(path):\(n + 1)").array else {
                throw MoertError.format("\(path):\(n + 1): expected a JSON array of token ids")
            }
            let ids = try array.map { v -> Int32 in
                guard let i = v.int, i >= Int64(Int32.min), i <= Int64(Int32.max) else {
                    throw MoertError.format("\(path):\(n + 1): \(v) is not a token id")
                }
                return Int32(i)
            }
            out += JSON.quote(try decode(ids)) + "\n"
        }
        emit(out)
    default:
        throw UsageError("give exactly one of --tokens and --jsonl")
    }
}

/// `moert render-chat`.
func renderChatCommand(_ args: Arguments) throws {
    let text = try ModelText(path: try args.required("--model"))
    let path = try args.required("--messages")
    let bytes = try readBytes(path)
    let messages = try bytes.withUnsafeBytes { try UTF8Text.decode($0, what: path) }
    emit(try text.applyChatTemplate(messagesJSON: messages, addGenerationPrompt: args.has("--add-generation-prompt")))
}

/// The sampler the generation options ask for.
func samplerFromArguments(_ args: Arguments) throws -> Sampler {
    var so = SamplerOptions()
    so.temperature = try args.float("--temperature", default: 0)
    so.topK = try args.int("--top-k", default: 0)
    so.topP = try args.float("--top-p", default: 1)
    let seed = try args.int("--seed", default: 0)
    guard seed >= 0 else { throw UsageError("--seed must be >= 0") }
    so.seed = UInt64(seed)
    return try Sampler(options: so)
}

/// SCMoE self-contrast decoding as `--scmoe K,R,BETA [--scmoe-alpha A]` asks it.
struct SelfContrastRequest {
    /// The strong pass's top-k; 0: the session's routers as they are.
    let strongTopK: Int
    /// The contrast with the weak pass of rank R alone.
    let contrast: SelfContrast

    /// Gives `session` the strong top-k (the other routing options are applied by `applyRouterOverride`).
    func apply(to session: Session) throws {
        if strongTopK > 0 { try session.setTopK(strongTopK) }
    }
}

/// The SCMoE request of the arguments; nil without --scmoe.
func selfContrastArguments(_ args: Arguments) throws -> SelfContrastRequest? {
    guard let text = args.string("--scmoe") else {
        guard args.string("--scmoe-alpha") == nil else { throw UsageError("--scmoe-alpha needs --scmoe") }
        return nil
    }
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { String($0) }
    guard parts.count == 3, let k = Int(parts[0]), k >= 0, let rank = Int(parts[1]), rank >= 0,
          let beta = Float(parts[2]), beta.isFinite, beta >= 0 else {
        throw UsageError("--scmoe takes STRONG_K,WEAK_RANK,BETA: integers >= 0 (K 0: the model's own top-k) and a number >= 0, e.g. 2,2,0.5")
    }
    if k > 0, args.string("--router") != nil || args.string("--moe-top-k") != nil {
        throw UsageError("--scmoe with a strong top-k other than 0 excludes --router and --moe-top-k")
    }
    let alpha = try args.float("--scmoe-alpha", default: 0.1)
    guard alpha > 0, alpha <= 1 else { throw UsageError("--scmoe-alpha must be in (0, 1]") }
    return SelfContrastRequest(strongTopK: k, contrast: SelfContrast(weakRank: rank, beta: beta, alpha: alpha))
}

/// Generates after `prompt` in `session`, printing the text as it is made (special tokens left out); returns the
/// text and the generated ids.
@discardableResult
func streamText(_ session: Session, _ text: ModelText, prompt: [Int32], maxNew: Int, ignoreEOS: Bool,
                sampler: inout Sampler, contrast: SelfContrast? = nil) throws -> (text: String, tokens: [Int32]) {
    var stop = GenerationStop()
    stop.tokenIds = text.stopTokenIds
    var stream = StreamingDetokenizer(tokenizer: text.tokenizer, skipSpecialTokens: true)
    var reply = ""
    var failure: MoertError?
    let tokens = try session.generate(prompt: prompt, maxNewTokens: maxNew, ignoreEOS: ignoreEOS, sampler: &sampler, stop: stop,
                                      contrast: contrast) { token in
        do {
            let piece = try stream.push(token)
            reply += piece
            emit(piece)
            return true
        } catch let e as MoertError {
            failure = e
            return false
        } catch {
            return false
        }
    }
    if let failure { throw failure }
    let rest = stream.finish()
    reply += rest
    emit(rest)
    return (reply, tokens)
}

/// `moert generate --prompt TEXT [--chat] [--system TEXT]`: text in, text streamed out.
func generateTextCommand(_ args: Arguments) throws {
    let promptText = try args.required("--prompt")
    var sampler = try samplerFromArguments(args)
    let maxNew = try args.int("--max-new", default: 16)
    let model = try loadModel(args)
    let text = try ModelText(path: try args.required("--model"))
    var prompt: [Int32]
    if args.has("--chat") {
        var messages: [(role: String, content: String)] = []
        if let system = args.string("--system") { messages.append(("system", system)) }
        messages.append(("user", promptText))
        prompt = try text.tokenizer.encode(try text.applyChatTemplate(messages, addGenerationPrompt: true),
                                           addSpecialTokens: false, parseSpecialTokens: true)
    } else {
        guard args.string("--system") == nil else { throw UsageError("--system needs --chat") }
        prompt = try text.tokenizer.encode(promptText, addSpecialTokens: true, parseSpecialTokens: true)
    }
    guard !prompt.isEmpty else { throw UsageError("the prompt encodes to no tokens") }
    let session = try makeSession(model, args, defaultKeep: prompt.first == model.config.bosTokenId ? 1 : 0)
    let scmoe = try selfContrastArguments(args)
    try scmoe?.apply(to: session)
    try streamText(session, text, prompt: prompt, maxNew: maxNew, ignoreEOS: args.has("--ignore-eos"), sampler: &sampler,
                   contrast: scmoe?.contrast)
    emit("\n")
}

/// `moert chat`: a conversation in the terminal. The whole conversation is rendered each turn; the session keeps the
/// tokens it has evaluated and evaluates only what follows them.
/// Standard input as a stream of its own (the chat loop is its only reader).
private nonisolated(unsafe) let standardInput = fdopen(0, "r")

/// The next line of standard input as bytes, without its "\n" or "\r\n"; nil at the end of input. (readLine()
/// would replace invalid UTF-8 with U+FFFD.)
private func readInputLine() -> [UInt8]? {
    guard let input = standardInput else { return nil }
    var buffer: UnsafeMutablePointer<CChar>?
    var capacity = 0
    defer { free(buffer) }
    let n = getline(&buffer, &capacity, input)
    guard n >= 0, let buffer else { return nil }
    var bytes = [UInt8](UnsafeRawBufferPointer(start: buffer, count: n))
    if bytes.last == 0x0A { bytes.removeLast(); if bytes.last == 0x0D { bytes.removeLast() } }
    return bytes
}

func chatCommand(_ args: Arguments) throws {
    var sampler = try samplerFromArguments(args)
    let maxNew = try args.int("--max-new", default: 512)
    let model = try loadModel(args)
    let text = try ModelText(path: try args.required("--model"))
    var messages: [(role: String, content: String)] = []
    if let system = args.string("--system") { messages.append(("system", system)) }
    let start = messages
    // A context shift keeps what every conversation starts with: the tokens two different first turns share.
    let first = try [["a"], ["b"]].map { user in
        try text.tokenizer.encode(try text.applyChatTemplate(start + [("user", user[0])], addGenerationPrompt: true),
                                  addSpecialTokens: false, parseSpecialTokens: true)
    }
    let shared = zip(first[0], first[1]).prefix { $0 == $1 }.count
    let session = try makeSession(model, args, defaultKeep: shared)
    var evaluated: [Int32] = []
    let interactive = isatty(0) != 0
    emit(interactive ? "moert chat — Ctrl-D ends, /reset starts over\n" : "")
    while true {
        if interactive { emit("> ") }
        guard let bytes = readInputLine() else { break }
        let line: String
        do {
            line = try bytes.withUnsafeBytes { try UTF8Text.decode($0, what: "input line") }
        } catch let e as MoertError {
            let message = "moert: \(e.message); not sent\n"
            _ = message.withCString { write(2, $0, strlen($0)) }
            continue
        }
        if line == "/reset" {
            messages = start
            evaluated = []
            session.reset()
            continue
        }
        if line.isEmpty { continue }
        messages.append(("user", line))
        let all = try text.tokenizer.encode(try text.applyChatTemplate(messages, addGenerationPrompt: true),
                                            addSpecialTokens: false, parseSpecialTokens: true)
        // Evaluate only what follows the tokens the session holds, when they are a prefix of the new conversation.
        // With a context shift the session holds the conversation as it was generated, its oldest tokens perhaps
        // dropped, and never starts over: it evaluates what this turn adds to the rendering of the conversation so far.
        let fresh: Int
        if session.contextShift {
            fresh = zip(all, evaluated).prefix { $0 == $1 }.count
        } else {
            if evaluated.count > all.count || !all.starts(with: evaluated) || evaluated.count == all.count {
                session.reset()
                evaluated = []
            }
            fresh = evaluated.count
        }
        let reply: (text: String, tokens: [Int32])
        do {
            reply = try streamText(session, text, prompt: Array(all[fresh...]), maxNew: maxNew, ignoreEOS: false,
                                   sampler: &sampler)
        } catch let e as MoertError where e.code == .contextFull {
            messages.removeLast()
            session.reset()
            evaluated = []
            emit("\nmoert: the conversation no longer fits the context (\(session.contextLength) tokens; --ctx sets it); /reset starts over\n")
            continue
        }
        emit("\n")
        messages.append(("assistant", reply.text))
        // The session holds the conversation and the reply as generated (all of it but a last token that met a full
        // context); the next turn's rendering may write the reply otherwise, and then the session starts over.
        if session.contextShift {
            evaluated = try text.tokenizer.encode(try text.applyChatTemplate(messages, addGenerationPrompt: false),
                                                  addSpecialTokens: false, parseSpecialTokens: true)
        } else {
            evaluated = all + reply.tokens.prefix(session.position - all.count)
        }
    }
    if interactive { emit("\n") }
}
