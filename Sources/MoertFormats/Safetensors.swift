// SafetensorsFile: parses and validates a .safetensors file's header over a memory mapping.

import MoertTensor

/// Element types that can appear in a safetensors file and that moert reads.
public enum TensorDType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64"
    case i32 = "I32", i64 = "I64", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"
    /// 8-bit float e4m3fn (bias 7, no infinities): block-wise FP8 weights, read with their `_scale_inv` tensor.
    case f8e4m3 = "F8_E4M3"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool, .f8e4m3: return 1
        }
    }

    /// True for floating-point types moert computes with (F32, F16, BF16).
    public var isFloat: Bool { weightStorage != nil }

    /// The in-memory element type of weights stored as this type; nil for types weights cannot have.
    public var weightStorage: WeightStorage? {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        default: return nil
        }
    }
}

/// One tensor's entry in a safetensors header, validated against the file.
public struct TensorInfo: Sendable {
    /// Tensor name as written in the header.
    public let name: String
    /// Element type.
    public let dtype: TensorDType
    /// Shape, outermost first.
    public let shape: [Int]
    /// Byte offset of the data from the start of the file.
    public let offset: Int
    /// Byte length of the data (= product of shape × dtype size).
    public let byteCount: Int
    /// Number of elements.
    public var count: Int { byteCount / dtype.size }
}

/// A safetensors file: 8-byte little-endian header length, a JSON header, then the tensor data.
/// Every entry is checked once here; later reads may trust offsets and sizes.
public final class SafetensorsFile: @unchecked Sendable {
    /// Upper bound on the JSON header (the reference implementation uses 100 MB).
    public static let maxHeaderBytes = 100_000_000
    /// Upper bound on the tensors of one file. Real checkpoints hold at most a few thousand per file (a sharded
    /// DeepSeek-V3 about 600); the bound keeps a hostile header of tiny tensors from costing seconds and gigabytes
    /// before it is refused (parsing 100,000 entries takes about a second).
    public static let maxTensors = 100_000

    /// The mapping; tensor data is read in place from it.
    public let file: MappedFile
    /// Entries by name.
    public let tensors: [String: TensorInfo]
    /// Names in file order of their data.
    public let names: [String]

    /// Maps (or with `mapped` false reads) and validates `path`.
    /// - Throws: `MoertError` (`.io` for unreadable files, `.format` for malformed ones, `.unsupported` for
    ///   unknown dtypes), naming the file and tensor.
    public init(path: String, mapped: Bool = true) throws {
        file = try MappedFile(path: path, mapped: mapped)
        let bytes = file.bytes
        guard bytes.count >= 8 else {
            throw MoertError.format("\(path): truncated safetensors file (\(bytes.count) bytes, no header length)")
        }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw MoertError.format("\(path): header length \(headerLength) exceeds the \(Self.maxHeaderBytes)-byte limit")
        }
        let dataStart = 8 + Int(headerLength)
        guard dataStart <= bytes.count else {
            throw MoertError.format("\(path): header length \(headerLength) runs past the end of the \(bytes.count)-byte file")
        }
        // An entry is at most 12 values (its object, dtype, shape with up to 8 dimensions, data_offsets and their
        // two numbers); __metadata__ gets room for 65,536 more.
        let header = try JSON.parse(UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart]), what: "\(path) header",
                                    maxValues: 16 * Self.maxTensors + 65_536)
        guard let entries = header.object else { throw MoertError.format("\(path): header is not a JSON object") }
        guard entries.count <= Self.maxTensors + 1 else {
            throw MoertError.format("\(path): header lists \(entries.count) tensors, more than the \(Self.maxTensors) moert reads in one file")
        }
        let dataSize = bytes.count - dataStart
        var tensors: [String: TensorInfo] = [:]
        for (name, entry) in entries where name != "__metadata__" {
            tensors[name] = try Self.entry(name, entry, path: path, dataStart: dataStart, dataSize: dataSize)
        }
        // The format leaves no gaps and no overlaps: in order of their offsets, each tensor's bytes start where the
        // previous one's end, from the start of the data to its end (the reference implementation's `validate`).
        let ordered = tensors.values.sorted { ($0.offset, $0.byteCount, $0.name) < ($1.offset, $1.byteCount, $1.name) }
        var end = dataStart
        for info in ordered {
            guard info.offset == end else {
                let what = info.offset < end ? "overlaps the tensor before it" : "leaves \(info.offset - end) bytes unused before it"
                throw MoertError.format("\(path): tensor \(info.name) at data offset \(info.offset - dataStart) \(what) (tensor data must be contiguous)")
            }
            end += info.byteCount
        }
        guard end == bytes.count else {
            throw MoertError.format("\(path): the tensors cover \(end - dataStart) of the \(dataSize) data bytes (tensor data must fill the file)")
        }
        self.tensors = tensors
        self.names = ordered.map(\.name)
    }

    private static func entry(_ name: String, _ entry: JSON, path: String, dataStart: Int, dataSize: Int) throws -> TensorInfo {
        let at = "\(path): tensor \(name)"
        guard let o = entry.object else { throw MoertError.format("\(at): entry is not an object") }
        guard let dtypeName = o["dtype"]?.string else { throw MoertError.format("\(at): missing dtype") }
        guard let dtype = TensorDType(rawValue: dtypeName) else {
            throw MoertError.unsupported("\(at): dtype \(dtypeName) is not supported")
        }
        guard let shapeValues = o["shape"]?.array else { throw MoertError.format("\(at): missing shape") }
        var shape: [Int] = []
        var count = 1
        for v in shapeValues {
            guard let d = v.int, d >= 0, d <= Int64(Int32.max) else { throw MoertError.format("\(at): bad dimension in shape") }
            shape.append(Int(d))
            let (c, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow else { throw MoertError.format("\(at): shape \(shape) overflows") }
            count = c
        }
        guard let offs = o["data_offsets"]?.array, offs.count == 2, let begin = offs[0].int, let end = offs[1].int,
              begin >= 0, end >= begin
        else { throw MoertError.format("\(at): data_offsets must be [begin, end] with 0 <= begin <= end") }
        guard end <= Int64(dataSize) else {
            throw MoertError.format("\(at): data_offsets [\(begin), \(end)] run past the \(dataSize) data bytes (truncated file?)")
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.size)
        guard !overflow, Int64(bytes) == end - begin else {
            throw MoertError.format("\(at): shape \(shape) \(dtypeName) needs \(count) elements but data_offsets hold \(end - begin) bytes")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, offset: dataStart + Int(begin), byteCount: bytes)
    }

    /// The file's name without its directory, for messages.
    public var fileName: String { file.path.split(separator: "/").last.map(String.init) ?? file.path }

    /// A raw pointer to `info`'s data inside the mapping.
    public func data(_ info: TensorInfo) -> UnsafeRawPointer {
        // Invariant: offset + byteCount <= file.size was checked in init, and a mapping with tensors is non-empty.
        file.base.unsafelyUnwrapped + info.offset
    }
}
