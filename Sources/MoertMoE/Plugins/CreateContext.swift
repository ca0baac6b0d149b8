// CreateContext: what one router or expert create() call may look up, behind moert_create_context.

import MoertFormats
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// What one router or expert create() call may look up: tensors under a prefix, and parameters.
final class CreateContext {
    let checkpoint: Checkpoint
    /// Prefix of relative tensor names (the block prefix for routers, the expert's prefix for experts).
    let prefix: String
    let params: [String: JSON]
    /// C strings handed out by param_string; freed with the context (after create returns).
    private var strings: [UnsafeMutablePointer<CChar>] = []
    /// Parameter keys the plugin asked for.
    private(set) var readKeys: Set<String> = []

    /// The parameter `key`, noting that it was read.
    func param(_ key: String) -> JSON? {
        readKeys.insert(key)
        return params[key]
    }

    /// Warns (through `Log`) about parameters the plugin never read (most likely misspelled). The plugin ABI cannot
    /// list the keys a kind accepts, so this is a warning rather than an error.
    func warnUnreadParameters(_ who: String) {
        for key in params.keys.sorted() where !readKeys.contains(key) {
            Log.write(.warning, "\(who): parameter \"\(key)\" was not read by the plugin (misspelled?)")
        }
    }

    init(checkpoint: Checkpoint, prefix: String, params: [String: JSON]) {
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.params = params
    }

    deinit { strings.forEach { free($0) } }

    /// Runs `body` with an opaque pointer to this context, valid during the call.
    func withOpaque<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        try withExtendedLifetime(self) { try body(OpaquePointer(Unmanaged.passUnretained(self).toOpaque())) }
    }

    static func from(_ p: OpaquePointer?) -> CreateContext? {
        p.map { Unmanaged<CreateContext>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
    }

    func keep(_ s: String) -> UnsafePointer<CChar> {
        let c = strdup(s)!
        strings.append(c)
        return UnsafePointer(c)
    }
}
