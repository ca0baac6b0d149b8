// ChatTemplateErrorTests: syntax errors name line:column, unsupported constructs are named, raise_exception gives its
// message, and runaway templates (deep recursion, huge loops, huge text, deep nesting) stop with an error.

import Foundation
import MoertFormats
import MoertTensor
import MoertTestSupport
@testable import MoertText
import Testing

@Suite("Chat template errors")
struct ChatTemplateErrorTests {
    /// Template source, expected error code, and a fragment of the message.
    static let parseErrors: [(String, MoertError.Code, String)] = [
        ("hello\n{{ foo( }}", .format, "chat template:2:"),
        ("{% if x %}open", .format, "Unexpected end of template. Jinja was looking for the following tags: 'elif' or 'else' or 'endif'."),
        ("{% for x in y %}{% endif %}", .format, "Encountered unknown tag 'endif'."),
        ("{% do x %}", .format, "chat template:1:4: Encountered unknown tag 'do'."),
        ("{{ x | nope }}", .format, "chat template:1:8: No filter named 'nope'."),
        ("{{ x is nope }}", .format, "No test named 'nope'."),
        ("{# never closed", .format, "Missing end of comment tag"),
        ("{% raw %} never closed", .format, "Missing end of raw directive"),
        ("{{ 'unterminated }}", .format, "unexpected char \"'\""),
        ("{{ a ! b }}", .format, "unexpected char '!'"),
        ("{{ (1] }}", .format, "unexpected ']', expected ')'"),
        ("{% break %}", .format, "'break' outside loop"),
        ("{% macro m(a=1, b) %}{% endmacro %}", .format, "non-default argument follows default argument"),
        ("{% set true = 1 %}", .format, "can't assign to 'true'"),
        ("line one\n  line two {% include 'other.jinja' %}", .unsupported, "chat template:2:15: the 'include' tag is not supported"),
        ("{% extends 'base' %}", .unsupported, "the 'extends' tag"),
        ("{% for x in y recursive %}{% endfor %}", .unsupported, "a recursive loop"),
        ("{{ f(*args) }}", .unsupported, "'*' and '**' in call arguments"),
        ("{{ '\\N{BULLET}' }}", .unsupported, "\\N{...} escapes"),
        ("{{ " + String(repeating: "(", count: 150) + "1" + String(repeating: ")", count: 150) + " }}", .outOfRange, "nested deeper than 100"),
        (String(repeating: "{% if 1 %}", count: 150), .outOfRange, "nested deeper than 100"),
    ]

    @Test("parse errors name the line and column and what is wrong", arguments: parseErrors.indices)
    func parseError(index: Int) {
        let (source, code, fragment) = Self.parseErrors[index]
        let e = moertError { _ = try ChatTemplate(source: source) }
        #expect(e?.code == code, "\(source): \(e?.message ?? "no error")")
        #expect(e?.message.contains(fragment) == true, "\(e?.message ?? "no error")")
    }

    /// Templates that parse and fail when rendered: code and message fragment.
    static let renderErrors: [(String, MoertError.Code, String)] = [
        ("{{ raise_exception('Only user and assistant roles are supported!') }}", .invalidArgument, "Only user and assistant roles are supported!"),
        ("x\n{{ 'a' | urlencode }}", .unsupported, "chat template line 2: the filter 'urlencode' is not supported"),
        ("{{ cycler(1, 2) }}", .unsupported, "the global function 'cycler'"),
        ("{{ 'a'.encode() }}", .unsupported, "the method 'encode' of 'str'"),
        ("{{ '%s' % 1 }}", .unsupported, "printf-style string formatting"),
        ("{{ '{:>4}'.format(1) }}", .unsupported, "format specifications"),
        ("{{ [1] | map('string') }}", .unsupported, "writing a generator as text"),
        ("{{ raise_exception }}", .unsupported, "writing function 'raise_exception' as text"),
        ("{{ 9223372036854775807 + 1 }}", .unsupported, "arithmetic beyond 64-bit integers"),
        ("{{ range(200000) | length }}", .outOfRange, "Range too big"),
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", .outOfRange, "macro calls nested deeper than 100"),
        ("{{ 'x' * 100000000 }}", .outOfRange, "text longer than"),
        ("{% set s = 'x' * 1000000 %}{% for i in range(100) %}{{ s }}{% endfor %}", .outOfRange, "text longer than"),
        ("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", .outOfRange, "text longer than"),
        ("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", .outOfRange, "text longer than"),
        ("{{ [0] * 100000000 }}", .outOfRange, "list longer than"),
        ("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}", .outOfRange, "nested deeper than 128"),
        ("{% set ns = namespace() %}{% set ns.a = ns %}{{ ns }}", .outOfRange, "nested deeper than 128"),
        ("{{ 'x'.center(9223372036854775807) }}", .outOfRange, "text longer than"),
        ("{% set s = 'x' * 40000000 %}{{ [s, s] | join }}", .outOfRange, "text longer than"),
        ("{% set s = 'x' * 40000000 %}{{ '-'.join([s, s]) }}", .outOfRange, "text longer than"),
        ("{{ [[[1]]] | tojson(indent='x' * 30000000) }}", .outOfRange, "text longer than"),
        ("{% for c in 'x' * 5000000 %}{% endfor %}", .outOfRange, "list longer than"),
        ("{{ 9223372036854775807 | round(-1) }}", .unsupported, "arithmetic beyond 64-bit integers"),
        ("{{ missing.attribute }}", .invalidArgument, "chat template line 1: 'missing' is undefined"),
        ("{% set xs = [] %}{{ xs.append(1) }}", .invalidArgument, "access to attribute 'append' of 'list' object is unsafe."),
    ]

    @Test("render errors have their code and message", arguments: renderErrors.indices)
    func renderError(index: Int) throws {
        let (source, code, fragment) = Self.renderErrors[index]
        let template = try ChatTemplate(source: source)
        let e = moertError { _ = try template.render(messages: [.object(["role": .string("user"), "content": .string("hi")])],
                                                     addGenerationPrompt: false) }
        #expect(e?.code == code, "\(source): \(e?.message ?? "no error")")
        #expect(e?.message.contains(fragment) == true, "\(e?.message ?? "no error")")
    }

    @Test("slices with huge steps and bounds select as Python does")
    func extremeSlices() throws {
        let template = try ChatTemplate(source: "{{ xs[1::9223372036854775807] }}{{ xs[-9223372036854775807:9223372036854775807:-9223372036854775807] }}{{ xs[9223372036854775807:] }}")
        #expect(try template.render(variablesJSON: #"{"xs": [1, 2, 3]}"#) == "[2][][]")
    }

    @Test("raise_exception's message is the whole error message")
    func raiseExceptionMessage() throws {
        let template = try ChatTemplate(source: "{% for m in messages %}{% if m.role != 'user' %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% endfor %}")
        let e = moertError {
            _ = try template.render(messages: [.object(["role": .string("bot"), "content": .string("x")])], addGenerationPrompt: true)
        }
        #expect(e?.code == .invalidArgument)
        #expect(e?.message == "Conversation roles must alternate user/assistant/user/assistant/...")
    }

    @Test("loops beyond the work budget stop with an error, not a hang")
    func stepBudget() throws {
        let template = try ChatTemplate(source: "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}")
        let e = moertError { _ = try template.render(variablesJSON: "{}", maxSteps: 50_000) }
        #expect(e?.code == .outOfRange)
        #expect(e?.message.contains("more than 50000 steps") == true, "\(e?.message ?? "no error")")
        // The default budget is the documented one.
        #expect(JinjaLimits.maxSteps == 5_000_000)
    }

    @Test("recursion to the depth limit works; one deeper stops")
    func recursionDepth() throws {
        let template = try ChatTemplate(source: "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% else %}bottom{% endif %}{% endmacro %}{{ f(depth) }}")
        #expect(try template.render(variablesJSON: "{\"depth\": 99}") == "bottom")
        let e = moertError { _ = try template.render(variablesJSON: "{\"depth\": 100}") }
        #expect(e?.code == .outOfRange)
    }

    /// Runs `body` on a new thread with a stack of `size` bytes and returns what it returned.
    static func onThread<T>(stackSize size: Int, _ body: @escaping @Sendable () -> T) -> T {
        let box = ThreadResult<T>()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            box.value = body()
            done.signal()
        }
        thread.stackSize = size
        thread.start()
        done.wait()
        return box.value!
    }

    @Test("nesting that would overflow the stack stops with an error, on a small thread too, while real templates render there")
    func stackGuard() throws {
        // 99 macro levels, each 45 lists deep: within every counted limit, but more stack than a thread has.
        let lists = (String(repeating: "[", count: 45), String(repeating: "]", count: 45))
        let deep = try ChatTemplate(source: "{% macro f(n) %}{% if n > 0 %}{{ \(lists.0)f(n - 1)\(lists.1) }}{% endif %}{% endmacro %}{{ f(99) }}")
        let here = moertError { _ = try deep.render(variablesJSON: "{}") }
        #expect(here?.code == .outOfRange && here?.message.contains("nests too deeply for this thread's stack") == true)
        let small = Self.onThread(stackSize: 512 << 10) { moertError { _ = try deep.render(variablesJSON: "{}") } }
        #expect(small?.code == .outOfRange)
        let nested = "{{ " + String(repeating: "(-", count: 99) + "1" + String(repeating: ")", count: 99) + " }}"
        let parse = Self.onThread(stackSize: 256 << 10) { moertError { _ = try ChatTemplate(source: nested) } }
        #expect(parse == nil || parse?.code == .outOfRange)
        let qwen3 = try ChatTemplate(source: try readTextFile(chatFixtures + "/templates/qwen3.jinja"))
        let messages = #"[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>r</think>Yo"}]"#
        let expected = try qwen3.render(messagesJSON: messages, addGenerationPrompt: true)
        let rendered = Self.onThread(stackSize: 512 << 10) { try? qwen3.render(messagesJSON: messages, addGenerationPrompt: true) }
        #expect(rendered == expected)
    }

    @Test("the conversation must be a non-empty list of objects, without a messages variable")
    func conversationShape() throws {
        let template = try ChatTemplate(source: "{{ messages | length }}")
        #expect(moertError { _ = try template.render(messages: [], addGenerationPrompt: false) }?.code == .invalidArgument)
        #expect(moertError { _ = try template.render(messages: [.string("hi")], addGenerationPrompt: false) }?.code == .invalidArgument)
        #expect(moertError { _ = try template.render(messages: [.object([:])], addGenerationPrompt: false, variables: ["messages": .null]) }?.code == .invalidArgument)
        #expect(moertError { _ = try template.render(messagesJSON: "{}", addGenerationPrompt: false) }?.code == .format)
        #expect(moertError { _ = try template.render(messagesJSON: "[{}", addGenerationPrompt: false) }?.code == .format)
        #expect(moertError { _ = try template.render(messagesJSON: "[{}]", addGenerationPrompt: false, variablesJSON: "[]") }?.code == .format)
    }

    /// Python's `{"thinking": r, **message, "reasoning_content": r}`: "thinking" comes first even when the message
    /// has it later.
    @Test("messages: null fields dropped, reasoning copied to thinking and reasoning_content, key order kept")
    func messagePreparation() throws {
        let template = try ChatTemplate(source: "{% for m in messages %}{{ m | tojson }}\n{% endfor %}{{ tools }} {{ documents }}")
        let got = try template.render(messagesJSON: #"[{"role": "assistant", "content": "x", "reasoning": "r", "tool_calls": null}, {"z": 1, "a": 2, "thinking": "t"}]"#,
                                      addGenerationPrompt: false)
        #expect(got == #"""
        {"thinking": "r", "role": "assistant", "content": "x", "reasoning": "r", "reasoning_content": "r"}
        {"thinking": "t", "z": 1, "a": 2, "reasoning_content": "t"}
        None None
        """#)
        // JSON objects keep no order: their keys arrive sorted.
        let sorted = try template.render(messages: [.object(["z": .int(1), "a": .int(2)])], addGenerationPrompt: false)
        #expect(sorted == "{\"a\": 2, \"z\": 1}\nNone None")
    }

    @Test("strftime_now formats the local time now")
    func strftimeNow() throws {
        let template = try ChatTemplate(source: "{{ strftime_now('%Y') | int > 2000 }}")
        #expect(try template.render(messages: [.object([:])], addGenerationPrompt: false) == "True")
    }

    @Test("one template renders on several threads at once")
    func concurrentRenders() async throws {
        let template = try ChatTemplate(source: try readTextFile(chatFixtures + "/templates/qwen3.jinja"))
        let messages = #"[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>r</think>Yo"}, {"role": "user", "content": "Bye"}]"#
        let expected = try template.render(messagesJSON: messages, addGenerationPrompt: true)
        try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 { group.addTask { try template.render(messagesJSON: messages, addGenerationPrompt: true) } }
            for try await got in group { #expect(got == expected) }
        }
    }
}

/// What a thread of `ChatTemplateErrorTests.onThread` computed (written before the semaphore signals, read after).
final class ThreadResult<T>: @unchecked Sendable {
    var value: T?
}
