// FuzzSupport: scratch files and process set-up shared by the libFuzzer targets in this directory.

import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// A private scratch directory (on tmpfs when available) that each input is written into before moert opens it,
/// because the parsers under test read files, as they do in real use.
enum FuzzScratch {
    /// The directory, created on first use and removed at exit.
    static let directory: String = {
        let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        let dir = "\(base)/moert-fuzz-\(getpid())"
        mkdir(dir, 0o700)
        atexit { FuzzScratch.removeAll() }
        return dir
    }()

    /// Writes `count` bytes at `bytes` to `name` inside the scratch directory, replacing it; returns the path.
    @discardableResult
    static func write(_ name: String, _ bytes: UnsafeRawPointer?, _ count: Int) -> String {
        let path = directory + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { fatalError("fuzz harness: cannot create \(path)") }
        var done = 0
        while done < count, let bytes {
            let n = Glibc.write(fd, bytes + done, count - done)
            guard n > 0 else { fatalError("fuzz harness: cannot write \(path)") }
            done += n
        }
        close(fd)
        return path
    }

    /// Removes `name` from the scratch directory if present.
    static func remove(_ name: String) { unlink(directory + "/" + name) }

    /// Removes the scratch directory and everything in it.
    static func removeAll() { removeDirectory(directory) }
}

/// Removes directory `path` and the files in it.
func removeDirectory(_ path: String) {
    guard let d = opendir(path) else { return }
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name != "." && name != ".." { unlink(path + "/" + name) }
    }
    closedir(d)
    rmdir(path)
}

/// Process set-up common to every target: expert memory from the system allocator (so AddressSanitizer sees
/// every expert buffer) and one OpenBLAS thread (the fuzzer runs one input at a time).
func fuzzSetUp() {
    setenv("MOERT_NO_JEMALLOC", "1", 1)
    setenv("OPENBLAS_NUM_THREADS", "1", 1)
    try? Threads.set(1)
    // Bare plugin names resolve only here (an empty directory), so an input cannot load a library by name.
    setenv("MOERT_PLUGIN_PATH", FuzzScratch.directory + "/no-plugins", 1)
}

/// libFuzzer's set-up hook, shared by every target (each links this file).
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutableRawPointer?) -> Int32 {
    fuzzSetUp()
    return 0
}

/// Runs `body`; a `MoertError` is the expected outcome for a malformed input, anything else is a harness finding.
func expectingMoertError(_ body: () throws -> Void) {
    do {
        try body()
    } catch is MoertError {
    } catch {
        fatalError("non-MoertError thrown: \(error)")
    }
}

/// Checks an invariant of a value that moert accepted; a violation is a finding, so it stops the fuzzer.
func invariant(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant violated: \(message())") }
}
