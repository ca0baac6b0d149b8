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
    let lock = Lock()
    /// Weights already read, by name (so a tensor is converted once however often it is asked for).
    private var cache: [String: Weight] = [:]
    /// The mapped safetensors files.
    public let files: [SafetensorsFile]
    /// Tensor name → index into `files`.
    let location: [String: Int]
    /// Buffers holding weights converted to float32 (F16/BF16 storage or unaligned F32).
    var converted: [FloatBuffer] = []
    /// Names of tensors read so far; the rest are reported as unused.
    var used: Set<String> = []
    /// The block-quantized tensors (U8 in the files) and their types.
    public let quantized: [String: WeightStorage]
    /// The format config.json's quantization_config gives the checkpoint's own quantized weights (block-wise FP8,
    /// MXFP4); nil when it gives none.
    public let nativeQuantization: QuantizationConfig?

    /// Opens `directory`: maps `model.safetensors` or the shards named by `model.safetensors.index.json` (with
    /// `mapped` false, reads them into memory instead), and validates every header. `quantized` names the tensors
    /// stored block-quantized (the moert section's quantization entry): each must be a two-dimensional U8 tensor.
    /// `native` is config.json's quantization_config: with block-wise FP8, every F8_E4M3 tensor must come with a
    /// scale tensor of the shape its blocks imply (checked here, from the headers).
    /// - Throws: `MoertError` naming the file at fault.
    public init(directory: String, mapped: Bool = true, quantized: [String: WeightStorage] = [:],
                native: QuantizationConfig? = nil) throws {
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
        for (tensor, type) in quantized.sorted(by: { $0.key < $1.key }) {
            guard let i = location[tensor], let info = files[i].tensors[tensor] else {
                throw MoertError.format("\(directory): the quantization entry names \(tensor), which no safetensors file holds")
            }
            guard info.dtype == .u8, info.shape.count == 2, info.shape[1] % type.blockBytes == 0 else {
                throw MoertError.format("\(tensor) in \(files[i].fileName): a \(type.rawValue) tensor must be U8 of shape [rows, blocks × \(type.blockBytes)], got \(info.dtype.rawValue) \(info.shape)")
            }
        }
        self.quantized = quantized
        self.nativeQuantization = native
        try checkScaledTensors()
    }

    /// True when the files are mapped (their pages belong to the page cache) rather than read into memory.
    public var isMapped: Bool { files.first?.file.isMapping ?? true }

    /// Checks that no mapped file has shrunk since it was mapped (see `MappedFile.checkUnchanged`).
    /// - Throws: `MoertError` (`.io`) naming the file.
    public func checkUnchanged() throws {
        for f in files { try f.file.checkUnchanged() }
    }

    /// Every tensor's name, sorted.
    public var tensorNames: [String] { location.keys.sorted() }

    /// How tensor `name` is stored: its quantized type, or the weight type of its dtype; nil for a tensor that is
    /// missing or not a weight.
    public func storage(of name: String) -> WeightStorage? {
        if let q = quantized[name] { return q }
        return (try? info(name))?.0.dtype.weightStorage
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

    /// The entry of weight `name` after checking that it has `shape` and a weight type: a float dtype, or the
    /// quantized type the quantization entry names (a U8 tensor of [rows, columns / block values × block bytes]).
    /// - Throws: `MoertError` (`.format`) naming the file and tensor on a missing tensor or wrong shape,
    ///   (`.unsupported`) on a dtype weights cannot have.
    private func weightInfo(_ name: String, shape: [Int]) throws -> (TensorInfo, SafetensorsFile, WeightStorage) {
        let (info, file) = try self.info(name)
        if let type = quantized[name] {
            guard shape.count == 2, type.fits(columns: shape[1]) else {
                throw MoertError.format("\(name) in \(file.fileName): stored as \(type.rawValue), whose rows hold whole blocks of \(type.blockValues) values, but the model needs shape \(shape)")
            }
            let expected = [shape[0], type.bytes(shape[1])]
            guard info.shape == expected else {
                throw MoertError.format("\(name) in \(file.fileName): \(type.rawValue) data of shape \(shape) must be U8 \(expected), got \(info.shape)")
            }
            return (info, file, type)
        }
        if info.dtype == .f8e4m3 {
            guard info.shape == shape else {
                throw MoertError.format("\(name) in \(file.fileName): expected shape \(shape), got \(info.shape)")
            }
            return (info, file, .f32)  // decoded to float32 (Checkpoint+Scaled.swift)
        }
        guard let storage = info.dtype.weightStorage else {
            let hint = info.dtype == .u8 ? "; a quantized tensor must be named in the moert section's quantization entry" : ""
            throw MoertError.unsupported("\(name) in \(file.fileName): dtype \(info.dtype.rawValue) is not supported for weights (F32, F16, BF16)\(hint)")
        }
        guard info.shape == shape else {
            throw MoertError.format("\(name) in \(file.fileName): expected shape \(shape), got \(info.shape)")
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
        let (info, file, storage) = try weightInfo(name, shape: shape)
        if let w = cache[name] { return w }
        let src = file.data(info), count = shape.reduce(1, *)
        try checkScales(name, src, storage, count: count)
        used.insert(name)
        let weight: Weight
        if info.dtype == .f8e4m3 {
            let stored = try fp8Tensor(name, info, file)
            let buffer = try FloatBuffer(count: count)
            try stored.decode(into: UnsafeMutableRawPointer(buffer.pointer), as: .f32)
            converted.append(buffer)
            weight = Weight(data: UnsafePointer(buffer.pointer), shape: shape)
        } else if info.dtype == .f32 && Int(bitPattern: src) % MemoryLayout<Float>.alignment == 0 {
            weight = Weight(data: src.assumingMemoryBound(to: Float.self), shape: shape)
        } else {
            let buffer = try FloatBuffer(count: count)
            convertToFloat(src, storage: storage, count: count, into: buffer.pointer)
            converted.append(buffer)
            weight = Weight(data: UnsafePointer(buffer.pointer), shape: shape)
        }
        cache[name] = weight
        return weight
    }

    /// A matrix for the kernels: F32 as `weight` gives it, F16 and BF16 kept as stored (aligned to 2 bytes in the
    /// mapping, else copied) and widened inside the kernels, quantized tensors read in place (the kernels read
    /// them byte-wise) after a check of their scales.
    /// - Throws: `MoertError` (`.format`, `.unsupported`) as `weight` does, and (`.format`) for a scale that is
    ///   not finite.
    public func matrix(_ name: String, shape: [Int]) throws -> Weight {
        let (info, _) = try self.info(name)
        if let type = quantized[name] {
            let stored = try storedTensor(name, shape: shape)
            try checkScales(name, stored.data, type, count: stored.count)
            return Weight(raw: stored.data, storage: type, shape: shape)
        }
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

    /// Tensor `name` as stored (no conversion), after checking its shape and that it is of a weight type; for data
    /// that is materialised later (routed experts).
    /// - Throws: `MoertError` (`.format`, `.unsupported`) as `weight` does.
    package func storedTensor(_ name: String, shape: [Int]) throws -> StoredTensor {
        try lock.withLock {
            let (info, file, storage) = try weightInfo(name, shape: shape)
            if info.dtype == .f8e4m3 { return try fp8Tensor(name, info, file) }
            used.insert(name)
            return StoredTensor(name: name, data: file.data(info), storage: storage, count: shape.reduce(1, *))
        }
    }

    /// Matrix `index` of the 3-D tensor `name` of shape [count, rows, columns] as stored (no conversion), in
    /// `encoding` (`.transposed` of a [rows, columns] matrix): one expert of a fused expert tensor, materialised later.
    /// - Throws: `MoertError` (`.format`, `.unsupported`) as `weight` does, and `.format` for a quantized tensor (fused
    ///   tensors are float).
    package func storedMatrix(_ name: String, shape: [Int], index: Int, encoding: StoredEncoding) throws -> StoredTensor {
        precondition(shape.count == 3 && index >= 0 && index < shape[0])
        return try lock.withLock {
            let (info, file, storage) = try weightInfo(name, shape: shape)
            guard !storage.isQuantized else { throw MoertError.format("\(name): a fused expert tensor cannot be \(storage.rawValue)") }
            used.insert(name)
            let count = shape[1] * shape[2]
            return StoredTensor(name: name, data: file.data(info) + storage.bytes(index * count), storage: storage,
                                count: count, encoding: encoding)
        }
    }

    /// The shape of `name` as the model sees it: the header's, or for a quantized tensor [rows, columns].
    /// - Throws: `MoertError` (`.format`) when missing.
    public func logicalShape(_ name: String) throws -> [Int] {
        let (info, _) = try self.info(name)
        guard let type = quantized[name] else { return info.shape }
        return [info.shape[0], info.shape[1] / type.blockBytes * type.blockValues]
    }

    /// A tensor for a plugin, any shape: floats and quantized tensors as float32 (converted when needed), I32 as
    /// int32.
    /// - Throws: `MoertError` (`.format`) when missing or of another dtype.
    package func pluginTensor(_ name: String) throws -> (data: UnsafeRawPointer, shape: [Int], isInteger: Bool) {
        let (info, file) = try self.info(name)
        if info.dtype.isFloat || info.dtype == .f8e4m3 || quantized[name] != nil {
            let shape = try logicalShape(name)
            return (UnsafeRawPointer(try weight(name, shape: shape).data), shape, false)
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
        lock.withLock { used.reduce(0) { n, name in n + ((try? logicalShape(name).reduce(1, *)) ?? 0) } }
    }

    /// Tensors present in the files but never read (a sign of an unsupported feature).
    public var unusedTensors: [String] { location.keys.filter { !used.contains($0) }.sorted() }

    /// The storage types of the weights read so far: their float dtypes and quantized types.
    public var usedStorage: Set<WeightStorage> {
        lock.withLock {
            Set(used.compactMap { name in quantized[name] ?? (try? info(name).0.dtype.weightStorage) ?? nil })
        }
    }

    /// The storage dtypes of all float tensors.
    public var floatDTypes: Set<TensorDType> {
        var s = Set<TensorDType>()
        for f in files { for t in f.tensors.values where t.dtype.isFloat { s.insert(t.dtype) } }
        return s
    }
}
