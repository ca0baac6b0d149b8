// ChatTemplate: a model's Jinja chat template, parsed once and rendered as transformers' apply_chat_template does.

import MoertFormats
import MoertTensor

/// A chat template (the `chat_template` of tokenizer_config.json). Parsing checks the whole template; rendering
/// turns a conversation into the prompt text exactly as transformers 5.x
/// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` does: Jinja2's sandboxed
/// environment with `trim_blocks` and `lstrip_blocks`, the `loopcontrols` extension (`break`, `continue`),
/// transformers' `tojson`, `raise_exception`, `strftime_now`, `namespace` and `dict`, and its message preparation
/// (keys whose value is null dropped; `reasoning_content`, `thinking` and `reasoning` copied to one another).
///
/// What moert's Jinja supports and refuses, and the limits that stop a runaway template, are listed in
/// docs/chat-templates.md.
///
/// Threads: immutable after `init`; render from any number of threads at once.
public final class ChatTemplate: @unchecked Sendable {
    /// The template text.
    public let source: String
    /// The parsed statements; immutable (every reference type inside is read-only).
    private let nodes: [JinjaNode]

    /// Parses `source`.
    /// - Throws: `MoertError` `.format` naming line:column and the problem for a syntax error, an unknown tag,
    ///   filter or test; `.unsupported` naming a construct Jinja2 has and moert does not (`include`, recursive
    ///   loops, ...); `.outOfRange` for blocks or expressions nested deeper than 100.
    public init(source: String) throws {
        self.source = source
        var parser = JinjaParser(lexer: try JinjaLexer(source: source))
        nodes = try parser.parseTemplate()
    }

    /// Renders a conversation.
    /// - Parameters:
    ///   - messages: the conversation, each a JSON object (`role`, `content`, `tool_calls`, ...). `JSON` objects keep
    ///     no key order, so their keys reach the template sorted; use `render(messagesJSON:...)` to keep the
    ///     order of a JSON document (it shows in `tojson` and `.items()`).
    ///   - addGenerationPrompt: the template's `add_generation_prompt`: end with the opening of an assistant turn.
    ///   - variables: further template variables: the special tokens (`bos_token`, `eos_token`, ... of
    ///     `TokenizerConfig.specialTokens`), `tools`, `documents` and model-specific ones (`enable_thinking`).
    ///     `tools` and `documents` are None when not given, as transformers passes them.
    /// - Returns: the prompt text.
    /// - Throws: `MoertError`: `.invalidArgument` for an empty conversation, a message that is not an object, a
    ///   variable named `messages` or `add_generation_prompt`, an error the template raises (`raise_exception(msg)`
    ///   gives exactly `msg`) or a runtime error of the template (naming its line); `.unsupported` for a construct
    ///   moert does not implement; `.outOfRange` when a limit is reached.
    public func render(messages: [JSON], addGenerationPrompt: Bool, variables: [String: JSON] = [:]) throws -> String {
        let values = try convert { try messages.map { try JinjaValue(json: $0) } }
        let extra = try convert { try variables.map { ($0.key, try JinjaValue(json: $0.value)) } }
        return try render(values, addGenerationPrompt, extra, fixedTime: nil, maxSteps: JinjaLimits.maxSteps)
    }

    /// Renders a conversation given as JSON text, keeping the key order of its objects.
    /// - Parameters:
    ///   - messagesJSON: a JSON array of message objects.
    ///   - addGenerationPrompt: as for `render(messages:addGenerationPrompt:variables:)`.
    ///   - variables: template variables as `JSON` values, typically `TokenizerConfig.templateVariables`.
    ///   - variablesJSON: a JSON object of further variables (`tools`, `enable_thinking`, ...), their key order kept;
    ///     its entries replace those of `variables` with the same name (as transformers lets keyword arguments
    ///     replace special tokens).
    /// - Throws: `MoertError` `.format` for text that is not JSON of that shape; otherwise as
    ///   `render(messages:addGenerationPrompt:variables:)`.
    public func render(messagesJSON: String, addGenerationPrompt: Bool, variables: [String: JSON] = [:],
                       variablesJSON: String? = nil) throws -> String {
        try render(messagesJSON: messagesJSON, addGenerationPrompt: addGenerationPrompt, variables: variables,
                   variablesJSON: variablesJSON, fixedTime: nil)
    }

    /// `render(messagesJSON:...)` with `strftime_now` formatting `fixedTime` (seconds since the epoch, as UTC)
    /// instead of the local time now, for reproducible tests, and a budget of work units (loop iterations, macro
    /// calls, filtered items) below the default for tests of the limit and for the fuzzer.
    package func render(messagesJSON: String, addGenerationPrompt: Bool, variables: [String: JSON] = [:],
                        variablesJSON: String?, fixedTime: Int?, maxSteps: Int = JinjaLimits.maxSteps) throws -> String {
        guard case .list(let list) = try JinjaJSONReader.read(messagesJSON, what: "messages"), list.kind == .list else {
            throw MoertError.format("messages: expected a JSON array of messages")
        }
        var extra = try convert { try variables.map { ($0.key, try JinjaValue(json: $0.value)) } }
        if let variablesJSON {
            guard case .dict(let d) = try JinjaJSONReader.read(variablesJSON, what: "variables") else {
                throw MoertError.format("variables: expected a JSON object")
            }
            for i in 0..<d.count {
                guard case .string(let name) = d.keys[i] else { continue }
                extra.append((name, d.values[i]))
            }
        }
        return try render(list.items, addGenerationPrompt, extra, fixedTime: fixedTime, maxSteps: maxSteps)
    }

    /// Renders the template with exactly the variables of `variablesJSON` (a JSON object) and nothing else: no
    /// messages preparation, no `tools` or `documents` (Jinja2's `Template.render(**variables)` in transformers'
    /// environment, which the Jinja semantics tests compare against).
    package func render(variablesJSON: String, fixedTime: Int? = nil, maxSteps: Int = JinjaLimits.maxSteps) throws -> String {
        guard case .dict(let d) = try JinjaJSONReader.read(variablesJSON, what: "variables") else {
            throw MoertError.format("variables: expected a JSON object")
        }
        let scope = JinjaScope(parent: nil)
        for i in 0..<d.count {
            if case .string(let name) = d.keys[i] { scope.variables[name] = d.values[i] }
        }
        return try convert { try JinjaRenderer(fixedTime: fixedTime, maxSteps: maxSteps).render(nodes, scope: scope) }
    }

    /// Runs `body`, reporting a JinjaFailure as a MoertError.
    private func convert<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let f as JinjaFailure { throw f.moertError(line: 0) }
    }

    private func render(_ messages: [JinjaValue], _ addGenerationPrompt: Bool, _ variables: [(String, JinjaValue)],
                        fixedTime: Int?, maxSteps: Int) throws -> String {
        // transformers.apply_chat_template refuses an empty conversation before rendering.
        guard !messages.isEmpty else {
            throw MoertError.invalid("chat template: cannot apply a chat template to an empty conversation")
        }
        let prepared = try convert { try messages.enumerated().map { try Self.prepare($0.element, index: $0.offset) } }
        let scope = JinjaScope(parent: nil)
        scope.variables["tools"] = JinjaValue.none
        scope.variables["documents"] = JinjaValue.none
        for (name, value) in variables {
            guard name != "messages" && name != "add_generation_prompt" else {
                throw MoertError.invalid("chat template: the variable '\(name)' is set by the render itself")
            }
            scope.variables[name] = value
        }
        scope.variables["messages"] = try convert { try JinjaValue.list(prepared) }
        scope.variables["add_generation_prompt"] = .bool(addGenerationPrompt)
        let renderer = JinjaRenderer(fixedTime: fixedTime, maxSteps: maxSteps)
        return try convert { try renderer.render(nodes, scope: scope) }
    }

    /// transformers' message preparation (`_normalize_chat_messages`, `_alias_reasoning_fields`): keys whose value
    /// is null are dropped, and a message's reasoning (the first of `reasoning_content`, `thinking`, `reasoning`)
    /// is given as both `thinking` (first, unless present) and `reasoning_content` (last, unless present).
    static func prepare(_ message: JinjaValue, index: Int) throws -> JinjaValue {
        guard case .dict(let d) = message else {
            throw JinjaFailure.type("messages[\(index)]: chat messages should be objects, got \(message.typeName)")
        }
        var keys: [JinjaValue] = [], values: [JinjaValue] = []
        for i in 0..<d.count where !d.values[i].isNone {
            keys.append(d.keys[i])
            values.append(d.values[i])
        }
        let present = JinjaDict.Index(keys)
        guard let reasoning = ["reasoning_content", "thinking", "reasoning"].lazy.compactMap({ present.value(of: $0, in: values) }).first else {
            return .dict(try JinjaDict(Array(zip(keys, values))))
        }
        var pairs: [(JinjaValue, JinjaValue)] = [(.string("thinking"), reasoning)]
        pairs += zip(keys, values)
        pairs.append((.string("reasoning_content"), reasoning))
        return .dict(try JinjaDict(pairs))
    }
}

extension JinjaDict {
    /// Positions of string keys, for looking up a few keys before a dict is built.
    struct Index {
        private var positions: [String: Int] = [:]

        init(_ keys: [JinjaValue]) {
            for (i, k) in keys.enumerated() { if case .string(let s) = k, positions[s] == nil { positions[s] = i } }
        }

        func value(of key: String, in values: [JinjaValue]) -> JinjaValue? {
            positions[key].map { values[$0] }
        }
    }
}
