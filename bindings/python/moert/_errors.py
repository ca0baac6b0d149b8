"""Status codes of moert.h and the exception classes they map to."""

from __future__ import annotations

import enum
from typing import Dict, Optional, Sequence, Tuple, Type

#: What the moert package exports from this module (error_class stays internal).
__all__ = [
    "Status",
    "MoertError",
    "Error",
    "InvalidArgumentError",
    "MoertIOError",
    "FormatError",
    "UnsupportedError",
    "MoertMemoryError",
    "OutOfRangeError",
    "ContextFullError",
    "BufferTooSmallError",
    "PluginError",
    "InternalError",
    "NumericError",
    "LibraryNotFoundError",
]


class Status(enum.IntEnum):
    """The ``moert_status`` codes of ``moert.h`` (``MOERT_OK`` and ``MOERT_ERR_*``); the numbers never change."""

    OK = 0
    INVALID_ARGUMENT = 1
    IO = 2
    FORMAT = 3
    UNSUPPORTED = 4
    OUT_OF_MEMORY = 5
    OUT_OF_RANGE = 6
    CONTEXT_FULL = 7
    BUFFER_TOO_SMALL = 8
    PLUGIN = 9
    INTERNAL = 10
    NUMERIC = 11


class MoertError(Exception):
    """A call into moert failed.

    Attributes:
        status: the ``moert_status`` code (a :class:`Status` when the code is known, else a plain ``int``).
        message: the library's message (``moert_last_error()``), or a message of the binding for failures it
            detects itself, such as use of a closed object.

    Every status code has its own subclass; :func:`error_class` picks it. ``str(error)`` is the message.
    """

    def __init__(self, status: int, message: str = "") -> None:
        try:
            code: int = Status(status)
        except ValueError:
            code = int(status)
        self.status: int = code
        self.message: str = message
        super().__init__(message or _default_text(code))

    def __reduce__(self) -> Tuple[type, Tuple[int, str]]:
        return (type(self), (self.status, self.message))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={int(self.status)}, message={self.message!r})"


#: Short alias of :class:`MoertError`.
Error = MoertError


class InvalidArgumentError(MoertError, ValueError):
    """``MOERT_ERR_INVALID_ARGUMENT``: a NULL or closed handle, a bad option value or an inconsistent argument."""


class MoertIOError(MoertError, OSError):
    """``MOERT_ERR_IO``: a file could not be opened, read or mapped."""


class FormatError(MoertError):
    """``MOERT_ERR_FORMAT``: a file is malformed (bad JSON, a lying safetensors header, a wrong shape)."""


class UnsupportedError(MoertError):
    """``MOERT_ERR_UNSUPPORTED``: well-formed but not supported (architecture, rope type, dtype, ...)."""


class MoertMemoryError(MoertError, MemoryError):
    """``MOERT_ERR_OUT_OF_MEMORY``: an allocation failed or would exceed a limit."""


class OutOfRangeError(MoertError, IndexError):
    """``MOERT_ERR_OUT_OF_RANGE``: a token id outside ``[0, vocab_size)`` or an index past its bound."""


class ContextFullError(MoertError):
    """``MOERT_ERR_CONTEXT_FULL``: the session's context has no room for the tokens given."""


class BufferTooSmallError(MoertError):
    """``MOERT_ERR_BUFFER_TOO_SMALL``: an output buffer is smaller than required."""


class PluginError(MoertError):
    """``MOERT_ERR_PLUGIN``: a plugin failed to load or register, or returned invalid output."""


class InternalError(MoertError):
    """``MOERT_ERR_INTERNAL``: a bug in moert; please report it with the message."""


class NumericError(MoertError, ArithmeticError):
    """``MOERT_ERR_NUMERIC``: the computation produced NaN or infinity (non-finite weights or values out of range)."""


_CLASSES: Dict[int, Type[MoertError]] = {
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.IO: MoertIOError,
    Status.FORMAT: FormatError,
    Status.UNSUPPORTED: UnsupportedError,
    Status.OUT_OF_MEMORY: MoertMemoryError,
    Status.OUT_OF_RANGE: OutOfRangeError,
    Status.CONTEXT_FULL: ContextFullError,
    Status.BUFFER_TOO_SMALL: BufferTooSmallError,
    Status.PLUGIN: PluginError,
    Status.INTERNAL: InternalError,
    Status.NUMERIC: NumericError,
}

_TEXTS: Dict[int, str] = {
    Status.OK: "success",
    Status.INVALID_ARGUMENT: "invalid argument",
    Status.IO: "I/O error",
    Status.FORMAT: "malformed file",
    Status.UNSUPPORTED: "unsupported",
    Status.OUT_OF_MEMORY: "out of memory",
    Status.OUT_OF_RANGE: "out of range",
    Status.CONTEXT_FULL: "context full",
    Status.BUFFER_TOO_SMALL: "buffer too small",
    Status.PLUGIN: "plugin error",
    Status.INTERNAL: "internal error",
    Status.NUMERIC: "non-finite result",
}


def _default_text(status: int) -> str:
    """The message used when the library left none: the status name."""
    return _TEXTS.get(status, f"unknown status {int(status)}")


def error_class(status: int) -> Type[MoertError]:
    """The exception class for a non-zero ``moert_status`` (:class:`MoertError` itself for unknown codes)."""
    return _CLASSES.get(status, MoertError)


class LibraryNotFoundError(ImportError):
    """``libmoert`` could not be found or loaded, or it has a different ABI version.

    It derives from :class:`ImportError` (not :class:`MoertError`): no library call was made, so there is no
    status code. ``tried`` lists every candidate as ``(path, reason)`` pairs, in the order they were tried;
    the message lists them too.
    """

    def __init__(self, message: str, tried: Optional[Sequence[Tuple[str, str]]] = None) -> None:
        self.tried: Tuple[Tuple[str, str], ...] = tuple(tried or ())
        lines = [message]
        lines += [f"  {path}: {reason}" for path, reason in self.tried]
        super().__init__("\n".join(lines))
