"""Router and expert kinds written in Python, registered in process through ctypes callbacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

import moert
from conftest import PACKAGE_ROOT, fixture_dir, read_safetensors, reference, write_safetensors

# Relative bound on logits computed with NumPy (another summation order) against moert's own kernels.
RELATIVE = 1e-6


def assert_close(actual: np.ndarray, expected: np.ndarray, relative: float = RELATIVE) -> None:
    bound = relative * float(np.max(np.abs(expected)))
    worst = float(np.max(np.abs(actual.astype(np.float64) - expected)))
    assert worst <= bound, f"max abs diff {worst:.3g} > {bound:.3g}"


def softmax_top_k(logits: np.ndarray, k: int, normalize: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """moert's built-in routing in float32 NumPy: softmax, the k largest (lower id first on ties), renormalised."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = shifted * (np.float32(1) / shifted.sum(axis=1, keepdims=True, dtype=np.float32))
    ids = np.argsort(-p, axis=1, kind="stable")[:, :k]
    weights = np.take_along_axis(p, ids, axis=1)
    if normalize:
        weights = weights / weights.sum(axis=1, keepdims=True, dtype=np.float32)
    return ids.astype(np.int32), weights


# --------------------------------------------------------------------------------------------------------------
# Kinds used by these tests (registered once per process: kinds stay until moert.shutdown())
# --------------------------------------------------------------------------------------------------------------


class PyTopK(moert.Router):
    """The built-in softmax top-k router, re-implemented with NumPy (reads the model's own gate.weight)."""

    def __init__(self, layer: moert.LayerInfo, context: moert.CreateContext) -> None:
        super().__init__(layer, context)
        self.gate = context.tensor("gate.weight")  # [n_experts, hidden]
        self.k = int(context.param_number("top_k", layer.top_k))
        self.max_experts_per_token = self.k

    def route(self, x: np.ndarray, token_ids: np.ndarray, positions: np.ndarray, batch: moert.RouterBatch) -> Any:
        logits = x @ self.gate.T
        batch.logits[...] = logits
        return softmax_top_k(logits, self.k)


class PyTopP(moert.Router):
    """Top-p routing ("Harder Tasks Need More Experts") in NumPy, as the dynamic plugin's "topp" documents it."""

    def __init__(self, layer: moert.LayerInfo, context: moert.CreateContext) -> None:
        super().__init__(layer, context)
        self.gate = context.tensor("gate.weight")
        self.threshold = np.float32(context.param_number("threshold", 0.4))
        self.max_experts_per_token = layer.n_experts

    def route(self, x: np.ndarray, token_ids: np.ndarray, positions: np.ndarray, batch: moert.RouterBatch) -> Any:
        logits = x @ self.gate.T
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = shifted * (np.float32(1) / shifted.sum(axis=1, keepdims=True, dtype=np.float32))
        ids = np.argsort(-p, axis=1, kind="stable").astype(np.int32)
        sorted_p = np.take_along_axis(p, ids, axis=1)
        cumulative = np.cumsum(sorted_p, axis=1, dtype=np.float32)
        above = cumulative > self.threshold
        counts = np.where(above.any(axis=1), above.argmax(axis=1) + 1, p.shape[1]).astype(np.int32)
        return ids, sorted_p, counts


class PyFaulty(moert.Router):
    """Misbehaves as its "mode" parameter says."""

    def __init__(self, layer: moert.LayerInfo, context: moert.CreateContext) -> None:
        super().__init__(layer, context)
        self.mode = context.param_string("mode")
        if self.mode == "create_raises":
            raise RuntimeError("create failed on purpose")
        if self.mode == "missing_tensor":
            context.tensor("no.such.tensor")
        if self.mode == "missing_param":
            context.param_number("no_such_param")
        if self.mode == "bad_capacity":
            self.max_experts_per_token = layer.n_experts + 1

    def route(self, x: np.ndarray, token_ids: np.ndarray, positions: np.ndarray, batch: moert.RouterBatch) -> Any:
        n, k = x.shape[0], self.max_experts_per_token
        ids = np.tile(np.arange(k, dtype=np.int32), (n, 1))
        weights = np.full((n, k), 1.0 / k, dtype=np.float32)
        if self.mode == "raises":
            raise ValueError("the router failed on purpose")
        if self.mode == "interrupt":
            raise KeyboardInterrupt
        if self.mode == "bad_id":
            ids[-1, 0] = self.layer.n_experts
        if self.mode == "negative_id":
            ids[0, 0] = -1
        if self.mode == "huge_id":
            return ids.astype(np.int64) + 2**40, weights
        if self.mode == "nan":
            weights[0, 0] = np.nan
        if self.mode == "negative_weight":
            weights[0, 1] = -0.5
        if self.mode == "inf":
            weights[0, 0] = np.inf
        if self.mode == "too_many":
            return np.zeros((n, k + 1), dtype=np.int32), np.zeros((n, k + 1), dtype=np.float32)
        if self.mode == "bad_count":
            return ids, weights, np.full(n, k + 1, dtype=np.int32)
        if self.mode == "wrong_rows":
            return ids[:-1], weights[:-1]
        if self.mode == "float_ids":
            return ids.astype(np.float32), weights
        if self.mode == "not_a_tuple":
            return [ids, weights]
        return ids, weights


OBSERVED: Dict[str, List[Dict[str, Any]]] = {"spy": [], "expert_layers": []}


class PySpy(moert.Router):
    """Top-k that declares state and writes logits, and records what it sees (for tests only)."""

    def __init__(self, layer: moert.LayerInfo, context: moert.CreateContext) -> None:
        super().__init__(layer, context)
        self.gate = context.tensor("gate.weight")
        self.state_size = 3
        view = context.tensor("gate.weight", copy=False)
        head = context.model_tensor("lm_head.weight")
        OBSERVED["spy"].append(
            {"create": layer, "view_writeable": view.flags.writeable, "view_equal": np.array_equal(view, self.gate),
             "lm_head": head.shape, "context": context}
        )

    def route(self, x: np.ndarray, token_ids: np.ndarray, positions: np.ndarray, batch: moert.RouterBatch) -> Any:
        state = batch.state
        assert state is not None
        prev_logits = batch.prev_logits
        OBSERVED["spy"].append(
            {"layer": self.layer.layer, "moe_index": self.layer.moe_index, "tokens": token_ids.copy(),
             "positions": positions.copy(), "prev_tokens": batch.prev_token_ids.copy(), "state_in": state.copy(),
             "prev_logits": None if prev_logits is None else prev_logits.copy(), "x_writeable": x.flags.writeable,
             "logits_before": batch.logits.copy()}
        )
        state[:, 0] += 1.0  # counts the MoE layers a token went through
        state[:, 1] = self.layer.layer
        logits = x @ self.gate.T
        batch.logits[...] = logits
        OBSERVED["spy"][-1]["logits"] = logits.copy()
        OBSERVED["spy"][-1]["batch"] = batch
        return softmax_top_k(logits, self.layer.top_k)


class PyInPlace(moert.Router):
    """Top-1 writing the output buffers itself and returning None."""

    def __init__(self, layer: moert.LayerInfo, context: moert.CreateContext) -> None:
        super().__init__(layer, context)
        self.gate = context.tensor("gate.weight")
        self.max_experts_per_token = 1

    def route(self, x: np.ndarray, token_ids: np.ndarray, positions: np.ndarray, batch: moert.RouterBatch) -> None:
        ids, weights = softmax_top_k(x @ self.gate.T, 1)
        batch.out_expert_ids[...] = ids
        batch.out_weights[...] = weights
        batch.out_counts[...] = 1


class PyFFN(moert.Expert):
    """The SwiGLU expert of Mixtral in NumPy: w2 · (silu(w1 · x) * (w3 · x))."""

    def __init__(self, layer: moert.LayerInfo, context: moert.CreateContext) -> None:
        super().__init__(layer, context)
        self.w1 = context.tensor("w1.weight")
        self.w2 = context.tensor("w2.weight")
        self.w3 = context.tensor("w3.weight")
        OBSERVED["expert_layers"].append({"layer": layer, "kind": context.kind})

    def forward(self, x: np.ndarray) -> np.ndarray:
        gate = x @ self.w1.T
        return ((gate / (1 + np.exp(-gate))) * (x @ self.w3.T)) @ self.w2.T


class PyHalf(moert.Expert):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * np.float32(0.5)


class PyCopy(moert.Expert):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.copy()


class PyZeros(moert.Expert):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.zeros_like(x)


class PyBadExpert(moert.Expert):
    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.layer.layer == 1:
            raise ArithmeticError("the expert failed on purpose")
        return x[:, :-1]  # the wrong shape


def _unused_factory(layer: moert.LayerInfo, context: moert.CreateContext) -> Any:
    return object()  # neither route nor forward


ROUTERS = {
    "py_topk": PyTopK,
    "py_topp": PyTopP,
    "py_faulty": PyFaulty,
    "py_spy": PySpy,
    "py_inplace": PyInPlace,
    "py_no_route": _unused_factory,
}
EXPERTS: Dict[str, Tuple[Any, Dict[str, Any]]] = {
    "py_ffn": (PyFFN, {}),
    "py_half": (PyHalf, {}),
    "py_copy": (PyCopy, {}),
    "py_zeros": (PyZeros, {}),
    "py_identity": (moert.Expert, {"output": "identity"}),
    "py_zero": (moert.Expert, {"output": "zero", "zero_compute": True}),
    "py_bad": (PyBadExpert, {}),
}


@pytest.fixture(scope="module", autouse=True)
def python_kinds() -> None:
    """Registers the kinds above (once per process)."""
    routers, experts = set(moert.router_kinds()), set(moert.expert_kinds())
    for name, factory in ROUTERS.items():
        if name not in routers:
            moert.register_router(name, factory)
    for name, (factory, options) in EXPERTS.items():
        if name not in experts:
            moert.register_expert(name, factory, **options)


def calls(name: str) -> int:
    return next(kind.calls for kind in moert.python_kinds() if kind.name == name)


def instances(name: str) -> int:
    return next(kind.instances for kind in moert.python_kinds() if kind.name == name)


# --------------------------------------------------------------------------------------------------------------
# Models built on the fly
# --------------------------------------------------------------------------------------------------------------


def build_model(
    tmp_path: Path, section: Dict[str, Any], drop_experts: Tuple[int, ...] = (), name: str = "model"
) -> Path:
    """The Mixtral fixture with a moert section in config.json and the ffn tensors of `drop_experts` removed (moert
    refuses tensors that no layer uses)."""
    path = tmp_path / name
    shutil.copytree(fixture_dir("mixtral"), path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["moert"] = section
    (path / "config.json").write_text(json.dumps(cfg))
    if drop_experts:
        tensors = read_safetensors(path / "model.safetensors")
        marks = tuple(f".experts.{e}." for e in drop_experts)
        write_safetensors(path / "model.safetensors", {k: v for k, v in tensors.items() if not any(m in k for m in marks)})
    return path


def trace_and_logits(path: Path, prompt: np.ndarray) -> Tuple[np.ndarray, moert.RoutingTrace]:
    with moert.Model(path) as model, model.session() as session:
        session.set_trace()
        logits = session.eval(prompt, all_logits=True)
        return logits, session.trace()


# --------------------------------------------------------------------------------------------------------------
# Routers
# --------------------------------------------------------------------------------------------------------------


def test_kinds_are_listed() -> None:
    assert set(ROUTERS) <= set(moert.router_kinds())
    assert set(EXPERTS) <= set(moert.expert_kinds())
    listed = {(kind.role, kind.name) for kind in moert.python_kinds()}
    assert {("router", name) for name in ROUTERS} <= listed
    assert {("expert", name) for name in EXPERTS} <= listed


def test_python_topk_matches_the_builtin(mixtral: moert.Model) -> None:
    ref = reference("mixtral")
    sequence = np.concatenate([ref["prompt"], ref["greedy"]])
    with mixtral.session() as session:
        session.set_trace()
        builtin = session.eval(sequence, all_logits=True)
        builtin_trace = session.trace()
        session.reset()
        session.clear_trace()
        before = calls("py_topk")
        session.set_router("py_topk")
        assert instances("py_topk") == mixtral.info.n_moe_layers
        python = session.eval(sequence, all_logits=True)
        python_trace = session.trace()
        assert calls("py_topk") - before == mixtral.info.n_moe_layers  # one batch, one call per MoE layer
        session.reset()
        steps = [session.eval(ref["prompt"], all_logits=True)] + [
            session.eval([int(t)], all_logits=True) for t in ref["greedy"]
        ]
    assert_close(python, builtin)
    assert_close(np.concatenate(steps), builtin)
    np.testing.assert_array_equal(python_trace.expert_ids, builtin_trace.expert_ids)
    np.testing.assert_allclose(python_trace.weights, builtin_trace.weights, rtol=0, atol=1e-6)  # weights in [0, 1]
    assert instances("py_topk") == 0  # destroyed with the session


def test_python_router_parameters(mixtral: moert.Model) -> None:
    prompt = reference("mixtral")["prompt"]
    with mixtral.session() as session:
        session.set_top_k(1)
        builtin = session.eval(prompt, all_logits=True)
        session.reset()
        session.set_router("py_topk", {"top_k": 1})
        python = session.eval(prompt, all_logits=True)
        session.reset()
        session.set_router("py_inplace")
        in_place = session.eval(prompt, all_logits=True)
    assert_close(python, builtin)
    assert_close(in_place, builtin)


def test_python_router_named_by_the_model(tmp_path: Path) -> None:
    ref = reference("mixtral")
    path = build_model(tmp_path, {"router": {"kind": "py_topk"}})
    with moert.Model(path) as model:
        assert [model.router_kind(m) for m in range(model.info.n_moe_layers)] == ["py_topk"] * 2
        with model.session() as session:
            logits = session.eval(ref["prompt"], all_logits=True)
            tokens = list(session.generate([], 8, ignore_eos=True))
    assert_close(logits, ref["logits"], relative=1e-4)  # the transformers reference's own tolerance
    assert tokens == ref["greedy"].tolist()


def test_router_sees_layers_state_and_previous_logits(mixtral: moert.Model) -> None:
    OBSERVED["spy"].clear()
    prompt = np.array([5, 6, 7], dtype=np.int32)
    with mixtral.session() as session:
        session.set_router("py_spy")
        creates = [o for o in OBSERVED["spy"] if "create" in o]
        assert [o["create"].layer for o in creates] == [0, 1]
        for moe_index, observed in enumerate(creates):
            info = observed["create"]
            assert info == moert.LayerInfo(layer=moe_index, moe_index=moe_index, n_moe_layers=2, hidden_size=64,
                                           n_experts=4, top_k=2, vocab_size=256, expert_index=None)
            assert observed["view_writeable"] is False and observed["view_equal"]
            assert observed["lm_head"] == (256, 64)
            with pytest.raises(moert.InvalidArgumentError, match="CreateContext is closed"):
                observed["context"].tensor("gate.weight")
            assert observed["context"].closed
        OBSERVED["spy"].clear()
        session.eval(prompt)
        session.eval([8])
    first, second, third, fourth = OBSERVED["spy"]
    assert [o["layer"] for o in OBSERVED["spy"]] == [0, 1, 0, 1]
    np.testing.assert_array_equal(first["tokens"], prompt)
    np.testing.assert_array_equal(first["positions"], [0, 1, 2])
    np.testing.assert_array_equal(first["prev_tokens"], [-1, 5, 6])
    np.testing.assert_array_equal(third["positions"], [3])
    np.testing.assert_array_equal(third["prev_tokens"], [7])
    assert not first["x_writeable"]
    # State starts at zero in the first MoE layer and carries what the previous layer wrote.
    assert first["state_in"].shape == (3, 3) and not first["state_in"].any()
    np.testing.assert_array_equal(second["state_in"][:, :2], [[1, 0]] * 3)
    assert not third["state_in"].any()
    # Logits written by one layer are the next layer's prev_logits; the output starts as NaN.
    assert first["prev_logits"] is None and third["prev_logits"] is None
    np.testing.assert_array_equal(second["prev_logits"], first["logits"])
    np.testing.assert_array_equal(fourth["prev_logits"], third["logits"])
    assert np.isnan(first["logits_before"]).all()
    with pytest.raises(moert.InvalidArgumentError, match="only during"):
        first["batch"].state  # kept past its call


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("raises", "ValueError: the router failed on purpose"),
        ("bad_id", "outside [0, 4)"),
        ("negative_id", "outside [0, 4)"),
        ("huge_id", "does not fit in int32"),
        ("nan", "must be finite"),
        ("inf", "must be finite"),
        ("negative_weight", ">= 0"),
        ("too_many", "max_experts_per_token is 2"),
        ("bad_count", "count 3"),
        ("wrong_rows", "expected [3, c]"),
        ("float_ids", "TypeError: expert_ids must be integers"),
        ("not_a_tuple", "TypeError: route() must return"),
    ],
)
def test_failing_python_router(mixtral: moert.Model, mode: str, message: str) -> None:
    with mixtral.session() as session:
        session.eval([1, 2])
        session.set_router("py_faulty", {"mode": mode})
        with pytest.raises(moert.PluginError) as caught:
            session.eval([3, 4, 5])
        error = caught.value
        assert error.status == moert.Status.PLUGIN
        assert message in error.message
        assert "py_faulty" in error.message and "layer 0" in error.message
        if mode == "raises":
            assert isinstance(error.__cause__, ValueError)
        with pytest.raises(moert.InvalidArgumentError, match="reset"):
            session.eval([5])
        session.reset()
        session.set_router(None)
        np.testing.assert_array_equal(session.eval([1, 2, 3]), mixtral.session().eval([1, 2, 3]))


def test_python_top_p_matches_the_dynamic_plugin(mixtral: moert.Model) -> None:
    moert.load_plugin("dynamic")
    if "topp" not in moert.router_kinds():
        pytest.skip("the dynamic plugin does not provide the topp router kind in this build")
    ref = reference("mixtral")
    sequence = np.concatenate([ref["prompt"], ref["greedy"]])
    results = {}
    with mixtral.session() as session:
        session.set_trace()
        for kind in ("topp", "py_topp"):
            session.reset()
            session.clear_trace()
            session.set_router(kind, {"threshold": 0.5})
            results[kind] = (session.eval(sequence, all_logits=True), session.trace())
    (plugin, plugin_trace), (python, python_trace) = results["topp"], results["py_topp"]
    assert_close(python, plugin)
    np.testing.assert_array_equal(python_trace.offsets, plugin_trace.offsets)
    np.testing.assert_array_equal(python_trace.expert_ids, plugin_trace.expert_ids)
    np.testing.assert_allclose(python_trace.weights, plugin_trace.weights, rtol=0, atol=1e-6)


def test_keyboard_interrupt_in_a_router_is_raised(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        session.set_router("py_faulty", {"mode": "interrupt"})
        with pytest.raises(KeyboardInterrupt):
            session.eval([1, 2])
        with pytest.raises(moert.InvalidArgumentError, match="reset"):
            session.eval([1])


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("create_raises", "RuntimeError: create failed on purpose"),
        ("missing_tensor", "no.such.tensor"),
        ("missing_param", "no parameter 'no_such_param'"),
        ("bad_capacity", "max_experts_per_token 5"),
        (None, "no parameter 'mode'"),
    ],
)
def test_failing_python_router_create(mixtral: moert.Model, mode: Optional[str], message: str) -> None:
    with mixtral.session() as session:
        before = instances("py_faulty")
        with pytest.raises(moert.PluginError) as caught:
            session.set_router("py_faulty", None if mode is None else {"mode": mode})
        assert message in caught.value.message
        assert instances("py_faulty") == before  # nothing leaked
        session.eval([1, 2])  # the session keeps its routers


def test_factory_without_route(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        with pytest.raises(moert.PluginError, match="no route"):
            session.set_router("py_no_route")


def test_python_router_failing_at_model_load(tmp_path: Path) -> None:
    path = build_model(tmp_path, {"router": {"kind": "py_faulty", "params": {"mode": "create_raises"}}})
    with pytest.raises(moert.PluginError, match="create failed on purpose") as caught:
        moert.Model(path)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_registration_errors() -> None:
    with pytest.raises(moert.PluginError, match="already registered"):
        moert.register_router("py_topk", PyTopK)
    with pytest.raises(moert.PluginError, match="already registered"):
        moert.register_router("topk", PyTopK)
    with pytest.raises(moert.PluginError, match=r"\[a-z0-9_.-\]"):
        moert.register_router("Bad Name", PyTopK)
    with pytest.raises(moert.PluginError, match="already registered"):
        moert.register_expert("ffn", PyHalf)
    with pytest.raises(ValueError, match="output"):
        moert.register_expert("py_other", PyHalf, output="double")
    with pytest.raises(TypeError):
        moert.register_router("py_other", 42)  # type: ignore[arg-type]
    assert "py_other" not in moert.router_kinds() + moert.expert_kinds()


def test_python_router_on_parallel_threads(mixtral: moert.Model) -> None:
    ref = reference("mixtral")
    sequence = np.concatenate([ref["prompt"], ref["greedy"]])
    with mixtral.session() as session:
        session.set_router("py_topk")
        expected = session.eval(sequence, all_logits=True)
    results: List[Optional[np.ndarray]] = [None] * 3
    errors: List[BaseException] = []

    def work(i: int) -> None:
        try:
            with mixtral.session() as own:
                own.set_router("py_topk")
                for _ in range(5):
                    own.reset()
                    results[i] = own.eval(sequence, all_logits=True)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for result in results:
        assert result is not None
        np.testing.assert_array_equal(result, expected)


# --------------------------------------------------------------------------------------------------------------
# Experts
# --------------------------------------------------------------------------------------------------------------


def test_python_ffn_expert_matches_the_builtin(tmp_path: Path) -> None:
    ref = reference("mixtral")
    OBSERVED["expert_layers"].clear()
    path = build_model(tmp_path, {"experts": [{"kind": "ffn", "count": 3}, {"kind": "py_ffn", "count": 1}]})
    before = calls("py_ffn")
    logits, trace = trace_and_logits(path, ref["prompt"])
    layers = [o["layer"] for o in OBSERVED["expert_layers"]]
    assert [(i.layer, i.expert_index, i.n_experts) for i in layers] == [(0, 3, 4), (1, 3, 4)]
    assert {o["kind"] for o in OBSERVED["expert_layers"]} == {"py_ffn"}
    used_in = {int(trace.layers[r]) for r in range(len(trace)) if 3 in trace.experts(r)[0]}
    assert used_in and calls("py_ffn") - before == len(used_in)  # one call per layer per batch
    assert_close(logits, ref["logits"], relative=1e-4)
    with moert.Model(fixture_dir("mixtral")) as model, model.session() as session:
        assert_close(logits, session.eval(ref["prompt"], all_logits=True))

    all_python = build_model(tmp_path, {"experts": [{"kind": "py_ffn", "count": 4}]}, name="all")
    with moert.Model(all_python) as model, model.session() as session:
        assert [model.expert_kind(0, e) for e in range(4)] == ["py_ffn"] * 4
        tokens = list(session.generate(ref["prompt"], 8, ignore_eos=True))
    assert tokens == ref["greedy"].tolist()


def test_python_expert_without_weights(tmp_path: Path) -> None:
    prompt = reference("mixtral")["prompt"]
    section = {"experts": [{"kind": "ffn", "count": 3}, {"kind": "py_half", "count": 1}]}
    with pytest.raises(moert.UnsupportedError, match=r"experts\.3\..* is not used"):
        moert.Model(build_model(tmp_path, section, name="unused"))  # expert 3's ffn tensors are left over
    path = build_model(tmp_path, section, drop_experts=(3,))
    before = calls("py_half")
    with moert.Model(path) as model:
        assert model.expert_kind(1, 3) == "py_half" and model.expert_kind(1, 2) == "ffn"
        with model.session() as session:
            session.set_trace()
            half = session.eval(prompt, all_logits=True)
            trace = session.trace()
            counts = session.expert_counts()
            prompt_calls = calls("py_half") - before
            # One more token: a batch of one calls the expert only in the layers that route this token to it.
            session.clear_trace()
            session.eval([9])
            step = session.trace()
            step_calls = calls("py_half") - before - prompt_calls
    chosen = [r for r in range(len(trace)) if 3 in trace.experts(r)[0]]
    assert chosen, "no token was routed to the Python expert"
    assert prompt_calls == len({int(trace.layers[r]) for r in chosen})  # one call per layer per batch
    assert step_calls == sum(3 in step.experts(r)[0] for r in range(len(step)))
    assert counts[:, 3].sum() == len(chosen)
    with moert.Model(fixture_dir("mixtral")) as model, model.session() as session:
        assert not np.allclose(half, session.eval(prompt, all_logits=True))


def test_python_experts_match_flag_kinds_and_a_c_plugin(tmp_path: Path) -> None:
    """y = x computed in Python, the identity flag and the moepp plugin's copy expert give the same logits;
    y = 0 computed in Python and the zero flag do too."""
    prompt = reference("mixtral")["prompt"]
    results = {}
    for kind in ("py_copy", "py_identity", "moepp.copy", "py_zeros", "py_zero", "py_half"):
        section: Dict[str, Any] = {"experts": [{"kind": "ffn", "count": 3}, {"kind": kind, "count": 1}]}
        if kind.startswith("moepp"):
            section["plugins"] = ["moepp"]
        path = build_model(tmp_path, section, drop_experts=(3,), name=kind)
        results[kind], _ = trace_and_logits(path, prompt)
    np.testing.assert_array_equal(results["py_copy"], results["py_identity"])
    np.testing.assert_array_equal(results["py_copy"], results["moepp.copy"])
    np.testing.assert_array_equal(results["py_zeros"], results["py_zero"])
    assert not np.array_equal(results["py_copy"], results["py_half"])
    assert not np.array_equal(results["py_zeros"], results["py_half"])


def test_failing_python_expert(tmp_path: Path) -> None:
    path = build_model(tmp_path, {"experts": [{"kind": "py_bad", "count": 4}]}, drop_experts=(0, 1, 2, 3))
    with moert.Model(path) as model, model.session() as session:
        with pytest.raises(moert.PluginError, match=r"ValueError: forward\(\) returned shape \(\d+, 63\)"):
            session.eval([1, 2, 3])
    section = {"experts": [{"kind": "py_bad", "count": 4}], "layers": {"0": {"experts": [{"kind": "ffn", "count": 4}]}}}
    path = build_model(tmp_path, section, drop_experts=(), name="second")
    tensors = read_safetensors(path / "model.safetensors")
    write_safetensors(path / "model.safetensors", {k: v for k, v in tensors.items() if "layers.1.block_sparse_moe.experts" not in k})
    with moert.Model(path) as model, model.session() as session:
        with pytest.raises(moert.PluginError, match="ArithmeticError: the expert failed on purpose") as caught:
            session.eval([1, 2, 3])
    assert "layer 1" in caught.value.message and isinstance(caught.value.__cause__, ArithmeticError)


# --------------------------------------------------------------------------------------------------------------
# Process lifetime
# --------------------------------------------------------------------------------------------------------------


def run_script(code: str) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.path.insert(0, {str(PACKAGE_ROOT)!r}); import moert, numpy as np\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


ROUTER_SOURCE = """
class Top1(moert.Router):
    def __init__(self, layer, context):
        super().__init__(layer, context)
        self.gate = context.tensor("gate.weight")
    def route(self, x, token_ids, positions, batch):
        logits = x @ self.gate.T
        return np.argmax(logits, axis=1), np.ones(len(x), dtype=np.float32)
"""


def test_interpreter_exit_with_python_kinds_in_use() -> None:
    result = run_script(
        ROUTER_SOURCE
        + f"""
moert.register_router("py_exit", Top1)
model = moert.Model({str(fixture_dir("mixtral"))!r})
session = model.session()
session.set_router("py_exit")
next(session.generate([1, 2, 3], 4))
model.cycle = model
del Top1
print("ok")
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert result.stderr == ""


def test_shutdown_unregisters_python_kinds() -> None:
    result = run_script(
        ROUTER_SOURCE
        + f"""
moert.register_router("py_exit", Top1)
moert.load_plugin("hash")
print(moert.router_kinds())
model = moert.Model({str(fixture_dir("mixtral"))!r})
try:
    moert.shutdown()
except moert.InvalidArgumentError as error:
    print("refused:", "still loaded" in error.message)
print(moert.router_kinds())
session = model.session()
session.set_router("py_exit")
session.eval([1, 2])
del session, model  # freed by the garbage collector inside shutdown()
moert.shutdown()
print(moert.router_kinds(), moert.python_kinds())
moert.register_router("py_exit", Top1)  # the name is free again
moert.load_plugin("hash")
print(moert.router_kinds(), len(moert.python_kinds()))
"""
    )
    assert result.returncode == 0, result.stderr
    builtin = "'topk', 'deepseek_v2', 'deepseek_v3', 'gpt_oss'"
    assert result.stdout.splitlines() == [
        f"[{builtin}, 'py_exit', 'hash']",
        "refused: True",
        f"[{builtin}, 'py_exit', 'hash']",
        f"[{builtin}] []",
        f"[{builtin}, 'py_exit', 'hash'] 1",
    ]
