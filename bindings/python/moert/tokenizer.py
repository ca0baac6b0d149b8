"""Tokenizers (``moert_tokenizer``), streaming detokenizers (``moert_detokenizer``) and chat templates."""

from __future__ import annotations

import ctypes
import json
import os
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lib
from ._errors import InvalidArgumentError, Status
from ._support import ClosedByWith, OwnedHandle, as_tokens, c_int_arg, init_options
from ._types import (
    MOERT_DECODE_SKIP_SPECIAL,
    MOERT_ENCODE_ADD_SPECIAL,
    MOERT_ENCODE_PARSE_SPECIAL,
    moert_chat_options,
)

__all__ = ["Tokenizer", "Detokenizer", "c_text"]

PathLike = Union[str, "os.PathLike[str]"]

#: What encode() takes: text, or its UTF-8 bytes.
Text = Union[str, bytes, bytearray, memoryview]

_INT32_P = ctypes.POINTER(ctypes.c_int32)
_CHAR_P = ctypes.POINTER(ctypes.c_char)


def _optional_id(token: int) -> Optional[int]:
    """A token id the C API gives as -1 when there is none."""
    return None if token < 0 else int(token)


def c_text(text: str, what: str) -> bytes:
    """`text` as UTF-8 for a NUL-terminated C string.

    Raises:
        InvalidArgumentError: it holds a NUL character, which would end the C string early.
    """
    encoded = text.encode("utf-8", "surrogatepass")
    if b"\0" in encoded:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"{what} holds a NUL character, which C strings cannot carry")
    return encoded


class Tokenizer(ClosedByWith):
    """A Hugging Face tokenizer (``moert_tokenizer``): encodes and decodes as the ``tokenizers`` library does, and
    renders chat templates as transformers' ``apply_chat_template`` does.

    Args:
        path: a model directory holding ``tokenizer.json`` (its ``tokenizer_config.json``, ``chat_template.jinja``,
            ``generation_config.json`` and ``config.json`` are read too, for the special tokens, chat templates and
            stop ids), or the path of a ``tokenizer.json`` file (then there are no special ids, stop ids or chat
            templates).

    A tokenizer is immutable and may be shared by any number of threads. Free it with :meth:`close` or a ``with``
    block (it is also freed when garbage-collected); closing it first closes its detokenizers.
    :attr:`Model.tokenizer <moert.Model.tokenizer>` loads the one of a model's directory.

    Raises:
        MoertIOError: there is no ``tokenizer.json``.
        FormatError: a file is malformed (named in the message).
        UnsupportedError: a tokenizer component moert does not implement (named), or a library older than 0.2.0.

    The C entry points are ``moert_tokenizer_load`` and ``moert_tokenizer_free``.
    """

    def __init__(self, path: PathLike) -> None:
        self._handle: Optional[OwnedHandle] = None
        self._detokenizers: Dict[int, OwnedHandle] = {}
        self._path: str = os.fspath(path)
        load = _lib.newer_function("moert_tokenizer_load")
        library = _lib.get()
        self._library = library
        out = ctypes.c_void_p()
        _lib.check(load(os.fsencode(self._path), ctypes.byref(out)))
        self._handle = OwnedHandle(out.value or 0, library.moert_tokenizer_free)
        address = self._handle.address
        # Immutable after load: read once.
        self._n_vocab = int(library.moert_tokenizer_n_vocab(address))
        self._bos = _optional_id(library.moert_tokenizer_bos(address))
        self._eos = _optional_id(library.moert_tokenizer_eos(address))
        self._pad = _optional_id(library.moert_tokenizer_pad(address))
        count = int(library.moert_tokenizer_n_stop_tokens(address))
        stop = (int(library.moert_tokenizer_stop_token(address, i)) for i in range(count))
        self._stop_token_ids: Tuple[int, ...] = tuple(i for i in stop if i >= 0)

    # Vocabulary

    @property
    def path(self) -> str:
        """The directory or file as given."""
        return self._path

    @property
    def n_vocab(self) -> int:
        """Number of token ids: 1 + the largest id of the vocabulary and the added tokens.

        The C entry point is ``moert_tokenizer_n_vocab``.
        """
        self._require()
        return self._n_vocab

    def token_to_piece(self, token: int) -> Optional[str]:
        """The vocabulary entry of `token` as tokenizer.json writes it (e.g. "Ġthe", "▁the", "<0x0A>",
        "<|im_end|>"), as transformers' ``convert_ids_to_tokens``; None when the id is out of range.

        The C entry point is ``moert_tokenizer_token_to_piece``.
        """
        piece = self._library.moert_tokenizer_token_to_piece(self._require(), c_int_arg(token, "token", 32))
        return None if piece is None else piece.decode("utf-8")

    def piece_to_token(self, piece: str) -> Optional[int]:
        """The id of a vocabulary entry or added token (the inverse of :meth:`token_to_piece`); None when there is
        none.

        Raises:
            InvalidArgumentError: `piece` holds a NUL character.

        The C entry point is ``moert_tokenizer_piece_to_token``.
        """
        address = self._require()
        return _optional_id(self._library.moert_tokenizer_piece_to_token(address, c_text(piece, "piece")))

    @property
    def bos_token_id(self) -> Optional[int]:
        """The id of tokenizer_config.json's ``bos_token``; None when it names none or the tokenizer was loaded
        from a file. The C entry point is ``moert_tokenizer_bos``."""
        self._require()
        return self._bos

    @property
    def eos_token_id(self) -> Optional[int]:
        """The id of tokenizer_config.json's ``eos_token``, or None (see :attr:`bos_token_id`).
        The C entry point is ``moert_tokenizer_eos``."""
        self._require()
        return self._eos

    @property
    def pad_token_id(self) -> Optional[int]:
        """The id of tokenizer_config.json's ``pad_token``, or None (see :attr:`bos_token_id`).
        The C entry point is ``moert_tokenizer_pad``."""
        self._require()
        return self._pad

    @property
    def stop_token_ids(self) -> Tuple[int, ...]:
        """The ids that end generation: the ``eos_token_id`` of generation_config.json (often several) and of
        config.json, then the ``eos_token``, without repeats; empty for a tokenizer loaded from a file.

        The C entry points are ``moert_tokenizer_n_stop_tokens`` and ``moert_tokenizer_stop_token``.
        """
        self._require()
        return self._stop_token_ids

    # Encoding and decoding

    def encode(self, text: Text, add_special_tokens: bool = False, parse_special_tokens: bool = True) -> List[int]:
        """Encodes text into token ids, as ``tokenizers``' ``encode``.

        Args:
            text: a str, or UTF-8 bytes (any bytes-like object).
            add_special_tokens: add the special tokens of the post-processor (e.g. a BOS first), as transformers'
                ``encode(text, add_special_tokens=True)`` (transformers' default; here off by default, as in
                ``moert tokenize`` without ``--add-special``).
            parse_special_tokens: match special-token text written in the input (e.g. "<|im_start|>") as those
                tokens, as transformers does; False encodes such text as plain text (``tokenizers``'
                ``encode_special_tokens``).

        Raises:
            InvalidArgumentError: the bytes are not valid UTF-8 (the message gives the offset of the first invalid
                byte; a str with lone surrogates fails the same way).
            TypeError: `text` is neither text nor bytes.

        The C entry point is ``moert_tokenizer_encode``.
        """
        address = self._require()
        if isinstance(text, str):
            data = text.encode("utf-8", "surrogatepass")
        elif isinstance(text, (bytes, bytearray, memoryview)):
            data = bytes(text)
        else:
            raise TypeError(f"text must be a str or bytes, got {type(text).__name__}")
        flags = (MOERT_ENCODE_ADD_SPECIAL if add_special_tokens else 0) | (
            MOERT_ENCODE_PARSE_SPECIAL if parse_special_tokens else 0
        )
        encode = self._library.moert_tokenizer_encode
        count = ctypes.c_size_t()
        # Most tokenizers give at most one id per byte plus a few special ones; a larger count is asked again.
        ids = np.empty(len(data) + 16, dtype=np.int32)
        for _ in range(2):
            status = encode(address, data, len(data), flags, ids.ctypes.data_as(_INT32_P), ids.size, ctypes.byref(count))
            if status != Status.BUFFER_TOO_SMALL:
                break
            ids = np.empty(count.value, dtype=np.int32)
        _lib.check(status)
        return ids[: count.value].tolist()

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        """Decodes token ids into text, as ``tokenizers``' ``decode`` (byte sequences that do not form valid UTF-8
        become U+FFFD).

        Args:
            ids: token ids: an int, a list or any integer array-like.
            skip_special_tokens: leave special tokens out, as ``decode(ids, skip_special_tokens=True)``.

        Raises:
            OutOfRangeError: an id outside the vocabulary.

        The C entry point is ``moert_tokenizer_decode``.
        """
        address = self._require()
        tokens = as_tokens(ids, self._n_vocab)
        pointer = tokens.ctypes.data_as(_INT32_P) if tokens.size else None
        flags = MOERT_DECODE_SKIP_SPECIAL if skip_special_tokens else 0
        return _read_text(
            lambda buffer, capacity, length: self._library.moert_tokenizer_decode(
                address, pointer, tokens.size, flags, buffer, capacity, length
            ),
            16 * tokens.size + 64,
        )

    def detokenizer(self, skip_special_tokens: bool = False) -> "Detokenizer":
        """A new :class:`Detokenizer` over this tokenizer: ids in one at a time, text out without broken UTF-8."""
        return Detokenizer(self, skip_special_tokens=skip_special_tokens)

    # Chat templates

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        *,
        template_name: Optional[str] = None,
        **variables: Any,
    ) -> str:
        """Renders a conversation with the tokenizer's chat template, as transformers'
        ``apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`` does.

        Encode the result with ``add_special_tokens=False``: the template writes the special tokens itself.

        Args:
            messages: the conversation, a list of dicts as transformers takes them (``role``, ``content`` and
                whatever else the template reads, e.g. ``tool_calls``); sent as JSON text, so their key order is
                kept.
            add_generation_prompt: end with the start of an assistant turn (transformers' default is False).
            template_name: which of tokenizer_config.json's named templates; None uses "default".
            **variables: further template variables, sent as a JSON object: ``enable_thinking=False``,
                ``tools=[...]``, ``documents=[...]``; they override the config's special tokens of the same name.

        Raises:
            InvalidArgumentError: bad messages, or the template's ``raise_exception`` (with its message).
            UnsupportedError: no chat template (or none of that name), or a Jinja construct moert does not
                implement (named).
            FormatError: a template that does not parse (with line and column).
            TypeError: messages or variables that JSON cannot represent.

        The C entry points are ``moert_tokenizer_apply_chat_template_json`` and ``moert_chat_options_init_sized``.
        """
        address = self._require()
        render = self._library.moert_tokenizer_apply_chat_template_json
        options = init_options(moert_chat_options, self._library.moert_chat_options_init_sized)
        options.add_generation_prompt = 1 if add_generation_prompt else 0
        # JSON escapes every control character, NUL included, so the texts below are C strings.
        messages_json = json.dumps(list(messages), ensure_ascii=False).encode("utf-8", "surrogatepass")
        name = None if template_name is None else c_text(template_name, "template_name")
        variables_json = json.dumps(variables, ensure_ascii=False).encode("utf-8", "surrogatepass") if variables else None
        options.template_name = name
        options.variables_json = variables_json
        return _read_text(
            lambda buffer, capacity, length: render(
                address, messages_json, ctypes.byref(options), buffer, capacity, length
            ),
            2 * len(messages_json) + 4096,
        )

    # Lifetime

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run (directly, or by closing the :class:`~moert.Model` it came from)."""
        return self._handle is None or self._handle.address is None

    def close(self) -> None:
        """Closes every detokenizer of this tokenizer, then frees it; calling it again does nothing.

        The C entry point is ``moert_tokenizer_free``.
        """
        self._close("it was closed")

    def _close(self, why: str) -> None:
        """Frees the detokenizers, then the tokenizer, giving `why` as the reason in later errors."""
        handle = self._handle
        if handle is None or handle.address is None:
            return
        detokenizers, self._detokenizers = self._detokenizers, {}
        for detokenizer in detokenizers.values():
            detokenizer.release("its Tokenizer was closed")
        handle.release(why)

    def _require(self) -> int:
        """The live tokenizer address, or InvalidArgumentError for a closed tokenizer."""
        if self._handle is None:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "Tokenizer is closed: it failed to load")
        return self._handle.require("Tokenizer")

    def _adopt(self, detokenizer: OwnedHandle) -> None:
        """Records a detokenizer handle so that closing the tokenizer frees it first."""
        self._detokenizers[id(detokenizer)] = detokenizer

    def _forget(self, detokenizer: OwnedHandle) -> None:
        """Drops a detokenizer handle that its Detokenizer has freed."""
        self._detokenizers.pop(id(detokenizer), None)

    def __del__(self) -> None:
        # Detokenizers keep their Tokenizer alive, so normally none is open here; inside a garbage cycle they may
        # still be, and must be freed first (moert.h: free detokenizers made from a tokenizer first).
        for detokenizer in list((getattr(self, "_detokenizers", None) or {}).values()):
            detokenizer.release("its Tokenizer was garbage-collected")
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.release()

    def __repr__(self) -> str:
        if self.closed:
            return f"<moert.Tokenizer {self._path!r} closed>"
        return f"<moert.Tokenizer {self._path!r} n_vocab={self._n_vocab}>"


class Detokenizer(ClosedByWith):
    """Turns token ids arriving one at a time into text, never splitting a UTF-8 sequence (``moert_detokenizer``).

    The texts :meth:`push` returns, followed by what :meth:`flush` returns, add up to
    :meth:`Tokenizer.decode` of the same ids (as ``tokenizers``' ``DecodeStream``, which differs only where decoding
    more ids rewrites text already given: byte-fallback bytes that stay invalid UTF-8 once more bytes follow).

    Args:
        tokenizer: the tokenizer; the detokenizer keeps it alive, and closing it closes the detokenizer.
        skip_special_tokens: leave special tokens out, as ``decode(ids, skip_special_tokens=True)``.

    Use a detokenizer from one thread at a time: a call made while another runs raises
    :class:`InvalidArgumentError`. Free it with :meth:`close` or a ``with`` block; it is also freed when
    garbage-collected.

    The C entry points are ``moert_detokenizer_create`` and ``moert_detokenizer_free``.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False) -> None:
        self._handle: Optional[OwnedHandle] = None
        self._in_use = threading.Lock()
        self._tokenizer = tokenizer
        library = tokenizer._library
        self._library = library
        out = ctypes.c_void_p()
        flags = MOERT_DECODE_SKIP_SPECIAL if skip_special_tokens else 0
        _lib.check(library.moert_detokenizer_create(tokenizer._require(), flags, ctypes.byref(out)))
        self._handle = OwnedHandle(out.value or 0, library.moert_detokenizer_free)
        tokenizer._adopt(self._handle)
        self.skip_special_tokens: bool = bool(skip_special_tokens)

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer this detokenizer decodes with."""
        return self._tokenizer

    def push(self, token: int) -> str:
        """Adds one id and returns the text it completes, often empty (e.g. after the first bytes of a character).

        Raises:
            OutOfRangeError: an id outside the vocabulary; the detokenizer is unchanged.

        The C entry point is ``moert_detokenizer_push``.
        """
        token = c_int_arg(token, "token", 32)
        return self._call(lambda address, text, length: self._library.moert_detokenizer_push(address, token, text, length))

    def flush(self) -> str:
        """Returns the text still held back (an incomplete UTF-8 sequence at the end becomes U+FFFD, as
        :meth:`Tokenizer.decode` gives it) and starts over, as a new detokenizer.

        The C entry point is ``moert_detokenizer_flush``.
        """
        return self._call(lambda address, text, length: self._library.moert_detokenizer_flush(address, text, length))

    def _call(self, call: Any) -> str:
        """Runs a push or flush as the detokenizer's only call in progress and copies the text it lends."""
        if not self._in_use.acquire(blocking=False):
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, "Detokenizer: in use by another call; a detokenizer serves one call at a time"
            )
        try:
            text, length = ctypes.c_void_p(), ctypes.c_size_t()
            _lib.check(call(self._require(), ctypes.byref(text), ctypes.byref(length)))
            # The text is owned by the detokenizer until its next call, and may hold a NUL (a token of byte 0).
            return ctypes.string_at(text.value, length.value).decode("utf-8") if length.value else ""
        finally:
            self._in_use.release()

    @property
    def closed(self) -> bool:
        """True once the detokenizer has been closed (directly or by closing its tokenizer)."""
        return self._handle is None or self._handle.address is None

    def close(self) -> None:
        """Frees the detokenizer; calling it again does nothing. The C entry point is ``moert_detokenizer_free``."""
        handle = self._handle
        if handle is not None:
            handle.release()
            self._tokenizer._forget(handle)

    def _require(self) -> int:
        if self._handle is None:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "Detokenizer is closed: it was never created")
        return self._handle.require("Detokenizer")

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.release()
            tokenizer = getattr(self, "_tokenizer", None)
            if tokenizer is not None:
                tokenizer._forget(handle)

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<moert.Detokenizer skip_special_tokens={self.skip_special_tokens}{state}>"


def _read_text(call: Any, capacity: int) -> str:
    """Runs a C call that writes NUL-terminated text and its length into a host buffer, first with `capacity` bytes
    and, when that is too small, once more with the length it reported."""
    length = ctypes.c_size_t()
    for _ in range(2):
        buffer = ctypes.create_string_buffer(capacity)
        status = call(ctypes.cast(buffer, _CHAR_P), capacity, ctypes.byref(length))
        if status != Status.BUFFER_TOO_SMALL:
            break
        capacity = length.value + 1
    _lib.check(status)
    return buffer.raw[: length.value].decode("utf-8")
