"""Sessions (``moert_session``): one sequence's KV cache over a shared model, evaluation and generation."""

from __future__ import annotations

import ctypes
import functools
import json
import threading
from typing import Any, Callable, FrozenSet, Iterator, List, Mapping, Optional, TypeVar, Union

import numpy as np

from . import _lib
from ._errors import InvalidArgumentError, MoertError, Status
from ._support import OwnedHandle, as_tokens, c_int_arg, init_options
from ._types import (
    MOERT_LOGITS_ALL,
    MOERT_LOGITS_LAST,
    MOERT_LOGITS_NONE,
    moert_generate_options,
    moert_session_options,
    moert_token_callback,
    moert_trace,
)
from .model import Model
from .routing import RoutingTrace
from .sampling import Sampler, sampler_options

__all__ = ["Session"]

# Failures of moert_session_eval() that leave the session as it was (moert.h: nothing is evaluated). After
# any other failure the session must be reset before further use.
_UNCHANGED_AFTER: FrozenSet[int] = frozenset(
    {Status.INVALID_ARGUMENT, Status.OUT_OF_RANGE, Status.CONTEXT_FULL, Status.BUFFER_TOO_SMALL}
)

_INT32_P = ctypes.POINTER(ctypes.c_int32)
_FLOAT_P = ctypes.POINTER(ctypes.c_float)


_T = TypeVar("_T")


def _one_call_at_a_time(method: Callable[..., _T]) -> Callable[..., _T]:
    """Runs `method` as the session's only call in progress. A moert session serves one call at a time, and two at
    once corrupt memory, so a call made while another is running raises instead of waiting: from another thread,
    or from inside the running call (a Python router or expert using the session it runs for), where waiting would
    deadlock."""

    @functools.wraps(method)
    def call(self: "Session", *args: Any, **kwargs: Any) -> _T:
        if not self._in_use.acquire(blocking=False):
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT,
                f"Session.{method.__name__.lstrip('_')}: the session is in use by another call (another thread, or a "
                "router or expert running inside this one); a session serves one call at a time",
            )
        try:
            return method(self, *args, **kwargs)
        finally:
            self._in_use.release()

    return call


class Session:
    """One sequence being evaluated: a KV cache and scratch buffers over a shared :class:`~moert.Model`.

    Create it with :meth:`Model.session` (or ``Session(model, ...)``). A session keeps its model object
    alive. Use a session from one thread at a time; different sessions of one model may run on different
    threads at once (the library releases the GIL during evaluation). Free it with :meth:`close` or a
    ``with`` block; it is also freed when garbage-collected, and when its model is closed.

    Args:
        model: the model to evaluate.
        n_ctx: tokens the KV cache holds; 0 = min(``model.info.context_length``, 4096).
        max_batch: most tokens evaluated in one forward chunk; 0 = 512 (longer inputs are split).

    Raises:
        InvalidArgumentError: a negative value, ``n_ctx`` above the model's context length, or a closed model.
        MoertMemoryError: the KV cache cannot be allocated.

    The C entry points are ``moert_session_create`` and ``moert_session_free``.
    """

    def __init__(self, model: Model, n_ctx: int = 0, max_batch: int = 0) -> None:
        # Held while a call is in the library (see _one_call_at_a_time).
        self._in_use = threading.Lock()
        self._handle: Optional[OwnedHandle] = None
        self._model = model
        library = _lib.get()
        self._library = library
        model_address = model._require()
        options = init_options(moert_session_options, library.moert_session_options_init_sized)
        options.n_ctx = c_int_arg(n_ctx, "n_ctx", 64)
        options.max_batch = c_int_arg(max_batch, "max_batch", 32)
        out = ctypes.c_void_p()
        _lib.check(library.moert_session_create(model_address, ctypes.byref(options), ctypes.byref(out)))
        self._handle = OwnedHandle(out.value or 0, library.moert_session_free)
        model._adopt(self._handle)
        self._vocab_size: int = model.info.vocab_size
        self._n_ctx: int = int(library.moert_session_n_ctx(self._handle.address))
        # Logits of the last evaluated position, for generation that continues without a prompt.
        self._last_logits: Optional[np.ndarray] = None
        # Set by a failure that requires reset() (see _UNCHANGED_AFTER).
        self._broken: Optional[MoertError] = None

    # State

    @property
    def model(self) -> Model:
        """The model this session evaluates."""
        return self._model

    @property
    @_one_call_at_a_time
    def n_past(self) -> int:
        """Tokens in the KV cache (positions already evaluated). The C entry point is ``moert_session_n_past``."""
        return int(self._library.moert_session_n_past(self._require()))

    @property
    def n_ctx(self) -> int:
        """Capacity of the KV cache in tokens. The C entry point is ``moert_session_n_ctx``."""
        self._require()
        return self._n_ctx

    @property
    def closed(self) -> bool:
        """True once the session has been closed (directly or by closing its model)."""
        return self._handle is None or self._handle.address is None

    @_one_call_at_a_time
    def reset(self) -> None:
        """Forgets every token evaluated so far (empties the KV cache).

        The C entry point is ``moert_session_reset``.
        """
        _lib.check(self._library.moert_session_reset(self._require()))
        self._last_logits = None
        self._broken = None

    @_one_call_at_a_time
    def close(self) -> None:
        """Frees the session; calling it again does nothing. The C entry point is ``moert_session_free``."""
        handle = self._handle
        if handle is not None:
            handle.release()
            self._model._forget(handle)

    # Evaluation

    def eval(self, tokens: Any, all_logits: bool = False) -> np.ndarray:
        """Evaluates `tokens` after the ones already in the session and returns float32 logits.

        Args:
            tokens: token ids in ``[0, vocab_size)``: an int, a list or any integer array-like (converted to a
                contiguous int32 array).
            all_logits: return every position's logits, shape ``[n_tokens, vocab_size]``, instead of only the
                last position's, shape ``[vocab_size]``.

        Returns:
            A new float32 array owned by the caller.

        Raises:
            OutOfRangeError: a token id outside ``[0, vocab_size)``; nothing is evaluated.
            ContextFullError: the tokens do not fit in the remaining context; nothing is evaluated.
            InvalidArgumentError: no tokens, a multi-dimensional array, or a closed session.
            TypeError: the ids are not integers.
            PluginError: a plugin failed; the session must then be :meth:`reset`.

        The C entry point is ``moert_session_eval``.
        """
        ids = as_tokens(tokens, self._vocab_size)
        shape = (ids.size, self._vocab_size) if all_logits else (self._vocab_size,)
        logits = np.empty(shape, dtype=np.float32)
        self._eval(ids, MOERT_LOGITS_ALL if all_logits else MOERT_LOGITS_LAST, logits)
        return logits

    def prefill(self, tokens: Any) -> None:
        """Evaluates `tokens` into the KV cache without computing any logits (``MOERT_LOGITS_NONE``).

        Raises the same errors as :meth:`eval`.
        """
        self._eval(as_tokens(tokens, self._vocab_size), MOERT_LOGITS_NONE, None)

    @_one_call_at_a_time
    def _eval(self, ids: np.ndarray, mode: int, logits: Optional[np.ndarray]) -> None:
        """Runs moert_session_eval into `logits` and remembers the last row."""
        address = self._require_usable()
        out = logits.ctypes.data_as(_FLOAT_P) if logits is not None else None
        capacity = logits.size if logits is not None else 0
        status = self._library.moert_session_eval(address, ids.ctypes.data_as(_INT32_P), ids.size, mode, out, capacity)
        if status != 0:
            failure = _lib.error(status)
            if status not in _UNCHANGED_AFTER:
                self._broken, self._last_logits = failure, None
            _lib.raise_error(failure)
        self._last_logits = None if logits is None else logits.reshape(-1, self._vocab_size)[-1].copy()

    @_one_call_at_a_time
    def _recompute_last_logits(self, logits: np.ndarray) -> None:
        """The last position's logits when the evaluation that wrote it asked for none (moert_session_last_logits)."""
        address = self._require_usable()
        last_logits = _lib.newer_function("moert_session_last_logits")
        status = last_logits(address, logits.ctypes.data_as(_FLOAT_P), logits.size)
        if status != 0:
            failure = _lib.error(status)
            if status not in _UNCHANGED_AFTER:
                self._broken = failure
            _lib.raise_error(failure)
        self._last_logits = logits.copy()

    # Generation

    def generate(
        self,
        prompt: Any,
        max_new_tokens: int = 16,
        *,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        ignore_eos: bool = False,
    ) -> Iterator[int]:
        """Evaluates `prompt`, then yields up to `max_new_tokens` new token ids, one per step, as they are made.

        The iterator is lazy: nothing is evaluated before the first ``next()``, and each later ``next()``
        feeds the previous token back and samples one more. Generation stops after the model's EOS token (which
        is yielded) unless `ignore_eos`, and when the context is full after at least one token. Run to its end,
        the iterator feeds the last token back too (unless the context is full), so the session holds the
        prompt plus every token generated and ``generate([], ...)`` continues the sequence: the tokens and the
        session state equal those of :meth:`generate_all` (``moert_session_generate``) for the same arguments.
        Stopping early (``break``) leaves ``n_past`` at the prompt plus every token but the last one yielded;
        that last token has not been evaluated yet, so to continue pass it as the next prompt.

        Args:
            prompt: ids to evaluate first; may be empty when the session already holds tokens and its last
                evaluation produced logits.
            max_new_tokens: most tokens to yield (>= 0).
            temperature, top_k, top_p, seed: sampling, as for :class:`~moert.Sampler` (defaults: greedy).
            ignore_eos: keep going after EOS until `max_new_tokens`.

        Raises:
            InvalidArgumentError: bad sampling options, a negative `max_new_tokens` or an empty prompt on an
                empty session (raised by this call); during iteration, the errors of :meth:`eval`.
        """
        self._require_usable()
        ids = as_tokens(prompt, self._vocab_size)
        count = c_int_arg(max_new_tokens, "max_new_tokens", 32)
        if count < 0:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"max_new_tokens must be >= 0, got {count}")
        if ids.size == 0 and self.n_past == 0:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "empty prompt and empty session: nothing to continue")
        sampler = Sampler(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        stop_ids = frozenset() if ignore_eos else frozenset(self._model.eos_token_ids)
        return self._stream(ids, count, sampler, stop_ids)

    def _stream(self, ids: np.ndarray, count: int, sampler: Sampler, stop_ids: FrozenSet[int]) -> Iterator[int]:
        """The generator behind :meth:`generate`; it frees its sampler when it ends or is discarded."""
        try:
            if count == 0:
                if ids.size:
                    self._eval(ids, MOERT_LOGITS_NONE, None)
                return
            logits = np.empty(self._vocab_size, dtype=np.float32)
            if ids.size:
                self._eval(ids, MOERT_LOGITS_LAST, logits)
            elif self._last_logits is not None:
                logits[:] = self._last_logits
            else:
                self._recompute_last_logits(logits)
            step = np.empty(1, dtype=np.int32)
            produced = 0
            while True:
                token = sampler.sample(logits)
                produced += 1
                yield token
                if self.n_past >= self._n_ctx:
                    return
                step[0] = token
                self._eval(step, MOERT_LOGITS_LAST, logits)
                if produced >= count or token in stop_ids:
                    return
        finally:
            sampler.close()

    @_one_call_at_a_time
    def generate_all(
        self,
        prompt: Any,
        max_new_tokens: int = 16,
        *,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        ignore_eos: bool = False,
        on_token: Optional[Callable[[int], Optional[bool]]] = None,
    ) -> List[int]:
        """Like :meth:`generate`, but runs the whole loop inside moert in one call and returns the list.

        Args:
            on_token: called with each new id as it is made; return False to stop after it (None or True go
                on). An exception raised by it stops generation and is re-raised from this call.

        The other arguments and the errors are those of :meth:`generate`.

        The C entry point is ``moert_session_generate``.
        """
        address = self._require_usable()
        ids = as_tokens(prompt, self._vocab_size)
        count = c_int_arg(max_new_tokens, "max_new_tokens", 32)
        options = init_options(moert_generate_options, self._library.moert_generate_options_init_sized)
        sampling = sampler_options(temperature, top_k, top_p, seed)
        options.max_new_tokens = count
        options.ignore_eos = 1 if ignore_eos else 0
        options.sampler = ctypes.pointer(sampling)
        out = np.empty(max(count, 0), dtype=np.int32)
        n_generated = ctypes.c_size_t()
        raised: List[BaseException] = []
        callback = moert_token_callback()  # NULL
        if on_token is not None:
            callback = moert_token_callback(_trampoline(on_token, raised))
        prompt_p = ids.ctypes.data_as(_INT32_P) if ids.size else None
        status = self._library.moert_session_generate(
            address, prompt_p, ids.size, ctypes.byref(options), callback, None,
            out.ctypes.data_as(_INT32_P), out.size, ctypes.byref(n_generated),
        )
        # moert keeps the last logits for a later call with an empty prompt; this binding cannot read them back.
        self._last_logits = None
        if status != 0:
            failure = _lib.error(status)
            if status not in _UNCHANGED_AFTER:
                self._broken = failure
            _lib.raise_error(failure)
        if raised:
            raise raised[0]
        return [int(token) for token in out[: min(n_generated.value, out.size)]]

    # Routing

    @_one_call_at_a_time
    def set_router(self, kind: Optional[str], params: Union[None, str, Mapping[str, Any]] = None) -> None:
        """Replaces the router of every MoE layer for this session only (the model is unchanged).

        Args:
            kind: a registered router kind (:func:`moert.router_kinds`): "topk" is built in, plugin libraries add
                more (:func:`moert.load_plugin`), and so do routers written in Python
                (:func:`moert.register_router`); None restores the model's own routers.
            params: the kind's parameters as in a model's moert section: a mapping (sent as JSON) or a JSON
                object text; None for none.

        Raises:
            InvalidArgumentError: an unknown kind or bad parameters.
            PluginError: the kind's create failed (for a Python kind, the exception it raised is the
                ``__cause__``); the session keeps its previous routers.

        The C entry point is ``moert_session_set_router``.
        """
        address = self._require()
        text = params if params is None or isinstance(params, str) else json.dumps(dict(params))
        encoded_kind = None if kind is None else kind.encode("utf-8")
        encoded_params = None if text is None else text.encode("utf-8")
        _lib.check(self._library.moert_session_set_router(address, encoded_kind, encoded_params))

    @_one_call_at_a_time
    def set_top_k(self, top_k: int) -> None:
        """Uses the built-in softmax top-k router with another k in every MoE layer (0 restores the model's).

        Raises:
            InvalidArgumentError: `top_k` outside [0, n_experts].

        The C entry point is ``moert_session_set_top_k``.
        """
        address = self._require()
        _lib.check(self._library.moert_session_set_top_k(address, c_int_arg(top_k, "top_k", 32)))

    @_one_call_at_a_time
    def set_trace(self, enabled: bool = True) -> None:
        """Turns recording of the routing trace on or off (expert counters are always kept).

        The C entry point is ``moert_session_set_trace``.
        """
        address = self._require()
        _lib.check(self._library.moert_session_set_trace(address, 1 if enabled else 0))

    @_one_call_at_a_time
    def trace(self) -> RoutingTrace:
        """A copy of the trace recorded since tracing was enabled or last cleared.

        The C entry point is ``moert_session_get_trace``.
        """
        address = self._require()
        trace = moert_trace()
        trace.struct_size = ctypes.sizeof(moert_trace)
        _lib.check(self._library.moert_session_get_trace(address, ctypes.byref(trace)))
        return RoutingTrace._from_c(trace)

    @_one_call_at_a_time
    def clear_trace(self) -> None:
        """Empties the trace. The C entry point is ``moert_session_clear_trace``."""
        _lib.check(self._library.moert_session_clear_trace(self._require()))

    @_one_call_at_a_time
    def expert_counts(self) -> np.ndarray:
        """Tokens routed to each expert since the session was created or its counters reset.

        Returns:
            int64 array ``[n_moe_layers, n_experts]`` (``n_experts`` is the largest layer's count).

        The C entry point is ``moert_session_get_expert_counts``.
        """
        address = self._require()
        get_counts = self._library.moert_session_get_expert_counts
        layers, experts = ctypes.c_int32(), ctypes.c_int32()
        _lib.check(get_counts(address, None, 0, ctypes.byref(layers), ctypes.byref(experts)))
        counts = np.zeros((layers.value, experts.value), dtype=np.int64)
        pointer = counts.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
        _lib.check(get_counts(address, pointer, counts.size, ctypes.byref(layers), ctypes.byref(experts)))
        return counts

    @_one_call_at_a_time
    def reset_counters(self) -> None:
        """Zeroes the expert counters. The C entry point is ``moert_session_reset_counters``."""
        _lib.check(self._library.moert_session_reset_counters(self._require()))

    # Lifetime

    def _require(self) -> int:
        """The live session address, or InvalidArgumentError for a closed session."""
        if self._handle is None:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "Session is closed: it failed to be created")
        return self._handle.require("Session")

    def _require_usable(self) -> int:
        """Like _require, and also refuses a session that a failed evaluation left needing reset()."""
        address = self._require()
        if self._broken is not None:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT,
                f"the session's last evaluation failed ({self._broken.message}); call reset() before using it again",
            )
        return address

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.release()
            model = getattr(self, "_model", None)
            if model is not None:
                model._forget(handle)

    def __repr__(self) -> str:
        if self.closed:
            return "<moert.Session closed>"
        if self._in_use.locked():
            return f"<moert.Session in use n_ctx={self._n_ctx} model={self._model.info.architecture}>"
        return f"<moert.Session n_past={self.n_past} n_ctx={self._n_ctx} model={self._model.info.architecture}>"


def _trampoline(on_token: Callable[[int], Optional[bool]], raised: List[BaseException]) -> Callable[[int, Any], int]:
    """Adapts a Python token callback to ``moert_token_callback``; exceptions stop generation and are kept."""

    def call(token: int, _user_data: Any) -> int:
        if raised:
            return 1
        try:
            keep = on_token(token)
        except BaseException as error:  # noqa: B902 - must not unwind through C; re-raised by the caller
            raised.append(error)
            return 1
        return 1 if keep is False else 0

    return call

