"""Loaded models (``moert_model``), their description (``moert_model_info``) and memory use (``moert_memory_stats``)."""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import re
import threading
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lib, plugins
from ._errors import InvalidArgumentError, Status
from ._support import ClosedByWith, OwnedHandle, c_int_arg, init_options, int_arg
from ._types import (
    MOERT_DTYPE_BF16,
    MOERT_DTYPE_F16,
    MOERT_DTYPE_F32,
    MOERT_DTYPE_MIXED,
    MOERT_DTYPE_Q3_0,
    MOERT_DTYPE_Q4_K,
    MOERT_DTYPE_Q4_0,
    MOERT_DTYPE_Q8_0,
    MOERT_MODEL_NO_MMAP,
    MOERT_MODEL_TRUST_PLUGIN_PATHS,
    moert_memory_stats,
    moert_model_info,
    moert_model_options,
)
from .runtime import set_threads
from .tokenizer import Tokenizer

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Model", "ModelInfo", "MemoryStats", "parse_expert_budget"]

PathLike = Union[str, "os.PathLike[str]"]

#: What ``Model(expert_budget=...)`` accepts: bytes as an int, a text such as "512M", "2G" or "25%", or None.
ExpertBudget = Union[None, int, str]

_DTYPE_NAMES: Dict[int, str] = {
    MOERT_DTYPE_F32: "f32",
    MOERT_DTYPE_F16: "f16",
    MOERT_DTYPE_BF16: "bf16",
    MOERT_DTYPE_MIXED: "mixed",
    MOERT_DTYPE_Q8_0: "q8_0",
    MOERT_DTYPE_Q4_0: "q4_0",
    MOERT_DTYPE_Q3_0: "q3_0",
    MOERT_DTYPE_Q4_K: "q4_k",
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
    """Bytes of weights held beyond the mapping: weights converted or copied at load plus the routed experts
    materialised so far (see :class:`MemoryStats`), so it grows as experts are first used."""
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


class Model(ClosedByWith):
    """A Hugging Face MoE checkpoint directory, memory-mapped and validated (``moert_model``).

    Args:
        path: the directory holding ``config.json`` and ``model.safetensors`` (or the shards listed in
            ``model.safetensors.index.json``).
        threads: when given, calls :func:`moert.set_threads` first. The setting is process-wide: it applies to
            every model and session, not only this one.
        max_context: cap on the context length sessions may ask for; 0 keeps the model's own.
        expert_budget: cap on the memory of resident routed experts, in their compute layout (F16 and BF16 kept
            as stored, float32 otherwise). Experts are materialised on first use and, beyond the cap, the least
            recently used ones are evicted and re-read from the mapped files when needed again; results do not
            change. None or 0: no cap. An int is a number of bytes; a text is bytes with an optional binary unit
            ("65536", "512K", "512M", "1.5G", "2GiB"; K, M, G and T are powers of 1024) or a share of all
            routed-expert bytes ("25%", in (0, 100]).
        trust_model_plugins: let the checkpoint's moert section load plugin libraries by path (relative to the
            model directory). Off by default: loading a library runs its code, so a downloaded model may name
            plugins by bare name only, found in the host's plugin directories (MOERT_MODEL_TRUST_PLUGIN_PATHS).
        mmap: map the safetensors files (the default); False reads them into memory, so that a file changed or
            truncated while the model is loaded cannot affect it (MOERT_MODEL_NO_MMAP).

    A model is immutable after loading and may be shared by any number of threads and sessions. Free it with
    :meth:`close` or a ``with`` block (it is also freed when garbage-collected); closing a model first closes
    every session created from it and its :attr:`tokenizer`.

    Raises:
        MoertIOError: the directory or a file cannot be opened, read or mapped.
        FormatError: a file is malformed.
        UnsupportedError: an architecture, rope type or dtype moert does not support.
        InvalidArgumentError: a negative or too large ``max_context`` or ``threads``, or a bad ``expert_budget``.
        TypeError: ``expert_budget`` is neither None, an int nor a str.
        MoertMemoryError: memory ran out.
        PluginError: the moert section names a plugin by path without ``trust_model_plugins``, or a plugin failed.

    The C entry points are ``moert_model_load``, ``moert_model_get_info`` and ``moert_model_free``.
    """

    def __init__(
        self,
        path: PathLike,
        threads: Optional[int] = None,
        max_context: int = 0,
        expert_budget: ExpertBudget = None,
        trust_model_plugins: bool = False,
        mmap: bool = True,
    ) -> None:
        self._handle: Optional[OwnedHandle] = None
        self._sessions: Dict[int, OwnedHandle] = {}
        # Loaded on first use of the tokenizer property.
        self._tokenizer: Optional[Tokenizer] = None
        self._tokenizer_lock = threading.Lock()
        library = _lib.get()
        self._library = library
        # Keeps the Python router and expert kinds (and the C callbacks behind them) alive as long as this model:
        # moert calls their destroy when the model is freed, possibly late at interpreter exit.
        self._kinds_alive = plugins._registry_anchor()
        budget_bytes, budget_percent = parse_expert_budget(expert_budget)
        if threads is not None:
            set_threads(threads)
        self._path: str = os.fspath(path)
        options = init_options(moert_model_options, library.moert_model_options_init_sized)
        options.max_context = c_int_arg(max_context, "max_context", 64)
        options.expert_budget_bytes = budget_bytes
        options.expert_budget_percent = budget_percent
        options.flags = (MOERT_MODEL_TRUST_PLUGIN_PATHS if trust_model_plugins else 0) | (0 if mmap else MOERT_MODEL_NO_MMAP)
        out = ctypes.c_void_p()
        _lib.check(library.moert_model_load(os.fsencode(self._path), ctypes.byref(options), ctypes.byref(out)))
        self._handle = OwnedHandle(out.value or 0, library.moert_model_free)
        try:
            self._info = self._read_info()
            count = int(library.moert_model_eos_token_count(self._handle.address))
            ids = (int(library.moert_model_eos_token(self._handle.address, i)) for i in range(count))
            self._eos_token_ids: Tuple[int, ...] = tuple(i for i in ids if i >= 0)
        except BaseException:
            self.close()
            raise

    def _read_info(self) -> "ModelInfo":
        """Calls moert_model_get_info."""
        info = moert_model_info()
        info.struct_size = ctypes.sizeof(moert_model_info)
        _lib.check(self._library.moert_model_get_info(self._require(), ctypes.byref(info)))
        return ModelInfo._from_c(info)

    @property
    def info(self) -> ModelInfo:
        """The model's :class:`ModelInfo`, read on each access (only ``weight_bytes`` changes over time: it grows
        as routed experts are materialised, and shrinks when they are evicted under an ``expert_budget``).

        The C entry point is ``moert_model_get_info``.
        """
        return self._read_info()

    def tensor_dtype(self, name: str) -> Optional[str]:
        """How tensor ``name`` of the checkpoint is stored: "f32", "f16", "bf16", "q8_0", "q4_0", "q3_0" or "q4_k"
        (quantized tensors are those ``moert quantize`` wrote); None when the checkpoint holds no such weight.

        The C entry point is ``moert_model_tensor_dtype``.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if "\0" in name:
            raise ValueError("name must not contain NUL characters")
        code = int(_lib.newer_function("moert_model_tensor_dtype")(self._require(), name.encode("utf-8")))
        return _DTYPE_NAMES.get(code) if code >= 0 else None

    @property
    def path(self) -> str:
        """The checkpoint directory as given."""
        return self._path

    @property
    def eos_token_ids(self) -> Tuple[int, ...]:
        """The ids generation stops at: generation_config.json's ``eos_token_id`` (often several), then config.json's
        not yet listed (``info.eos_token_id`` is config.json's first); empty when the model names none.

        The C entry points are ``moert_model_eos_token_count`` and ``moert_model_eos_token``.
        """
        self._require()
        return self._eos_token_ids

    @property
    def tokenizer(self) -> Tokenizer:
        """The :class:`~moert.Tokenizer` of the model's directory (``tokenizer.json`` with its
        ``tokenizer_config.json``, chat templates and stop ids), loaded on first access and kept: later accesses
        return the same object. Closing the model closes it.

        Raises:
            MoertIOError: the directory has no ``tokenizer.json``.
            FormatError, UnsupportedError: as :class:`~moert.Tokenizer` (UnsupportedError also for a library older
                than 0.2.0).
            InvalidArgumentError: the model is closed.
        """
        self._require()
        with self._tokenizer_lock:
            if self._tokenizer is None or self._tokenizer.closed:
                self._tokenizer = Tokenizer(self._path)
            return self._tokenizer

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        *,
        template_name: Optional[str] = None,
        **variables: Any,
    ) -> str:
        """Renders a conversation with the chat template of the model's tokenizer: ``self.tokenizer``'s
        :meth:`~moert.Tokenizer.apply_chat_template`, which documents the arguments and errors."""
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt, template_name=template_name, **variables
        )

    def memory_stats(self) -> "MemoryStats":
        """A snapshot of the model's memory use and expert residency counters (all sessions together).

        The C entry point is ``moert_model_get_memory_stats``.
        """
        stats = moert_memory_stats()
        stats.struct_size = ctypes.sizeof(moert_memory_stats)
        _lib.check(self._library.moert_model_get_memory_stats(self._require(), ctypes.byref(stats)))
        return MemoryStats._from_c(stats)

    def resident_experts(self) -> np.ndarray:
        """The number of routed experts resident (materialised) now in each MoE layer.

        Returns:
            int32 array ``[n_moe_layers]``.

        The C entry point is ``moert_model_get_resident_experts``.
        """
        address = self._require()
        get_resident = self._library.moert_model_get_resident_experts
        layers = ctypes.c_int32()
        _lib.check(get_resident(address, None, 0, ctypes.byref(layers)))
        counts = np.zeros(layers.value, dtype=np.int32)
        pointer = counts.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        _lib.check(get_resident(address, pointer, counts.size, ctypes.byref(layers)))
        return counts

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._handle is None or self._handle.address is None

    def session(
        self, n_ctx: int = 0, max_batch: int = 0, *, kv_type: str = "f32", context_shift: bool = False, n_keep: int = 0
    ) -> "Session":
        """Creates a :class:`~moert.Session` (a KV cache and scratch buffers) on this model.

        Args:
            n_ctx: tokens the KV cache holds; 0 = min(``info.context_length``, 4096).
            max_batch: most tokens evaluated in one forward chunk; 0 = 512 (longer inputs are split).
            kv_type, context_shift, n_keep: as for :class:`~moert.Session`.

        Raises:
            InvalidArgumentError: a negative value, ``n_ctx`` above the context length, or a closed model.
            MoertMemoryError: the KV cache cannot be allocated.
        """
        from .session import Session

        return Session(self, n_ctx=n_ctx, max_batch=max_batch, kv_type=kv_type, context_shift=context_shift, n_keep=n_keep)

    def router_kind(self, moe_layer: int) -> Optional[str]:
        """The router kind of the `moe_layer`-th MoE layer ("topk" for the built-in); None when out of range.

        The C entry point is ``moert_model_router_kind``.
        """
        address = self._require()
        name = self._library.moert_model_router_kind(address, c_int_arg(moe_layer, "moe_layer", 32))
        return None if name is None else name.decode("utf-8", "replace")

    def expert_kind(self, moe_layer: int, expert: int) -> Optional[str]:
        """The kind of expert `expert` of the `moe_layer`-th MoE layer ("ffn" for the built-in SwiGLU experts);
        None when out of range.

        The C entry point is ``moert_model_expert_kind``.
        """
        address = self._require()
        kind_of = self._library.moert_model_expert_kind
        name = kind_of(address, c_int_arg(moe_layer, "moe_layer", 32), c_int_arg(expert, "expert", 32))
        return None if name is None else name.decode("utf-8", "replace")

    def close(self) -> None:
        """Closes every session of this model and its :attr:`tokenizer` (when loaded), then frees the model; calling it
        again does nothing.

        The C entry point is ``moert_model_free``.
        """
        handle = self._handle
        if handle is None or handle.address is None:
            return
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            session.release("its Model was closed")
        if self._tokenizer is not None:
            self._tokenizer._close("its Model was closed")
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


@dataclasses.dataclass(frozen=True)
class MemoryStats:
    """Memory use of a model; the fields are those of the C struct ``moert_memory_stats``.

    Byte counts are ints. ``arena_active_bytes`` and ``arena_mapped_bytes`` are None where C gives -1 (experts
    are not allocated with jemalloc). The counters ``hits``, ``misses``, ``bytes_loaded`` and ``evictions`` count
    since the model was loaded, over all of its sessions.
    """

    allocator: str
    """Where expert memory comes from: "jemalloc (in process)", "jemalloc (loaded)" or "aligned malloc"."""
    expert_bytes_total: int
    """All routed experts in their compute layout (F16 and BF16 kept as stored, float32 otherwise)."""
    expert_bytes_resident: int
    """Routed experts materialised now."""
    expert_budget_bytes: int
    """The residency cap in bytes (a percentage is converted at load); 0 = none."""
    mapped_bytes: int
    """Safetensors files mapped."""
    converted_bytes: int
    """Other weights converted or copied at load (small f16/bf16 tensors such as norms and router gates are
    widened to float32)."""
    arena_active_bytes: Optional[int]
    """jemalloc's active bytes of the model's arena; None without jemalloc."""
    arena_mapped_bytes: Optional[int]
    """jemalloc's mapped bytes of the arena; None without jemalloc."""
    hits: int
    """Expert uses that found the weights resident."""
    misses: int
    """Expert uses that materialised them."""
    bytes_loaded: int
    """Bytes materialised so far (re-materialisations after eviction included)."""
    evictions: int
    """Experts evicted under the budget."""

    @classmethod
    def _from_c(cls, stats: moert_memory_stats) -> "MemoryStats":
        """Converts the filled C struct."""
        return cls(
            allocator=stats.allocator.decode("utf-8", "replace") if stats.allocator else "",
            expert_bytes_total=stats.expert_bytes_total,
            expert_bytes_resident=stats.expert_bytes_resident,
            expert_budget_bytes=stats.expert_budget_bytes,
            mapped_bytes=stats.mapped_bytes,
            converted_bytes=stats.converted_bytes,
            arena_active_bytes=None if stats.arena_active_bytes < 0 else stats.arena_active_bytes,
            arena_mapped_bytes=None if stats.arena_mapped_bytes < 0 else stats.arena_mapped_bytes,
            hits=stats.hits,
            misses=stats.misses,
            bytes_loaded=stats.bytes_loaded,
            evictions=stats.evictions,
        )


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_BYTES_TEXT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])(?:i?b)?|b)?\s*$", re.IGNORECASE)
_PERCENT_TEXT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")
_INT64_MAX = 2**63 - 1


def parse_expert_budget(budget: ExpertBudget) -> Tuple[int, float]:
    """Turns an ``expert_budget`` argument into the C fields (``expert_budget_bytes``, ``expert_budget_percent``).

    None and 0 give (0, 0.0), no cap. An int is bytes. A text is either bytes with an optional binary unit
    ("65536", "512K", "512M", "1.5G", "2GiB", "3 MB"; K, M, G and T are powers of 1024, a trailing "B" or "iB"
    is optional) or a percentage of all routed-expert bytes ("25%", "12.5 %", in (0, 100]).

    Raises:
        TypeError: `budget` is neither None, an int nor a str.
        InvalidArgumentError: a negative or too large number, a percentage outside (0, 100], or text that is
            neither form.
    """
    if budget is None:
        return 0, 0.0
    if isinstance(budget, str):
        percent = _PERCENT_TEXT.match(budget)
        if percent:
            share = float(percent.group(1))
            if not 0.0 < share <= 100.0:
                raise InvalidArgumentError(
                    Status.INVALID_ARGUMENT, f"expert_budget {budget!r}: a percentage must be in (0, 100]"
                )
            return 0, share
        sized = _BYTES_TEXT.match(budget)
        if not sized:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT,
                f"expert_budget {budget!r}: expected bytes such as '512M', '2G' or '1073741824', or a share such "
                "as '25%'",
            )
        value = float(sized.group(1)) * _UNITS[(sized.group(2) or "").lower()]
        if not math.isfinite(value) or value > _INT64_MAX:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"expert_budget {budget!r} is too large")
        return int(value), 0.0
    if isinstance(budget, float):
        raise TypeError("expert_budget must be an int (bytes), a str such as '512M' or '25%', or None; got float")
    number = int_arg(budget, "expert_budget")
    if not 0 <= number <= _INT64_MAX:
        raise InvalidArgumentError(
            Status.INVALID_ARGUMENT, f"expert_budget must be 0 (no cap) or a positive number of bytes, got {number}"
        )
    return number, 0.0
