"""Generation: the lazy iterator, its stopping rules, and agreement with moert_session_generate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import moert
from conftest import fixture_dir, reference


def test_iterator_is_lazy(mixtral: moert.Model) -> None:
    ref = reference("mixtral")
    greedy = ref["greedy"].tolist()
    with mixtral.session() as session:
        stream = session.generate(ref["prompt"], max_new_tokens=8, ignore_eos=True)
        assert session.n_past == 0  # nothing runs before the first next()
        tokens = []
        for token in stream:
            tokens.append(token)
            if len(tokens) == 2:
                break
        assert tokens == greedy[:2]
        # The prompt and the first token are in the cache; the second has not been fed back.
        assert session.n_past == ref["prompt"].size + 1
        rest = list(session.generate([tokens[-1]], max_new_tokens=6, ignore_eos=True))
    assert tokens + rest == greedy


def test_iterator_yields_ints(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        tokens = list(session.generate(np.array([1, 2, 3], dtype=np.int64), 3, ignore_eos=True))
    assert len(tokens) == 3 and all(type(t) is int for t in tokens)


def test_continue_without_prompt(mixtral: moert.Model) -> None:
    ref = reference("mixtral")
    with mixtral.session() as session:
        session.eval(ref["prompt"])
        tokens = list(session.generate([], 8, ignore_eos=True))
    assert tokens == ref["greedy"].tolist()


def test_continue_after_a_prefill_without_logits(mixtral: moert.Model) -> None:
    ref = reference("mixtral")
    with mixtral.session() as session:
        session.prefill(ref["prompt"])  # no logits: generate evaluates the last position again
        tokens = list(session.generate([], 8, ignore_eos=True))
    assert tokens == ref["greedy"].tolist()


def test_zero_new_tokens_only_evaluates_the_prompt(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        assert list(session.generate([1, 2, 3], 0)) == []
        assert session.n_past == 3
        assert session.generate_all([4, 5], 0) == []
        assert session.n_past == 5


def test_stops_when_the_context_is_full(mixtral: moert.Model) -> None:
    ref = reference("mixtral")
    with mixtral.session(n_ctx=9) as session:
        streamed = list(session.generate(ref["prompt"], 16, ignore_eos=True))
        assert session.n_past == 9
        session.reset()
        native = session.generate_all(ref["prompt"], 16, ignore_eos=True)
        assert session.n_past == 9
    assert streamed == native == ref["greedy"][:3].tolist()


def test_stops_after_eos(tmp_path: Path) -> None:
    ref = reference("mixtral")
    greedy = ref["greedy"].tolist()
    path = tmp_path / "mixtral"
    shutil.copytree(fixture_dir("mixtral"), path)
    (path / "generation_config.json").unlink()
    cfg = json.loads((path / "config.json").read_text())
    # Several EOS ids: generation stops at any of them, not only at the first (info.eos_token_id).
    cfg["eos_token_id"] = [greedy[5], greedy[2]]
    (path / "config.json").write_text(json.dumps(cfg))
    with moert.Model(path) as model, model.session() as session:
        assert model.info.eos_token_id == greedy[5]
        assert model.eos_token_ids == (greedy[5], greedy[2])
        streamed = list(session.generate(ref["prompt"], 8))
        session.reset()
        native = session.generate_all(ref["prompt"], 8)
        session.reset()
        ignoring = list(session.generate(ref["prompt"], 8, ignore_eos=True))
    assert streamed == native == greedy[:3]
    assert ignoring == greedy


@pytest.mark.parametrize("seed", [0, 1, 12345])
@pytest.mark.parametrize("options", [{"temperature": 1.0}, {"temperature": 0.7, "top_k": 5}, {"temperature": 1.3, "top_p": 0.9}])
def test_sampled_iterator_equals_library_loop(model: moert.Model, seed: int, options: dict) -> None:
    with model.session() as session:
        streamed = list(session.generate([3, 1, 4, 1, 5], 12, seed=seed, ignore_eos=True, **options))
        session.reset()
        native = session.generate_all([3, 1, 4, 1, 5], 12, seed=seed, ignore_eos=True, **options)
    assert streamed == native
    assert len(streamed) == 12


def test_sampled_generation_is_deterministic_per_seed(mixtral: moert.Model) -> None:
    def run(seed: int) -> list:
        with mixtral.session() as session:
            return list(session.generate([1, 2, 3], 16, temperature=1.5, seed=seed, ignore_eos=True))

    assert run(7) == run(7)
    assert len({tuple(run(seed)) for seed in range(6)}) > 1


def test_on_token_can_stop(mixtral: moert.Model) -> None:
    seen = []

    def on_token(token: int) -> bool:
        seen.append(token)
        return len(seen) < 3

    ref = reference("mixtral")
    with mixtral.session() as session:
        tokens = session.generate_all(ref["prompt"], 8, ignore_eos=True, on_token=on_token)
    assert tokens == seen == ref["greedy"][:3].tolist()


def test_abandoned_iterator_is_harmless(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        stream = session.generate([1, 2, 3], 8)
        next(stream)
        del stream
        session.reset()
        assert session.eval([1]).shape == (mixtral.info.vocab_size,)


@pytest.mark.parametrize("stop", ["max_new_tokens", "eos", "context"])
def test_finished_iterator_leaves_the_session_as_the_library_does(tmp_path: Path, stop: str) -> None:
    """Run to its end, the iterator feeds the last token back (as moert_session_generate does), so an empty prompt
    continues the sequence from there."""
    ref = reference("mixtral")
    greedy = ref["greedy"].tolist()
    path = tmp_path / "mixtral"
    shutil.copytree(fixture_dir("mixtral"), path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["eos_token_id"] = greedy[3] if stop == "eos" else 255
    (path / "config.json").write_text(json.dumps(cfg))
    n_ctx = 10 if stop == "context" else 0
    with moert.Model(path) as model, model.session(n_ctx=n_ctx) as streaming, model.session(n_ctx=n_ctx) as native:
        streamed = list(streaming.generate(ref["prompt"], 5))
        generated = native.generate_all(ref["prompt"], 5)
        assert streamed == generated
        assert streaming.n_past == native.n_past
        if stop == "context":
            assert streaming.n_past == 10 and len(streamed) == 4  # the last token is not evaluated
            return
        assert streaming.n_past == ref["prompt"].size + len(streamed)
        assert list(streaming.generate([], 2, ignore_eos=True)) == native.generate_all([], 2, ignore_eos=True)
    assert streamed == greedy[: 4 if stop == "eos" else 5]


def test_scmoe_self_contrast_matches_transformers(mixtral: moert.Model) -> None:
    """generate_all with scmoe_weak_rank gives transformers' SCMoE tokens (Tests/fixtures/scmoe)."""
    cases = json.loads((fixture_dir("scmoe") / "reference.json").read_text())["cases"]
    checked = 0
    for case in (c for c in cases if c["fixture"] == "mixtral"):
        with mixtral.session() as session:
            tokens = session.generate_all(case["prompt"], len(case["tokens"]), ignore_eos=True,
                                          scmoe_weak_rank=case["weak_rank"], scmoe_beta=case["beta"],
                                          scmoe_alpha=case["alpha"])
        assert tokens == case["tokens"]
        assert tokens != case["greedy"]
        checked += 1
    assert checked >= 1


def test_scmoe_refuses_bad_settings(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        for options in ({"scmoe_weak_rank": 4}, {"scmoe_weak_rank": 1, "scmoe_alpha": 0.0},
                        {"scmoe_weak_rank": 1, "scmoe_beta": float("nan")}):
            with pytest.raises(moert.InvalidArgumentError):
                session.generate_all([1, 2], 2, **options)
