"""Logits and generations against the transformers references stored with each fixture.

Tolerance: max |moert - reference| <= 1e-4 * max |reference| per array. Both sides compute in float32 from
the same stored weights; they differ only in summation order (OpenBLAS sgemm against PyTorch's kernels),
which for these two- and three-layer models stays two orders of magnitude inside this bound.
"""

from __future__ import annotations

import numpy as np
import pytest

import moert
from conftest import reference

RELATIVE_TOLERANCE = 1e-4


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape
    bound = RELATIVE_TOLERANCE * float(np.max(np.abs(expected)))
    worst = float(np.max(np.abs(actual.astype(np.float64) - expected)))
    assert worst <= bound, f"max abs diff {worst:.3g} > {bound:.3g}"


def test_prompt_logits_every_position(model: moert.Model, fixture_name: str) -> None:
    ref = reference(fixture_name)
    with model.session() as session:
        logits = session.eval(ref["prompt"], all_logits=True)
        assert session.n_past == ref["prompt"].size
    assert_close(logits, ref["logits"])


def test_last_logits_equal_last_row(model: moert.Model, fixture_name: str) -> None:
    ref = reference(fixture_name)
    with model.session() as session:
        last = session.eval(ref["prompt"].tolist())
    assert last.shape == (model.info.vocab_size,)
    assert_close(last, ref["logits"][-1])


def test_greedy_generation(model: moert.Model, fixture_name: str) -> None:
    ref = reference(fixture_name)
    with model.session() as session:
        tokens = list(session.generate(ref["prompt"], max_new_tokens=8, ignore_eos=True))
        assert session.n_past == ref["prompt"].size + 8  # run to its end, the last token is fed back too
    assert tokens == ref["greedy"].tolist()


def test_greedy_generation_inside_the_library(model: moert.Model, fixture_name: str) -> None:
    ref = reference(fixture_name)
    with model.session() as session:
        tokens = session.generate_all(ref["prompt"], max_new_tokens=8, ignore_eos=True)
        assert session.n_past == ref["prompt"].size + 8
    assert tokens == ref["greedy"].tolist()


def test_kv_cached_decode_matches_one_full_forward(model: moert.Model, fixture_name: str) -> None:
    ref = reference(fixture_name)
    full = ref["full_logits"]
    n_prompt = ref["prompt"].size
    with model.session() as session:
        rows = [session.eval(ref["prompt"], all_logits=True)]
        for token in ref["greedy"]:
            rows.append(session.eval([int(token)], all_logits=True))
        assert session.n_past == full.shape[0]
    assert_close(np.concatenate(rows), full)
    assert_close(rows[0], full[:n_prompt])


@pytest.mark.parametrize("max_batch", [1, 3])
def test_chunked_prefill(model: moert.Model, fixture_name: str, max_batch: int) -> None:
    ref = reference(fixture_name)
    sequence = np.concatenate([ref["prompt"], ref["greedy"]]).astype(np.int64)
    with model.session(max_batch=max_batch) as session:
        assert_close(session.eval(sequence, all_logits=True), ref["full_logits"])


def test_prefill_then_decode(model: moert.Model, fixture_name: str) -> None:
    ref = reference(fixture_name)
    with model.session() as session:
        session.prefill(ref["prompt"])
        assert session.n_past == ref["prompt"].size
        assert_close(session.eval(ref["greedy"][:1]), ref["full_logits"][ref["prompt"].size])


def test_reset_gives_the_same_logits(mixtral: moert.Model) -> None:
    ref = reference("mixtral")
    with mixtral.session() as session:
        first = session.eval(ref["prompt"], all_logits=True)
        session.reset()
        assert session.n_past == 0
        second = session.eval(ref["prompt"], all_logits=True)
    np.testing.assert_array_equal(first, second)
