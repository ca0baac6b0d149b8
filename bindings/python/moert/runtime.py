"""Process-wide facts and settings of the loaded library: versions, status texts and worker threads."""

from __future__ import annotations

from . import _lib
from ._support import c_int_arg

__all__ = ["version", "version_number", "abi_version", "status_string", "set_threads", "get_threads"]


def version() -> str:
    """The library's version text, "MAJOR.MINOR.PATCH". The C entry point is ``moert_version``."""
    text = _lib.get().moert_version()
    return text.decode("ascii", "replace") if text else ""


def version_number() -> int:
    """The library's version as MAJOR*1000000 + MINOR*1000 + PATCH. The C entry point is ``moert_version_number``."""
    return int(_lib.get().moert_version_number())


def abi_version() -> int:
    """The library's ABI version (this binding needs 1). The C entry point is ``moert_abi_version``."""
    return int(_lib.get().moert_abi_version())


def status_string(status: int) -> str:
    """Static English text for a status code. The C entry point is ``moert_status_string``."""
    text = _lib.get().moert_status_string(c_int_arg(status, "status", 32))
    return text.decode("utf-8", "replace") if text else ""


def set_threads(n: int) -> None:
    """Sets the number of worker threads of moert's kernels and of its BLAS library, process-wide.

    `n` is 1 or more; 0 restores the default (the number of online CPUs). Call it while no evaluation is
    running. When moert's own kernels compute every large product (``moert kernels``), its BLAS library gets one
    thread (it then only serves small products). NumPy's BLAS is a separate thread pool that this does not touch: limit it with
    ``OPENBLAS_NUM_THREADS`` (or ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``) before NumPy is imported, or at run
    time with ``threadpoolctl.threadpool_limits``.

    Raises:
        InvalidArgumentError: a negative count.

    The C entry point is ``moert_set_threads``.
    """
    _lib.check(_lib.get().moert_set_threads(c_int_arg(n, "threads", 32)))


def get_threads() -> int:
    """The number of worker threads in effect (at least 1). The C entry point is ``moert_get_threads``."""
    return int(_lib.get().moert_get_threads())
