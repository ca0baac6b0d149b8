"""Loaded models (``moert_model``) and their description (``moert_model_info``)."""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union

from . import _lib
from ._errors import InvalidArgumentError, Status
from ._support import OwnedHandle, c_int_arg, init_options
from ._types import (
    MOERT_DTYPE_BF16,
    MOERT_DTYPE_F16,
    MOERT_DTYPE_F32,
    MOERT_DTYPE_MIXED,
    moert_model_info,
    moert_model_options,
)
from .runtime import set_threads

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Model", "ModelInfo"]

PathLike = Union[str, "os.PathLike[str]"]

_DTYPE_NAMES: Dict[int, str] = {
    MOERT_DTYPE_F32: "f32",
    MOERT_DTYPE_F16: "f16",
    MOERT_DTYPE_BF16: "bf16",
    MOERT_DTYPE_MIXED: "mixed",
}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Facts about a loaded model; the fields are those of the C struct ``moert_model_info``.

    Two differ in type from C: ``dtype`` is a name ("f32", "f16", "bf16" or "mixed") instead of a
    ``MOERT_DTYPE_*`` number, and ``bos_token_id``/``eos_token_id`` are None where C gives -1.
    """

    architecture: str
    """The ``architectures[0]`` of config.json, e.g. "MixtralForCausalLM"."""
    vocab_size: int
    """Number of token ids (logits per position)."""
    hidden_size: int
    """Width of the residual stream."""
    n_layers: int
    """Decoder layers."""
    n_moe_layers: int
    """Layers whose MLP is a mixture of experts."""
    n_experts: int
    """Routed experts per MoE layer."""
    n_experts_per_tok: int
    """Top-k of the built-in router."""
    n_heads: int
    """Attention (query) heads."""
    n_kv_heads: int
    """Key/value heads (grouped-query attention)."""
    head_dim: int
    """Width of one attention head."""
    dtype: str
    """Storage dtype of the weights on disk: "f32", "f16", "bf16" or "mixed" (computation is float32)."""
    context_length: int
    """Longest context a session may use (after ``max_context``)."""
    n_params: int
    """Number of parameters."""
    file_bytes: int
    """Bytes of safetensors files mapped."""
    weight_bytes: int
    """Bytes of float32 weights resident beyond the mapping (converted from f16/bf16)."""
    bos_token_id: Optional[int]
    """The beginning-of-sequence token, or None when the config names none."""
    eos_token_id: Optional[int]
    """The end-of-sequence token (the first when the config names several), or None."""

    @classmethod
    def _from_c(cls, info: moert_model_info) -> "ModelInfo":
        """Converts the filled C struct."""
        architecture = info.architecture.decode("utf-8", "replace") if info.architecture else ""
        return cls(
            architecture=architecture,
            vocab_size=info.vocab_size,
            hidden_size=info.hidden_size,
            n_layers=info.n_layers,
            n_moe_layers=info.n_moe_layers,
            n_experts=info.n_experts,
            n_experts_per_tok=info.n_experts_per_tok,
            n_heads=info.n_heads,
            n_kv_heads=info.n_kv_heads,
            head_dim=info.head_dim,
            dtype=_DTYPE_NAMES.get(info.dtype, f"unknown({info.dtype})"),
            context_length=info.context_length,
            n_params=info.n_params,
            file_bytes=info.file_bytes,
            weight_bytes=info.weight_bytes,
            bos_token_id=None if info.bos_token_id < 0 else info.bos_token_id,
            eos_token_id=None if info.eos_token_id < 0 else info.eos_token_id,
        )


class Model:
    """A Hugging Face MoE checkpoint directory, memory-mapped and validated (``moert_model``).

    Args:
        path: the directory holding ``config.json`` and ``model.safetensors`` (or the shards listed in
            ``model.safetensors.index.json``).
        threads: when given, calls :func:`moert.set_threads` first. The setting is process-wide: it applies to
            every model and session, not only this one.
        max_context: cap on the context length sessions may ask for; 0 keeps the model's own.

    A model is immutable after loading and may be shared by any number of threads and sessions. Free it with
    :meth:`close` or a ``with`` block (it is also freed when garbage-collected); closing a model first closes
    every session created from it.

    Raises:
        MoertIOError: the directory or a file cannot be opened, read or mapped.
        FormatError: a file is malformed.
        UnsupportedError: an architecture, rope type or dtype moert does not support.
        InvalidArgumentError: a negative or too large ``max_context`` or ``threads``.
        MoertMemoryError: memory ran out.

    The C entry points are ``moert_model_load``, ``moert_model_get_info`` and ``moert_model_free``.
    """

    def __init__(self, path: PathLike, threads: Optional[int] = None, max_context: int = 0) -> None:
        self._handle: Optional[OwnedHandle] = None
        self._sessions: Dict[int, OwnedHandle] = {}
        library = _lib.get()
        if threads is not None:
            set_threads(threads)
        self._path: str = os.fspath(path)
        options = init_options(moert_model_options, library.moert_model_options_init_sized)
        options.max_context = c_int_arg(max_context, "max_context", 64)
        out = ctypes.c_void_p()
        _lib.check(library.moert_model_load(os.fsencode(self._path), ctypes.byref(options), ctypes.byref(out)))
        self._handle = OwnedHandle(out.value or 0, library.moert_model_free)
        info = moert_model_info()
        info.struct_size = ctypes.sizeof(moert_model_info)
        status = library.moert_model_get_info(self._handle.address, ctypes.byref(info))
        if status != 0:
            failure = _lib.error(status)
            self.close()
            raise failure
        self._info = ModelInfo._from_c(info)
        self._eos_token_ids = _config_eos_ids(self._path, self._info.eos_token_id)

    @property
    def info(self) -> ModelInfo:
        """The model's :class:`ModelInfo` (read once at load; the model never changes)."""
        self._require()
        return self._info

    @property
    def path(self) -> str:
        """The checkpoint directory as given."""
        return self._path

    @property
    def eos_token_ids(self) -> Tuple[int, ...]:
        """Every end-of-sequence id of config.json's ``eos_token_id`` (``info.eos_token_id`` is the first)."""
        return self._eos_token_ids

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._handle is None or self._handle.address is None

    def session(self, n_ctx: int = 0, max_batch: int = 0) -> "Session":
        """Creates a :class:`~moert.Session` (a KV cache and scratch buffers) on this model.

        Args:
            n_ctx: tokens the KV cache holds; 0 = min(``info.context_length``, 4096).
            max_batch: most tokens evaluated in one forward chunk; 0 = 512 (longer inputs are split).

        Raises:
            InvalidArgumentError: a negative value, ``n_ctx`` above the context length, or a closed model.
            MoertMemoryError: the KV cache cannot be allocated.
        """
        from .session import Session

        return Session(self, n_ctx=n_ctx, max_batch=max_batch)

    def router_kind(self, moe_layer: int) -> Optional[str]:
        """The router kind of the `moe_layer`-th MoE layer ("topk" for the built-in); None when out of range.

        The C entry point is ``moert_model_router_kind``.
        """
        address = self._require()
        name = _lib.function("moert_model_router_kind")(address, c_int_arg(moe_layer, "moe_layer", 32))
        return None if name is None else name.decode("utf-8", "replace")

    def expert_kind(self, moe_layer: int, expert: int) -> Optional[str]:
        """The kind of expert `expert` of the `moe_layer`-th MoE layer ("ffn" for the built-in SwiGLU experts);
        None when out of range.

        The C entry point is ``moert_model_expert_kind``.
        """
        address = self._require()
        kind_of = _lib.function("moert_model_expert_kind")
        name = kind_of(address, c_int_arg(moe_layer, "moe_layer", 32), c_int_arg(expert, "expert", 32))
        return None if name is None else name.decode("utf-8", "replace")

    def close(self) -> None:
        """Closes every session of this model, then frees the model; calling it again does nothing.

        The C entry point is ``moert_model_free``.
        """
        handle = self._handle
        if handle is None or handle.address is None:
            return
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            session.release("its Model was closed")
        handle.release()

    def _require(self) -> int:
        """The live model address, or InvalidArgumentError for a closed model."""
        if self._handle is None:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "Model is closed: it failed to load")
        return self._handle.require("Model")

    def _adopt(self, session: OwnedHandle) -> None:
        """Records a session handle so that :meth:`close` frees it before the model."""
        self._sessions[id(session)] = session

    def _forget(self, session: OwnedHandle) -> None:
        """Drops a session handle that its Session has freed."""
        self._sessions.pop(id(session), None)

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Sessions keep their Model alive, so normally none is open here; inside a garbage cycle they may
        # still be, and their handles must be freed before the model's (moert.h: free sessions first).
        sessions = getattr(self, "_sessions", None) or {}
        for session in list(sessions.values()):
            session.release("its Model was garbage-collected")
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.release()

    def __repr__(self) -> str:
        if self.closed:
            return f"<moert.Model {self._path!r} closed>"
        info = self._info
        return (
            f"<moert.Model {self._path!r} {info.architecture} {info.n_layers} layers, "
            f"{info.n_experts}x{info.n_experts_per_tok} experts, {info.dtype}>"
        )


def _config_eos_ids(path: str, first: Optional[int]) -> Tuple[int, ...]:
    """The ``eos_token_id`` list of config.json; falls back to the library's first id."""
    fallback: Tuple[int, ...] = () if first is None else (first,)
    try:
        with open(os.path.join(path, "config.json"), "rb") as file:
            value: Any = json.load(file).get("eos_token_id")
    except (OSError, ValueError, AttributeError):
        return fallback
    values = value if isinstance(value, list) else [value]
    ids = tuple(v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0)
    return ids if ids and (first is None or ids[0] == first) else fallback
