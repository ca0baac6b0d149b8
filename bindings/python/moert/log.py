"""moert's log (``moert_set_log_callback``): the library's warnings and plugins' messages, to stderr or a callback."""

from __future__ import annotations

import atexit
import enum
import threading
from typing import Any, Callable, Optional, Union

from . import _lib
from ._errors import UnsupportedError
from ._types import MOERT_LOG_DEBUG, MOERT_LOG_ERROR, MOERT_LOG_INFO, MOERT_LOG_WARN, moert_log_callback

__all__ = ["LogLevel", "LogCallback", "set_log_callback"]


class LogLevel(enum.IntEnum):
    """The levels of log messages, the ``MOERT_LOG_*`` of ``moert.h``; lower is more severe."""

    ERROR = MOERT_LOG_ERROR
    WARN = MOERT_LOG_WARN
    INFO = MOERT_LOG_INFO
    DEBUG = MOERT_LOG_DEBUG


#: What :func:`set_log_callback` takes: ``callback(level, message)``.
LogCallback = Callable[[LogLevel, str], Any]

_lock = threading.Lock()
# The ctypes thunk moert holds while a Python callback is installed: it must live as long as moert may call it.
_installed: Optional[Any] = None
_exit_hook = False


class _Trampoline:
    """Adapts a Python callback to ``moert_log_callback``; its repr names the callback when an exception is reported."""

    __slots__ = ("callback",)

    def __init__(self, callback: LogCallback) -> None:
        self.callback = callback

    def __call__(self, level: int, message: Optional[bytes], _user_data: Any) -> None:
        # No exception reaches moert: ctypes catches whatever escapes a callback, passes it to sys.unraisablehook
        # ("Exception ignored on calling ctypes callback function: <moert log callback ...>") and returns to C.
        self.callback(_level(level), message.decode("utf-8", "replace") if message else "")

    def __repr__(self) -> str:
        return f"<moert log callback {self.callback!r}>"


def _level(level: int) -> Union[LogLevel, int]:
    """`level` as a LogLevel (moert clamps plugins' levels into the known range; a newer one stays an int)."""
    try:
        return LogLevel(level)
    except ValueError:
        return level


def set_log_callback(callback: Optional[LogCallback]) -> None:
    """Sends moert's log messages to `callback` instead of stderr; None restores the default.

    moert logs its own warnings (an expert budget smaller than the experts one step needs, once per model; a plugin
    parameter the plugin never read) and whatever plugins write with ``host->log``. ``callback(level, message)``
    gets every message at every level: `level` is a :class:`LogLevel` and `message` one line of text without a
    newline. It runs on the thread whose moert call logs, possibly on several threads at once (each call takes the
    GIL), and must not call moert. An exception it raises never reaches moert or the call that logged: ctypes hands
    it to :func:`sys.unraisablehook` (which prints it to stderr by default) and the message is dropped.

    The default, restored by None, writes ``moert: <level>: <message>`` lines to stderr for levels up to the
    environment variable ``MOERT_LOG`` (an integer), or up to ``LogLevel.WARN`` when it is unset.

    Call it while no other moert call runs, as :func:`set_threads`. The binding keeps `callback` alive while it is
    installed, and restores the default at interpreter exit so that moert never calls into a finalised interpreter.

    Raises:
        UnsupportedError: the loaded library is older than 0.2.0, which added log callbacks; None is accepted and
            changes nothing there, since such a library only has the default.
        TypeError: `callback` is neither callable nor None.

    The C entry point is ``moert_set_log_callback``.
    """
    global _installed, _exit_hook
    if callback is not None and not callable(callback):
        raise TypeError(f"the log callback must be callable or None, got {type(callback).__name__}")
    try:
        set_callback = _lib.newer_function("moert_set_log_callback")
    except UnsupportedError:
        if callback is None:
            return
        raise
    thunk = moert_log_callback() if callback is None else moert_log_callback(_Trampoline(callback))  # () is NULL
    with _lock:
        set_callback(thunk, None)
        # moert no longer calls the previous thunk, so it may go.
        _installed = None if callback is None else thunk
        if callback is not None and not _exit_hook:
            atexit.register(_restore_default)
            _exit_hook = True


def _restore_default() -> None:
    """At interpreter exit: gives moert its default log back while the installed callback can still run."""
    if _installed is not None:
        set_log_callback(None)
