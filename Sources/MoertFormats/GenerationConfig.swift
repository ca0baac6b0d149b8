// GenerationConfig: the generation_config.json of a model directory — the ids that end generation.

import MoertTensor

/// The parts of generation_config.json moert uses. transformers' `generate` stops on its `eos_token_id` (often a
/// list: a chat model's end-of-turn token beside the end-of-text one) rather than config.json's.
public struct GenerationConfig: Sendable {
    /// `eos_token_id`, as a list; empty when absent.
    public var eosTokenIds: [Int32] = []

    /// Parses a generation_config.json document.
    /// - Throws: `MoertError` (`.format`) naming `source` and the key.
    public init(json: JSON, source: String) throws {
        guard json.object != nil else { throw MoertError.format("\(source): not a JSON object") }
        eosTokenIds = try _ConfigReader(json: json, source: source).tokenIds("eos_token_id")
    }

    /// `directory`/generation_config.json, or nil when the directory has none.
    /// - Throws: `MoertError` (`.io`, `.format`) for a file that cannot be read or parsed.
    public static func read(directory: String) throws -> GenerationConfig? {
        let path = joinPath(directory, "generation_config.json")
        guard fileExists(path) else { return nil }
        return try GenerationConfig(json: try JSON.parse(try readTextFile(path), what: path), source: path)
    }

    /// The ids that end generation for a model: generation_config.json's, then config.json's not yet listed.
    public static func stopTokenIds(generation: GenerationConfig?, config: [Int32]) -> [Int32] {
        var ids: [Int32] = []
        for id in (generation?.eosTokenIds ?? []) + config where !ids.contains(id) { ids.append(id) }
        return ids
    }
}
