// KernelCache: the small text file that keeps the kernel choices measured on this machine, one per CPU, thread count,
// product and model shape, so that a choice once measured is kept: later runs read it instead of measuring again.

#if canImport(Glibc)
import Glibc
#endif

/// The cache file of measured kernel choices.
///
/// One choice per line, tab-separated: the CPU's identity (`CPUIdentity.key`), the thread count, the product, the
/// shapes it was measured on (`KernelWorkload.shape`), the kernel, and the measurement that chose it (for people).
/// Lines starting with `#`, and lines that do not parse, are ignored; so is everything past the first MiB. Deleting
/// the file makes the next load measure again.
public enum KernelCache {
    /// One cached choice.
    public struct Entry: Equatable, Sendable {
        public var cpu: String
        public var threads: Int
        public var product: String
        public var shape: String
        public var kernel: String
        public var detail: String

        /// The kernels its measurement timed: the first word of each comma-separated part of `detail` ("avx2 21.4
        /// GB/s, portable 2.0 GB/s (screened out)" timed avx2 and portable).
        public var timedKernels: Set<String> {
            Set(detail.split(separator: ",").compactMap { $0.split(separator: " ").first.map(String.init) })
        }

        public init(cpu: String, threads: Int, product: String, shape: String, kernel: String, detail: String) {
            self.cpu = cpu
            self.threads = threads
            self.product = product
            self.shape = shape
            self.kernel = kernel
            self.detail = detail
        }
    }

    /// The most bytes read from the file.
    static let maxBytes = 1 << 20

    /// The file `MOERT_KERNEL_CACHE` names ("0" or "off": no cache), else `$XDG_CACHE_HOME/moert/kernels.tsv`, else
    /// `$HOME/.cache/moert/kernels.tsv`; nil when caching is off or there is no home directory.
    public static func path(environment: (String) -> String? = { getenv($0).map { String(cString: $0) } }) -> String? {
        if let setting = environment("MOERT_KERNEL_CACHE") {
            if setting == "0" || setting == "off" { return nil }
            if !setting.isEmpty { return setting }
        }
        if let xdg = environment("XDG_CACHE_HOME"), xdg.hasPrefix("/") { return xdg + "/moert/kernels.tsv" }
        if let home = environment("HOME"), home.hasPrefix("/") { return home + "/.cache/moert/kernels.tsv" }
        return nil
    }

    /// The entries of the file at `path` (none when it is missing or unreadable).
    public static func read(path: String) -> [Entry] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: maxBytes)
        var count = 0
        while count < maxBytes {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, maxBytes - count) }
            if n <= 0 { break }
            count += n
        }
        return parse(String(decoding: bytes[..<count], as: UTF8.self))
    }

    /// The entries of a file's text. Lines end at each line feed (a carriage return before it is dropped; one
    /// anywhere else reads as a space), fields at each tab.
    public static func parse(_ text: String) -> [Entry] {
        text.unicodeScalars.split(separator: "\n").compactMap { raw in
            var scalars = raw
            if scalars.last == "\r" { scalars.removeLast() }
            let line = String(String.UnicodeScalarView(scalars.map { $0 == "\r" ? " " : $0 }))
            if line.hasPrefix("#") { return nil }
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count >= 5, let threads = Int(fields[1]), threads > 0 else { return nil }
            return Entry(cpu: String(fields[0]), threads: threads, product: String(fields[2]), shape: String(fields[3]),
                         kernel: String(fields[4]), detail: fields.count > 5 ? String(fields[5]) : "")
        }
    }

    /// The text of a file holding `entries`.
    public static func format(_ entries: [Entry]) -> String {
        var text = "# moert kernel choices measured on this machine: CPU, threads, product, shape, kernel, measurement.\n"
        text += "# Delete this file to measure again; MOERT_KERNEL_CACHE=off turns caching off.\n"
        for e in entries {
            let fields = [e.cpu, String(e.threads), e.product, e.shape, e.kernel, e.detail]
            text += fields.map(Self.field).joined(separator: "\t") + "\n"
        }
        return text
    }

    /// `value` as one field: tabs, line feeds and carriage returns become spaces.
    private static func field(_ value: String) -> String {
        String(String.UnicodeScalarView(value.unicodeScalars.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : $0 }))
    }

    /// True when the file at `path` can be written: its directory exists (it is made, 0700, when missing) and the
    /// file can be opened for writing.
    public static func isWritable(path: String) -> Bool {
        guard let slash = path.lastIndex(of: "/") else { return access(".", W_OK) == 0 && writable(path) }
        let directory = String(path[..<slash])
        if !directory.isEmpty, !makeDirectories(directory) { return false }
        return writable(path)
    }

    /// Replaces the file at `path` with `entries`: written to a temporary file beside it, then renamed over it, so
    /// that a reader sees the old file or the new one, never half of one.
    /// - Throws: `MoertError` (`.io`) when it cannot be written.
    public static func write(_ entries: [Entry], path: String) throws {
        let temporary = path + ".\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw MoertError(.io, "cannot write the kernel cache \(temporary): \(errnoText)") }
        let bytes = Array(format(entries).utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n <= 0 { break }
            written += n
        }
        let closed = close(fd) == 0
        guard written == bytes.count, closed, rename(temporary, path) == 0 else {
            let reason = errnoText
            unlink(temporary)
            throw MoertError(.io, "cannot write the kernel cache \(path): \(reason)")
        }
    }

    private static var errnoText: String { String(cString: strerror(errno)) }

    private static func writable(_ path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        close(fd)
        return true
    }

    /// mkdir -p with mode 0700 for the directories it makes.
    private static func makeDirectories(_ directory: String) -> Bool {
        var info = stat()
        if stat(directory, &info) == 0 { return (info.st_mode & S_IFMT) == S_IFDIR }
        if let slash = directory.lastIndex(of: "/"), slash != directory.startIndex {
            guard makeDirectories(String(directory[..<slash])) else { return false }
        }
        return mkdir(directory, 0o700) == 0 || errno == EEXIST
    }
}
