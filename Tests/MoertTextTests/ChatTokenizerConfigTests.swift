// ChatTokenizerConfigTests: tokenizer_config.json variants (string or AddedToken tokens, list-form templates, template
// files beside it and their precedence, a directory without any) read as transformers reads them.

import Foundation
import MoertFormats
import MoertTensor
import MoertTestSupport
@testable import MoertText
import Testing

@Suite("tokenizer_config.json")
struct ChatTokenizerConfigTests {
    func parse(_ text: String) throws -> TokenizerConfig {
        try TokenizerConfig(json: try JSON.parse(text, what: "tokenizer_config.json"), source: "tokenizer_config.json")
    }

    @Test("the qwen2 config gives the special tokens transformers' special_tokens_map has")
    func qwen2SpecialTokens() throws {
        let config = try #require(try TokenizerConfig.read(directory: chatFixtures + "/qwen2"))
        let expected = try JSON.parse(try readTextFile(chatFixtures + "/qwen2/special_tokens.json"), what: "special_tokens.json")
        #expect(config.specialTokens == (expected.object ?? [:]).compactMapValues { $0.string })
        #expect(config.eosToken == "<|endoftext|>" && config.padToken == "<|endoftext|>")
        #expect(config.bosToken == nil && config.unkToken == nil)
        #expect(config.addBosToken == false && config.addEosToken == false)
        #expect(config.chatTemplates.keys.sorted() == ["default"])
    }

    @Test("Command-R's list-form chat_template maps by name; tools pick tool_use")
    func listForm() throws {
        let config = try #require(try TokenizerConfig.read(directory: chatFixtures + "/command-r"))
        #expect(config.chatTemplates.keys.sorted() == ["default", "rag", "tool_use"])
        #expect(config.chatTemplate() == config.chatTemplates["default"])
        #expect(config.chatTemplate(withTools: true) == config.chatTemplates["tool_use"])
        #expect(config.chatTemplate(named: "rag") == config.chatTemplates["rag"])
        #expect(config.chatTemplate(named: "nope") == nil)
        // bos_token is an AddedToken object there, eos_token a string.
        #expect(config.bosToken == "<BOS_TOKEN>" && config.eosToken == "<|END_OF_TURN_TOKEN|>")
        #expect(config.addBosToken == true && config.addEosToken == false)
        for template in config.chatTemplates.values { _ = try ChatTemplate(source: template) }
    }

    @Test("tokens as strings, AddedToken objects, nulls; model-specific *_token entries")
    func tokenForms() throws {
        let config = try parse(#"""
        {"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false}, "eos_token": "</s>",
         "unk_token": {"content": "<unk>"}, "pad_token": null, "image_token": "<image>",
         "audio_token": {"__type": "AddedToken", "content": "<audio>"}, "not_a_token": {"content": "x"},
         "extra_special_tokens": {"video_token": "<video>"}, "additional_special_tokens": ["<a>", "<b>"]}
        """#)
        #expect(config.bosToken == "<s>" && config.eosToken == "</s>" && config.unkToken == "<unk>" && config.padToken == nil)
        #expect(config.specialTokens == ["bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                         "image_token": "<image>", "audio_token": "<audio>", "video_token": "<video>"])
        #expect(config.templateVariables["bos_token"] == .string("<s>"))
        #expect(config.chatTemplates.isEmpty && config.addBosToken == nil)
    }

    @Test("malformed values are refused naming the key", arguments: [
        (#"{"chat_template": 5}"#, "chat_template: expected a string or a list of templates, got a number"),
        (#"{"chat_template": [{"name": "default"}]}"#, "chat_template[0]: expected an object"),
        (#"{"bos_token": 1}"#, "bos_token: expected a string or an object with a string \"content\", got a number"),
        (#"{"eos_token": {"text": "x"}}"#, "eos_token: expected a string or an object"),
        (#"{"add_bos_token": "yes"}"#, "add_bos_token: expected true or false, got a string"),
        (#"[]"#, "expected a JSON object"),
        (#"{"added_tokens_decoder": {"x": {"content": "a"}}}"#, "added_tokens_decoder.x: expected a token id"),
        (#"{"added_tokens_decoder": {"5": {"special": true}}}"#, "added_tokens_decoder.5: expected a token id with an object"),
        (#"{"added_tokens_decoder": {"5": {"content": "a", "lstrip": 1}}}"#, "added_tokens_decoder.5.lstrip: expected true or false, got a number"),
        (#"{"additional_special_tokens": [3]}"#, "additional_special_tokens[0]: expected a string"),
    ])
    func malformed(text: String, fragment: String) {
        let e = moertError { _ = try parse(text) }
        #expect(e?.code == .format)
        #expect(e?.message.contains(fragment) == true, "\(e?.message ?? "no error")")
    }

    @Test("chat_template.jinja and additional_chat_templates/ replace the config's templates")
    func templateFiles() throws {
        let dir = try TemporaryDirectory()
        try dir.write("tokenizer_config.json", #"{"chat_template": [{"name": "default", "template": "config"}, {"name": "tool_use", "template": "config tools"}], "eos_token": "</s>"}"#)
        var config = try #require(try TokenizerConfig.read(directory: dir.path))
        #expect(config.chatTemplates == ["default": "config", "tool_use": "config tools"])
        try dir.write("chat_template.jinja", "file {{ eos_token }}\n")
        config = try #require(try TokenizerConfig.read(directory: dir.path))
        // transformers: "If independent chat template file(s) exist, they take priority over template entries in
        // the tokenizer config" - all of them, the named ones included.
        #expect(config.chatTemplates == ["default": "file {{ eos_token }}\n"])
        #expect(config.eosToken == "</s>")
        try FileManager.default.createDirectory(atPath: dir.path + "/additional_chat_templates", withIntermediateDirectories: false)
        try dir.write("additional_chat_templates/rag.jinja", "rag file")
        config = try #require(try TokenizerConfig.read(directory: dir.path))
        #expect(config.chatTemplates == ["default": "file {{ eos_token }}\n", "rag": "rag file"])
    }

    @Test("a template file alone is enough; an empty directory has no configuration")
    func missingFiles() throws {
        let dir = try TemporaryDirectory()
        #expect(try TokenizerConfig.read(directory: dir.path) == nil)
        try dir.write("chat_template.jinja", "{{ messages[0].content }}")
        let config = try #require(try TokenizerConfig.read(directory: dir.path))
        #expect(config.chatTemplates == ["default": "{{ messages[0].content }}"])
        #expect(config.specialTokens.isEmpty)
        #expect(try TokenizerConfig.read(directory: dir.path + "/does-not-exist") == nil)
    }

    @Test("special_tokens_map.json fills in the tokens when the config has no added_tokens_decoder")
    func legacySpecialTokensMap() throws {
        let dir = try TemporaryDirectory()
        try dir.write("tokenizer_config.json", #"{"chat_template": "x", "eos_token": "</old>"}"#)
        try dir.write("special_tokens_map.json", #"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "additional_special_tokens": ["<x>"]}"#)
        var config = try #require(try TokenizerConfig.read(directory: dir.path))
        #expect(config.bosToken == "<s>" && config.eosToken == "</s>")
        try dir.write("tokenizer_config.json", #"{"chat_template": "x", "eos_token": "</old>", "added_tokens_decoder": {}}"#)
        config = try #require(try TokenizerConfig.read(directory: dir.path))
        #expect(config.bosToken == nil && config.eosToken == "</old>")
    }

    @Test("an unreadable or malformed file is an error")
    func badFiles() throws {
        let dir = try TemporaryDirectory()
        try dir.write("tokenizer_config.json", "{not json")
        #expect(moertError { _ = try TokenizerConfig.read(directory: dir.path) }?.code == .format)
    }
}
