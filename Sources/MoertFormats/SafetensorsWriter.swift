// SafetensorsWriter: writes a .safetensors file tensor by tensor, so that a checkpoint larger than memory can be
// written while it is produced.

import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// A safetensors file being written: the header first (every tensor's dtype, shape and byte length are declared up
/// front), then each tensor's bytes in the declared order. The file appears under its name only when `finish`
/// succeeds; until then it is written to a temporary name beside it.
public final class SafetensorsWriter {
    /// One tensor of the file.
    public struct Entry: Sendable {
        /// Name in the header.
        public var name: String
        /// Element type ("F32", "F16", "BF16", "U8", ...).
        public var dtype: TensorDType
        /// Shape, outermost first.
        public var shape: [Int]

        /// Creates an entry.
        public init(name: String, dtype: TensorDType, shape: [Int]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
        }

        /// Bytes of data.
        public var byteCount: Int { shape.reduce(1, *) * dtype.size }
    }

    private let path: String
    private let temporary: String
    private var fd: Int32
    private let entries: [Entry]
    private var next = 0
    private var written = 0

    /// Creates the file at `path` (replacing it when `finish` succeeds) and writes its header for `entries`, in
    /// that order, with `metadata` as the header's `__metadata__` (string values).
    /// - Throws: `MoertError` (`.io`) when the file cannot be written, (`.invalidArgument`) for a duplicate name.
    public init(path: String, entries: [Entry], metadata: [String: String] = [:]) throws {
        self.path = path
        temporary = path + ".partial"
        self.entries = entries
        var header: [String: JSON] = [:]
        if !metadata.isEmpty { header["__metadata__"] = .object(metadata.mapValues { .string($0) }) }
        var offset = 0
        for e in entries {
            guard header[e.name] == nil else { throw MoertError.invalid("\(path): tensor \(e.name) appears twice") }
            header[e.name] = .object(["dtype": .string(e.dtype.rawValue),
                                      "shape": .array(e.shape.map { .int(Int64($0)) }),
                                      "data_offsets": .array([.int(Int64(offset)), .int(Int64(offset + e.byteCount))])])
            offset += e.byteCount
        }
        var text = Array(JSON.object(header).sortedText.utf8)
        while text.count % 8 != 0 { text.append(UInt8(ascii: " ")) }  // the data starts 8-byte aligned
        fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw MoertError(.io, "\(temporary): cannot create (\(String(cString: strerror(errno))))") }
        var length = UInt64(text.count).littleEndian
        try withUnsafeBytes(of: &length) { try writeAll($0) }
        try text.withUnsafeBytes { try writeAll($0) }
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(temporary)
        }
    }

    /// The entry whose bytes are expected next; nil when all were written.
    public var current: Entry? { next < entries.count ? entries[next] : nil }

    /// Appends bytes of the current tensor (a tensor may arrive in several pieces).
    /// - Throws: `MoertError` (`.io`) on a write error, (`.invalidArgument`) for more bytes than declared.
    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard let e = current, written + bytes.count <= e.byteCount else {
            throw MoertError.invalid("\(path): more data than the header declares")
        }
        try writeAll(bytes)
        written += bytes.count
        if written == e.byteCount {
            next += 1
            written = 0
        }
    }

    /// Closes the file and moves it to its name, after checking that every tensor was written whole.
    /// - Throws: `MoertError` (`.io`, `.invalidArgument`).
    public func finish() throws {
        guard current == nil else { throw MoertError.invalid("\(path): tensor \(current!.name) was not written whole") }
        let status = fsync(fd) == 0 && close(fd) == 0
        fd = -1
        guard status, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw MoertError(.io, "\(path): cannot finish writing (\(String(cString: strerror(errno))))")
        }
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws { try MoertFormats.writeAll(fd, bytes, path: temporary) }
}
