// FuzzJinja: libFuzzer target for chat templates: the input is a template (optionally followed by a JSON array of
// messages), parsed and rendered; every input must end in text or a MoertError, never a crash or a hang.

import MoertFormats
import MoertTensor
import MoertText

/// Separates the template from the messages inside one input (see Tests/fuzz/README.md).
let messagesSeparator: [UInt8] = Array("\n#moert-fuzz-messages#\n".utf8)

/// The conversation rendered when the input brings none (or brings one that is not valid JSON): every role the
/// real templates branch on, a tool call with object arguments, reasoning, unicode and an empty content.
let fixedMessages = #"""
[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi ü 👋"},
 {"role": "assistant", "content": "<think>\nr\n</think>\n\nYo", "reasoning_content": "r",
  "tool_calls": [{"id": "abc123XYZ", "type": "function", "function": {"name": "f", "arguments": {"a": 1, "b": [true, null]}}}]},
 {"role": "tool", "tool_call_id": "abc123XYZ", "name": "f", "content": "{\"ok\": 1}"}, {"role": "user", "content": ""}]
"""#
let fixedVariables = #"""
{"bos_token": "<s>", "eos_token": "</s>", "tools": [{"type": "function", "function": {"name": "f", "description": "d",
 "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}]}
"""#

/// A smaller work budget than the default keeps inputs that loop a lot fast; the other limits are the defaults.
let fuzzSteps = 200_000

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var cut = bytes.count
    var i = 0
    while i + messagesSeparator.count <= bytes.count {
        if bytes[i] == messagesSeparator[0] && bytes[i..<i + messagesSeparator.count].elementsEqual(messagesSeparator) { cut = i; break }
        i += 1
    }
    let source = String(decoding: bytes[0..<cut], as: UTF8.self)
    let messages = cut < bytes.count ? String(decoding: bytes[(cut + messagesSeparator.count)...], as: UTF8.self) : fixedMessages
    expectingMoertError {
        let template = try ChatTemplate(source: source)
        for generationPrompt in [false, true] {
            func render(_ conversation: String) throws -> String {
                try template.render(messagesJSON: conversation, addGenerationPrompt: generationPrompt,
                                    variablesJSON: fixedVariables, fixedTime: 1_700_000_000, maxSteps: fuzzSteps)
            }
            var rendered: (text: String, conversation: String)?
            expectingMoertError { rendered = (try render(messages), messages) }
            if rendered == nil && messages != fixedMessages {
                expectingMoertError { rendered = (try render(fixedMessages), fixedMessages) }
            }
            // Rendering is deterministic: the same conversation gives the same text.
            if let (text, conversation) = rendered {
                let again = try? render(conversation)
                invariant(again == text, "two renders of one input differ")
            }
        }
    }
    // The same bytes as a tokenizer_config.json.
    expectingMoertError {
        let json = try JSON.parse(source, what: "tokenizer_config.json")
        let config = try TokenizerConfig(json: json, source: "tokenizer_config.json")
        for template in config.chatTemplates.values { expectingMoertError { _ = try ChatTemplate(source: template) } }
    }
    return 0
}
