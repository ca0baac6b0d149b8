"""Token samplers: greedy, temperature, top-k and top-p selection with a seeded random stream."""

from __future__ import annotations

import ctypes
from typing import Any, Optional

from . import _lib
from ._errors import InvalidArgumentError, Status
from ._support import ClosedByWith, OwnedHandle, as_logits, c_int_arg, init_options, int_arg
from ._types import moert_sampler_options

__all__ = ["Sampler"]

_UINT64_LIMIT = 2**64


def sampler_options(temperature: float, top_k: int, top_p: float, seed: int) -> moert_sampler_options:
    """A ``moert_sampler_options`` with the given values.

    Ranges are checked by the library; a float too large for float32 becomes infinity, which it refuses.

    Raises:
        InvalidArgumentError: a value that cannot be represented in the C struct (the library checks the rest).
        TypeError: a value of the wrong type.
    """
    library = _lib.get()
    options = init_options(moert_sampler_options, library.moert_sampler_options_init_sized)
    temperature, top_p = float(temperature), float(top_p)
    top_k, seed = c_int_arg(top_k, "top_k", 32), int_arg(seed, "seed")
    if not 0 <= seed < _UINT64_LIMIT:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"seed must be in [0, 2^64), got {seed}")
    options.temperature = temperature
    options.top_k = top_k
    options.top_p = top_p
    options.seed = seed
    return options


class Sampler(ClosedByWith):
    """Draws token ids from rows of logits (``moert_sampler``).

    ``temperature=0`` (the default) is greedy: the arg-max, lowest id on ties. Otherwise the logits are divided
    by `temperature`, cut to the `top_k` most likely tokens (0 = all) and then to the smallest set whose
    probability reaches `top_p`, and a token is drawn from the sampler's random stream. Equal options and
    seeds give equal draws.

    A sampler must be used by one thread at a time. Free it with :meth:`close` or a ``with`` block; it is also
    freed when garbage-collected.

    Raises:
        InvalidArgumentError: a negative temperature or top_k, top_p outside (0, 1], NaN, or a seed outside
            [0, 2^64).

    The C entry points are ``moert_sampler_create`` and ``moert_sampler_free``.
    """

    def __init__(self, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> None:
        self._handle: Optional[OwnedHandle] = None
        library = _lib.get()
        options = sampler_options(temperature, top_k, top_p, seed)
        out = ctypes.c_void_p()
        _lib.check(library.moert_sampler_create(ctypes.byref(options), ctypes.byref(out)))
        self._handle = OwnedHandle(out.value or 0, library.moert_sampler_free)
        self._sample = library.moert_sampler_sample
        self.temperature: float = options.temperature
        self.top_k: int = options.top_k
        self.top_p: float = options.top_p
        self.seed: int = options.seed

    def sample(self, logits: Any) -> int:
        """Draws one token id from a row of logits (any 1-D float array-like; float32 is used as is).

        Raises:
            InvalidArgumentError: an empty row, a row that is all NaN, or a closed sampler.

        The C entry point is ``moert_sampler_sample``.
        """
        address = self._require()
        row = as_logits(logits)
        token = ctypes.c_int32()
        pointer = row.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        _lib.check(self._sample(address, pointer, row.size, ctypes.byref(token)))
        return token.value

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._handle is None or self._handle.address is None

    def close(self) -> None:
        """Frees the sampler; calling it again does nothing. The C entry point is ``moert_sampler_free``."""
        if self._handle is not None:
            self._handle.release()

    def _require(self) -> int:
        if self._handle is None:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "Sampler is closed: it was never created")
        return self._handle.require("Sampler")

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.release()

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return (
            f"<moert.Sampler temperature={self.temperature:g} top_k={self.top_k} top_p={self.top_p:g} "
            f"seed={self.seed}{state}>"
        )
