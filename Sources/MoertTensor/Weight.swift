// Weight: a weight tensor in memory in one of the element types the kernels read, and conversion to float32.

import CKernels

/// How a weight's elements are stored in memory: float32; f16/bf16 widened inside the kernels that read them; or
/// blocks of 32 quantized values with one f16 scale (q8_0, q4_0: GGML's block_q8_0 and block_q4_0; q3_0: q4_0's
/// rule with 3 bits), or super-blocks of 256 with a 6-bit scale and minimum per 32 (q4_k: GGML's block_q4_K); see
/// docs/model-format.md. Read by the kernels as stored.
public enum WeightStorage: String, Sendable, Equatable, CaseIterable {
    case f32, f16, bf16, q8_0, q4_0, q3_0, q4_k

    /// Values per block: 32 for q8_0/q4_0/q3_0, 256 for q4_k, 1 for the others.
    public var blockValues: Int { isQuantized ? Int(moert_quant_block_values(kernelType)) : 1 }

    /// Bytes per block (per element for the unquantized types).
    public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q8_0: return Int(MOERT_Q8_0_BLOCK_BYTES)
        case .q4_0: return Int(MOERT_Q4_0_BLOCK_BYTES)
        case .q3_0: return Int(MOERT_Q3_0_BLOCK_BYTES)
        case .q4_k: return Int(MOERT_Q4_K_BLOCK_BYTES)
        }
    }

    /// True for the block-quantized types.
    public var isQuantized: Bool { self == .q8_0 || self == .q4_0 || self == .q3_0 || self == .q4_k }

    /// Bits per weight, scales included (8.5 for q8_0, 4.5 for q4_0 and q4_k, 3.5 for q3_0).
    public var bitsPerWeight: Double { Double(blockBytes * 8) / Double(blockValues) }

    /// Bytes of `count` elements (a multiple of `blockValues`).
    public func bytes(_ count: Int) -> Int { count / blockValues * blockBytes }

    /// True when rows of `columns` values can be stored in this type (whole blocks).
    public func fits(columns: Int) -> Bool { columns % blockValues == 0 }

    /// The element type code of the C kernels (MOERT_GEMM_F32, MOERT_HALF_F16, MOERT_HALF_BF16, MOERT_QUANT_Q8_0,
    /// MOERT_QUANT_Q4_0, MOERT_QUANT_Q3_0 or MOERT_QUANT_Q4_K).
    package var kernelType: Int32 {
        switch self {
        case .f32: return MOERT_GEMM_F32
        case .f16: return MOERT_HALF_F16
        case .bf16: return MOERT_HALF_BF16
        case .q8_0: return MOERT_QUANT_Q8_0
        case .q4_0: return MOERT_QUANT_Q4_0
        case .q3_0: return MOERT_QUANT_Q3_0
        case .q4_k: return MOERT_QUANT_Q4_K
        }
    }
}

/// A weight tensor in memory: float32 (read in place from a mapping or converted at load), or f16/bf16/q8_0/q4_0
/// kept as stored and read by the kernels as such.
public struct Weight: @unchecked Sendable {
    /// First element, row-major.
    public let raw: UnsafeRawPointer
    /// Element type.
    public let storage: WeightStorage
    /// Shape, outermost first.
    public let shape: [Int]
    /// Elements.
    public var count: Int { shape.reduce(1, *) }

    /// A float32 weight.
    public init(data: UnsafePointer<Float>, shape: [Int]) {
        raw = UnsafeRawPointer(data)
        storage = .f32
        self.shape = shape
    }

    /// A weight of any storage.
    public init(raw: UnsafeRawPointer, storage: WeightStorage, shape: [Int]) {
        self.raw = raw
        self.storage = storage
        self.shape = shape
    }

    /// The elements as float32; only for `.f32` storage.
    public var data: UnsafePointer<Float> {
        assert(storage == .f32, "float32 access to a \(storage) weight")
        return raw.assumingMemoryBound(to: Float.self)
    }

    /// Row `r` of a matrix widened to float32 into `out` (shape[1] floats).
    package func row(_ r: Int, into out: UnsafeMutablePointer<Float>) { rows(r, count: 1, into: out) }

    /// Rows [r0, r0 + count) of a matrix widened to float32 into `out` (count × shape[1] floats).
    package func rows(_ r0: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        let start = r0 * shape[1], values = count * shape[1]
        switch storage {
        case .f32: out.update(from: data + start, count: values)
        case .f16, .bf16: moert_half_to_float(raw + storage.bytes(start), storage.kernelType, out, Int64(values))
        case .q8_0, .q4_0, .q3_0, .q4_k: moert_dequantize(storage.kernelType, raw + storage.bytes(start), out, Int64(values))
        }
    }
}

/// A tensor as it is stored in a checkpoint mapping (any alignment), for data materialised later.
package struct StoredTensor: @unchecked Sendable {
    /// The tensor's name in the checkpoint, for messages.
    package let name: String
    /// First byte, inside the mapping.
    package let data: UnsafeRawPointer
    /// Element type: as stored, or for an encoded tensor the type it decodes to.
    package let storage: WeightStorage
    /// Elements.
    package let count: Int
    /// How the bytes at `data` become the elements: `.plain` when they are the elements.
    package let encoding: StoredEncoding

    /// Tensor `name`: `count` elements of `storage` at `data`, or encoded as `encoding` says.
    package init(name: String, data: UnsafeRawPointer, storage: WeightStorage, count: Int,
                 encoding: StoredEncoding = .plain) {
        self.name = name
        self.data = data
        self.storage = storage
        self.count = count
        self.encoding = encoding
    }

    /// Bytes of data as the kernels read it (after decoding).
    package var byteCount: Int { storage.bytes(count) }

    /// Bytes at `data` in the mapping (the encoded bytes, scales apart).
    package var sourceByteCount: Int { encoding.sourceBytes ?? byteCount }
}

/// Converts `count` elements of data of any storage (any alignment) to float32.
package func convertToFloat(_ src: UnsafeRawPointer, storage: WeightStorage, count: Int,
                            into dst: UnsafeMutablePointer<Float>) {
    switch storage {
    case .f32:
        for i in 0..<count { dst[i] = src.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
    case .f16:
        for i in 0..<count { dst[i] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
    case .bf16:
        // bfloat16 is the upper half of a float32: widening is exact.
        for i in 0..<count { dst[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16) }
    case .q8_0, .q4_0, .q3_0, .q4_k:
        moert_dequantize(storage.kernelType, src, dst, Int64(count))  // byte-wise reads: any alignment
    }
}

/// Converts `count` float32 values to `storage` (f16/bf16 rounded to nearest even; q8_0/q4_0/q4_k as GGML's reference
/// quantizers, q3_0 as q4_0's with 3 bits; `count` whole blocks) at `dst`.
package func convertFromFloat(_ src: UnsafePointer<Float>, storage: WeightStorage, count: Int,
                              into dst: UnsafeMutableRawPointer) {
    if storage.isQuantized {
        moert_quantize(storage.kernelType, src, dst, Int64(count))
    } else {
        moert_kv_store(storage.kernelType, src, dst, Int64(count))  // the KV cache's f32/f16/bf16 codes are the same
    }
}

/// Refuses `count` values of data of `storage` at `data` (tensor `name`) when it is quantized and a block scale is
/// infinite or NaN: the kernels would turn it into NaN outputs far from the cause.
/// - Throws: `MoertError` (`.format`) naming the tensor and the first bad block.
package func checkScales(_ name: String, _ data: UnsafeRawPointer, _ storage: WeightStorage, count: Int) throws {
    guard storage.isQuantized else { return }
    let bad = moert_quant_first_nonfinite(storage.kernelType, data, Int64(count / storage.blockValues))
    guard bad < 0 else {
        throw MoertError.format("\(name): the scale of block \(bad) (\(storage.rawValue)\(storage == .q4_k ? ": d or dmin" : "")) is infinite or NaN; weights must be finite")
    }
}
