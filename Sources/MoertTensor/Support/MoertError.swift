// MoertError: the one error type thrown inside moert; its codes map one-to-one onto `moert_status`.

/// An error raised anywhere in moert. The C-ABI layer turns it into a `moert_status` and a message.
public struct MoertError: Error, CustomStringConvertible, Sendable {
    /// Error classes, numbered exactly as the `MOERT_ERR_*` codes of `moert.h`.
    public enum Code: Int32, Sendable {
        case invalidArgument = 1
        case io = 2
        case format = 3
        case unsupported = 4
        case outOfMemory = 5
        case outOfRange = 6
        case contextFull = 7
        case bufferTooSmall = 8
        case plugin = 9
        case `internal` = 10
        case numeric = 11
    }

    /// The class of the error.
    public let code: Code
    /// One line naming the object, what was expected and what was found.
    public let message: String

    /// Creates an error of class `code` with `message`.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

extension MoertError {
    /// A malformed file or value.
    package static func format(_ message: String) -> MoertError { MoertError(.format, message) }
    /// A well-formed request moert does not support.
    package static func unsupported(_ message: String) -> MoertError { MoertError(.unsupported, message) }
    /// A bad argument from the caller.
    package static func invalid(_ message: String) -> MoertError { MoertError(.invalidArgument, message) }
}
