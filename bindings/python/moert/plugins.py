"""Router and expert kinds written in Python, registered in process (``moert_register_router`` and
``moert_register_expert`` with ``ctypes.CFUNCTYPE`` callbacks).

A kind is a name plus a *factory*: moert calls the factory once per MoE layer (routers) or once per expert
(experts) of every model or session that names the kind, with a :class:`LayerInfo` and a :class:`CreateContext`
giving the layer's tensors and parameters. The object returned does the work:

- a router has ``route(x, token_ids, positions, batch)`` returning ``(expert_ids, weights)`` or
  ``(expert_ids, weights, counts)`` (see :class:`Router`);
- an expert has ``forward(x)`` returning ``y`` (see :class:`Expert`).

Subclasses of :class:`Router` and :class:`Expert` are factories themselves (their ``__init__`` takes the layer
and the context). Python exceptions never cross into C: a failing callback returns an error status with the
exception text as moert's message, and the :class:`~moert.MoertError` raised by the call that ran it (for
example :meth:`Session.eval`) carries the original exception as ``__cause__``.

Every call into Python takes the GIL and costs microseconds, against nanoseconds for a C plugin: Python kinds are
for prototyping and research, not for speed (docs/python.md gives measured numbers).
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import itertools
import threading
from ctypes import CFUNCTYPE, Structure, c_char_p, c_double, c_int32, c_uint32, c_void_p
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import _lib
from ._errors import FormatError, InvalidArgumentError, MoertError, Status, error_class
from ._types import (
    MOERT_EXPERT_OUTPUT_IDENTITY,
    MOERT_EXPERT_OUTPUT_ZERO,
    MOERT_EXPERT_ZERO_COMPUTE,
    MOERT_PLUGIN_ABI_VERSION,
    MOERT_TENSOR_F32,
    MOERT_TENSOR_I32,
    destroy_fn,
    expert_create_fn,
    expert_forward_fn,
    moert_expert_ops,
    moert_host_api,
    moert_layer_info,
    moert_router_caps,
    moert_router_ops,
    moert_tensor,
    router_create_fn,
    router_route_fn,
)

__all__ = [
    "LayerInfo",
    "CreateContext",
    "RouterBatch",
    "Router",
    "Expert",
    "RouterFactory",
    "ExpertFactory",
    "register_router",
    "register_expert",
    "PythonKind",
    "python_kinds",
    "shutdown",
]

#: A callable making a router instance for one MoE layer (a :class:`Router` subclass is one).
RouterFactory = Callable[["LayerInfo", "CreateContext"], Any]
#: A callable making an expert instance (an :class:`Expert` subclass is one).
ExpertFactory = Callable[["LayerInfo", "CreateContext"], Any]

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_MISSING: Any = object()


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """Facts about the MoE layer an instance is created for; the fields of the C struct ``moert_layer_info``."""

    layer: int
    """Decoder layer index, 0-based."""
    moe_index: int
    """Index among the model's MoE layers, 0-based."""
    n_moe_layers: int
    """MoE layers in the model."""
    hidden_size: int
    """Width of the hidden states."""
    n_experts: int
    """Experts in this layer (all kinds together); routers return ids in ``[0, n_experts)``."""
    top_k: int
    """The configured experts per token (``num_experts_per_tok``, or a session's override)."""
    vocab_size: int
    """Token ids are in ``[0, vocab_size)``."""
    expert_index: Optional[int]
    """For experts: this expert's id in the layer; None for routers (C gives -1)."""

    @classmethod
    def _from_c(cls, info: moert_layer_info) -> "LayerInfo":
        return cls(
            layer=info.layer,
            moe_index=info.moe_index,
            n_moe_layers=info.n_moe_layers,
            hidden_size=info.hidden_size,
            n_experts=info.n_experts,
            top_k=info.top_k,
            vocab_size=info.vocab_size,
            expert_index=None if info.expert_index < 0 else info.expert_index,
        )


# ---------------------------------------------------------------------------------------------------------------
# Raw views of C memory
# ---------------------------------------------------------------------------------------------------------------


class _Memory:
    """Exposes `address` to NumPy as an array of `shape` and `typestr` without copying (the array keeps this
    object, not the memory, alive: the memory must outlive every use of the view)."""

    __slots__ = ("__array_interface__",)

    def __init__(self, address: int, shape: Tuple[int, ...], typestr: str, readonly: bool) -> None:
        self.__array_interface__ = {"data": (address, readonly), "shape": shape, "typestr": typestr, "version": 3}


def _view(address: Optional[int], shape: Tuple[int, ...], typestr: str, readonly: bool) -> np.ndarray:
    """A NumPy view of C memory (an empty array for NULL)."""
    if not address:
        return np.zeros(shape if 0 in shape else (0,) * len(shape), dtype=np.dtype(typestr))
    return np.asarray(_Memory(address, shape, typestr, readonly))


_F32 = "<f4"
_I32 = "<i4"


class _RouterInput(Structure):
    """``moert_router_input`` with every pointer as an address (same layout; read on the hot path)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("n_tokens", c_int32),
        ("hidden_size", c_int32),
        ("x", c_void_p),
        ("token_ids", c_void_p),
        ("positions", c_void_p),
        ("prev_token_ids", c_void_p),
        ("state", c_void_p),
        ("state_stride", c_int32),
        ("prev_logits", c_void_p),
        ("prev_logits_width", c_int32),
    ]


class _RouterOutput(Structure):
    """``moert_router_output`` with every pointer as an address (same layout)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("max_per_token", c_int32),
        ("expert_ids", c_void_p),
        ("weights", c_void_p),
        ("counts", c_void_p),
        ("logits", c_void_p),
    ]


# Callback signatures with every pointer as an address: ABI-identical to the typed ones of _types, cheaper to call.
_RouterCreate = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p)
_RouterRoute = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_void_p)
_ExpertCreate = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_void_p, c_void_p)
_ExpertForward = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_int32, c_int32, c_void_p)
_Destroy = CFUNCTYPE(None, c_void_p)


# ---------------------------------------------------------------------------------------------------------------
# The host table
# ---------------------------------------------------------------------------------------------------------------


class _Host:
    """The ``moert_host_api`` table moert hands to create(); it lives at one address for the whole process."""

    def __init__(self, address: int) -> None:
        table = moert_host_api.from_address(address)
        self.address = address
        self.set_error = table.set_error
        self.layer_tensor = table.layer_tensor
        self.model_tensor = table.model_tensor
        self.param_number = table.param_number
        self.param_string = table.param_string
        self.log = table.log


_host: Optional[_Host] = None


def _host_at(address: int) -> _Host:
    global _host
    host = _host
    if host is None or host.address != address:
        host = _host = _Host(address)
    return host


# ---------------------------------------------------------------------------------------------------------------
# Create contexts
# ---------------------------------------------------------------------------------------------------------------


class CreateContext:
    """What a factory may look up while it creates an instance: the layer's tensors and the kind's parameters.

    It is valid only during the factory call; using it afterwards raises :class:`~moert.InvalidArgumentError`.
    Reading a tensor marks it as used (moert refuses checkpoints with tensors no layer uses).
    """

    def __init__(self, host: _Host, address: int, kind: str, layer: LayerInfo) -> None:
        self._host = host
        self._address: Optional[int] = address
        self._kind = kind
        self._layer = layer

    @property
    def kind(self) -> str:
        """The kind name being created."""
        return self._kind

    @property
    def layer(self) -> LayerInfo:
        """The layer the instance is created for."""
        return self._layer

    @property
    def closed(self) -> bool:
        """True once the factory call has returned."""
        return self._address is None

    def tensor(self, name: str, copy: bool = True) -> np.ndarray:
        """A tensor of this MoE layer, by name relative to the layer's block prefix P.

        A router reads ``P + name`` (e.g. ``"gate.weight"``, the layer's own gate, ``[n_experts, hidden]``); expert
        ``e`` reads ``P + "experts.<e>." + name``. Float tensors come as float32 whatever their storage, integer
        tables as int32.

        Args:
            name: the relative tensor name.
            copy: True (the default) returns an array owned by Python. False returns a read-only view of moert's
                memory, valid only until the instance is destroyed (its model or session freed): keep it in the
                instance, never beyond.

        Raises:
            FormatError: no such tensor, or not F32/F16/BF16/I32.

        The C entry point is ``host->layer_tensor``.
        """
        return self._tensor(self._host.layer_tensor, name, copy)

    def model_tensor(self, name: str, copy: bool = True) -> np.ndarray:
        """A tensor by its full name in the checkpoint (for weights shared by all layers); see :meth:`tensor`.

        The C entry point is ``host->model_tensor``.
        """
        return self._tensor(self._host.model_tensor, name, copy)

    def param_number(self, key: str, default: Any = _MISSING) -> Any:
        """A numeric parameter from the model's moert section (or :meth:`Session.set_router` params) as a float;
        JSON true/false come as 1.0/0.0.

        Raises:
            KeyError: the key is absent and no `default` is given.
            FormatError: the value is not a number.

        The C entry point is ``host->param_number``.
        """
        value = c_double()
        status = self._host.param_number(self._require(), key.encode("utf-8"), ctypes.byref(value))
        if status == Status.OK:
            return float(value.value)
        return self._param_failure(key, status, "a number", default)

    def param_string(self, key: str, default: Any = _MISSING) -> Any:
        """A text parameter, as :meth:`param_number`. The C entry point is ``host->param_string``."""
        value = c_char_p()
        status = self._host.param_string(self._require(), key.encode("utf-8"), ctypes.byref(value))
        if status == Status.OK:
            return (value.value or b"").decode("utf-8", "replace")
        return self._param_failure(key, status, "a string", default)

    def param(self, key: str, default: Any = _MISSING) -> Any:
        """A parameter that is a number (returned as float) or a string.

        Raises:
            KeyError: the key is absent and no `default` is given.
            FormatError: the value is neither (an array or an object, which the C API does not hand out).
        """
        try:
            return self.param_number(key, default)
        except FormatError:
            try:
                return self.param_string(key)
            except FormatError:
                raise FormatError(Status.FORMAT, f"parameter {key} is neither a number nor a string") from None

    def _param_failure(self, key: str, status: int, what: str, default: Any) -> Any:
        if status == Status.OUT_OF_RANGE:
            if default is _MISSING:
                raise KeyError(f"{self._kind}: no parameter {key!r}")
            return default
        raise error_class(status)(status, f"{self._kind}: parameter {key!r} is not {what}")

    def _require(self) -> int:
        address = self._address
        if address is None:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, "CreateContext is closed: it is valid only while the factory runs"
            )
        return address

    def _tensor(self, lookup: Any, name: str, copy: bool) -> np.ndarray:
        tensor = moert_tensor()
        tensor.struct_size = ctypes.sizeof(moert_tensor)
        status = lookup(self._require(), name.encode("utf-8"), ctypes.byref(tensor))
        if status != Status.OK:
            raise error_class(status)(status, f"{self._kind}: tensor {name!r} is not available")
        if tensor.dtype == MOERT_TENSOR_F32:
            typestr = _F32
        elif tensor.dtype == MOERT_TENSOR_I32:
            typestr = _I32
        else:
            raise FormatError(Status.FORMAT, f"{self._kind}: tensor {name!r} has unknown element type {tensor.dtype}")
        shape = tuple(int(tensor.shape[i]) for i in range(tensor.ndim))
        view = _view(tensor.data, shape, typestr, readonly=True)
        return view.copy() if copy else view

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<moert.CreateContext {self._kind} layer {self._layer.layer}{state}>"


# ---------------------------------------------------------------------------------------------------------------
# Routers
# ---------------------------------------------------------------------------------------------------------------


class RouterBatch:
    """Everything of one route() call beyond x, token ids and positions. Arrays are views of moert's buffers,
    valid only during the call: copy what you keep. Using the batch after route() returned raises
    :class:`~moert.InvalidArgumentError`.
    """

    __slots__ = ("layer", "n_tokens", "max_per_token", "_input", "_output")

    def __init__(self, layer: LayerInfo, max_per_token: int, cin: _RouterInput, cout: _RouterOutput) -> None:
        self.layer = layer
        self.n_tokens: int = cin.n_tokens
        self.max_per_token = max_per_token
        self._input: Optional[_RouterInput] = cin
        self._output: Optional[_RouterOutput] = cout

    def _in(self) -> _RouterInput:
        cin = self._input
        if cin is None:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "RouterBatch is valid only during its route() call")
        return cin

    def _out(self) -> _RouterOutput:
        cout = self._output
        if cout is None:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "RouterBatch is valid only during its route() call")
        return cout

    @property
    def prev_token_ids(self) -> np.ndarray:
        """int32 ``[n]``: the id of the token before each one; -1 at position 0."""
        return _view(self._in().prev_token_ids, (self.n_tokens,), _I32, readonly=True)

    @property
    def state(self) -> Optional[np.ndarray]:
        """float32 ``[n, state_stride]``, writable: per-token state carried from MoE layer to MoE layer within one
        forward pass (zero at the first MoE layer); None when no router of the model declares ``state_size``."""
        cin = self._in()
        if not cin.state:
            return None
        return _view(cin.state, (self.n_tokens, cin.state_stride), _F32, readonly=False)

    @property
    def prev_logits(self) -> Optional[np.ndarray]:
        """float32 ``[n, width]``: the logits the previous MoE layer's router wrote; None at the first MoE layer."""
        cin = self._in()
        if not cin.prev_logits:
            return None
        return _view(cin.prev_logits, (self.n_tokens, cin.prev_logits_width), _F32, readonly=True)

    @property
    def logits(self) -> np.ndarray:
        """float32 ``[n, n_experts]``, writable, prefilled with NaN: optional raw router logits, handed to the next
        MoE layer's router as ``prev_logits``. Leave it alone if the router has none."""
        return _view(self._out().logits, (self.n_tokens, self.layer.n_experts), _F32, readonly=False)

    @property
    def out_expert_ids(self) -> np.ndarray:
        """int32 ``[n, max_per_token]``, writable: the output ids, for routers that fill the output in place and
        return None from route()."""
        return _view(self._out().expert_ids, (self.n_tokens, self.max_per_token), _I32, readonly=False)

    @property
    def out_weights(self) -> np.ndarray:
        """float32 ``[n, max_per_token]``, writable: the output weights (see :attr:`out_expert_ids`)."""
        return _view(self._out().weights, (self.n_tokens, self.max_per_token), _F32, readonly=False)

    @property
    def out_counts(self) -> np.ndarray:
        """int32 ``[n]``, writable: entries used per row (see :attr:`out_expert_ids`); prefilled with -1."""
        return _view(self._out().counts, (self.n_tokens,), _I32, readonly=False)


class Router:
    """Base class of routers written in Python; a subclass is a factory for :func:`register_router`.

    ``__init__(layer, context)`` runs once per MoE layer: read weights with ``context.tensor(...)`` and parameters
    with ``context.param(...)`` there (the context is valid only during the call). It may change two attributes,
    which moert reads when it returns:

    - ``max_experts_per_token``: the capacity of each output row (default ``layer.top_k``, at most
      ``layer.n_experts``);
    - ``state_size``: floats of per-token state carried from MoE layer to MoE layer (default 0).

    :meth:`route` must be safe to call for several sessions (it runs under the GIL, but must not keep per-call
    state in the instance between calls). :meth:`close` runs when moert destroys the instance.
    """

    def __init__(self, layer: LayerInfo, context: CreateContext) -> None:
        self.layer = layer
        self.max_experts_per_token: int = layer.top_k
        self.state_size: int = 0

    def route(
        self, x: np.ndarray, token_ids: np.ndarray, positions: np.ndarray, batch: RouterBatch
    ) -> Optional[Tuple[Any, ...]]:
        """Routes a batch of tokens.

        Args:
            x: float32 ``[n, hidden]``, read-only view: the MoE block's input (after the post-attention RMSNorm).
            token_ids: int32 ``[n]``, read-only view.
            positions: int32 ``[n]``, read-only view: positions in the sequence, 0-based.
            batch: the rest of the input (state, previous layer's logits, ...) and the output buffers.

        Returns:
            ``(expert_ids, weights)`` or ``(expert_ids, weights, counts)``: ids ``[n, c]`` (integers in
            ``[0, n_experts)``), weights ``[n, c]`` (finite, >= 0; converted to float32) with
            ``c <= max_experts_per_token``, and counts ``[n]`` of entries used per row (default: all ``c``).
            Or None after filling ``batch.out_expert_ids``, ``out_weights`` and ``out_counts`` in place.
        """
        raise NotImplementedError(f"{type(self).__name__}.route")

    def close(self) -> None:
        """Called when moert destroys the instance (its model or session is freed). Does nothing by default."""


class Expert:
    """Base class of experts written in Python; a subclass is a factory for :func:`register_expert`.

    ``__init__(layer, context)`` runs once per expert (``layer.expert_index`` says which); ``context.tensor(name)``
    reads ``P + "experts.<e>." + name``.
    """

    def __init__(self, layer: LayerInfo, context: CreateContext) -> None:
        self.layer = layer

    def forward(self, x: np.ndarray) -> Any:
        """y = F(x) for the tokens routed to this expert.

        Args:
            x: float32 ``[n, hidden]``, read-only view valid during the call.

        Returns:
            ``[n, hidden]`` array-like (converted to float32).
        """
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def close(self) -> None:
        """Called when moert destroys the instance. Does nothing by default."""


# ---------------------------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Kind:
    """A registered Python kind: its C table and everything the table points to, kept alive until shutdown()."""

    role: str  # "router" or "expert"
    name: str
    factory: Callable[[LayerInfo, CreateContext], Any]
    instances: Dict[int, Any]
    keep: List[Any]  # the ops struct, the name buffer and the ctypes callbacks
    calls: List[int]  # [route or forward calls]


# Registered Python kinds by (role, name). Models keep a reference to this dict (see _registry_anchor), so that the
# callbacks outlive every model that may still call them, even when objects are freed late at interpreter exit.
_KINDS: Dict[Tuple[str, str], _Kind] = {}
_registry_lock = threading.Lock()
_next_instance = itertools.count(1)


def _registry_anchor() -> Dict[Tuple[str, str], _Kind]:
    """The registry object, for a Model to keep alive."""
    return _KINDS


def _fail(host: Optional[_Host], error: BaseException) -> int:
    """Reports `error` raised inside a callback: host->set_error(text) and a non-zero status. Never raises."""
    try:
        status = int(error.status) if isinstance(error, MoertError) and error.status else int(Status.PLUGIN)
        try:
            text = f"{type(error).__name__}: {error}"
        except BaseException:  # a broken __str__
            text = type(error).__name__
        if host is not None:
            host.set_error(text.encode("utf-8", "replace"))
        _lib.note_callback_exception(error)
        return status
    except BaseException:
        return int(Status.PLUGIN)


def _int_attribute(instance: Any, name: str, default: int) -> int:
    value = getattr(instance, name, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def _routing_arrays(result: Any, n: int, capacity: int) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Checks and converts what route() returned: (ids int32 [n, c], weights float32 [n, c], counts or None)."""
    if type(result) is not tuple or len(result) not in (2, 3):
        raise TypeError(
            f"route() must return (expert_ids, weights) or (expert_ids, weights, counts), got {type(result).__name__}"
        )
    ids, weights = result[0], result[1]
    if type(weights) is not np.ndarray or weights.dtype != np.float32:
        weights = np.asarray(weights, dtype=np.float32)
    if type(ids) is not np.ndarray:
        ids = np.asarray(ids)
    if ids.ndim == 1:
        ids = ids.reshape(n, 1)
    if weights.ndim == 1:
        weights = weights.reshape(n, 1)
    if ids.ndim != 2 or ids.shape[0] != n or ids.shape != weights.shape:
        raise ValueError(
            f"route() returned expert_ids of shape {ids.shape} and weights of shape {weights.shape}; "
            f"expected [{n}, c] both"
        )
    if ids.shape[1] > capacity:
        raise ValueError(f"route() returned {ids.shape[1]} experts per token; max_experts_per_token is {capacity}")
    if ids.dtype != np.int32:
        if ids.dtype.kind not in "iu":
            raise TypeError(f"expert_ids must be integers, got dtype {ids.dtype}")
        if ids.size and (int(ids.min()) < _INT32_MIN or int(ids.max()) > _INT32_MAX):
            raise ValueError("an expert id does not fit in int32")
        ids = ids.astype(np.int32)
    counts: Optional[np.ndarray] = None
    if len(result) == 3:
        counts = np.asarray(result[2])
        if counts.shape != (n,) or counts.dtype.kind not in "iu":
            raise ValueError(f"counts must be integers of shape [{n}], got {counts.dtype} {counts.shape}")
    return ids, weights, counts


def _store(address: int, array: np.ndarray, n: int, capacity: int, typestr: str) -> None:
    """Copies `array` ([n, used], of the output's dtype) into the first `used` columns of an [n, capacity] buffer."""
    if array.shape[1] == capacity:
        _view(address, (n, capacity), typestr, False)[...] = array
    else:
        _view(address, (n, capacity), typestr, False)[:, : array.shape[1]] = array


def _router_callbacks(kind: _Kind) -> Tuple[Any, Any, Any]:
    """The create, route and destroy callbacks of a router kind."""
    instances = kind.instances
    calls = kind.calls
    layers: Dict[int, LayerInfo] = {}

    def create(host_p: int, ctx_p: int, layer_p: int, caps_p: int, out_p: int) -> int:
        host = None
        try:
            host = _host_at(host_p)
            info = LayerInfo._from_c(moert_layer_info.from_address(layer_p))
            context = CreateContext(host, ctx_p, kind.name, info)
            try:
                instance = kind.factory(info, context)
            finally:
                context._address = None
            if not callable(getattr(instance, "route", None)):
                raise TypeError(f"the factory of router kind {kind.name} returned {type(instance).__name__}, "
                                "which has no route() method")
            caps = moert_router_caps.from_address(caps_p)
            caps.max_experts_per_token = _int_attribute(instance, "max_experts_per_token", info.top_k)
            caps.state_size = _int_attribute(instance, "state_size", 0)
            handle = next(_next_instance)
            instances[handle] = instance
            layers[handle] = info
            c_void_p.from_address(out_p).value = handle
            return 0
        except BaseException as error:
            return _fail(host, error)

    def route(handle: int, input_p: int, output_p: int) -> int:
        try:
            calls[0] += 1
            instance = instances[handle]
            info = layers[handle]
            cin = _RouterInput.from_address(input_p)
            cout = _RouterOutput.from_address(output_p)
            n, hidden = cin.n_tokens, cin.hidden_size
            capacity = cout.max_per_token
            batch = RouterBatch(info, capacity, cin, cout)
            x = _view(cin.x, (n, hidden), _F32, True)
            token_ids = _view(cin.token_ids, (n,), _I32, True)
            positions = _view(cin.positions, (n,), _I32, True)
            try:
                result = instance.route(x, token_ids, positions, batch)
            finally:
                batch._input = batch._output = None
            if result is None:
                return 0
            ids, weights, counts = _routing_arrays(result, n, capacity)
            used = ids.shape[1]
            if used:
                _store(cout.expert_ids, ids, n, capacity, _I32)
                _store(cout.weights, weights, n, capacity, _F32)
            if counts is None and n == 1:
                c_int32.from_address(cout.counts).value = used
            elif counts is None:
                _view(cout.counts, (n,), _I32, False)[:] = used
            else:  # moert rejects anything outside [0, capacity]
                _view(cout.counts, (n,), _I32, False)[:] = np.clip(counts, -1, capacity + 1)
            return 0
        except BaseException as error:
            return _fail(_host, error)

    def destroy(handle: int) -> None:
        try:
            layers.pop(handle, None)
            instance = instances.pop(handle, None)
            close = getattr(instance, "close", None)
            if close is not None:
                close()
        except BaseException:
            pass  # nothing can be reported from destroy

    return create, route, destroy


def _expert_callbacks(kind: _Kind) -> Tuple[Any, Any, Any]:
    """The create, forward and destroy callbacks of an expert kind."""
    instances = kind.instances
    calls = kind.calls

    def create(host_p: int, ctx_p: int, layer_p: int, out_p: int) -> int:
        host = None
        try:
            host = _host_at(host_p)
            info = LayerInfo._from_c(moert_layer_info.from_address(layer_p))
            context = CreateContext(host, ctx_p, kind.name, info)
            try:
                instance = kind.factory(info, context)
            finally:
                context._address = None
            handle = next(_next_instance)
            instances[handle] = instance
            c_void_p.from_address(out_p).value = handle
            return 0
        except BaseException as error:
            return _fail(host, error)

    def forward(handle: int, x_p: int, n: int, hidden: int, y_p: int) -> int:
        try:
            calls[0] += 1
            x = _view(x_p, (n, hidden), _F32, True)
            y = np.asarray(instances[handle].forward(x), dtype=np.float32)
            if y.shape != (n, hidden):
                raise ValueError(f"forward() returned shape {y.shape}, expected ({n}, {hidden})")
            _view(y_p, (n, hidden), _F32, False)[...] = y
            return 0
        except BaseException as error:
            return _fail(_host, error)

    def destroy(handle: int) -> None:
        try:
            instance = instances.pop(handle, None)
            close = getattr(instance, "close", None)
            if close is not None:
                close()
        except BaseException:
            pass

    return create, forward, destroy


def _check_name(name: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"a kind name must be a str, got {type(name).__name__}")
    return name.encode("utf-8")


def register_router(name: str, factory: RouterFactory) -> None:
    """Registers a router kind implemented in Python, usable by models (their moert section) and sessions
    (:meth:`Session.set_router`) like any plugin kind.

    Args:
        name: the kind name, unique in the process, matching ``[a-z0-9_.-]+``.
        factory: called as ``factory(layer: LayerInfo, context: CreateContext)`` once per MoE layer that uses
            the kind; returns an object with a ``route`` method as :meth:`Router.route` (a :class:`Router`
            subclass is such a factory), and optionally ``max_experts_per_token``, ``state_size`` and ``close``.

    The kind stays registered, and its callbacks alive, until :func:`shutdown`.

    Raises:
        PluginError: a bad name or a name already registered.

    The C entry point is ``moert_register_router``.
    """
    encoded = _check_name(name)
    if not callable(factory):
        raise TypeError("factory must be callable")
    with _registry_lock:
        kind = _Kind("router", name, factory, {}, [], [0])
        create, route, destroy = _router_callbacks(kind)
        c_create, c_route, c_destroy = _RouterCreate(create), _RouterRoute(route), _Destroy(destroy)
        name_buffer = ctypes.create_string_buffer(encoded)
        ops = moert_router_ops()
        ops.struct_size = ctypes.sizeof(moert_router_ops)
        ops.abi_version = MOERT_PLUGIN_ABI_VERSION
        ops.name = ctypes.cast(name_buffer, c_char_p)
        ops.create = ctypes.cast(c_create, router_create_fn)
        ops.route = ctypes.cast(c_route, router_route_fn)
        ops.destroy = ctypes.cast(c_destroy, destroy_fn)
        kind.keep.extend([ops, name_buffer, c_create, c_route, c_destroy])
        _lib.check(_lib.get().moert_register_router(ctypes.byref(ops)))
        _KINDS[("router", name)] = kind


def register_expert(name: str, factory: ExpertFactory, *, zero_compute: bool = False, output: str = "computed") -> None:
    """Registers an expert kind implemented in Python, usable by models through their moert section.

    Args:
        name: the kind name, unique in the process, matching ``[a-z0-9_.-]+``.
        factory: called as ``factory(layer: LayerInfo, context: CreateContext)`` once per expert of the kind
            (``layer.expert_index`` says which); returns an object with a ``forward(x) -> y`` method as
            :meth:`Expert.forward` (an :class:`Expert` subclass is such a factory), and optionally ``close``.
        zero_compute: count the expert as zero-compute in traces (``MOERT_EXPERT_ZERO_COMPUTE``).
        output: "computed" (forward is called), "zero" (F(x) = 0: never called, its tokens are skipped) or
            "identity" (F(x) = x: never called, moert adds w·x itself).

    Raises:
        PluginError: a bad name or a name already registered.
        ValueError: an unknown `output`.

    The C entry point is ``moert_register_expert``.
    """
    encoded = _check_name(name)
    if not callable(factory):
        raise TypeError("factory must be callable")
    flags = {"computed": 0, "zero": MOERT_EXPERT_OUTPUT_ZERO, "identity": MOERT_EXPERT_OUTPUT_IDENTITY}.get(output)
    if flags is None:
        raise ValueError(f"output must be 'computed', 'zero' or 'identity', got {output!r}")
    if zero_compute:
        flags |= MOERT_EXPERT_ZERO_COMPUTE
    with _registry_lock:
        kind = _Kind("expert", name, factory, {}, [], [0])
        create, forward, destroy = _expert_callbacks(kind)
        c_create, c_forward, c_destroy = _ExpertCreate(create), _ExpertForward(forward), _Destroy(destroy)
        name_buffer = ctypes.create_string_buffer(encoded)
        ops = moert_expert_ops()
        ops.struct_size = ctypes.sizeof(moert_expert_ops)
        ops.abi_version = MOERT_PLUGIN_ABI_VERSION
        ops.name = ctypes.cast(name_buffer, c_char_p)
        ops.flags = flags
        ops.create = ctypes.cast(c_create, expert_create_fn)
        ops.forward = ctypes.cast(c_forward, expert_forward_fn)
        ops.destroy = ctypes.cast(c_destroy, destroy_fn)
        kind.keep.extend([ops, name_buffer, c_create, c_forward, c_destroy])
        _lib.check(_lib.get().moert_register_expert(ctypes.byref(ops)))
        _KINDS[("expert", name)] = kind


@dataclasses.dataclass(frozen=True)
class PythonKind:
    """A kind registered from Python, as listed by :func:`python_kinds`."""

    role: str
    """"router" or "expert"."""
    name: str
    """The kind name."""
    instances: int
    """Instances alive now (one per MoE layer, or per expert, of every model and session using the kind)."""
    calls: int
    """route() or forward() calls so far."""


def python_kinds() -> List[PythonKind]:
    """The kinds registered from Python in this process, with their live instances and call counts."""
    with _registry_lock:
        kinds = list(_KINDS.values())
    return [PythonKind(k.role, k.name, len(k.instances), k.calls[0]) for k in kinds]


def shutdown() -> None:
    """Unregisters every plugin kind (Python ones included) and unloads every plugin library.

    Call it once no model is alive and while no other moert call runs: it first runs the garbage collector, so that
    unreachable models are freed. Afterwards the Python callbacks are released and the names may be registered again.

    Raises:
        InvalidArgumentError: models are still loaded (nothing is unregistered).

    The C entry point is ``moert_shutdown``.
    """
    gc.collect()
    with _registry_lock:
        _lib.check(_lib.get().moert_shutdown())
        _KINDS.clear()

