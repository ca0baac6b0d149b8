// ConcurrencyTests: one model shared by sessions on many threads, and the determinism guarantee of SECURITY.md.

import Foundation
import Testing
@testable import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
import MoertTestSupport

/// The bit patterns of `values`, so that comparisons are bit-for-bit (and -0 differs from +0).
func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }

/// A session's work in the concurrency test: prefill, decode, prefill again, decode again, with greedy
/// feedback, so that threads are at different phases (batched GEMM and single-row GEMV) at the same time.
/// Returns every logit row produced, in order, and the routed expert ids.
func mixedWorkload(_ model: Model, seed: Int) throws -> (logits: [Float], experts: [Int32]) {
    let vocab = model.config.vocabSize
    let session = try Session(model: model)
    session.isTracing = true
    func prompt(_ length: Int, _ salt: Int) -> [Int32] {
        (0..<length).map { Int32((seed * 37 + salt * 101 + $0 * 11) % vocab) }
    }
    var out: [Float] = []
    func decode(_ steps: Int) throws {
        for _ in 0..<steps {
            let next = Int32(session.lastLogits!.withUnsafeBufferPointer { argmax($0)! })
            out += try lastLogits(session, [next])
        }
    }
    out += try allLogits(session, prompt(3 + seed % 5, 0))
    try decode(4)
    out += try allLogits(session, prompt(2 + seed % 3, 1))
    try decode(3)
    return (out, session.trace.expertIds)
}

/// A trace's expert choices keyed by (position, layer): a batch records layer by layer, single tokens position by
/// position, so the records are compared in one order.
func routingByPosition(_ trace: TraceRecords) -> [[Int32]] {
    let order = (0..<trace.count).sorted {
        (trace.positions[$0], trace.layers[$0]) < (trace.positions[$1], trace.layers[$1])
    }
    return order.map { Array(trace.expertIds[Int(trace.offsets[$0])..<Int(trace.offsets[$0 + 1])]) }
}

/// Runs `body(i)` for i in 0..<count, each on its own thread, all released together; returns when all are done.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let done = DispatchGroup()
    let start = DispatchSemaphore(value: 0)
    for i in 0..<count {
        done.enter()
        let thread = Thread {
            start.wait()
            body(i)
            done.leave()
        }
        thread.stackSize = 4 << 20
        thread.start()
    }
    for _ in 0..<count { start.signal() }
    done.wait()
}

/// Results written by worker threads.
final class ThreadResults<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int: Result<T, Error>] = [:]

    func set(_ i: Int, _ body: () throws -> T) {
        let r = Result { try body() }
        lock.lock()
        values[i] = r
        lock.unlock()
    }

    func get(_ i: Int) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        guard let r = values[i] else { throw MoertError(.internal, "thread \(i) left no result") }
        return try r.get()
    }
}

@Suite("Concurrency and determinism")
struct ConcurrencyTests {
    static let threads = 8

    /// Fixtures covering F32, F16 (half GEMV) and BF16 storage, a shared expert and a dense layer, and an expert
    /// budget that makes threads evict and re-materialise experts under each other.
    static let cases: [(fixture: String, budget: ExpertBudget?)] = [
        ("mixtral", nil), ("qwen2_moe", nil), ("mixtral_bf16", nil), ("olmoe", .bytes(1)), ("qwen3_moe", .fraction(0.25)),
    ]

    @Test("8 sessions on 8 threads over one model give the logits of a sequential run, bit for bit",
          arguments: cases.indices)
    func sharedModel(index: Int) throws {
        let (fixture, budget) = Self.cases[index]
        var options = ModelLoadOptions()
        options.expertBudget = budget
        let model = try Model(path: fixturesDirectory + "/" + fixture, options: options)
        let sequential = try (0..<Self.threads).map { try mixedWorkload(model, seed: $0) }
        let results = ThreadResults<[(logits: [Float], experts: [Int32])]>()
        onThreads(Self.threads) { i in
            // Three rounds per thread so that the phases of different threads overlap in many ways.
            results.set(i) { try (0..<3).map { _ in try mixedWorkload(model, seed: i) } }
        }
        for i in 0..<Self.threads {
            let rounds = try results.get(i)
            for (round, r) in rounds.enumerated() {
                #expect(bits(r.logits) == bits(sequential[i].logits), "\(fixture): thread \(i), round \(round)")
                #expect(r.experts == sequential[i].experts, "\(fixture): thread \(i), round \(round) routing")
            }
        }
    }

    @Test("the same input twice gives bit-identical logits", arguments: fixtureNames)
    func repeatable(fixture: String) throws {
        let ref = try Reference(fixture: fixture)
        let first = try allLogits(try Session(model: try Model(path: fixturesDirectory + "/" + fixture)), ref.prompt)
        let model = try Model(path: fixturesDirectory + "/" + fixture)
        let session = try Session(model: model)
        let second = try allLogits(session, ref.prompt)
        session.reset()
        let third = try allLogits(session, ref.prompt)
        #expect(bits(first) == bits(second))
        #expect(bits(second) == bits(third), "a reset session repeats itself")
    }

    /// Batch composition changes the kernels (sgemm for a batch, sgemv for one row) and so the summation order of
    /// each dot product: logits may differ in the last bits. The routing must not: the router gate always runs
    /// through sgemm (`Linear.applyGEMM`), whose result for a row does not depend on the other rows, and the
    /// margins between the k-th and (k+1)-th expert in the fixtures are far above float32 rounding.
    /// Tolerance: 1e-5 of the largest logit is about 100 ulps of float32 at that magnitude, room for the
    /// reordered sums of 64-wide dot products through two layers, and far below any real error (> 1e-2).
    @Test("a prompt routes the same in one batch as token by token; logits agree to 1e-5", arguments: fixtureNames)
    func batchComposition(fixture: String) throws {
        let ref = try Reference(fixture: fixture)
        let model = try Model(path: fixturesDirectory + "/" + fixture)
        let vocab = model.config.vocabSize
        let batched = try Session(model: model)
        batched.isTracing = true
        let all = try allLogits(batched, ref.prompt)
        let stepped = try Session(model: model)
        stepped.isTracing = true
        var rows: [Float] = []
        for t in ref.prompt { rows += try allLogits(stepped, [t]) }
        #expect(batched.trace.count == ref.prompt.count * model.moeLayerCount)
        #expect(routingByPosition(batched.trace) == routingByPosition(stepped.trace))
        #expect(relativeError(rows[...], all[...]) <= 1e-5)
        // Within one batch composition the result is exact: a chunked prefill of the same sizes repeats bit for bit.
        let again = try Session(model: model)
        var rows2: [Float] = []
        for t in ref.prompt { rows2 += try allLogits(again, [t]) }
        #expect(bits(rows2) == bits(rows))
        #expect(rows.count == ref.prompt.count * vocab)
    }
}
