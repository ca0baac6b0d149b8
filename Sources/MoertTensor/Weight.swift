// Weight: a weight tensor in memory in one of the element types the kernels read, and conversion to float32.

import CKernels

/// How a weight's elements are stored in memory: float32, or f16/bf16 widened inside the kernels that read them.
public enum WeightStorage: Sendable, Equatable {
    case f32, f16, bf16

    /// Bytes per element.
    public var size: Int { self == .f32 ? 4 : 2 }

    /// The element type code of the C kernels (MOERT_GEMM_F32, MOERT_HALF_F16 or MOERT_HALF_BF16).
    var kernelType: Int32 {
        switch self {
        case .f32: return MOERT_GEMM_F32
        case .f16: return MOERT_HALF_F16
        case .bf16: return MOERT_HALF_BF16
        }
    }
}

/// A weight tensor in memory: float32 (read in place from a mapping or converted at load), or f16/bf16 kept as
/// stored and widened inside the kernels that read it.
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
    package func row(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        let cols = shape[1]
        switch storage {
        case .f32: out.update(from: data + r * cols, count: cols)
        case .f16, .bf16: moert_half_to_float(raw + r * cols * 2, storage.kernelType, out, Int64(cols))
        }
    }
}

/// A tensor as it is stored in a checkpoint mapping (any alignment), for data materialised later.
package struct StoredTensor: @unchecked Sendable {
    /// First byte, inside the mapping.
    package let data: UnsafeRawPointer
    /// Element type.
    package let storage: WeightStorage
    /// Elements.
    package let count: Int

    /// A tensor of `count` elements of `storage` at `data`.
    package init(data: UnsafeRawPointer, storage: WeightStorage, count: Int) {
        self.data = data
        self.storage = storage
        self.count = count
    }

    /// Bytes of data.
    package var byteCount: Int { count * storage.size }
}

/// Converts `count` elements of float32, f16 or bf16 data (any alignment) to float32.
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
    }
}
