"""Routing: plugin libraries and registered kinds, and the routing trace a session records."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, List, Tuple, Union

import numpy as np

from . import _lib
from ._types import MOERT_KIND_EXPERT, MOERT_KIND_ROUTER, moert_trace

__all__ = ["RoutingTrace", "load_plugin", "router_kinds", "expert_kinds"]


def load_plugin(path: Union[str, "os.PathLike[str]"]) -> None:
    """Loads a plugin library and registers the router and expert kinds it provides.

    `path` is a file path, or a bare name such as ``"gru"`` looked up as ``libmoert_<name>.so`` and ``<name>`` in
    each directory of ``MOERT_PLUGIN_PATH``, then next to libmoert, then in its ``moert/plugins`` subdirectory.
    Loading a library that is already loaded does nothing. Models name their plugins in their moert section
    and load them by themselves; this is for :meth:`Session.set_router` with a kind no model loaded.

    Raises:
        MoertIOError: not found, or the loader refused it (the message lists the paths tried).
        PluginError: no entry symbol, a wrong ABI version, a failed init, or a kind registered twice.
        InvalidArgumentError: an empty name.

    The C entry point is ``moert_plugin_load``.
    """
    _lib.check(_lib.get().moert_plugin_load(os.fsencode(os.fspath(path))))


def _kinds(kind: int) -> List[str]:
    count = int(_lib.get().moert_kind_count(kind))
    name_of = _lib.get().moert_kind_name
    names = (name_of(kind, i) for i in range(count))
    return [name.decode("utf-8", "replace") for name in names if name]


def router_kinds() -> List[str]:
    """Names of the registered router kinds ("topk" is built in; plugins add more).

    The C entry points are ``moert_kind_count`` and ``moert_kind_name``.
    """
    return _kinds(MOERT_KIND_ROUTER)


def expert_kinds() -> List[str]:
    """Names of the registered expert kinds ("ffn" is built in; plugins add more).

    The C entry points are ``moert_kind_count`` and ``moert_kind_name``.
    """
    return _kinds(MOERT_KIND_EXPERT)


@dataclasses.dataclass(frozen=True)
class RoutingTrace:
    """The routing decisions a session recorded: one record per (token, MoE layer), in evaluation order.

    The arrays are copies owned by Python. Record ``r`` chose the experts ``expert_ids[offsets[r]:offsets[r+1]]``
    with the weights ``weights[offsets[r]:offsets[r+1]]``; :meth:`experts` slices them.
    """

    positions: np.ndarray
    """int32 [n_records]: the token's position in the sequence."""
    layers: np.ndarray
    """int32 [n_records]: the decoder layer index."""
    tokens: np.ndarray
    """int32 [n_records]: the token id."""
    offsets: np.ndarray
    """int64 [n_records + 1]: where each record's experts start in ``expert_ids`` and ``weights``."""
    expert_ids: np.ndarray
    """int32 [offsets[-1]]: the chosen experts."""
    weights: np.ndarray
    """float32 [offsets[-1]]: their combination weights."""

    def __len__(self) -> int:
        return int(self.positions.size)

    def experts(self, record: int) -> Tuple[np.ndarray, np.ndarray]:
        """The (expert ids, weights) of one record."""
        start, end = int(self.offsets[record]), int(self.offsets[record + 1])
        return self.expert_ids[start:end], self.weights[start:end]

    @classmethod
    def _from_c(cls, trace: moert_trace) -> "RoutingTrace":
        """Copies the arrays the session lends (valid only until its next call)."""
        n = int(trace.n_records)
        offsets = _copy(trace.offsets, n + 1, np.int64) if n else np.zeros(1, dtype=np.int64)
        total = int(offsets[-1])
        return cls(
            positions=_copy(trace.positions, n, np.int32),
            layers=_copy(trace.layers, n, np.int32),
            tokens=_copy(trace.tokens, n, np.int32),
            offsets=offsets,
            expert_ids=_copy(trace.expert_ids, total, np.int32),
            weights=_copy(trace.weights, total, np.float32),
        )


def _copy(pointer: Any, count: int, dtype: type) -> np.ndarray:
    """`count` elements behind a borrowed pointer, copied (an empty array for 0 or NULL)."""
    if count <= 0 or not pointer:
        return np.zeros(0, dtype=dtype)
    return np.ctypeslib.as_array(pointer, shape=(count,)).astype(dtype, copy=True)
