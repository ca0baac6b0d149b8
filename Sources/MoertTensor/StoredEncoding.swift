// StoredEncoding: weights stored with scales beside them (block-wise FP8, MXFP4), and their decoding into a type the
// kernels read.

import CKernels

/// How a stored tensor's bytes become its elements.
package enum StoredEncoding: @unchecked Sendable {
    /// The bytes are the elements, of the tensor's storage type.
    case plain
    /// Block-wise FP8, decoded to float32.
    case fp8(FP8Source)
    /// MXFP4 rows, decoded to bf16 (exactly).
    case mxfp4(MXFP4Source)
    /// The elements, of the tensor's storage type, of the transpose: a [rows = in, columns = out] matrix applied as
    /// x · W (fused expert tensors); with `interleaved` the stored columns alternate between two halves (gate, up),
    /// which the [out, in] compute layout puts one after the other.
    case transposed(rows: Int, columns: Int, interleaved: Bool)

    /// Bytes the encoded data spans in the mapping (scales apart); nil for `.plain`.
    var sourceBytes: Int? {
        switch self {
        case .plain, .transposed: return nil
        case .fp8(let f): return f.rows * f.columns
        case .mxfp4(let m): return ((m.rows - 1) * m.rowStep + 1) * m.groups * 16
        }
    }
}

/// A block-wise FP8 matrix (DeepSeek-V3's and Qwen3's FP8 checkpoints): [rows, columns] e4m3fn bytes and
/// `weight_scale_inv` [ceil(rows / blockRows), ceil(columns / blockColumns)], one scale per block; the last block of
/// a row or column covers what is left (transformers' `FP8Linear`, `_dequantize_fp8_weight`).
package struct FP8Source: @unchecked Sendable {
    /// First scale, inside the mapping (any alignment).
    package let scales: UnsafeRawPointer
    /// The scales' element type: f32 (as published), bf16 or f16.
    package let scaleStorage: WeightStorage
    /// The scale tensor's name, for messages.
    package let scaleName: String
    /// Rows (output features) and columns (input features) of the matrix.
    package let rows: Int, columns: Int
    /// The block: `weight_block_size` of config.json's quantization_config.
    package let blockRows: Int, blockColumns: Int

    /// The matrix [rows, columns] with `scales` per block of blockRows × blockColumns.
    package init(scales: UnsafeRawPointer, scaleStorage: WeightStorage, scaleName: String, rows: Int, columns: Int,
                 blockRows: Int, blockColumns: Int) {
        self.scales = scales
        self.scaleStorage = scaleStorage
        self.scaleName = scaleName
        self.rows = rows
        self.columns = columns
        self.blockRows = blockRows
        self.blockColumns = blockColumns
    }

    /// Scales of the matrix: ceil(rows / blockRows) × ceil(columns / blockColumns).
    package var scaleCount: Int {
        ((rows + blockRows - 1) / blockRows) * ((columns + blockColumns - 1) / blockColumns)
    }
}

/// Rows of an MXFP4 tensor (gpt-oss experts, transformers' `integrations/mxfp4.py`): a source row is `groups` blocks
/// of 16 bytes, 32 e2m1 values with the low nibble first, each block times 2^(scale - 127) of its e8m0 scale byte.
/// Output row r is source row r × rowStep (counted from the tensor's first row), so that gpt-oss's interleaved
/// gate and up rows are read apart.
package struct MXFP4Source: @unchecked Sendable {
    /// The scale byte of the first block of the first row, inside the mapping.
    package let scales: UnsafeRawPointer
    /// Output rows.
    package let rows: Int
    /// Source rows from one output row to the next.
    package let rowStep: Int
    /// Blocks of 32 values per row.
    package let groups: Int

    /// `rows` rows of `groups` blocks, taking every `rowStep`-th source row.
    package init(scales: UnsafeRawPointer, rows: Int, rowStep: Int, groups: Int) {
        self.scales = scales
        self.rows = rows
        self.rowStep = rowStep
        self.groups = groups
    }
}

extension StoredTensor {
    /// Decodes an encoded tensor into `dst` as `target`: float32, or its `storage` (bf16 for MXFP4; a transposed
    /// tensor's own type).
    /// - Throws: `MoertError` (`.format`) naming the tensor and the place of a NaN weight, an infinite or NaN scale, an
    ///   e8m0 scale of 255 (NaN) or one that makes a value overflow.
    package func decode(into dst: UnsafeMutableRawPointer, as target: WeightStorage) throws {
        switch encoding {
        case .plain:
            preconditionFailure("\(name) is stored as it is computed; copy it")
        case let .transposed(rows, columns, interleaved):
            precondition(target == storage || target == .f32, "a transposed tensor keeps its type or widens to float32")
            if target == storage {
                moert_transpose_copy(dst, data, Int64(rows), Int64(columns), Int32(storage.blockBytes), interleaved ? 1 : 0)
            } else {
                let widened = UnsafeMutablePointer<Float>.allocate(capacity: count)
                defer { widened.deallocate() }
                convertToFloat(data, storage: storage, count: count, into: widened)
                moert_transpose_copy(dst, widened, Int64(rows), Int64(columns), 4, interleaved ? 1 : 0)
            }
        case .fp8(let f):
            precondition(target == .f32, "FP8 weights decode to float32")
            let badScale = moert_fp8_first_bad_scale(f.scales, f.scaleStorage.kernelType, Int64(f.scaleCount))
            guard badScale < 0 else {
                let perRow = (f.columns + f.blockColumns - 1) / f.blockColumns, i = Int(badScale)
                let value = Self.scale(f, i)
                throw MoertError.format("\(f.scaleName): the scale of block [\(i / perRow), \(i % perRow)] is \(value); scales must be finite")
            }
            let bad = moert_fp8_dequantize(data.assumingMemoryBound(to: UInt8.self), f.scales, f.scaleStorage.kernelType,
                                           Int64(f.rows), Int64(f.columns), Int64(f.blockRows), Int64(f.blockColumns),
                                           dst.assumingMemoryBound(to: Float.self))
            guard bad < 0 else {
                let i = Int(bad)
                throw MoertError.format("\(name): element [\(i / f.columns), \(i % f.columns)] is NaN (e4m3 byte 0x\(String(data.load(fromByteOffset: i, as: UInt8.self), radix: 16))); weights must be finite")
            }
        case .mxfp4(let m):
            precondition(target == .bf16 || target == .f32, "MXFP4 weights decode to bf16 or float32")
            let bad = moert_mxfp4_dequantize(data.assumingMemoryBound(to: UInt8.self),
                                             m.scales.assumingMemoryBound(to: UInt8.self), 0, Int64(m.rowStep),
                                             Int64(m.rows), Int64(m.groups), target.kernelType, dst)
            guard bad < 0 else {
                let block = Int(bad), e = Int(m.scales.load(fromByteOffset: block, as: UInt8.self))
                let place = "block \(block % m.groups) of row \(block / m.groups / m.rowStep)"
                if e == 255 { throw MoertError.format("\(name): the e8m0 scale of \(place) is 255 (NaN)") }
                throw MoertError.format("\(name): the e8m0 scale of \(place), 2^\(e - 127), makes a value overflow; weights must be finite")
            }
        }
    }

    private static func scale(_ f: FP8Source, _ i: Int) -> Float {
        switch f.scaleStorage {
        case .f32: return f.scales.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
        case .bf16: return Float(bitPattern: UInt32(f.scales.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
        default: return Float(Float16(bitPattern: f.scales.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        }
    }
}
