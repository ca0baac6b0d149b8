// Checkpoint: the tensors of a Hugging Face model directory — one safetensors file or the shards of an index.

import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// The tensors of a checkpoint directory, by name. Keeps every mapping alive and owns the buffers of converted
/// weights. Knows nothing of models: callers ask for tensors by name and shape.
public final class Checkpoint: @unchecked Sendable {
    /// The directory.
    public let directory: String
    /// Guards `converted`, `used` and `cache`: sessions may create routers on a shared model.
    private let lock = Lock()
    /// Weights already read, by name (so a tensor is converted once however often it is asked for).
    private var cache: [String: Weight] = [:]
    /// The mapped safetensors files.
    public let files: [SafetensorsFile]
    /// Tensor name → index into `files`.
    private let location: [String: Int]
    /// Buffers holding weights converted to float32 (F16/BF16 storage or unaligned F32).
    private(set) var converted: [FloatBuffer] = []
    /// Names of tensors read so far; the rest are reported as unused.
    private(set) var used: Set<String> = []

    /// Opens `directory`: maps `model.safetensors` or the shards named by `model.safetensors.index.json` (with
    /// `mapped` false, reads them into memory instead), and validates every header.
    /// - Throws: `MoertError` naming the file at fault.
    public init(directory: String, mapped: Bool = true) throws {
        self.directory = directory
        let single = joinPath(directory, "model.safetensors")
        let index = joinPath(directory, "model.safetensors.index.json")
        var shardNames: [String]
        var expected: [String: String] = [:]
        if fileExists(index) {
            let json = try JSON.parse(try readTextFile(index), what: index)
            guard let map = json.object?["weight_map"]?.object else { throw MoertError.format("\(index): missing \"weight_map\" object") }
            for (tensor, file) in map {
                guard let f = file.string, !f.isEmpty, !f.contains("/") else {
                    throw MoertError.format("\(index): weight_map entry for \(tensor) must be a file name in the same directory")
                }
                expected[tensor] = f
            }
            shardNames = Array(Set(expected.values)).sorted()
        } else if fileExists(single) {
            shardNames = ["model.safetensors"]
        } else {
            throw MoertError(.io, "\(directory): neither model.safetensors nor model.safetensors.index.json found")
        }

        var files: [SafetensorsFile] = []
        var location: [String: Int] = [:]
        for name in shardNames {
            let path = joinPath(directory, name)
            let file = try SafetensorsFile(path: path, mapped: mapped)
            for tensor in file.tensors.keys {
                if location[tensor] != nil { throw MoertError.format("\(path): tensor \(tensor) also appears in another shard") }
                if let e = expected[tensor], e != name {
                    throw MoertError.format("\(index): weight_map puts \(tensor) in \(e) but it is in \(name)")
                }
                location[tensor] = files.count
            }
            files.append(file)
        }
        for (tensor, file) in expected where location[tensor] == nil {
            throw MoertError.format("\(joinPath(directory, file)): tensor \(tensor) listed in the index is missing")
        }
        self.files = files
        self.location = location
    }

    /// True when the files are mapped (their pages belong to the page cache) rather than read into memory.
    public var isMapped: Bool { files.first?.file.isMapping ?? true }

    /// Checks that no mapped file has shrunk since it was mapped (see `MappedFile.checkUnchanged`).
    /// - Throws: `MoertError` (`.io`) naming the file.
    public func checkUnchanged() throws {
        for f in files { try f.file.checkUnchanged() }
    }

    /// True when the checkpoint holds `name`.
    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// The largest n of tensor names "`prefix`<n>.…" (e.g. the last layer of "model.layers."), or nil when none.
    public func largestIndex(after prefix: String) -> Int? {
        var largest: Int?
        for name in location.keys where name.hasPrefix(prefix) {
            let rest = name.utf8.dropFirst(prefix.utf8.count)
            guard let dot = rest.firstIndex(of: UInt8(ascii: ".")), let n = Int(Substring(rest[..<dot])) else { continue }
            largest = max(largest ?? n, n)
        }
        return largest
    }

    /// True when some tensor name starts with `prefix`.
    public func hasPrefix(_ prefix: String) -> Bool { location.keys.contains { $0.hasPrefix(prefix) } }

    /// The entry of weight `name` after checking that it has `shape` and a float dtype.
    /// - Throws: `MoertError` (`.format`) naming the file and tensor on a missing tensor or wrong shape,
    ///   (`.unsupported`) on a non-float dtype.
    private func floatInfo(_ name: String, shape: [Int]) throws -> (TensorInfo, SafetensorsFile, WeightStorage) {
        let (info, file) = try self.info(name)
        let fileName = file.file.path.split(separator: "/").last.map(String.init) ?? file.file.path
        guard info.shape == shape else {
            throw MoertError.format("\(name) in \(fileName): expected shape \(shape), got \(info.shape)")
        }
        guard let storage = info.dtype.weightStorage else {
            throw MoertError.unsupported("\(name) in \(fileName): dtype \(info.dtype.rawValue) is not supported for weights (F32, F16, BF16)")
        }
        return (info, file, storage)
    }

    /// The header entry of `name` and the file holding it.
    /// - Throws: `MoertError` (`.format`) when the tensor is missing.
    public func info(_ name: String) throws -> (TensorInfo, SafetensorsFile) {
        guard let i = location[name], let info = files[i].tensors[name] else {
            throw MoertError.format("\(directory): missing tensor \(name)")
        }
        return (info, files[i])
    }

    /// Reads tensor `name` as float32 after checking that its shape is `shape`.
    /// F32 data aligned to 4 bytes is used in place; F16 and BF16 data is converted into an owned buffer.
    /// - Throws: `MoertError` (`.format`) naming the file and tensor on a missing tensor or wrong shape,
    ///   (`.unsupported`) on a non-float dtype.
    public func weight(_ name: String, shape: [Int]) throws -> Weight {
        try lock.withLock { try lockedWeight(name, shape: shape) }
    }

    /// As `weight`, and refuses a tensor holding NaN or infinity: for the small tensors a model reads whole at load
    /// (norms, biases, router gates), where the check is cheap and a non-finite value would only surface later as
    /// a failed evaluation.
    /// - Throws: as `weight`, and `MoertError` (`.format`) naming the tensor, the value and its index.
    public func finiteWeight(_ name: String, shape: [Int]) throws -> Weight {
        let w = try weight(name, shape: shape)
        let data = w.data
        for i in 0..<w.count where !data[i].isFinite {
            throw MoertError.format("\(name): element \(i) is \(data[i]); weights must be finite")
        }
        return w
    }

    private func lockedWeight(_ name: String, shape: [Int]) throws -> Weight {
        let (info, file, storage) = try floatInfo(name, shape: shape)
        if let w = cache[name] { return w }
        used.insert(name)
        let src = file.data(info)
        let weight: Weight
        if info.dtype == .f32 && Int(bitPattern: src) % MemoryLayout<Float>.alignment == 0 {
            weight = Weight(data: src.assumingMemoryBound(to: Float.self), shape: shape)
        } else {
            let buffer = try FloatBuffer(count: info.count)
            convertToFloat(src, storage: storage, count: info.count, into: buffer.pointer)
            converted.append(buffer)
            weight = Weight(data: UnsafePointer(buffer.pointer), shape: shape)
        }
        cache[name] = weight
        return weight
    }

    /// A matrix for the kernels: F32 as `weight` gives it, F16 and BF16 kept as stored (aligned to 2 bytes in the
    /// mapping, else copied) and widened inside the kernels.
    /// - Throws: `MoertError` (`.format`, `.unsupported`) as `weight` does.
    public func matrix(_ name: String, shape: [Int]) throws -> Weight {
        let (info, _) = try self.info(name)
        guard info.dtype == .f16 || info.dtype == .bf16 else { return try weight(name, shape: shape) }
        let stored = try storedTensor(name, shape: shape)
        if Int(bitPattern: stored.data) % 2 == 0 { return Weight(raw: stored.data, storage: stored.storage, shape: shape) }
        return try lock.withLock {
            let buffer = try FloatBuffer(count: (info.count + 1) / 2)
            memcpy(buffer.pointer, stored.data, info.byteCount)
            converted.append(buffer)
            return Weight(raw: UnsafeRawPointer(buffer.pointer), storage: stored.storage, shape: shape)
        }
    }

    /// Tensor `name` as stored (no conversion), after checking its shape and that it is a float type; for data that
    /// is materialised later (routed experts).
    /// - Throws: `MoertError` (`.format`, `.unsupported`) as `weight` does.
    package func storedTensor(_ name: String, shape: [Int]) throws -> StoredTensor {
        try lock.withLock {
            let (info, file, storage) = try floatInfo(name, shape: shape)
            used.insert(name)
            return StoredTensor(data: file.data(info), storage: storage, count: info.count)
        }
    }

    /// A tensor for a plugin, any shape: floats as float32 (converted when needed), I32 as int32.
    /// - Throws: `MoertError` (`.format`) when missing or of another dtype.
    package func pluginTensor(_ name: String) throws -> (data: UnsafeRawPointer, shape: [Int], isInteger: Bool) {
        let (info, file) = try self.info(name)
        if info.dtype.isFloat {
            return (UnsafeRawPointer(try weight(name, shape: info.shape).data), info.shape, false)
        }
        return try lock.withLock { try lockedIntegerTensor(name, info, file) }
    }

    private func lockedIntegerTensor(_ name: String, _ info: TensorInfo, _ file: SafetensorsFile) throws
        -> (data: UnsafeRawPointer, shape: [Int], isInteger: Bool) {
        guard info.dtype == .i32 else {
            throw MoertError.format("\(name): dtype \(info.dtype.rawValue) is not available to plugins (F32, F16, BF16, I32)")
        }
        used.insert(name)
        let src = file.data(info)
        if Int(bitPattern: src) % 4 == 0 { return (src, info.shape, true) }
        let buffer = try FloatBuffer(count: info.count)  // 4-byte elements, reused for int32
        memcpy(buffer.pointer, src, info.byteCount)
        converted.append(buffer)
        return (UnsafeRawPointer(buffer.pointer), info.shape, true)
    }

    /// Bytes of weights held in buffers of their own: converted to float32 at load (small F16/BF16 tensors such as
    /// norms and gates, unaligned float32), or copied as stored (unaligned F16/BF16 matrices).
    public var convertedBytes: Int { converted.reduce(0) { $0 + $1.byteCount } }

    /// Bytes of all mapped files.
    public var mappedBytes: Int { files.reduce(0) { $0 + $1.file.size } }

    /// Elements of every tensor read so far (the model's parameter count once it is built).
    public var usedElementCount: Int {
        lock.withLock { used.reduce(0) { n, name in n + ((try? info(name).0.count) ?? 0) } }
    }

    /// Tensors present in the files but never read (a sign of an unsupported feature).
    public var unusedTensors: [String] { location.keys.filter { !used.contains($0) }.sorted() }

    /// The storage dtypes of all float tensors.
    public var floatDTypes: Set<TensorDType> {
        var s = Set<TensorDType>()
        for f in files { for t in f.tensors.values where t.dtype.isFloat { s.insert(t.dtype) } }
        return s
    }
}
