"""Finding and loading libmoert, the prototypes of every function of moert.h and moert_plugin.h, and status
checking."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from ctypes import POINTER, c_char, c_char_p, c_float, c_int32, c_int64, c_size_t, c_uint32, c_void_p
from pathlib import Path
from typing import Any, Dict, Iterator, List, NoReturn, Optional, Tuple, Union

from ._errors import LibraryNotFoundError, MoertError, Status, UnsupportedError, error_class
from ._types import (
    MOERT_ABI_VERSION,
    moert_chat_message,
    moert_chat_options,
    moert_detokenizer_p,
    moert_expert_ops,
    moert_generate_options,
    moert_log_callback,
    moert_memory_stats,
    moert_model_info,
    moert_model_options,
    moert_model_p,
    moert_router_ops,
    moert_sampler_options,
    moert_sampler_p,
    moert_session_options,
    moert_session_p,
    moert_status,
    moert_token_callback,
    moert_tokenizer_p,
    moert_trace,
)

__all__ = [
    "ENV_VAR",
    "PROTOTYPES",
    "SINCE",
    "candidates",
    "check",
    "error",
    "get",
    "newer_function",
    "note_callback_exception",
    "raise_error",
    "last_error",
    "library_path",
    "load_library",
]

#: Environment variable naming the library file to load (nothing else is tried when it is set).
ENV_VAR = "MOERT_LIBRARY"

_PACKAGE_DIR = Path(__file__).resolve().parent
# bindings/python/moert -> the repository root, when the package runs from a checkout.
_REPO_DIR = _PACKAGE_DIR.parents[2] if len(_PACKAGE_DIR.parents) > 2 else _PACKAGE_DIR

# restype, argtypes of every MOERT_API function of moert.h and then moert_plugin.h, in header order. A library lacking
# any one that exists since 0.1.0 is refused; those added later are listed in SINCE.
PROTOTYPES: Dict[str, Tuple[Any, List[Any]]] = {
    # Versions
    "moert_version": (c_char_p, []),
    "moert_version_number": (c_uint32, []),
    "moert_abi_version": (c_uint32, []),
    # Status codes and errors
    "moert_status_string": (c_char_p, [moert_status]),
    "moert_last_error": (c_char_p, []),
    # Threads
    "moert_set_threads": (moert_status, [c_int32]),
    "moert_get_threads": (c_int32, []),
    # Logging
    "moert_set_log_callback": (None, [moert_log_callback, c_void_p]),
    # Models
    "moert_model_options_init_sized": (None, [POINTER(moert_model_options), c_size_t]),
    "moert_model_load": (moert_status, [c_char_p, POINTER(moert_model_options), POINTER(moert_model_p)]),
    "moert_model_free": (None, [moert_model_p]),
    "moert_model_get_info": (moert_status, [moert_model_p, POINTER(moert_model_info)]),
    "moert_model_eos_token_count": (c_int32, [moert_model_p]),
    "moert_model_eos_token": (c_int32, [moert_model_p, c_int32]),
    "moert_model_tensor_dtype": (c_int32, [moert_model_p, c_char_p]),
    # Memory
    "moert_model_get_memory_stats": (moert_status, [moert_model_p, POINTER(moert_memory_stats)]),
    "moert_model_get_resident_experts": (
        moert_status,
        [moert_model_p, POINTER(c_int32), c_size_t, POINTER(c_int32)],
    ),
    # Sessions
    "moert_session_options_init_sized": (None, [POINTER(moert_session_options), c_size_t]),
    "moert_session_create": (moert_status, [moert_model_p, POINTER(moert_session_options), POINTER(moert_session_p)]),
    "moert_session_free": (None, [moert_session_p]),
    "moert_session_reset": (moert_status, [moert_session_p]),
    "moert_session_n_past": (c_int64, [moert_session_p]),
    "moert_session_n_ctx": (c_int64, [moert_session_p]),
    "moert_session_kv_bytes": (c_int64, [moert_session_p]),
    "moert_session_shift": (moert_status, [moert_session_p, c_int64, c_int64]),
    "moert_session_eval": (
        moert_status,
        [moert_session_p, POINTER(c_int32), c_size_t, c_int32, POINTER(c_float), c_size_t],
    ),
    "moert_session_last_logits": (moert_status, [moert_session_p, POINTER(c_float), c_size_t]),
    # Sampling and generation
    "moert_sampler_options_init_sized": (None, [POINTER(moert_sampler_options), c_size_t]),
    "moert_sampler_create": (moert_status, [POINTER(moert_sampler_options), POINTER(moert_sampler_p)]),
    "moert_sampler_free": (None, [moert_sampler_p]),
    "moert_sampler_sample": (moert_status, [moert_sampler_p, POINTER(c_float), c_size_t, POINTER(c_int32)]),
    "moert_generate_options_init_sized": (None, [POINTER(moert_generate_options), c_size_t]),
    "moert_session_generate": (
        moert_status,
        [
            moert_session_p,
            POINTER(c_int32),
            c_size_t,
            POINTER(moert_generate_options),
            moert_token_callback,
            c_void_p,
            POINTER(c_int32),
            c_size_t,
            POINTER(c_size_t),
        ],
    ),
    # Routing: per-session router overrides, traces and counters
    "moert_session_set_router": (moert_status, [moert_session_p, c_char_p, c_char_p]),
    "moert_session_set_top_k": (moert_status, [moert_session_p, c_int32]),
    "moert_session_set_trace": (moert_status, [moert_session_p, c_int32]),
    "moert_session_get_trace": (moert_status, [moert_session_p, POINTER(moert_trace)]),
    "moert_session_clear_trace": (moert_status, [moert_session_p]),
    "moert_session_get_expert_counts": (
        moert_status,
        [moert_session_p, POINTER(c_int64), c_size_t, POINTER(c_int32), POINTER(c_int32)],
    ),
    "moert_session_reset_counters": (moert_status, [moert_session_p]),
    "moert_model_expert_kind": (c_char_p, [moert_model_p, c_int32, c_int32]),
    "moert_model_router_kind": (c_char_p, [moert_model_p, c_int32]),
    # Text: tokenizers, streaming detokenizers and chat templates. Text that may hold a NUL (encode input, decoded
    # output) travels with its length: buffers as POINTER(c_char), lent-out text as an address (c_void_p).
    "moert_tokenizer_load": (moert_status, [c_char_p, POINTER(moert_tokenizer_p)]),
    "moert_tokenizer_free": (None, [moert_tokenizer_p]),
    "moert_tokenizer_n_vocab": (c_int32, [moert_tokenizer_p]),
    "moert_tokenizer_encode": (
        moert_status,
        [moert_tokenizer_p, c_char_p, c_size_t, c_uint32, POINTER(c_int32), c_size_t, POINTER(c_size_t)],
    ),
    "moert_tokenizer_decode": (
        moert_status,
        [moert_tokenizer_p, POINTER(c_int32), c_size_t, c_uint32, POINTER(c_char), c_size_t, POINTER(c_size_t)],
    ),
    "moert_tokenizer_token_to_piece": (c_char_p, [moert_tokenizer_p, c_int32]),
    "moert_tokenizer_piece_to_token": (c_int32, [moert_tokenizer_p, c_char_p]),
    "moert_tokenizer_bos": (c_int32, [moert_tokenizer_p]),
    "moert_tokenizer_eos": (c_int32, [moert_tokenizer_p]),
    "moert_tokenizer_pad": (c_int32, [moert_tokenizer_p]),
    "moert_tokenizer_n_stop_tokens": (c_int32, [moert_tokenizer_p]),
    "moert_tokenizer_stop_token": (c_int32, [moert_tokenizer_p, c_int32]),
    "moert_detokenizer_create": (moert_status, [moert_tokenizer_p, c_uint32, POINTER(moert_detokenizer_p)]),
    "moert_detokenizer_free": (None, [moert_detokenizer_p]),
    "moert_detokenizer_push": (
        moert_status,
        [moert_detokenizer_p, c_int32, POINTER(c_void_p), POINTER(c_size_t)],
    ),
    "moert_detokenizer_flush": (moert_status, [moert_detokenizer_p, POINTER(c_void_p), POINTER(c_size_t)]),
    "moert_chat_options_init_sized": (None, [POINTER(moert_chat_options), c_size_t]),
    "moert_tokenizer_apply_chat_template": (
        moert_status,
        [
            moert_tokenizer_p,
            POINTER(moert_chat_message),
            c_size_t,
            POINTER(moert_chat_options),
            POINTER(c_char),
            c_size_t,
            POINTER(c_size_t),
        ],
    ),
    "moert_tokenizer_apply_chat_template_json": (
        moert_status,
        [moert_tokenizer_p, c_char_p, POINTER(moert_chat_options), POINTER(c_char), c_size_t, POINTER(c_size_t)],
    ),
    # moert_plugin.h: host-side functions
    "moert_plugin_load": (moert_status, [c_char_p]),
    "moert_register_router": (moert_status, [POINTER(moert_router_ops)]),
    "moert_register_expert": (moert_status, [POINTER(moert_expert_ops)]),
    "moert_kind_count": (c_int32, [c_int32]),
    "moert_kind_name": (c_char_p, [c_int32, c_int32]),
    "moert_shutdown": (moert_status, []),
}

#: The functions of PROTOTYPES added after 0.1.0, with the version that added them (their ``@since``). A library
#: without them is still loaded; the calls of this binding that need one raise UnsupportedError (newer_function).
SINCE: Dict[str, str] = {
    "moert_set_log_callback": "0.2.0",
    "moert_session_last_logits": "0.2.0",
    "moert_tokenizer_load": "0.2.0",
    "moert_tokenizer_free": "0.2.0",
    "moert_tokenizer_n_vocab": "0.2.0",
    "moert_tokenizer_encode": "0.2.0",
    "moert_tokenizer_decode": "0.2.0",
    "moert_tokenizer_token_to_piece": "0.2.0",
    "moert_tokenizer_piece_to_token": "0.2.0",
    "moert_tokenizer_bos": "0.2.0",
    "moert_tokenizer_eos": "0.2.0",
    "moert_tokenizer_pad": "0.2.0",
    "moert_tokenizer_n_stop_tokens": "0.2.0",
    "moert_tokenizer_stop_token": "0.2.0",
    "moert_detokenizer_create": "0.2.0",
    "moert_detokenizer_free": "0.2.0",
    "moert_detokenizer_push": "0.2.0",
    "moert_detokenizer_flush": "0.2.0",
    "moert_chat_options_init_sized": "0.2.0",
    "moert_tokenizer_apply_chat_template": "0.2.0",
    "moert_tokenizer_apply_chat_template_json": "0.2.0",
    "moert_session_kv_bytes": "0.2.0",
    "moert_model_tensor_dtype": "0.2.0",
    "moert_session_shift": "0.2.0",
}

_lock = threading.Lock()
_library: Optional[ctypes.CDLL] = None
_library_path: Optional[str] = None


def candidates() -> List[str]:
    """The library paths (or loader names) tried, in order.

    1. ``$MOERT_LIBRARY`` when set: then nothing else (a directory stands for the ``libmoert.so*`` in it).
    2. ``libmoert.so*`` shipped inside the installed package (``moert/lib/`` or ``moert/``).
    3. From a repository checkout: ``<repo>/build/lib/libmoert.so``, then ``<repo>/.build/release/libmoert.so``.
    4. The system loader: ``ctypes.util.find_library("moert")``, then ``libmoert.so.1``.
    """
    return list(_candidates())


def _candidates() -> Iterator[str]:
    """The candidates of :func:`candidates`, lazily: the system search (which may run ldconfig) comes last."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if path.is_dir():
            yield from (str(path / name) for name in ("libmoert.so", f"libmoert.so.{MOERT_ABI_VERSION}"))
        else:
            yield str(path)
        return
    for folder in (_PACKAGE_DIR / "lib", _PACKAGE_DIR):
        yield from (str(p) for p in _shipped(folder))
    if (_REPO_DIR / "include" / "moert.h").is_file():
        yield str(_REPO_DIR / "build" / "lib" / "libmoert.so")
        yield str(_REPO_DIR / ".build" / "release" / "libmoert.so")
    system = ctypes.util.find_library("moert")
    if system:
        yield system
    if system != f"libmoert.so.{MOERT_ABI_VERSION}":
        yield f"libmoert.so.{MOERT_ABI_VERSION}"


def _shipped(folder: Path) -> List[Path]:
    """``libmoert.so*`` files in `folder`: the SONAME first, then the plain name, then any other."""
    if not folder.is_dir():
        return []
    preferred = [f"libmoert.so.{MOERT_ABI_VERSION}", "libmoert.so"]
    files = sorted(p for p in folder.glob("libmoert.so*") if p.is_file())
    return sorted(files, key=lambda p: (preferred.index(p.name) if p.name in preferred else len(preferred), p.name))


def _open(path: str) -> ctypes.CDLL:
    """Loads one candidate, declares every prototype and checks the ABI version.

    Raises:
        OSError: the loader refused the file, a function is missing, or the ABI version differs.
    """
    if os.sep in path and not os.path.exists(path):
        raise OSError("no such file")
    library = ctypes.CDLL(path)
    present = [name for name in PROTOTYPES if hasattr(library, name)]
    missing = [name for name in PROTOTYPES if name not in present and name not in SINCE]
    if missing:
        raise OSError(f"not a moert {MOERT_ABI_VERSION}.x library: missing {', '.join(missing)}")
    for name in present:
        restype, argtypes = PROTOTYPES[name]
        function = getattr(library, name)
        function.restype = restype
        function.argtypes = argtypes
    abi = library.moert_abi_version()
    if abi != MOERT_ABI_VERSION:
        raise OSError(f"ABI version {abi}, this binding needs {MOERT_ABI_VERSION}")
    return library


def _resolved(library: ctypes.CDLL, fallback: str) -> str:
    """The file a loaded library came from (via /proc/self/maps), else `fallback`."""
    try:
        address = ctypes.cast(library.moert_version, c_void_p).value or 0
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                parts = line.split(None, 5)
                start, _, end = parts[0].partition("-")
                if len(parts) == 6 and int(start, 16) <= address < int(end, 16):
                    return parts[5].strip()
    except (OSError, ValueError):
        pass
    return fallback


def load_library(path: Optional[Union[str, "os.PathLike[str]"]] = None) -> str:
    """Loads libmoert now, from `path` or by the search order of :func:`candidates`; returns the file loaded.

    Loading happens once per process; later calls return the path already loaded (a different explicit
    `path` then raises :class:`LibraryNotFoundError`, because a loaded library cannot be swapped).

    Raises:
        LibraryNotFoundError: no candidate could be loaded; the message lists each one and why it failed.
    """
    global _library, _library_path
    with _lock:
        if _library is not None:
            if path is not None and os.path.realpath(os.fspath(path)) != os.path.realpath(_library_path or ""):
                raise LibraryNotFoundError(f"libmoert is already loaded from {_library_path}; cannot load {path}")
            return _library_path or ""
        tried: List[Tuple[str, str]] = []
        for candidate in [os.fspath(path)] if path is not None else _candidates():
            try:
                library = _open(candidate)
            except OSError as error:
                tried.append((candidate, str(error) or type(error).__name__))
                continue
            _library, _library_path = library, _resolved(library, candidate)
            return _library_path
        hint = f"set {ENV_VAR} to the path of libmoert.so (run `make` in the moert repository to build it)"
        raise LibraryNotFoundError(f"cannot load libmoert; {hint}. Tried:", tried)


def get() -> ctypes.CDLL:
    """The loaded library, loading it on first use."""
    library = _library
    if library is None:
        load_library()
        library = _library
        assert library is not None
    return library


def newer_function(name: str) -> Any:
    """The loaded library's function `name`, one of :data:`SINCE`.

    Raises:
        UnsupportedError: the library is older than the version that added it.
    """
    library = get()
    function = getattr(library, name, None)
    if function is None:
        text = library.moert_version()
        found = text.decode("ascii", "replace") if text else "unknown"
        raise UnsupportedError(
            Status.UNSUPPORTED, f"{name} needs libmoert {SINCE[name]} or later; {library_path()} is version {found}"
        )
    return function


def library_path() -> str:
    """The file libmoert was loaded from (loading it on first use)."""
    get()
    return _library_path or ""


def last_error() -> str:
    """This thread's ``moert_last_error()`` text."""
    text = get().moert_last_error()
    return text.decode("utf-8", "replace") if text else ""


# A Python exception raised inside a callback that moert called (a router or expert written in Python), kept per
# thread until the failed library call it caused is turned into an exception.
_callback_failure = threading.local()


def note_callback_exception(exception: BaseException) -> None:
    """Keeps `exception`, raised by a Python callback on this thread, for the error of the call that ran it."""
    _callback_failure.exception = exception


def check(status: int) -> None:
    """Raises the :class:`MoertError` subclass for `status` with the library's message, unless it is MOERT_OK."""
    if status != 0:
        raise_error(error(status))


def error(status: int) -> MoertError:
    """The exception for a failed call; must be built right after the call, on the same thread.

    When a Python callback raised during the call, its exception becomes the ``__cause__``.
    """
    failure = error_class(status)(status, last_error())
    cause: Optional[BaseException] = getattr(_callback_failure, "exception", None)
    if cause is not None:
        _callback_failure.exception = None
        failure.__cause__ = cause
    return failure


def raise_error(failure: MoertError) -> NoReturn:
    """Raises `failure`, or the KeyboardInterrupt (or other non-Exception) a callback raised that caused it."""
    cause = failure.__cause__
    if cause is not None and not isinstance(cause, Exception):
        raise cause
    raise failure
