// PluginFailure: the one error type of the dynamic plugin, turned into a status and a host->set_error message.
//
// Part of the `dynamic` plugin (router kinds `topp` and `adamoe`; math, sources, params and tensors at the top of
// TopPRouter.swift and AdaMoERouter.swift). No math here: every C entry point of the plugin catches a
// PluginFailure and returns its status after handing the message to host->set_error, so no Swift error crosses
// the C boundary. Threads: a value type, safe anywhere; set_error itself is the host's (thread-local in moert).

import CMoert

/// The host's `set_error` function, kept by instances because the host table is only guaranteed during create().
typealias SetErrorFunction = @convention(c) (UnsafePointer<CChar>?) -> Void

/// A failure inside the plugin: the status a C entry returns and the message it hands to `host->set_error`.
/// Thrown (typed) inside the plugin and caught at every C entry point; nothing crosses the boundary.
struct PluginFailure: Error {
    /// The non-zero `moert_status` to return.
    let status: moert_status
    /// What went wrong: the object, what was expected and what was found.
    let message: String

    init(_ status: moert_status, _ message: String) {
        self.status = status
        self.message = message
    }

    /// A parameter or call argument outside its allowed range.
    static func invalid(_ message: String) -> PluginFailure { PluginFailure(MOERT_ERR_INVALID_ARGUMENT, message) }

    /// A tensor that is missing or has the wrong shape or type.
    static func format(_ message: String) -> PluginFailure { PluginFailure(MOERT_ERR_FORMAT, message) }

    /// A host or caller that does not speak this plugin's ABI.
    static func plugin(_ message: String) -> PluginFailure { PluginFailure(MOERT_ERR_PLUGIN, message) }

    /// Hands the message to `setError` (when there is one) and returns the status.
    /// - Parameter setError: the host's `set_error`, or nil when the host table does not provide it.
    /// - Returns: `status`.
    func report(_ setError: SetErrorFunction?) -> moert_status {
        if let setError { message.withCString { setError($0) } }
        return status
    }
}
