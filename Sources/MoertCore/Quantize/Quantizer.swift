// Quantizer: writes a copy of a checkpoint directory with its weights converted as a QuantizePlan says.

import CKernels
import MoertFormats
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// `moert quantize`: reads a checkpoint directory and writes another with the planned storage types — one
/// `model.safetensors`, config.json (or moert.json) with the quantization entry, and every other file of the
/// directory (tokenizer, generation config, ...) copied.
public struct Quantizer {
    /// The source directory.
    public let directory: String
    /// The source checkpoint.
    public let checkpoint: Checkpoint
    /// The plan.
    public let plan: QuantizePlan
    /// What to record in the quantization entry's notes.
    public var notes: [String: JSON] = [:]
    /// The source's config.json, parsed.
    private let config: JSON

    /// Opens `directory` (validating config.json, the moert section and every safetensors header) and plans it.
    /// - Throws: `MoertError` naming the file at fault.
    public init(directory: String, options: QuantizeOptions) throws {
        self.directory = directory
        let (modelConfig, json) = try ModelConfig.read(directory: directory)
        if let q = modelConfig.quantization {
            throw MoertError.unsupported("\(directory): the checkpoint is stored as \(q.quantMethod) (config.json's quantization_config); moert quantize reads F32, F16 and BF16 checkpoints and its own q8_0/q4_0/q4_k/q3_0")
        }
        config = json
        let section = try MoESection.read(directory: directory, config: json)
        checkpoint = try Checkpoint(directory: directory, quantized: section.quantization?.tensors ?? [:])
        plan = try QuantizePlan(checkpoint: checkpoint, options: options)
    }

    /// Writes the output directory `out` (created if missing; it must not hold a checkpoint already, unless
    /// `overwrite`). `progress(done, total, tensor)` is called before each tensor with bytes written so far.
    /// - Throws: `MoertError` (`.io` for files, `.format` for a source weight that is not finite).
    public func write(to out: String, overwrite: Bool, progress: (Int, Int, PlannedTensor) -> Void) throws {
        try prepare(out, overwrite: overwrite)
        let entries = plan.tensors.map { p -> SafetensorsWriter.Entry in
            guard let t = p.target, t.isQuantized else {
                return .init(name: p.name, dtype: p.target.map(Self.dtype) ?? p.sourceDType, shape: p.shape)
            }
            return .init(name: p.name, dtype: .u8, shape: [p.shape[0], t.bytes(p.shape[1])])
        }
        let writer = try SafetensorsWriter(path: joinPath(out, "model.safetensors"), entries: entries,
                                           metadata: ["format": "pt"])
        let total = plan.tensors.reduce(0) { $0 + $1.outputBytes }
        var done = 0
        let chunk = try FloatBuffer(count: Self.chunkValues)
        let converted = try FloatBuffer(count: Self.chunkValues)  // 4 bytes per value: room for any target
        for p in plan.tensors {
            progress(done, total, p)
            try convert(p, into: writer, chunk: chunk, converted: converted)
            done += p.outputBytes
        }
        try writer.finish()
        try writeSection(out)
        try copyOtherFiles(out)
    }

    /// Values converted at a time: 4 MiB of float32, a multiple of every block size.
    private static let chunkValues = 1 << 20

    /// The safetensors dtype of an unquantized storage type.
    private static func dtype(_ s: WeightStorage) -> TensorDType {
        switch s {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .q8_0, .q4_0, .q3_0, .q4_k: return .u8
        }
    }

    /// Writes tensor `p`: its bytes as they are when its type is kept, else widened to float32 a chunk at a time,
    /// checked to be finite, and converted. A chunk is `chunkValues` consecutive values whatever the rows: a multiple
    /// of every block size, and rows of a quantized target are whole blocks, so no block straddles two chunks (a row
    /// wider than a chunk is converted in several).
    private func convert(_ p: PlannedTensor, into writer: SafetensorsWriter, chunk: FloatBuffer,
                         converted: FloatBuffer) throws {
        let (info, file) = try checkpoint.info(p.name)
        let data = file.data(info)
        guard let source = p.source, let target = p.target, target != source else {
            try writer.append(UnsafeRawBufferPointer(start: data, count: info.byteCount))
            return
        }
        let count = p.shape.reduce(1, *)
        var start = 0
        while start < count {
            let values = min(Self.chunkValues, count - start)
            convertToFloat(data + source.bytes(start), storage: source, count: values, into: chunk.pointer)
            for i in 0..<values where !chunk.pointer[i].isFinite {
                throw MoertError.format("\(p.name): element \(start + i) is \(chunk.pointer[i]); weights must be finite to be quantized")
            }
            convertFromFloat(chunk.pointer, storage: target, count: values, into: UnsafeMutableRawPointer(converted.pointer))
            if target.isQuantized && moert_quant_first_nonfinite(target.kernelType, converted.pointer, Int64(values / target.blockValues)) >= 0 {
                throw MoertError.format("\(p.name): values too large for \(target.rawValue) (a block scale overflows f16); keep this class at f32 or bf16")
            }
            try writer.append(UnsafeRawBufferPointer(start: converted.pointer, count: target.bytes(values)))
            start += values
        }
    }

    /// Creates `out`, refusing the source directory itself and, unless `overwrite`, a directory with a checkpoint.
    private func prepare(_ out: String, overwrite: Bool) throws {
        var a = stat(), b = stat()
        if stat(directory, &a) == 0 && stat(out, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino {
            throw MoertError.invalid("\(out): the output directory must differ from the model directory")
        }
        if !isDirectory(out) {
            guard mkdir(out, 0o755) == 0 else {
                throw MoertError(.io, "\(out): cannot create the directory (\(String(cString: strerror(errno))))")
            }
        }
        let index = joinPath(out, "model.safetensors.index.json")
        if !overwrite && (fileExists(joinPath(out, "model.safetensors")) || fileExists(index)) {
            throw MoertError.invalid("\(out) already holds a checkpoint; choose another directory or pass --force")
        }
        if fileExists(index) { unlink(index) }  // would shadow the new model.safetensors
    }

    /// Writes config.json (or moert.json, when the source has one) with the quantization entry in the moert
    /// section.
    private func writeSection(_ out: String) throws {
        let entry = QuantizationSection(tensors: plan.quantizedTensors, notes: notes.isEmpty ? nil : .object(notes))
        let moertFile = joinPath(directory, "moert.json")
        if fileExists(moertFile) {
            var section = try JSON.parse(try readTextFile(moertFile), what: moertFile).object ?? [:]
            section["quantization"] = entry.tensors.isEmpty ? nil : entry.json
            try writeFile(joinPath(out, "moert.json"), JSON.object(section).prettyText)
            try writeFile(joinPath(out, "config.json"), config.prettyText)
            return
        }
        var root = config.object ?? [:]
        var section = root["moert"]?.object ?? [:]
        section["quantization"] = entry.tensors.isEmpty ? nil : entry.json
        root["moert"] = section.isEmpty ? nil : .object(section)
        try writeFile(joinPath(out, "config.json"), JSON.object(root).prettyText)
    }

    /// Copies every regular file of the source directory except the weights and the files `writeSection` writes.
    private func copyOtherFiles(_ out: String) throws {
        for name in try listDirectory(directory) where !name.hasSuffix(".safetensors") && !name.hasPrefix(".")
            && !["config.json", "moert.json", "model.safetensors.index.json"].contains(name) {
            let path = joinPath(directory, name)
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            let file = try MappedFile(path: path)
            try writeFile(joinPath(out, name), bytes: UnsafeRawBufferPointer(start: file.bytes.baseAddress, count: file.size))
        }
    }
}
