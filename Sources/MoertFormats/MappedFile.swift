// MappedFile: a read-only memory mapping of a whole file, unmapped when released.

import MoertTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A file mapped read-only into memory. The mapping lives as long as the object.
public final class MappedFile: @unchecked Sendable {
    /// The path the file was opened with (for messages).
    public let path: String
    /// First byte of the mapping; nil for an empty file.
    public let base: UnsafeRawPointer?
    /// Size of the file in bytes.
    public let size: Int

    /// Opens and maps `path`.
    /// - Throws: `MoertError` (`.io`) when the file cannot be opened, inspected or mapped.
    public init(path: String) throws {
        self.path = path
        // O_NONBLOCK: opening a FIFO (or a device) placed where a model file belongs would otherwise block forever;
        // it has no effect on regular files, and anything else is refused below.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw MoertError(.io, "\(path): cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw MoertError(.io, "\(path): cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw MoertError(.io, "\(path): not a regular file") }
        size = Int(st.st_size)
        if size == 0 { base = nil; return }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw MoertError(.io, "\(path): cannot map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// The whole file as bytes (empty for an empty file).
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }
}

/// Reads a whole (small) text file, refusing files larger than `limit` bytes.
/// - Throws: `MoertError` (`.io` or `.format`).
package func readTextFile(_ path: String, limit: Int = 16 << 20) throws -> String {
    let file = try MappedFile(path: path)
    guard file.size <= limit else { throw MoertError.format("\(path): \(file.size) bytes, larger than the \(limit)-byte limit") }
    guard let s = String(validating: file.bytes, as: UTF8.self) else { throw MoertError.format("\(path): not valid UTF-8") }
    return s
}

/// Joins two path components with one slash.
package func joinPath(_ dir: String, _ name: String) -> String {
    dir.hasSuffix("/") ? dir + name : dir + "/" + name
}

/// True when `path` names an existing file (of any kind).
package func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

/// True when `path` names a directory.
package func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}
