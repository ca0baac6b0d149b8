// Log: where moert's messages go — a host's callback (moert_set_log_callback) or, by default, stderr.

#if canImport(Glibc)
import Glibc
#endif

/// The process-wide log. Every message moert or a plugin writes passes through `write`.
public enum Log {
    /// Severity, numbered as the `MOERT_LOG_*` constants of moert.h.
    public enum Level: Int32, Sendable {
        case error = 0, warning = 1, info = 2, debug = 3

        /// The word the default sink prints.
        var name: String {
            switch self {
            case .error: return "error"
            case .warning: return "warning"
            case .info: return "info"
            case .debug: return "debug"
            }
        }
    }

    /// A host's receiver: level, message (one line, no newline; borrowed for the call), the host's pointer.
    public typealias Callback = @convention(c) (Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void

    private struct Sink: @unchecked Sendable {
        var callback: Callback?
        var userData: UnsafeMutableRawPointer?
    }

    private static let lock = Lock()
    nonisolated(unsafe) private static var sink = Sink()

    /// Sends every later message to `callback` with `userData`; nil restores the default sink.
    public static func setCallback(_ callback: Callback?, userData: UnsafeMutableRawPointer?) {
        lock.withLock { sink = Sink(callback: callback, userData: callback == nil ? nil : userData) }
    }

    /// The default sink's threshold: MOERT_LOG (an integer level) when set, else warnings and errors.
    static let stderrThreshold: Int32 = {
        guard let text = getenv("MOERT_LOG"), let level = Int32(String(cString: text)) else { return Level.warning.rawValue }
        return level
    }()

    /// Writes `message` at `level`: to the host's callback when one is set (every level), else to stderr as
    /// "moert: <level>: <message>" when `level` is at or below the threshold.
    public static func write(_ level: Level, _ message: String) {
        write(rawLevel: level.rawValue, message)
    }

    /// As `write`, for a level that came from a plugin (any integer; clamped to the known range).
    package static func write(rawLevel: Int32, _ message: String) {
        let level = min(max(rawLevel, Level.error.rawValue), Level.debug.rawValue)
        let current = lock.withLock { sink }
        if let callback = current.callback {
            message.withCString { callback(level, $0, current.userData) }
            return
        }
        guard level <= stderrThreshold else { return }
        let line = "moert: \(Level(rawValue: level)!.name): \(message)\n"
        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
    }
}
