// moert-tokenizer-bench: times loading a tokenizer.json and encoding a file with it, for benchmarks/tokenizer_speed.py.
//
// Usage: moert-tokenizer-bench --tokenizer T --file F [--repeat N] [--lines] [--ids OUT]
//   --repeat N  encode N times and report the fastest (default 5)
//   --lines     encode each line of F separately (newline kept), as encode_batch of lines does
//   --ids OUT   write the ids of the last run to OUT, space-separated, one line per encoded text
// Prints one JSON line: {"load_s": ..., "encode_s": ..., "decode_s": ..., "tokens": ..., "bytes": ...}.

import Glibc
import MoertText

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

func fail(_ message: String) -> Never {
    let line = "moert-tokenizer-bench: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

var tokenizerPath: String?, filePath: String?, idsPath: String?
var repeats = 5, byLines = false
var arguments = CommandLine.arguments.dropFirst()
while let a = arguments.popFirst() {
    switch a {
    case "--tokenizer": tokenizerPath = arguments.popFirst()
    case "--file": filePath = arguments.popFirst()
    case "--ids": idsPath = arguments.popFirst()
    case "--repeat": repeats = Int(arguments.popFirst() ?? "") ?? 0
    case "--lines": byLines = true
    default: fail("unknown argument \(a)")
    }
}
guard let tokenizerPath, let filePath, repeats > 0 else { fail("usage: --tokenizer T --file F [--repeat N] [--lines] [--ids OUT]") }

guard let f = fopen(filePath, "rb") else { fail("cannot open \(filePath)") }
var bytes: [UInt8] = []
var chunk = [UInt8](repeating: 0, count: 1 << 16)
while true {
    let n = fread(&chunk, 1, chunk.count, f)
    if n <= 0 { break }
    bytes.append(contentsOf: chunk[0..<n])
}
fclose(f)
// The texts: the whole file, or its lines with their newlines.
var texts: [[UInt8]] = []
if byLines {
    var start = 0
    for (i, b) in bytes.enumerated() where b == 0x0A {
        texts.append(Array(bytes[start...i]))
        start = i + 1
    }
    if start < bytes.count { texts.append(Array(bytes[start...])) }
} else {
    texts = [bytes]
}

do {
    let t0 = now()
    let tokenizer = try Tokenizer(path: tokenizerPath)
    let load = now() - t0
    var best = Double.infinity
    var results: [[Int32]] = []
    for _ in 0..<repeats {
        let start = now()
        results = try texts.map { t in try t.withUnsafeBytes { try tokenizer.encode(bytes: $0, addSpecialTokens: false) } }
        best = min(best, now() - start)
    }
    if let idsPath {
        guard let out = fopen(idsPath, "w") else { fail("cannot write \(idsPath)") }
        for ids in results { fputs(ids.map(String.init).joined(separator: " ") + "\n", out) }
        fclose(out)
    }
    let tokens = results.reduce(0) { $0 + $1.count }
    // Decoding the ids back, for reference (not compared: tokenizers' decode is not what the script times).
    var bestDecode = Double.infinity
    for _ in 0..<repeats {
        let start = now()
        for ids in results { _ = try ids.withUnsafeBufferPointer { try tokenizer.decode($0, skipSpecialTokens: false) } }
        bestDecode = min(bestDecode, now() - start)
    }
    print("{\"load_s\": \(load), \"encode_s\": \(best), \"decode_s\": \(bestDecode), \"tokens\": \(tokens), \"bytes\": \(bytes.count)}")
} catch {
    fail("\(error)")
}
