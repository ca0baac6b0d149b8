// TestSupport: fixture paths, reference loading, temporary model directories and a safetensors writer.

import Foundation
import MoertCore
import MoertFormats
import MoertTensor

/// Root of the committed fixtures (Tests/fixtures).
public let fixturesDirectory: String = {
    var url = URL(fileURLWithPath: #filePath)
    url.deleteLastPathComponent()  // MoertCoreTests
    url.deleteLastPathComponent()  // Tests
    return url.appendingPathComponent("fixtures").path
}()

/// Every fixture made by tools/make_fixtures.py.
public let fixtureNames = ["mixtral", "mixtral_bf16", "mixtral_sharded", "mixtral_hd64", "qwen2_moe", "qwen3_moe", "olmoe",
                                 "qwen3_moe_fp8", "deepseek_v2", "deepseek_v2_lite", "deepseek_v2_group", "deepseek_v3",
                                 "deepseek_v3_dense", "glm4_moe", "gpt_oss", "gpt_oss_mxfp4", "mixtral_window",
                                 "qwen2_moe_window"]

/// The fixtures whose layers (some or all) attend within a sliding window shorter than prompt + greedy, with
/// references that also hold `long_tokens` and `long_logits`.
public let windowFixtureNames = ["mixtral_window", "qwen2_moe_window"]

/// transformers' outputs for a fixture (see tools/make_fixtures.py).
public struct Reference {
    public let prompt: [Int32]
    /// [prompt, vocab]
    public let logits: [Float]
    public let greedy: [Int32]
    /// [prompt + greedy, vocab]
    public let fullLogits: [Float]
    /// A sequence several sliding windows long (windowed fixtures only; empty otherwise).
    public let longTokens: [Int32]
    /// [longTokens, vocab]: one forward pass of transformers over `longTokens`.
    public let longLogits: [Float]

    public init(fixture: String) throws {
        let file = try SafetensorsFile(path: fixturesDirectory + "/" + fixture + "/reference.safetensors")
        func array<T>(_ name: String, _ type: T.Type) throws -> [T] {
            guard let info = file.tensors[name] else { throw MoertError.format("reference lacks \(name)") }
            let p = file.data(info)
            return (0..<info.count).map { p.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) }
        }
        prompt = try array("prompt", Int32.self)
        logits = try array("logits", Float.self)
        greedy = try array("greedy", Int32.self)
        fullLogits = try array("full_logits", Float.self)
        longTokens = file.tensors["long_tokens"] == nil ? [] : try array("long_tokens", Int32.self)
        longLogits = file.tensors["long_logits"] == nil ? [] : try array("long_logits", Float.self)
    }
}

/// max |a - b| / max |b|: the error relative to the largest reference logit.
public func relativeError(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
    precondition(a.count == b.count)
    var diff: Float = 0, scale: Float = 0
    for (x, y) in zip(a, b) {
        diff = max(diff, abs(x - y))
        scale = max(scale, abs(y))
    }
    return diff / scale
}

/// Evaluates `tokens` and returns the logits of every position.
public func allLogits(_ session: Session, _ tokens: [Int32]) throws -> [Float] {
    var out = [Float](repeating: .nan, count: tokens.count * session.model.config.vocabSize)
    try tokens.withUnsafeBufferPointer { t in
        try out.withUnsafeMutableBufferPointer { try session.evaluate(t, mode: .all, logits: $0.baseAddress, capacity: $0.count) }
    }
    return out
}

/// Evaluates `tokens` and returns the last position's logits.
public func lastLogits(_ session: Session, _ tokens: [Int32]) throws -> [Float] {
    var out = [Float](repeating: .nan, count: session.model.config.vocabSize)
    try tokens.withUnsafeBufferPointer { t in
        try out.withUnsafeMutableBufferPointer { try session.evaluate(t, mode: .last, logits: $0.baseAddress, capacity: $0.count) }
    }
    return out
}

/// A scratch directory removed when the object is released.
public final class TemporaryDirectory {
    public let path: String

    public init() throws {
        path = NSTemporaryDirectory() + "moert-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// A copy of fixture `name` in a new temporary directory.
    public static func copy(of name: String) throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory()
        for file in try FileManager.default.contentsOfDirectory(atPath: fixturesDirectory + "/" + name) {
            try FileManager.default.copyItem(atPath: fixturesDirectory + "/" + name + "/" + file, toPath: dir.path + "/" + file)
        }
        return dir
    }

    public func write(_ name: String, _ text: String) throws {
        try text.write(toFile: path + "/" + name, atomically: true, encoding: .utf8)
    }

    public func write(_ name: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path + "/" + name))
    }

    public func read(_ name: String) throws -> String {
        try String(contentsOfFile: path + "/" + name, encoding: .utf8)
    }

    public func readBytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path + "/" + name)))
    }

    /// Rewrites config.json through `edit`, which receives and returns the parsed JSON object.
    public func editConfig(_ edit: (inout [String: Any]) -> Void) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path + "/config.json"))
        var object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        edit(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path + "/config.json"))
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Builds safetensors bytes from a raw JSON header and data (so tests can write lying headers).
public func safetensorsBytes(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    var length = declaredLength ?? UInt64(h.count)
    var bytes: [UInt8] = []
    for _ in 0..<8 { bytes.append(UInt8(length & 0xFF)); length >>= 8 }
    return bytes + h + data
}

/// Safetensors bytes holding the given float32 tensors.
public func safetensorsBytes(tensors: [(String, [Int], [Float])]) -> [UInt8] {
    var entries: [String] = []
    var data: [UInt8] = []
    for (name, shape, values) in tensors {
        let begin = data.count
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data += $0 } }
        entries.append("\"\(name)\": {\"dtype\": \"F32\", \"shape\": \(shape), \"data_offsets\": [\(begin), \(data.count)]}")
    }
    return safetensorsBytes(header: "{" + entries.joined(separator: ", ") + "}", data: data)
}

/// Runs `body` and returns the MoertError it throws (nil when it does not throw one).
public func moertError(_ body: () throws -> Void) -> MoertError? {
    do { try body() } catch let e as MoertError { return e } catch { return nil }
    return nil
}

/// A small seeded generator for test data (splitmix64): the same seed gives the same values everywhere.
public struct TestRandom {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func nextUnitDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// `count` values uniform in [-1, 1).
    public mutating func floats(_ count: Int) -> [Float] { (0..<count).map { _ in Float(nextUnitDouble() * 2 - 1) } }
}

/// The bytes and shape of tensor `name` of a committed safetensors fixture (`path` relative to Tests/fixtures).
public func fixtureTensor(_ path: String, _ name: String) throws -> (bytes: [UInt8], shape: [Int]) {
    let file = try SafetensorsFile(path: fixturesDirectory + "/" + path)
    guard let info = file.tensors[name] else { throw MoertError.format("\(path) lacks \(name)") }
    return (Array(UnsafeRawBufferPointer(start: file.data(info), count: info.byteCount)), info.shape)
}

/// Tensor `name` of a committed safetensors fixture as float32 values (it must be F32).
public func fixtureFloats(_ path: String, _ name: String) throws -> [Float] {
    let (bytes, _) = try fixtureTensor(path, name)
    return bytes.withUnsafeBytes { b in (0..<bytes.count / 4).map { b.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
}
