// FuzzLoader: libFuzzer target for the whole model loader on a small checkpoint directory: the input holds
// config.json, model.safetensors and optionally moert.json; an accepted model then evaluates two tokens. The same
// directory then goes through `moert quantize` (to a type the input's last byte picks), whose output must load too.

import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor

/// Separates the files inside one input (see Tests/fuzz/README.md).
let separator: [UInt8] = Array("\n#moert-fuzz-file#\n".utf8)

/// Splits `bytes` at each separator, into at most `limit` parts.
func split(_ bytes: UnsafeRawBufferPointer, limit: Int) -> [UnsafeRawBufferPointer] {
    var parts: [UnsafeRawBufferPointer] = []
    var start = 0, i = 0
    while i + separator.count <= bytes.count && parts.count < limit - 1 {
        if bytes[i] == separator[0] && (0..<separator.count).allSatisfy({ bytes[i + $0] == separator[$0] }) {
            parts.append(UnsafeRawBufferPointer(rebasing: bytes[start..<i]))
            i += separator.count
            start = i
        } else {
            i += 1
        }
    }
    parts.append(UnsafeRawBufferPointer(rebasing: bytes[start...]))
    return parts
}

/// Loads the directory the input describes and, when the load succeeds, prefills two tokens and decodes one more.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let parts = split(UnsafeRawBufferPointer(start: data, count: size), limit: 3)
    let names = ["config.json", "model.safetensors", "moert.json"]
    for (i, name) in names.enumerated() {
        if i < parts.count { FuzzScratch.write(name, parts[i].baseAddress, parts[i].count) } else { FuzzScratch.remove(name) }
    }
    expectingMoertError {
        var options = ModelLoadOptions()
        options.maxContext = 8
        let model = try Model(path: FuzzScratch.directory, options: options)
        let vocab = model.config.vocabSize
        invariant(model.contextLength >= 1 && model.contextLength <= 8, "context not capped")
        let session = try Session(model: model)
        let prompt: [Int32] = [0, Int32(min(1, vocab - 1))]
        var logits = [Float](repeating: .nan, count: prompt.count * vocab)
        try prompt.withUnsafeBufferPointer { p in
            try logits.withUnsafeMutableBufferPointer { try session.evaluate(p, mode: .all, logits: $0.baseAddress, capacity: $0.count) }
        }
        guard session.position < session.contextLength else { return }
        try [Int32(vocab - 1)].withUnsafeBufferPointer { p in
            try logits.withUnsafeMutableBufferPointer { try session.evaluate(p, mode: .last, logits: $0.baseAddress, capacity: $0.count) }
        }
        invariant(session.position == 3, "position \(session.position) after 3 tokens")
    }
    let types: [WeightStorage] = [.q8_0, .q4_0, .q4_k, .q3_0]
    let type = types[Int(size > 0 ? data![size - 1] : 0) % types.count]
    let out = FuzzScratch.directory + "/quantized"
    expectingMoertError {
        try Quantizer(directory: FuzzScratch.directory, options: QuantizeOptions(type: type))
            .write(to: out, overwrite: true) { _, _, _ in }
        var options = ModelLoadOptions()
        options.maxContext = 8
        let model = try Model(path: out, options: options)
        let session = try Session(model: model)
        var logits = [Float](repeating: .nan, count: model.config.vocabSize)
        try [Int32(0)].withUnsafeBufferPointer { p in
            try logits.withUnsafeMutableBufferPointer { try session.evaluate(p, mode: .last, logits: $0.baseAddress, capacity: $0.count) }
        }
    }
    removeDirectory(out)
    return 0
}
