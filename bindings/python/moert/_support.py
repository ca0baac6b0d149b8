"""Internal helpers: owned C handles, options structs filled by the library, token arrays."""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Optional, Type, TypeVar

import numpy as np

from ._errors import InvalidArgumentError, OutOfRangeError, Status

__all__ = ["OwnedHandle", "ClosedByWith", "init_options", "as_tokens", "as_logits", "c_int_arg", "int_arg"]

_S = TypeVar("_S", bound=ctypes.Structure)
_C = TypeVar("_C", bound="ClosedByWith")

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class ClosedByWith:
    """Base of the objects that own a C handle: a ``with`` block returns the object and calls its ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OwnedHandle:
    """One C handle (an address) together with the call that frees it.

    ``release()`` is idempotent and needs no module globals, so it is safe from ``__del__`` at interpreter
    shutdown. ``why_closed`` says why a released handle is gone, for the error raised on later use.
    """

    __slots__ = ("address", "_free", "why_closed")

    def __init__(self, address: int, free: Callable[[Any], None]) -> None:
        self.address: Optional[int] = address
        self._free = free
        self.why_closed: str = "it was closed"

    def release(self, why: str = "it was closed") -> None:
        """Frees the handle once; later calls do nothing."""
        address, self.address = self.address, None
        if address:
            self.why_closed = why
            self._free(address)

    def require(self, what: str) -> int:
        """The live address, or :class:`InvalidArgumentError` when the handle has been released."""
        address = self.address
        if not address:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"{what} is closed: {self.why_closed}")
        return address


def init_options(struct: Type[_S], init: Callable[[Any, int], None]) -> _S:
    """A `struct` filled with the library's defaults by its ``*_init_sized`` function.

    The binding passes the size of its own mirror, so the library writes only the fields the binding knows and
    sets ``struct_size`` to match; it keeps its defaults for any newer fields.
    """
    value = struct()
    init(ctypes.byref(value), ctypes.sizeof(struct))
    return value


def as_tokens(tokens: Any, vocab_size: int) -> np.ndarray:
    """`tokens` (an int, a sequence or an integer array) as a C-contiguous 1-D int32 array.

    Raises:
        TypeError: the values are not integers.
        InvalidArgumentError: the array has more than one dimension.
        OutOfRangeError: a value does not fit in int32 (the library checks the vocabulary range itself).
    """
    if isinstance(tokens, np.ndarray) and tokens.dtype == np.int32 and tokens.ndim == 1:
        return np.ascontiguousarray(tokens)
    array = np.asarray(tokens)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise InvalidArgumentError(
            Status.INVALID_ARGUMENT, f"tokens must be one-dimensional, got shape {tuple(array.shape)}"
        )
    if array.size == 0:
        return np.zeros(0, dtype=np.int32)
    if array.dtype.kind not in "iu":
        raise TypeError(f"token ids must be integers, got dtype {array.dtype}")
    if array.dtype.itemsize > 4 or array.dtype == np.uint32:
        low, high = int(array.min()), int(array.max())
        if low < _INT32_MIN or high > _INT32_MAX:
            index = int(np.argmax((array < _INT32_MIN) | (array > _INT32_MAX)))
            raise OutOfRangeError(
                Status.OUT_OF_RANGE, f"token {index} has id {int(array[index])}, outside [0, {vocab_size})"
            )
    return np.ascontiguousarray(array, dtype=np.int32)


def as_logits(logits: Any) -> np.ndarray:
    """`logits` as a C-contiguous 1-D float32 array (a copy only when needed).

    Raises:
        InvalidArgumentError: the array is not one-dimensional.
    """
    array = np.ascontiguousarray(logits, dtype=np.float32)
    if array.ndim != 1:
        raise InvalidArgumentError(
            Status.INVALID_ARGUMENT, f"logits must be one row (1-D), got shape {tuple(array.shape)}"
        )
    return array


def int_arg(value: Any, name: str) -> int:
    """`value` as a Python int; floats and bools are refused.

    Raises:
        TypeError: `value` is not an integer.
    """
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    return int(value.__index__())


def c_int_arg(value: Any, name: str, bits: int) -> int:
    """`value` as an int that fits a signed C integer of `bits` bits (ctypes would wrap it silently).

    Raises:
        TypeError: `value` is not an integer.
        InvalidArgumentError: it does not fit.
    """
    number = int_arg(value, name)
    limit = 2 ** (bits - 1)
    if not -limit <= number < limit:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"{name} must fit in int{bits}, got {number}")
    return number
