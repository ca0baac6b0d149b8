"""Sessions (``moert_session``): one sequence's KV cache over a shared model, evaluation and generation."""

from __future__ import annotations

import ctypes
import functools
import json
import threading
from typing import Any, Callable, FrozenSet, Generator, Iterator, List, Mapping, NamedTuple, Optional, Sequence, TypeVar, Union

import numpy as np

from . import _lib
from ._errors import InvalidArgumentError, MoertError, Status, UnsupportedError
from ._support import ClosedByWith, OwnedHandle, as_tokens, c_int_arg, init_options
from ._types import (
    KV_TYPES,
    MOERT_SESSION_CONTEXT_SHIFT,
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
from .tokenizer import Detokenizer, Tokenizer, c_text

__all__ = ["Session", "TextStream"]

# Failures of moert_session_eval() that leave the session as it was (moert.h: nothing is evaluated). After
# any other failure the session must be reset before further use.
_UNCHANGED_AFTER: FrozenSet[int] = frozenset(
    {Status.INVALID_ARGUMENT, Status.OUT_OF_RANGE, Status.CONTEXT_FULL, Status.BUFFER_TOO_SMALL}
)

_INT32_P = ctypes.POINTER(ctypes.c_int32)
_FLOAT_P = ctypes.POINTER(ctypes.c_float)


_T = TypeVar("_T")

#: What generate_text takes as its prompt: text, a conversation, or token ids.
Prompt = Union[str, bytes, Sequence[Mapping[str, Any]], Any]


class Sampling(NamedTuple):
    """The sampling arguments of a generation, in :class:`~moert.Sampler`'s order."""

    temperature: float
    top_k: int
    top_p: float
    seed: int


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


class Session(ClosedByWith):
    """One sequence being evaluated: a KV cache and scratch buffers over a shared :class:`~moert.Model`.

    Create it with :meth:`Model.session` (or ``Session(model, ...)``). A session keeps its model object
    alive. Use a session from one thread at a time; different sessions of one model may run on different
    threads at once (the library releases the GIL during evaluation). Free it with :meth:`close` or a
    ``with`` block; it is also freed when garbage-collected, and when its model is closed.

    Args:
        model: the model to evaluate.
        n_ctx: tokens the KV cache holds; 0 = min(``model.info.context_length``, 4096).
        max_batch: most tokens evaluated in one forward chunk; 0 = 512 (longer inputs are split).
        kv_type: element type of the KV cache: "f32" (exact), "f16", "bf16" or "q8_0" (see ``KV_TYPES``).
        context_shift: when the context is full, generation drops the oldest positions after the first
            ``n_keep`` (half of them, as llama.cpp) instead of stopping (see :meth:`shift`).
        n_keep: positions a context shift keeps at the start (a system prompt), in [0, n_ctx).

    Raises:
        InvalidArgumentError: a negative value, ``n_ctx`` above the model's context length, an unknown
            ``kv_type`` (or q8_0 with a head dimension that is not a multiple of 32), or a closed model.
        UnsupportedError: ``context_shift`` on a model that cannot shift (one with a sliding window).
        MoertMemoryError: the KV cache cannot be allocated.

    The C entry points are ``moert_session_create`` and ``moert_session_free``.
    """

    def __init__(
        self,
        model: Model,
        n_ctx: int = 0,
        max_batch: int = 0,
        *,
        kv_type: str = "f32",
        context_shift: bool = False,
        n_keep: int = 0,
    ) -> None:
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
        if kv_type not in KV_TYPES:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"kv_type must be one of {', '.join(KV_TYPES)}, got {kv_type!r}")
        options.kv_type = KV_TYPES[kv_type]
        options.n_keep = c_int_arg(n_keep, "n_keep", 32)
        options.flags = MOERT_SESSION_CONTEXT_SHIFT if context_shift else 0
        if (kv_type != "f32" or context_shift or n_keep) and options.struct_size <= moert_session_options.kv_type.offset:
            raise UnsupportedError(Status.UNSUPPORTED, "kv_type, context_shift and n_keep need libmoert 0.2.0 or later")
        out = ctypes.c_void_p()
        _lib.check(library.moert_session_create(model_address, ctypes.byref(options), ctypes.byref(out)))
        self._handle = OwnedHandle(out.value or 0, library.moert_session_free)
        model._adopt(self._handle)
        self._vocab_size: int = model.info.vocab_size
        self._n_ctx: int = int(library.moert_session_n_ctx(self._handle.address))
        self._kv_type = kv_type
        self._context_shift = context_shift
        self._n_keep = n_keep
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
    def kv_type(self) -> str:
        """Element type of the KV cache ("f32", "f16", "bf16" or "q8_0")."""
        return self._kv_type

    @property
    @_one_call_at_a_time
    def kv_bytes(self) -> int:
        """Bytes of the KV cache (every layer, n_ctx positions). The C entry point is ``moert_session_kv_bytes``."""
        return int(_lib.newer_function("moert_session_kv_bytes")(self._require()))

    @_one_call_at_a_time
    def shift(self, n_keep: int, n_discard: int) -> None:
        """Drops positions [n_keep, n_keep + n_discard) from the KV cache: later positions move back (their keys
        rotated to the new positions), ``n_past`` shrinks by n_discard. What follows differs from evaluating the
        kept tokens afresh (their keys and values saw the dropped ones), as with llama.cpp's context shift.

        Raises:
            InvalidArgumentError: a range outside [0, n_past).
            UnsupportedError: a model that cannot shift (one with a sliding window; the message says why).

        The C entry point is ``moert_session_shift``.
        """
        shift = _lib.newer_function("moert_session_shift")
        _lib.check(shift(self._require(), c_int_arg(n_keep, "n_keep", 64), c_int_arg(n_discard, "n_discard", 64)))

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
            prompt: ids to evaluate first; may be empty when the session already holds tokens: generation then
                continues from its last position (its last logits, computed again when the last call kept none).
            max_new_tokens: most tokens to yield (>= 0).
            temperature, top_k, top_p, seed: sampling, as for :class:`~moert.Sampler` (defaults: greedy).
            ignore_eos: keep going after EOS until `max_new_tokens`.

        Raises:
            InvalidArgumentError: bad sampling options, a negative `max_new_tokens` or an empty prompt on an
                empty session (raised by this call); during iteration, the errors of :meth:`eval`.
        """
        self._require_usable()
        ids = as_tokens(prompt, self._vocab_size)
        stop_ids: FrozenSet[int] = frozenset() if ignore_eos else frozenset(self._model.eos_token_ids)
        return self._start(ids, max_new_tokens, Sampling(temperature, top_k, top_p, seed), stop_ids, None)

    def _start(
        self,
        ids: np.ndarray,
        max_new_tokens: int,
        sampling: "Sampling",
        stop_ids: FrozenSet[int],
        stop_after: Optional[Callable[[int], bool]],
    ) -> Generator[int, None, None]:
        """Checks the arguments of a generation and returns its lazy token stream (see :meth:`_stream`)."""
        count = c_int_arg(max_new_tokens, "max_new_tokens", 32)
        if count < 0:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"max_new_tokens must be >= 0, got {count}")
        if ids.size == 0 and self.n_past == 0:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "empty prompt and empty session: nothing to continue")
        sampler = Sampler(*sampling)
        return self._stream(ids, count, sampler, stop_ids, stop_after)

    def _stream(
        self,
        ids: np.ndarray,
        count: int,
        sampler: Sampler,
        stop_ids: FrozenSet[int],
        stop_after: Optional[Callable[[int], bool]],
    ) -> Generator[int, None, None]:
        """The generator behind :meth:`generate` and :meth:`generate_text`; it frees its sampler when it ends or is
        discarded. `stop_after(token)`, called once the token has been fed back, ends generation by returning True.
        """
        try:
            if count == 0:
                if ids.size:
                    self._eval(ids, MOERT_LOGITS_NONE, None)
                return
            logits = np.empty(self._vocab_size, dtype=np.float32)
            if ids.size:
                self._make_room(ids.size)
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
                self._make_room(1)
                if self.n_past >= self._n_ctx:
                    return
                step[0] = token
                self._eval(step, MOERT_LOGITS_LAST, logits)
                if produced >= count or token in stop_ids or (stop_after is not None and stop_after(token)):
                    return
        finally:
            sampler.close()

    def _make_room(self, needed: int) -> None:
        """With ``context_shift``, drops positions after the first ``n_keep`` (half of them, or as many as
        `needed` asks) when `needed` more do not fit, as moert_session_generate() does."""
        n_past = self.n_past
        if not self._context_shift or needed <= self._n_ctx - n_past:
            return
        keep = min(self._n_keep, n_past)
        discard = min(n_past - keep, max(needed - (self._n_ctx - n_past), (n_past - keep) // 2))
        self.shift(keep, discard)

    def generate_text(
        self,
        prompt: Prompt,
        max_new_tokens: int = 16,
        *,
        chat: bool = False,
        system: Optional[str] = None,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        ignore_eos: bool = False,
        stop: Union[None, str, Sequence[str]] = None,
        skip_special_tokens: bool = True,
        chat_template_kwargs: Optional[Mapping[str, Any]] = None,
    ) -> "TextStream":
        """Generates from a text prompt with the model's :attr:`~moert.Model.tokenizer` and yields the text as it is
        made, in pieces that never split a UTF-8 character.

        The prompt is encoded when this is called; generation is lazy and runs as :meth:`generate` does (the same
        steps, the same session state afterwards). Each generated id goes through a :class:`~moert.Detokenizer`;
        ids that complete no character yet yield nothing, and the text still held back at the end is yielded last
        (an incomplete character as U+FFFD). Run to its end, the pieces add up to
        ``tokenizer.decode(stream.tokens, skip_special_tokens=...)``.

        Generation stops after one of the model's stop ids or the tokenizer's (:attr:`Model.eos_token_ids
        <moert.Model.eos_token_ids>`, :attr:`Tokenizer.stop_token_ids <moert.Tokenizer.stop_token_ids>`; not with
        `ignore_eos`), after the token that completes one of the `stop` strings, after `max_new_tokens`, and when
        the context is full. The last token's text is yielded in every case: a stop string's text is part of the
        output, as in transformers' ``generate(stop_strings=...)``.

        Args:
            prompt: a str, encoded with ``add_special_tokens=True`` as transformers' ``encode`` and ``moert generate
                --prompt`` do (bytes: its UTF-8); with `chat`, a user message instead. A list of message dicts is a
                conversation, rendered with the chat template and ``add_generation_prompt=True`` and encoded with
                ``add_special_tokens=False`` (the template writes them). Token ids (ints, an integer array) are
                taken as they are; an empty list continues the session, as ``generate([])``.
            max_new_tokens: most tokens to generate (>= 0).
            chat: render a str prompt as a user message (after a `system` message when given).
            system: the system message of a `chat` prompt.
            temperature, top_k, top_p, seed: sampling, as for :class:`~moert.Sampler` (defaults: greedy).
            ignore_eos: go on past the stop ids until `max_new_tokens` (stop strings still apply).
            stop: a string or several; generation stops after the token that completes one of them in the
                generated text (the text with special tokens, as ``moert_generate_options.stop_strings`` watches
                it; empty strings are ignored).
            skip_special_tokens: leave special tokens (such as an EOS) out of the text, as ``moert generate`` prints
                it.
            chat_template_kwargs: more arguments of :meth:`Tokenizer.apply_chat_template
                <moert.Tokenizer.apply_chat_template>` for a conversation: ``template_name`` and template variables
                such as ``enable_thinking`` or ``tools``.

        Returns:
            A :class:`TextStream`: an iterator of str whose ``tokens`` lists the ids generated so far.

        Raises:
            InvalidArgumentError: `system` or `chat_template_kwargs` for a prompt that is not a chat, or the errors of
                :meth:`generate`, raised by this call; during iteration, the errors of :meth:`eval`.
            MoertIOError: the model's directory has no tokenizer.json (see :attr:`Model.tokenizer
                <moert.Model.tokenizer>`).
            TypeError: `stop` holds something other than str.

        Built on the same steps as :meth:`generate` rather than on ``moert_session_generate``: that call runs the
        whole loop inside moert, so an iterator over it would need a second thread.
        """
        self._require_usable()
        tokenizer = self._model.tokenizer
        ids = as_tokens(_prompt_ids(tokenizer, prompt, chat, system, chat_template_kwargs), self._vocab_size)
        strings = _stop_strings(stop)
        stop_ids: FrozenSet[int] = (
            frozenset() if ignore_eos else frozenset(self._model.eos_token_ids) | frozenset(tokenizer.stop_token_ids)
        )
        watch = _StopStrings(tokenizer, strings) if strings else None
        try:
            tokens = self._start(
                ids, max_new_tokens, Sampling(temperature, top_k, top_p, seed), stop_ids, watch.push if watch else None
            )
            return TextStream(tokens, tokenizer.detokenizer(skip_special_tokens), watch)
        except BaseException:
            if watch is not None:
                watch.close()
            raise

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
        tokenizer: Optional[Tokenizer] = None,
        stop: Union[None, str, Sequence[str]] = None,
        scmoe_weak_rank: Optional[int] = None,
        scmoe_beta: float = 0.5,
        scmoe_alpha: float = 0.1,
    ) -> List[int]:
        """Like :meth:`generate`, but runs the whole loop inside moert in one call and returns the list.

        Args:
            on_token: called with each new id as it is made; return False to stop after it (None or True go
                on). An exception raised by it stops generation and is re-raised from this call.
            tokenizer: the model's tokenizer (e.g. ``self.model.tokenizer``): its stop ids end generation too
                (unless `ignore_eos`), and `stop` needs it.
            stop: a string or several: generation stops after the token that completes one of them in the
                generated text (see :meth:`generate_text`).
            scmoe_weak_rank: None (the default): off; r >= 0: SCMoE self-contrast decoding — tokens are chosen from
                ``(1 + scmoe_beta) * strong - scmoe_beta * weak`` over the tokens whose strong probability is at least
                ``scmoe_alpha`` times the largest, where strong are this session's logits and weak those of a pass
                that keeps only the expert at 0-based rank r in every MoE layer (``moert_generate_options``).
            scmoe_beta, scmoe_alpha: SCMoE's beta (>= 0) and plausibility cutoff (in (0, 1]).

        The other arguments and the errors are those of :meth:`generate`; also InvalidArgumentError for `stop`
        without a `tokenizer`, and UnsupportedError for either with a library older than 0.2.0.

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
        strings = [c_text(text, "stop string") for text in _stop_strings(stop)]
        if tokenizer is not None or strings:
            _require_field(options, "n_stop_strings")
            options.tokenizer = None if tokenizer is None else tokenizer._require()
            # Kept alive by this frame for the call.
            array = (ctypes.c_char_p * len(strings))(*strings)
            options.stop_strings = array if strings else None
            options.n_stop_strings = len(strings)
        if scmoe_weak_rank is not None:
            _require_field(options, "scmoe_alpha")
            options.scmoe_weak_rank = c_int_arg(scmoe_weak_rank, "scmoe_weak_rank", 32)
            options.scmoe_beta = scmoe_beta
            options.scmoe_alpha = scmoe_alpha
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
        """Uses the model's own router ("topk") with another k in every MoE layer, each keeping the rest of its
        routing (0 restores the model's).

        Raises:
            InvalidArgumentError: `top_k` outside [0, n_experts], or above the experts of the groups a
                group-limited layer keeps.

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



class TextStream:
    """The text of one generation, piece by piece, as it is made: what :meth:`Session.generate_text` returns.

    An iterator of str. ``tokens`` lists the ids generated so far, the one whose text was yielded last included
    (with any held back in an incomplete character). Close it (or drop it) to stop early: as with
    :meth:`Session.generate`, the last id then has not been fed back to the session.

    A stream serves one call at a time, as its session does: ``next()`` or :meth:`close` while another ``next()`` is
    running (on another thread, or from a router or expert inside the step) raises :class:`InvalidArgumentError`.
    """

    def __init__(
        self, tokens: Generator[int, None, None], detokenizer: Detokenizer, watch: Optional["_StopStrings"]
    ) -> None:
        #: The ids generated so far.
        self.tokens: List[int] = []
        self._pieces = _pieces(tokens, self.tokens, detokenizer, watch)
        # Held during next() and close(): a running generator cannot be entered again.
        self._in_use = threading.Lock()

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        self._enter("next")
        try:
            return next(self._pieces)
        finally:
            self._in_use.release()

    def close(self) -> None:
        """Stops the generation and frees its sampler and detokenizers; calling it again does nothing."""
        self._enter("close")
        try:
            self._pieces.close()
        finally:
            self._in_use.release()

    def _enter(self, what: str) -> None:
        """Makes this call the stream's only one in progress, or raises InvalidArgumentError at once."""
        if not self._in_use.acquire(blocking=False):
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT,
                f"TextStream.{what}: the stream is in use by another call (another thread, or a router or expert "
                "running inside its step); a stream serves one call at a time",
            )


def _pieces(
    tokens: Generator[int, None, None], seen: List[int], detokenizer: Detokenizer, watch: Optional["_StopStrings"]
) -> Iterator[str]:
    """The generator behind :class:`TextStream`: non-empty text pieces of `tokens`, which it appends to `seen`."""
    try:
        for token in tokens:
            seen.append(token)
            piece = detokenizer.push(token)
            if piece:
                yield piece
        rest = detokenizer.flush()
        if rest:
            yield rest
    finally:
        tokens.close()
        detokenizer.close()
        if watch is not None:
            watch.close()


class _StopStrings:
    """Watches generated text for stop strings by the rule of ``moert_generate_options.stop_strings``: the text of
    the generated ids, special tokens kept, as a detokenizer streams it; found once the text so far contains one of
    the strings. Only the last characters a match could still span are kept between tokens."""

    def __init__(self, tokenizer: Tokenizer, strings: List[str]) -> None:
        self._detokenizer = tokenizer.detokenizer(skip_special_tokens=False)
        self._strings = strings
        self._keep = max(len(text) for text in strings) - 1
        self._tail = ""

    def push(self, token: int) -> bool:
        """Adds the next id; True when the text so far contains one of the strings."""
        piece = self._detokenizer.push(token)
        if not piece:
            return False
        # Pieces end on character boundaries, so searching characters finds what searching bytes would.
        text = self._tail + piece
        self._tail = text[-self._keep :] if self._keep else ""
        return any(candidate in text for candidate in self._strings)

    def close(self) -> None:
        self._detokenizer.close()


def _stop_strings(stop: Union[None, str, Sequence[str]]) -> List[str]:
    """The non-empty stop strings of a `stop` argument (one str or several).

    Raises:
        TypeError: an item that is not a str.
    """
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else list(stop)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"stop strings must be str, got {type(item).__name__}")
    return [item for item in items if item]


def _prompt_ids(
    tokenizer: Tokenizer,
    prompt: Prompt,
    chat: bool,
    system: Optional[str],
    chat_template_kwargs: Optional[Mapping[str, Any]],
) -> Any:
    """The token ids of a :meth:`Session.generate_text` prompt (see there).

    Raises:
        InvalidArgumentError: `system` or `chat_template_kwargs` where the prompt is not a chat.
        TypeError: a bytes prompt with `chat`.
    """
    template_kwargs = dict(chat_template_kwargs or {})
    if isinstance(prompt, (str, bytes)):
        if not chat:
            if system is not None or template_kwargs:
                raise InvalidArgumentError(
                    Status.INVALID_ARGUMENT, "system and chat_template_kwargs need chat=True or a list of messages"
                )
            return tokenizer.encode(prompt, add_special_tokens=True)
        if not isinstance(prompt, str):
            raise TypeError("a chat prompt must be a str")
        messages: List[Mapping[str, Any]] = [] if system is None else [{"role": "system", "content": system}]
        messages.append({"role": "user", "content": prompt})
    elif isinstance(prompt, Sequence) and len(prompt) > 0 and isinstance(prompt[0], Mapping):
        if system is not None:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, "system applies to a str prompt; put the system message in the list"
            )
        messages = list(prompt)
    else:
        if chat or system is not None or template_kwargs:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, "chat, system and chat_template_kwargs need a str prompt or a list of messages"
            )
        return prompt
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, **template_kwargs)
    return tokenizer.encode(text, add_special_tokens=False)


def _require_field(options: ctypes.Structure, field: str) -> None:
    """Raises UnsupportedError when the library's ``struct_size`` of `options` does not cover `field`: an older
    library would ignore it."""
    layout = getattr(type(options), field)
    if options.struct_size < layout.offset + layout.size:
        found = (_lib.get().moert_version() or b"unknown").decode("ascii", "replace")
        raise UnsupportedError(
            Status.UNSUPPORTED,
            f"{type(options).__name__}.{field} needs libmoert 0.2.0 or later; {_lib.library_path()} is version {found}",
        )
