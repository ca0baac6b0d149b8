"""The standalone Sampler: greedy rules, seeded determinism and the top-k/top-p cuts."""

from __future__ import annotations

import numpy as np

import moert


def random_rows(n: int, vocab: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, vocab)).astype(np.float32)


def test_greedy_is_argmax_lowest_id_on_ties() -> None:
    with moert.Sampler() as sampler:
        for row in random_rows(20):
            assert sampler.sample(row) == int(np.argmax(row))
        assert sampler.sample(np.array([0.0, 3.0, 3.0, 1.0], dtype=np.float32)) == 1
        assert sampler.sample(np.array([np.nan, 2.0, np.nan], dtype=np.float32)) == 1
        assert sampler.sample([1.0, 5.0, 2.0]) == 1  # a list of floats is converted
        assert sampler.sample(np.array([1.0, 5.0, 2.0])) == 1  # float64 is converted


def test_equal_seeds_give_equal_draws() -> None:
    rows = random_rows(200)
    with moert.Sampler(temperature=1.0, seed=42) as a, moert.Sampler(temperature=1.0, seed=42) as b:
        first = [a.sample(row) for row in rows]
        second = [b.sample(row) for row in rows]
    assert first == second
    with moert.Sampler(temperature=1.0, seed=43) as c:
        assert [c.sample(row) for row in rows] != first
    assert len(set(first)) > 10  # it really samples


def test_top_k_keeps_the_k_best() -> None:
    rows = random_rows(200, seed=1)
    with moert.Sampler(temperature=2.0, top_k=3, seed=5) as sampler:
        for row in rows:
            assert sampler.sample(row) in set(np.argsort(-row)[:3].tolist())
    with moert.Sampler(temperature=2.0, top_k=1, seed=5) as sampler:
        assert all(sampler.sample(row) == int(np.argmax(row)) for row in rows)


def test_small_top_p_is_greedy() -> None:
    rows = random_rows(100, seed=2)
    with moert.Sampler(temperature=1.0, top_p=1e-6, seed=9) as sampler:
        assert all(sampler.sample(row) == int(np.argmax(row)) for row in rows)


def test_options_are_readable() -> None:
    sampler = moert.Sampler(temperature=0.5, top_k=10, top_p=0.75, seed=2**64 - 1)
    assert (sampler.temperature, sampler.top_k, sampler.top_p, sampler.seed) == (0.5, 10, 0.75, 2**64 - 1)
    assert "top_k=10" in repr(sampler)
    sampler.close()
    assert sampler.closed
