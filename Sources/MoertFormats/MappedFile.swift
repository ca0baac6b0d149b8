// MappedFile: a whole file in memory, read-only — mapped, or read into memory of its own — released with the object.

import MoertTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A file's bytes in memory for as long as the object lives: a read-only mapping of the file (pages come from the
/// page cache as they are touched), or, when `mapped` is false, a copy read at once into anonymous memory, which a
/// later change of the file cannot affect.
public final class MappedFile: @unchecked Sendable {
    /// The path the file was opened with (for messages).
    public let path: String
    /// First byte; nil for an empty file.
    public let base: UnsafeRawPointer?
    /// Size of the file in bytes when it was opened.
    public let size: Int
    /// True when `base` maps the file itself (its pages are the page cache's; see `checkUnchanged`).
    public let isMapping: Bool
    /// The open file of a mapping (kept to notice truncation); -1 otherwise.
    private let descriptor: Int32

    /// Opens `path` and maps it, or with `mapped` false reads it into memory.
    /// - Throws: `MoertError` (`.io`) when the file cannot be opened, inspected, mapped or read; `.outOfMemory`.
    public init(path: String, mapped: Bool = true) throws {
        self.path = path
        // O_NONBLOCK: opening a FIFO (or a device) placed where a model file belongs would otherwise block forever;
        // it has no effect on regular files, and anything else is refused below.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw MoertError(.io, "\(path): cannot open: \(String(cString: strerror(errno)))") }
        var keep = false
        defer { if !keep { close(fd) } }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw MoertError(.io, "\(path): cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw MoertError(.io, "\(path): not a regular file") }
        size = Int(st.st_size)
        isMapping = mapped
        guard size > 0 else {
            base = nil
            descriptor = -1
            return
        }
        if mapped {
            let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
            guard let p, p != MAP_FAILED else {
                throw MoertError(.io, "\(path): cannot map \(size) bytes: \(String(cString: strerror(errno)))")
            }
            base = UnsafeRawPointer(p)
            descriptor = fd
            keep = true
            return
        }
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let p, p != MAP_FAILED else { throw MoertError(.outOfMemory, "\(path): cannot allocate \(size) bytes to read it into") }
        var done = 0
        while done < size {
            let n = pread(fd, p + done, size - done, off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let reason = n == 0 ? "the file ended early (it changed while read)" : String(cString: strerror(errno))
                munmap(p, size)
                throw MoertError(.io, "\(path): cannot read \(size) bytes: \(reason)")
            }
            done += n
        }
        mprotect(p, size, PROT_READ)
        base = UnsafeRawPointer(p)
        descriptor = -1
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
        if descriptor >= 0 { close(descriptor) }
    }

    /// The whole file as bytes (empty for an empty file).
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Checks that a mapped file still has the size it had when it was mapped: reading a page past the end of a
    /// truncated file kills the process (SIGBUS), so evaluation asks before it reads. The file can still change
    /// between this check and the reads that follow it; only `mapped: false` closes that window.
    /// - Throws: `MoertError` (`.io`) naming the file and both sizes.
    public func checkUnchanged() throws {
        guard descriptor >= 0 else { return }
        var st = stat()
        guard fstat(descriptor, &st) == 0 else { throw MoertError(.io, "\(path): cannot stat: \(String(cString: strerror(errno)))") }
        guard Int(st.st_size) >= size else {
            throw MoertError(.io, "\(path): the file shrank from \(size) to \(st.st_size) bytes while the model was loaded; load it again (or load with MOERT_MODEL_NO_MMAP)")
        }
    }
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

/// The names in directory `path` (without "." and "..").
/// - Throws: `MoertError` (`.io`).
package func listDirectory(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else { throw MoertError(.io, "\(path): cannot list (\(String(cString: strerror(errno))))") }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafePointer(to: entry.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

/// Writes `bytes` to a new file at `path` (replacing it).
/// - Throws: `MoertError` (`.io`).
package func writeFile(_ path: String, bytes: UnsafeRawBufferPointer) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw MoertError(.io, "\(path): cannot create (\(String(cString: strerror(errno))))") }
    defer { close(fd) }
    try writeAll(fd, bytes, path: path)
}

/// Writes all of `bytes` to descriptor `fd` (the file at `path`, for messages), retrying interrupted writes.
/// - Throws: `MoertError` (`.io`).
package func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
    var done = 0
    while done < bytes.count {
        let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw MoertError(.io, "\(path): write failed (\(String(cString: strerror(errno))))") }
        done += n
    }
}

/// Writes `text` to a new file at `path` (replacing it).
/// - Throws: `MoertError` (`.io`).
package func writeFile(_ path: String, _ text: String) throws {
    var bytes = Array(text.utf8)
    try bytes.withUnsafeMutableBytes { try writeFile(path, bytes: UnsafeRawBufferPointer($0)) }
}
