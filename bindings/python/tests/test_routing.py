"""Routing: kind names, per-session router overrides, the routing trace and the expert counters."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

import moert
from conftest import REPO_ROOT, moe_layer_indices, reference

TEST_PLUGINS = REPO_ROOT / "Tests" / "c" / "plugins"

def test_builtin_kinds(model: moert.Model) -> None:
    assert "topk" in moert.router_kinds()
    assert "ffn" in moert.expert_kinds()
    info = model.info
    for m in range(info.n_moe_layers):
        assert model.router_kind(m) == "topk"
        assert all(model.expert_kind(m, e) == "ffn" for e in range(info.n_experts))
        assert model.expert_kind(m, info.n_experts) is None
    assert model.router_kind(info.n_moe_layers) is None
    assert model.router_kind(-1) is None


def test_trace_records_every_token_and_moe_layer(model: moert.Model, fixture_name: str) -> None:
    prompt = reference(fixture_name)["prompt"]
    info = model.info
    with model.session() as session:
        session.set_trace(True)
        session.eval(prompt)
        trace = session.trace()
    layers = moe_layer_indices(fixture_name)
    assert len(layers) == info.n_moe_layers
    assert len(trace) == prompt.size * len(layers)
    assert sorted(zip(trace.positions.tolist(), trace.layers.tolist())) == sorted(
        (p, l) for p in range(prompt.size) for l in layers
    )
    assert trace.tokens.tolist() == [int(prompt[p]) for p in trace.positions]
    assert trace.offsets[0] == 0 and np.all(np.diff(trace.offsets) == info.n_experts_per_tok)
    assert np.all((trace.expert_ids >= 0) & (trace.expert_ids < info.n_experts))
    assert np.all(np.isfinite(trace.weights)) and np.all(trace.weights >= 0)
    for r in range(len(trace)):
        ids, weights = trace.experts(r)
        assert len(set(ids.tolist())) == ids.size
        if fixture_name.startswith("mixtral"):  # MixtralSparseMoeBlock renormalises the top-k weights
            assert abs(float(weights.sum()) - 1.0) < 1e-5


def test_trace_switches_and_clears(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        session.eval([1, 2])
        assert len(session.trace()) == 0  # off by default
        session.set_trace()
        session.eval([3])
        assert len(session.trace()) == mixtral.info.n_moe_layers
        session.clear_trace()
        assert len(session.trace()) == 0
        session.set_trace(False)
        session.eval([4])
        assert len(session.trace()) == 0


def test_expert_counts_match_the_trace(model: moert.Model, fixture_name: str) -> None:
    ref = reference(fixture_name)
    info = model.info
    with model.session() as session:
        session.set_trace()
        session.eval(ref["prompt"])
        session.eval(ref["greedy"][:3])
        counts = session.expert_counts()
        trace = session.trace()
        # A model without MoE layers (deepseek_v3_dense) counts no experts.
        assert counts.shape == (info.n_moe_layers, info.n_experts if info.n_moe_layers else 0)
        assert counts.dtype == np.int64
        assert np.all(counts.sum(axis=1) == (ref["prompt"].size + 3) * info.n_experts_per_tok)
        layers = moe_layer_indices(fixture_name)
        for m, layer in enumerate(layers):
            chosen = np.concatenate([trace.experts(r)[0] for r in np.flatnonzero(trace.layers == layer)])
            np.testing.assert_array_equal(counts[m], np.bincount(chosen, minlength=info.n_experts))
        session.reset_counters()
        assert not session.expert_counts().any()


def test_top_k_override(mixtral: moert.Model) -> None:
    ref = reference("mixtral")
    n_experts = mixtral.info.n_experts
    with mixtral.session() as session:
        session.set_top_k(1)
        session.set_trace()
        one = session.eval(ref["prompt"], all_logits=True)
        trace = session.trace()
        assert np.all(np.diff(trace.offsets) == 1)
        np.testing.assert_allclose(trace.weights, 1.0, rtol=1e-6)  # one renormalised expert
        assert float(np.max(np.abs(one - ref["logits"]))) > 1e-3

        session.reset()
        session.set_router("topk", {"top_k": 1})
        np.testing.assert_array_equal(session.eval(ref["prompt"], all_logits=True), one)

        session.reset()
        session.set_top_k(0)
        restored = session.eval(ref["prompt"], all_logits=True)
        session.reset()
        session.set_top_k(n_experts)
        session.set_router(None)
        np.testing.assert_array_equal(session.eval(ref["prompt"], all_logits=True), restored)
    bound = 1e-4 * float(np.max(np.abs(ref["logits"])))
    assert float(np.max(np.abs(restored - ref["logits"]))) <= bound


def test_router_override_errors(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        with pytest.raises(moert.InvalidArgumentError, match="no-such-router"):
            session.set_router("no-such-router")
        with pytest.raises(moert.InvalidArgumentError):
            session.set_router("topk", "[1, 2]")
        with pytest.raises(moert.InvalidArgumentError):
            session.set_top_k(mixtral.info.n_experts + 1)
        with pytest.raises(moert.InvalidArgumentError):
            session.set_top_k(-1)
        session.eval([1, 2, 3])  # still usable
    for use in (lambda: session.set_top_k(1), lambda: session.trace(), lambda: session.expert_counts()):
        with pytest.raises(moert.InvalidArgumentError, match="closed"):
            use()


def test_malformed_router_params(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        with pytest.raises(moert.InvalidArgumentError):
            session.set_router("topk", "{not json")


@pytest.fixture
def dynamic_plugin() -> None:
    """The shipped "dynamic" plugin (found next to libmoert.so), when this build provides its topp kind."""
    moert.load_plugin("dynamic")
    if "topp" not in moert.router_kinds():
        pytest.skip("the dynamic plugin does not provide the topp router kind in this build")


@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_shipped_topp_router_gives_variable_expert_counts(
    dynamic_plugin: None, mixtral: moert.Model, threshold: float
) -> None:
    ref = reference("mixtral")
    sequence = np.concatenate([ref["prompt"], ref["greedy"]])
    n_experts = mixtral.info.n_experts
    with mixtral.session() as session:
        session.set_router("topp", '{"threshold": %s}' % threshold)
        session.set_trace()
        session.eval(sequence)
        trace = session.trace()
        counts = session.expert_counts()
    per_record = np.diff(trace.offsets)
    assert len(trace) == sequence.size * mixtral.info.n_moe_layers
    assert np.all((per_record >= 1) & (per_record <= n_experts))
    assert len(set(per_record.tolist())) > 1, "every token got the same number of experts"
    for r in range(len(trace)):
        ids, weights = trace.experts(r)
        assert len(set(ids.tolist())) == ids.size
        assert np.all(np.diff(weights) <= 0)  # kept in descending probability
        # The smallest prefix whose probability passes the threshold, not renormalised.
        assert float(weights.sum()) > threshold or ids.size == n_experts
        assert float(weights[:-1].sum()) <= threshold
    assert counts.sum() == per_record.sum()


def test_shipped_topp_router_respects_max_experts(dynamic_plugin: None, mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        session.set_router("topp", {"threshold": 0.99, "max_experts": 2})
        session.set_trace()
        session.eval(reference("mixtral")["prompt"])
        assert int(np.diff(session.trace().offsets).max()) <= 2


def test_missing_plugin(tmp_path: Path) -> None:
    with pytest.raises(moert.MoertIOError, match="no-such-plugin"):
        moert.load_plugin("no-such-plugin")
    with pytest.raises(moert.MoertIOError):
        moert.load_plugin(tmp_path / "libmoert_absent.so")


@pytest.fixture(scope="module")
def test_plugins(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """The C test plugins "topk_c" (the built-in router re-implemented) and "faulty", built and loaded."""
    cc = shutil.which("gcc") or shutil.which("cc")
    sources = {name: TEST_PLUGINS / f"{name}.c" for name in ("topk_c", "faulty")}
    if cc is None or not all(path.is_file() for path in sources.values()):
        pytest.skip("needs a C compiler and Tests/c/plugins")
    out = tmp_path_factory.mktemp("plugins")
    built = {}
    for name, source in sources.items():
        library = out / f"libmoert_test_{name}.so"
        subprocess.run(
            [cc, "-O2", "-std=c11", "-shared", "-fPIC", "-fvisibility=hidden", f"-I{REPO_ROOT / 'include'}",
             str(source), "-lm", "-o", str(library)],
            check=True,
        )
        moert.load_plugin(library)
        moert.load_plugin(library)  # loading again is a no-op
        built[name] = library
    return built


def test_plugin_router_matches_the_builtin(test_plugins: Dict[str, Path], mixtral: moert.Model) -> None:
    assert {"topk_c", "faulty"} <= set(moert.router_kinds())
    prompt = reference("mixtral")["prompt"]
    with mixtral.session() as session:
        builtin = session.eval(prompt, all_logits=True)
        session.reset()
        session.set_router("topk_c")
        session.set_trace()
        np.testing.assert_array_equal(session.eval(prompt, all_logits=True), builtin)  # same float32 operations
        assert len(session.trace()) == prompt.size * mixtral.info.n_moe_layers
        session.reset()
        session.set_router("topk_c", {"top_k": 1})
        one = session.eval(prompt, all_logits=True)
        session.reset()
        session.set_top_k(1)
        np.testing.assert_array_equal(session.eval(prompt, all_logits=True), one)


@pytest.mark.parametrize("mode", ["route_fails", "bad_id", "nan", "negative", "too_many"])
def test_failing_plugin_router_requires_reset(test_plugins: Dict[str, Path], mixtral: moert.Model, mode: str) -> None:
    with mixtral.session() as session:
        session.eval([1, 2])
        session.set_router("faulty", {"mode": mode})
        with pytest.raises(moert.PluginError) as caught:
            session.eval([3, 4])
        assert caught.value.status == moert.Status.PLUGIN and caught.value.message
        with pytest.raises(moert.InvalidArgumentError, match="reset"):
            session.eval([5])
        with pytest.raises(moert.InvalidArgumentError, match="reset"):
            session.generate([5], 2)
        session.reset()
        session.set_router(None)
        assert list(session.generate([1, 2, 3], 8, ignore_eos=True)) == list(
            mixtral.session().generate([1, 2, 3], 8, ignore_eos=True)
        )


def test_failing_plugin_create(test_plugins: Dict[str, Path], mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        with pytest.raises(moert.PluginError, match="create failed on purpose"):
            session.set_router("faulty", {"mode": "create_fails"})
        session.eval([1, 2])  # the session keeps its routers
