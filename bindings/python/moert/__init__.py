"""moert: Python binding of the moert Mixture-of-Experts inference runtime (ctypes over ``libmoert``).

Quick start::

    import moert

    with moert.Model("path/to/checkpoint") as model, model.session() as session:
        logits = session.eval([1, 15, 27])            # float32, shape [vocab_size]
        for token in session.generate([1, 15, 27], max_new_tokens=8):
            print(token)

Routers and experts can also be written in Python (:class:`Router`, :class:`Expert`, :func:`register_router`,
:func:`register_expert`), and expert memory capped with ``Model(..., expert_budget="25%")``.

The library is found through ``$MOERT_LIBRARY``, a copy shipped in the package, the repository's build
directories, then the system loader (see :func:`load_library`); it is loaded on first use.
"""

from __future__ import annotations

from . import _errors
from ._errors import *  # noqa: F401,F403 -- Status and the exception classes, as _errors.__all__ lists them
from . import _types
from ._lib import library_path, load_library
from .log import LogLevel, set_log_callback
from .model import MemoryStats, Model, ModelInfo
from .plugins import (
    CreateContext,
    Expert,
    LayerInfo,
    PythonKind,
    Router,
    RouterBatch,
    python_kinds,
    register_expert,
    register_router,
    shutdown,
)
from .routing import RoutingTrace, expert_kinds, load_plugin, router_kinds
from .runtime import abi_version, get_threads, set_threads, status_string, version, version_number
from .sampling import Sampler
from .session import Session, TextStream
from ._types import KV_TYPES
from .tokenizer import Detokenizer, Tokenizer

#: Version of this Python package: the version of moert.h it mirrors (the loaded library's own is :func:`version`).
__version__ = _types.MOERT_VERSION

__all__ = [
    "__version__",
    # objects
    "Model",
    "ModelInfo",
    "MemoryStats",
    "Session",
    "Sampler",
    "RoutingTrace",
    "Tokenizer",
    "Detokenizer",
    "TextStream",
    "KV_TYPES",
    # plugins and kinds
    "load_plugin",
    "router_kinds",
    "expert_kinds",
    "shutdown",
    # kinds written in Python
    "register_router",
    "register_expert",
    "Router",
    "Expert",
    "LayerInfo",
    "CreateContext",
    "RouterBatch",
    "PythonKind",
    "python_kinds",
    # library
    "abi_version",
    "get_threads",
    "library_path",
    "load_library",
    "LogLevel",
    "set_log_callback",
    "set_threads",
    "status_string",
    "version",
    "version_number",
    # errors: Status and the exception classes
    *_errors.__all__,
]
