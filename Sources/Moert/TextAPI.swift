// TextAPI: tokenizers, streaming detokenizers and chat templates.

import CMoert
import MoertCore
import MoertFormats
import MoertTensor
import MoertText
#if canImport(Glibc)
import Glibc
#endif

/// Behind `moert_tokenizer *`: the text side of a model directory, and the C strings it lends out.
final class TokenizerHandle {
    let text: ModelText
    /// Vocabulary entries lent out by moert_tokenizer_token_to_piece, made on first request.
    private let pieces = CStringCache()

    init(_ text: ModelText) { self.text = text }

    /// The entry of `id` as a C string owned by the handle.
    func piece(_ id: Int32) -> UnsafePointer<CChar>? { text.tokenizer.token(for: id).map { pieces.cString($0) } }
}

/// Behind `moert_detokenizer *`: the stream and the text it last lent out.
final class DetokenizerHandle {
    let tokenizer: TokenizerHandle
    let flags: UInt32
    var stream: StreamingDetokenizer
    /// The text of the last push or flush, NUL-terminated.
    var output: [CChar] = [0]

    init(_ tokenizer: TokenizerHandle, flags: UInt32) {
        self.tokenizer = tokenizer
        self.flags = flags
        stream = StreamingDetokenizer(tokenizer: tokenizer.text.tokenizer, skipSpecialTokens: flags & MOERT_DECODE_SKIP_SPECIAL != 0)
    }

    /// Keeps `text` as the lent-out output and points the host at it.
    func lend(_ text: String, _ outText: UnsafeMutablePointer<UnsafePointer<CChar>?>, _ outCount: UnsafeMutablePointer<Int>?) {
        output = Array(text.utf8CString)
        outCount?.pointee = output.count - 1
        output.withUnsafeBufferPointer { outText.pointee = $0.baseAddress }
    }
}

/// Copies `text` and a NUL into a host buffer of `capacity` bytes; `outCount` gets the length without the NUL.
/// - Throws: `MoertError` (`.bufferTooSmall`) when it does not fit (nothing is written then).
func copyText(_ text: String, to buffer: UnsafeMutablePointer<CChar>?, capacity: Int, count outCount: UnsafeMutablePointer<Int>?) throws {
    var text = text
    try text.withUTF8 { bytes in
        outCount?.pointee = bytes.count
        guard let buffer, capacity > bytes.count else {
            throw MoertError(.bufferTooSmall, "text buffer holds \(max(capacity, 0)) bytes, \(bytes.count + 1) needed (with the NUL)")
        }
        if let source = bytes.baseAddress { UnsafeMutableRawPointer(buffer).copyMemory(from: source, byteCount: bytes.count) }
        buffer[bytes.count] = 0
    }
}

/// Fails unless `flags` uses only the bits of `known`.
func requireFlags(_ flags: UInt32, known: UInt32, _ name: String) throws {
    guard flags & ~known == 0 else { throw MoertError(.invalidArgument, "\(name): unknown flag bits 0x\(String(flags & ~known, radix: 16))") }
}

/// Loads a tokenizer. The C entry point is `moert_tokenizer_load`.
@c @implementation public func moert_tokenizer_load(_ path: UnsafePointer<CChar>!, _ outTokenizer: UnsafeMutablePointer<OpaquePointer?>!) -> moert_status {
    outTokenizer?.pointee = nil
    return withStatus {
        let out = try require(outTokenizer, "out_tokenizer")
        let path = String(cString: try require(path, "path"))
        out.pointee = retainedHandle(TokenizerHandle(try ModelText(path: path)))
    }
}

/// Frees a tokenizer. The C entry point is `moert_tokenizer_free`.
@c @implementation public func moert_tokenizer_free(_ tokenizer: OpaquePointer!) {
    guard let tokenizer else { return }
    releaseHandle(tokenizer, as: TokenizerHandle.self)
}

/// Number of ids. The C entry point is `moert_tokenizer_n_vocab`.
@c @implementation public func moert_tokenizer_n_vocab(_ tokenizer: OpaquePointer!) -> Int32 {
    guard let tokenizer else { return 0 }
    return Int32(object(tokenizer, as: TokenizerHandle.self).text.tokenizer.vocabSize)
}

/// Encodes text. The C entry point is `moert_tokenizer_encode`.
@c @implementation public func moert_tokenizer_encode(_ tokenizer: OpaquePointer!, _ text: UnsafePointer<CChar>!, _ nBytes: Int, _ flags: UInt32,
                                                      _ tokens: UnsafeMutablePointer<Int32>!, _ capacity: Int,
                                                      _ outNTokens: UnsafeMutablePointer<Int>!) -> moert_status {
    outNTokens?.pointee = 0
    return withStatus {
        let t = object(try require(tokenizer, "tokenizer"), as: TokenizerHandle.self).text.tokenizer
        try requireFlags(flags, known: MOERT_ENCODE_ADD_SPECIAL | MOERT_ENCODE_PARSE_SPECIAL, "flags")
        guard nBytes >= 0 else { throw MoertError(.invalidArgument, "n_bytes \(UInt(bitPattern: nBytes)) is not a length") }
        guard nBytes == 0 || text != nil else { throw MoertError(.invalidArgument, "text is NULL") }
        let bytes = UnsafeRawBufferPointer(start: text, count: nBytes)
        let ids = try t.encode(bytes: bytes, addSpecialTokens: flags & MOERT_ENCODE_ADD_SPECIAL != 0,
                               parseSpecialTokens: flags & MOERT_ENCODE_PARSE_SPECIAL != 0)
        outNTokens?.pointee = ids.count
        guard capacity >= ids.count, ids.isEmpty || tokens != nil else {
            throw MoertError(.bufferTooSmall, "tokens holds \(capacity) ids, \(ids.count) needed")
        }
        for (i, id) in ids.enumerated() { tokens[i] = id }
    }
}

/// Decodes ids. The C entry point is `moert_tokenizer_decode`.
@c @implementation public func moert_tokenizer_decode(_ tokenizer: OpaquePointer!, _ tokens: UnsafePointer<Int32>!, _ nTokens: Int, _ flags: UInt32,
                                                      _ text: UnsafeMutablePointer<CChar>!, _ capacity: Int,
                                                      _ outNBytes: UnsafeMutablePointer<Int>!) -> moert_status {
    outNBytes?.pointee = 0
    return withStatus {
        let t = object(try require(tokenizer, "tokenizer"), as: TokenizerHandle.self).text.tokenizer
        try requireFlags(flags, known: MOERT_DECODE_SKIP_SPECIAL, "flags")
        guard nTokens >= 0 else { throw MoertError(.invalidArgument, "n_tokens \(UInt(bitPattern: nTokens)) is not a token count") }
        guard nTokens == 0 || tokens != nil else { throw MoertError(.invalidArgument, "tokens is NULL") }
        let decoded = try t.decode(UnsafeBufferPointer(start: tokens, count: nTokens), skipSpecialTokens: flags & MOERT_DECODE_SKIP_SPECIAL != 0)
        try copyText(decoded, to: text, capacity: capacity, count: outNBytes)
    }
}

/// A vocabulary entry. The C entry point is `moert_tokenizer_token_to_piece`.
@c @implementation public func moert_tokenizer_token_to_piece(_ tokenizer: OpaquePointer!, _ token: Int32) -> UnsafePointer<CChar>! {
    guard let tokenizer else { return nil }
    return object(tokenizer, as: TokenizerHandle.self).piece(token)
}

/// The id of a vocabulary entry. The C entry point is `moert_tokenizer_piece_to_token`.
@c @implementation public func moert_tokenizer_piece_to_token(_ tokenizer: OpaquePointer!, _ piece: UnsafePointer<CChar>!) -> Int32 {
    guard let tokenizer, let piece else { return -1 }
    return object(tokenizer, as: TokenizerHandle.self).text.tokenizer.id(for: String(cString: piece)) ?? -1
}

/// The BOS id. The C entry point is `moert_tokenizer_bos`.
@c @implementation public func moert_tokenizer_bos(_ tokenizer: OpaquePointer!) -> Int32 {
    guard let tokenizer else { return -1 }
    return object(tokenizer, as: TokenizerHandle.self).text.bos ?? -1
}

/// The EOS id. The C entry point is `moert_tokenizer_eos`.
@c @implementation public func moert_tokenizer_eos(_ tokenizer: OpaquePointer!) -> Int32 {
    guard let tokenizer else { return -1 }
    return object(tokenizer, as: TokenizerHandle.self).text.eos ?? -1
}

/// The PAD id. The C entry point is `moert_tokenizer_pad`.
@c @implementation public func moert_tokenizer_pad(_ tokenizer: OpaquePointer!) -> Int32 {
    guard let tokenizer else { return -1 }
    return object(tokenizer, as: TokenizerHandle.self).text.pad ?? -1
}

/// Number of stop ids. The C entry point is `moert_tokenizer_n_stop_tokens`.
@c @implementation public func moert_tokenizer_n_stop_tokens(_ tokenizer: OpaquePointer!) -> Int32 {
    guard let tokenizer else { return 0 }
    return Int32(object(tokenizer, as: TokenizerHandle.self).text.stopTokenIds.count)
}

/// One stop id. The C entry point is `moert_tokenizer_stop_token`.
@c @implementation public func moert_tokenizer_stop_token(_ tokenizer: OpaquePointer!, _ index: Int32) -> Int32 {
    guard let tokenizer else { return -1 }
    return tokenId(object(tokenizer, as: TokenizerHandle.self).text.stopTokenIds, at: index)
}

/// Creates a detokenizer. The C entry point is `moert_detokenizer_create`.
@c @implementation public func moert_detokenizer_create(_ tokenizer: OpaquePointer!, _ flags: UInt32,
                                                        _ outDetokenizer: UnsafeMutablePointer<OpaquePointer?>!) -> moert_status {
    outDetokenizer?.pointee = nil
    return withStatus {
        let out = try require(outDetokenizer, "out_detokenizer")
        let handle = object(try require(tokenizer, "tokenizer"), as: TokenizerHandle.self)
        try requireFlags(flags, known: MOERT_DECODE_SKIP_SPECIAL, "flags")
        out.pointee = retainedHandle(DetokenizerHandle(handle, flags: flags))
    }
}

/// Frees a detokenizer. The C entry point is `moert_detokenizer_free`.
@c @implementation public func moert_detokenizer_free(_ detokenizer: OpaquePointer!) {
    guard let detokenizer else { return }
    releaseHandle(detokenizer, as: DetokenizerHandle.self)
}

/// The body of push and flush: clears the outputs, checks the arguments, and lends the host what `produce` gives.
private func lendText(of detokenizer: OpaquePointer?, _ outText: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                      _ outNBytes: UnsafeMutablePointer<Int>?,
                      _ produce: (DetokenizerHandle) throws -> String) -> moert_status {
    outText?.pointee = nil
    outNBytes?.pointee = 0
    return withStatus {
        let d = object(try require(detokenizer, "detokenizer"), as: DetokenizerHandle.self)
        let out = try require(outText, "out_text")
        d.lend(try produce(d), out, outNBytes)
    }
}

/// Adds an id. The C entry point is `moert_detokenizer_push`.
@c @implementation public func moert_detokenizer_push(_ detokenizer: OpaquePointer!, _ token: Int32,
                                                      _ outText: UnsafeMutablePointer<UnsafePointer<CChar>?>!,
                                                      _ outNBytes: UnsafeMutablePointer<Int>!) -> moert_status {
    lendText(of: detokenizer, outText, outNBytes) { try $0.stream.push(token) }
}

/// Returns the held-back text. The C entry point is `moert_detokenizer_flush`.
@c @implementation public func moert_detokenizer_flush(_ detokenizer: OpaquePointer!,
                                                       _ outText: UnsafeMutablePointer<UnsafePointer<CChar>?>!,
                                                       _ outNBytes: UnsafeMutablePointer<Int>!) -> moert_status {
    lendText(of: detokenizer, outText, outNBytes) { d in
        defer { d.stream.reset() }
        return d.stream.finish()
    }
}

/// The library's default chat options.
nonisolated(unsafe) let defaultChatOptions = moert_chat_options(struct_size: UInt32(MemoryLayout<moert_chat_options>.size),
                                            add_generation_prompt: 1, template_name: nil, variables_json: nil)

/// Default chat options. The C entry point is `moert_chat_options_init_sized`.
@c @implementation public func moert_chat_options_init_sized(_ options: UnsafeMutablePointer<moert_chat_options>!, _ size: Int) {
    writeDefaults(defaultChatOptions, to: options, size: size)
}

/// Renders the conversation `messagesJSON` with the options a host gave.
private func renderChat(_ tokenizer: OpaquePointer?, _ messagesJSON: String, _ options: UnsafePointer<moert_chat_options>?,
                        _ text: UnsafeMutablePointer<CChar>?, _ capacity: Int, _ outNBytes: UnsafeMutablePointer<Int>?) throws {
    let handle = object(try require(tokenizer, "tokenizer"), as: TokenizerHandle.self)
    let o = try readSized(options, defaults: defaultChatOptions, name: "moert_chat_options")
    let variablesJSON = try o.variables_json.map { try cText($0, "variables_json") }
    // Malformed messages or variables are the host's argument (a template that does not parse stays a format error).
    do {
        guard let list = try JSON.parse(messagesJSON, what: "messages").array, list.allSatisfy({ $0.object != nil }) else {
            throw MoertError(.invalidArgument, "messages must be a JSON array of message objects")
        }
        if let variablesJSON, try JSON.parse(variablesJSON, what: "variables_json").object == nil {
            throw MoertError(.invalidArgument, "variables_json must be a JSON object")
        }
    } catch let e as MoertError where e.code == .format {
        throw MoertError(.invalidArgument, e.message)
    }
    let rendered = try handle.text.applyChatTemplate(messagesJSON: messagesJSON, addGenerationPrompt: o.add_generation_prompt != 0,
                                                     name: try o.template_name.map { try cText($0, "template_name") },
                                                     variablesJSON: variablesJSON)
    try copyText(rendered, to: text, capacity: capacity, count: outNBytes)
}

/// Renders a conversation. The C entry point is `moert_tokenizer_apply_chat_template`.
@c @implementation public func moert_tokenizer_apply_chat_template(_ tokenizer: OpaquePointer!, _ messages: UnsafePointer<moert_chat_message>!,
                                                                   _ nMessages: Int, _ options: UnsafePointer<moert_chat_options>!,
                                                                   _ text: UnsafeMutablePointer<CChar>!, _ capacity: Int,
                                                                   _ outNBytes: UnsafeMutablePointer<Int>!) -> moert_status {
    outNBytes?.pointee = 0
    return withStatus {
        guard nMessages >= 0 else { throw MoertError(.invalidArgument, "n_messages \(UInt(bitPattern: nMessages)) is not a count") }
        guard nMessages == 0 || messages != nil else { throw MoertError(.invalidArgument, "messages is NULL") }
        var list: [String] = []
        if nMessages > 0 {
            let stride = Int(messages.pointee.struct_size)
            guard stride >= MemoryLayout<moert_chat_message>.size else {
                throw MoertError(.invalidArgument, "moert_chat_message.struct_size is \(stride); set it to sizeof(moert_chat_message)")
            }
            for i in 0..<nMessages {
                let m = try readSized(UnsafeRawPointer(messages).advanced(by: i * stride).assumingMemoryBound(to: moert_chat_message.self),
                                      defaults: moert_chat_message(), name: "messages[\(i)]")
                let role = try cText(try require(m.role, "messages[\(i)].role"), "messages[\(i)].role")
                let content = try cText(try require(m.content, "messages[\(i)].content"), "messages[\(i)].content")
                list.append("{\"role\":\(JSON.quote(role)),\"content\":\(JSON.quote(content))}")
            }
        }
        try renderChat(tokenizer, "[" + list.joined(separator: ",") + "]", options, text, capacity, outNBytes)
    }
}

/// Renders a conversation given as JSON. The C entry point is `moert_tokenizer_apply_chat_template_json`.
@c @implementation public func moert_tokenizer_apply_chat_template_json(_ tokenizer: OpaquePointer!, _ messagesJSON: UnsafePointer<CChar>!,
                                                                        _ options: UnsafePointer<moert_chat_options>!,
                                                                        _ text: UnsafeMutablePointer<CChar>!, _ capacity: Int,
                                                                        _ outNBytes: UnsafeMutablePointer<Int>!) -> moert_status {
    outNBytes?.pointee = 0
    return withStatus {
        try renderChat(tokenizer, try cText(try require(messagesJSON, "messages_json"), "messages_json"), options, text, capacity, outNBytes)
    }
}

/// A NUL-terminated C string that must be valid UTF-8.
/// - Throws: `MoertError` (`.invalidArgument`) naming `what` and the offset of the first invalid byte.
func cText(_ p: UnsafePointer<CChar>, _ what: String) throws -> String {
    try UTF8Text.decode(UnsafeRawBufferPointer(start: p, count: strlen(p)), what: what)
}
