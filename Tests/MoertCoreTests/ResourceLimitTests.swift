// ResourceLimitTests: absurd sizes and options from a file or a host end in a clear error, before any allocation.

import Foundation
import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport

/// Peak resident set size of this process in bytes (VmHWM).
func peakResidentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return usage.ru_maxrss * 1024
    }
    return kib * 1024
}

/// Resets the peak resident set size to the current one (Linux 4.0+: "5" to /proc/self/clear_refs); false when the
/// kernel refuses.
func resetPeakResidentBytes() -> Bool {
    guard let f = fopen("/proc/self/clear_refs", "w") else { return false }
    defer { fclose(f) }
    return fputs("5", f) >= 0
}

/// True under AddressSanitizer or ThreadSanitizer, whose shadow memory and quarantine of freed blocks make the
/// resident set no measure of what the code allocates.
let underSanitizer = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__asan_init") != nil
    || dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil

/// Runs `body` and checks that the process's peak resident set grew by less than 64 MiB: an allocation of the
/// sizes these tests claim (gigabytes to terabytes) would either fail or raise the peak far beyond that. The peak is
/// the process's, and tests run concurrently: when it grew more, the peak is reset and `body` measured again, up to
/// three times, so that another test's transient allocation does not fail this one while an allocation of `body`'s
/// own shows in every attempt. The peak is reset before the first attempt too: left at what another test reached
/// earlier, it could hide an allocation of `body`'s below it. Under a sanitizer only `body` runs (the plain test run
/// checks the peak). Measured bodies run one at a time (`measuredBodies`): the check's own test allocates 256 MiB in
/// each of its attempts, which would otherwise fall inside every attempt of a test running beside it.
@discardableResult
func expectNoLargeAllocation<T>(_ what: String, _ body: () throws -> T) rethrows -> T {
    measuredBodies.lock()
    defer { measuredBodies.unlock() }
    var growth = 0
    if !underSanitizer { _ = resetPeakResidentBytes() }
    var result = try measured(body, growth: &growth)
    for _ in 2...3 where !underSanitizer && growth >= 64 << 20 && resetPeakResidentBytes() {
        result = try measured(body, growth: &growth)
    }
    if !underSanitizer && growth >= 64 << 20 { Issue.record("\(what): peak RSS grew by \(growth) bytes in each attempt") }
    return result
}

/// Held while a body runs under `expectNoLargeAllocation` (recursive: a measured body may measure a part of itself).
private let measuredBodies = NSRecursiveLock()

/// Runs `body` and sets `growth` to how much the process's peak resident set grew meanwhile.
private func measured<T>(_ body: () throws -> T, growth: inout Int) rethrows -> T {
    let before = peakResidentBytes()
    let result = try body()
    growth = peakResidentBytes() - before
    return result
}

@Suite("Resource limits")
struct ResourceLimitTests {
    let model: Model
    init() throws { model = try Model(path: fixturesDirectory + "/mixtral") }

    @Test("100,000 tokens on a 512-token session: CONTEXT_FULL, nothing evaluated, nothing allocated")
    func hugeBatch() throws {
        var o = SessionOptions()
        o.contextLength = 512
        let s = try Session(model: model, options: o)
        let tokens = [Int32](repeating: 1, count: 100_000)
        expectNoLargeAllocation("huge batch") {
            for mode in [LogitsMode.none, .last, .all] {
                // No logits buffer at all: the context check comes before the buffer check.
                let e = moertError {
                    try tokens.withUnsafeBufferPointer { try s.evaluate($0, mode: mode, logits: nil, capacity: 0) }
                }
                #expect(e?.code == .contextFull && e?.message.contains("100000 tokens") == true, "\(mode): \(e?.message ?? "")")
            }
        }
        #expect(s.position == 0)
        _ = try lastLogits(s, [1, 2, 3])
        #expect(s.position == 3, "the session stays usable")
    }

    @Test("a batch larger than max_batch is evaluated in chunks with the workspace of max_batch")
    func hugeMaxBatch() throws {
        var o = SessionOptions()
        o.contextLength = 64
        o.maxBatch = 1 << 40
        let s = try expectNoLargeAllocation("max_batch 2^40") { try Session(model: model, options: o) }
        #expect(s.maxBatch == 64, "max_batch is capped by the context")
        o.maxBatch = -1
        #expect(moertError { _ = try Session(model: model, options: o) }?.code == .invalidArgument)
    }

    @Test("a missing logits buffer is refused when logits are asked for")
    func nullLogits() throws {
        let s = try Session(model: model)
        for mode in [LogitsMode.last, .all] {
            let e = moertError { try [Int32(1)].withUnsafeBufferPointer { try s.evaluate($0, mode: mode, logits: nil, capacity: 256) } }
            #expect(e?.code == .invalidArgument, "\(mode)")
        }
        #expect(s.position == 0)
    }

    @Test("out-of-range token ids anywhere in a prompt refuse the whole call")
    func tokenIdsInGenerate() throws {
        let s = try Session(model: model)
        var sampler = try Sampler(options: SamplerOptions())
        for bad: Int32 in [-1, 256, .min, .max] {
            let e = moertError { _ = try s.generate(prompt: [1, 2, bad, 4], maxNewTokens: 2, sampler: &sampler) }
            #expect(e?.code == .outOfRange, "\(bad)")
        }
        #expect(s.position == 0)
    }

    @Test("absurd generation arguments are refused")
    func generateArguments() throws {
        let s = try Session(model: model)
        var sampler = try Sampler(options: SamplerOptions())
        #expect(moertError { _ = try s.generate(prompt: [1], maxNewTokens: -1, sampler: &sampler) }?.code == .invalidArgument)
        #expect(moertError { _ = try s.generate(prompt: [], maxNewTokens: 4, sampler: &sampler) }?.code == .invalidArgument)
    }

    @Test("thread counts: negative refused, 0 means all CPUs")
    func threads() throws {
        for n in [-1, -64, Int.min] {
            #expect(moertError { try Threads.set(n) }?.code == .invalidArgument, "\(n)")
        }
        try Threads.set(0)
        #expect(Threads.current == Threads.available)
    }

    @Test("negative load options are refused")
    func loadOptions() throws {
        var o = ModelLoadOptions()
        o.maxContext = -1
        #expect(moertError { _ = try Model(path: fixturesDirectory + "/mixtral", options: o) }?.code == .invalidArgument)
    }

    @Test("a safetensors header claiming terabytes fails before allocating", arguments: [
        // 2^20 × 2^20 F32 = 4 TiB, with data_offsets that claim it: runs past the end of the file.
        #"{"w": {"dtype": "F32", "shape": [1048576, 1048576], "data_offsets": [0, 4398046511104]}}"#,
        // The same shape with honest, tiny data_offsets: the shape and the byte count disagree.
        #"{"w": {"dtype": "F32", "shape": [1048576, 1048576], "data_offsets": [0, 4]}}"#,
        // A dimension past 2^31.
        #"{"w": {"dtype": "BF16", "shape": [4294967296], "data_offsets": [0, 8589934592]}}"#,
    ])
    func terabyteHeader(header: String) throws {
        let dir = try TemporaryDirectory()
        try dir.write("t.safetensors", safetensorsBytes(header: header, data: [0, 0, 0, 0]))
        expectNoLargeAllocation(header) {
            let e = moertError { _ = try SafetensorsFile(path: dir.path + "/t.safetensors") }
            #expect(e?.code == .format, "\(e?.message ?? "no error")")
        }
    }

    @Test("a model whose config and header both claim a terabyte embedding fails before allocating")
    func terabyteModel() throws {
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        try dir.editConfig { $0["vocab_size"] = 1 << 30 }
        let bytes = try dir.readBytes("model.safetensors")
        // Keep every tensor, but rewrite the embedding's entry to [2^30, 64] F32 = 256 GiB at the end of the data.
        let length = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        var header = String(decoding: bytes[8..<8 + length], as: UTF8.self)
        let start = try #require(header.range(of: #""model.embed_tokens.weight":"#))
        let end = try #require(header[start.upperBound...].firstIndex(of: "}"))
        let dataSize = bytes.count - 8 - length
        header.replaceSubrange(start.lowerBound...end, with: #""model.embed_tokens.weight": {"dtype": "F32", "shape": [1073741824, 64], "data_offsets": [\#(dataSize), \#(dataSize + 274877906944)]}"#)
        try dir.write("model.safetensors", safetensorsBytes(header: header, data: Array(bytes[(8 + length)...])))
        expectNoLargeAllocation("terabyte model") {
            let e = moertError { _ = try Model(path: dir.path) }
            #expect(e?.code == .format && e?.message.contains("model.embed_tokens.weight") == true, "\(e?.message ?? "no error")")
        }
    }

    @Test("a config.json or shard index larger than 16 MiB is refused without reading it")
    func hugeTextFile() throws {
        let dir = try TemporaryDirectory.copy(of: "mixtral")
        let path = dir.path + "/config.json"
        #expect(truncate(path, 1 << 30) == 0)  // sparse: 1 GiB of zeros, no disk blocks
        expectNoLargeAllocation("1 GiB config.json") {
            let e = moertError { _ = try Model(path: dir.path) }
            #expect(e?.code == .format && e?.message.contains("limit") == true, "\(e?.message ?? "no error")")
        }
    }

    @Test("a FIFO where a model file belongs is refused instead of blocking the load", .timeLimit(.minutes(1)))
    func fifo() throws {
        for name in ["model.safetensors", "config.json"] {
            let dir = try TemporaryDirectory.copy(of: "mixtral")
            unlink(dir.path + "/" + name)
            #expect(mkfifo(dir.path + "/" + name, 0o600) == 0)
            let e = moertError { _ = try Model(path: dir.path) }
            #expect(e?.code == .io && e?.message.contains("not a regular file") == true, "\(name): \(e?.message ?? "no error")")
        }
    }
}

@Suite("The allocation check")
struct AllocationCheckTests {
    @Test("an allocation of 256 MiB inside the measured body is reported in every attempt")
    func detects() {
        guard !underSanitizer else { return }
        withKnownIssue {
            expectNoLargeAllocation("256 MiB") {
                // Fresh pages from the system, as moert's large buffers are (FloatBuffer maps them): an allocator
                // may hand back pages another test freed and it kept resident, which would not raise the peak.
                let bytes = 256 << 20
                guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                      p != MAP_FAILED else { return }
                defer { munmap(p, bytes) }
                for i in stride(from: 0, to: bytes, by: 4096) { p.storeBytes(of: 1, toByteOffset: i, as: UInt8.self) }
            }
        }
    }
}
