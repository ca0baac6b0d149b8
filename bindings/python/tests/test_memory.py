"""Expert residency budgets, memory statistics and resident experts per layer."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import pytest

import moert
from conftest import PACKAGE_ROOT, fixture_dir, reference
from moert.model import parse_expert_budget

ALLOCATORS = {"jemalloc (in process)", "jemalloc (loaded)", "aligned malloc"}


def run_sequence(model: moert.Model, name: str) -> np.ndarray:
    """Prompt logits, then one decode step per reference token: every expert is used, some several times."""
    ref = reference(name)
    with model.session() as session:
        rows = [session.eval(ref["prompt"], all_logits=True)]
        rows += [session.eval([int(token)], all_logits=True) for token in ref["greedy"]]
    return np.concatenate(rows)


@pytest.mark.parametrize("name", ["mixtral", "qwen2_moe"])
def test_budget_does_not_change_logits(name: str) -> None:
    results: Dict[Any, np.ndarray] = {}
    evictions: Dict[Any, int] = {}
    for budget in (None, "25%", 1):
        with moert.Model(fixture_dir(name), expert_budget=budget) as model:
            results[budget] = run_sequence(model, name)
            evictions[budget] = model.memory_stats().evictions
    assert np.array_equal(results[None], results["25%"])
    assert np.array_equal(results[None], results[1])
    assert evictions[None] == 0
    assert evictions["25%"] > 0 and evictions[1] > 0


@pytest.mark.parametrize("budget", [None, "25%", "50%", 1, "64K"])
def test_stats_are_consistent(budget: Optional[str]) -> None:
    with moert.Model(fixture_dir("mixtral"), expert_budget=budget) as model:
        info = model.info
        before = model.memory_stats()
        assert isinstance(before, moert.MemoryStats)
        assert before.allocator in ALLOCATORS
        assert (before.arena_active_bytes is None) == (before.allocator == "aligned malloc")
        assert (before.arena_mapped_bytes is None) == (before.allocator == "aligned malloc")
        assert before.expert_bytes_resident == before.hits == before.misses == before.bytes_loaded == 0
        assert before.mapped_bytes == info.file_bytes
        assert not model.resident_experts().any()

        run_sequence(model, "mixtral")
        stats = model.memory_stats()
        per_expert = stats.expert_bytes_total // (info.n_moe_layers * info.n_experts)  # equal sizes here
        assert 0 < stats.expert_bytes_resident <= stats.expert_bytes_total
        assert stats.hits + stats.misses > 0
        assert stats.bytes_loaded == stats.misses * per_expert
        assert stats.bytes_loaded >= stats.expert_bytes_resident
        assert stats.expert_bytes_resident == stats.bytes_loaded - stats.evictions * per_expert
        resident = model.resident_experts()
        assert resident.dtype == np.int32 and resident.shape == (info.n_moe_layers,)
        assert np.all((resident >= 0) & (resident <= info.n_experts))
        assert int(resident.sum()) * per_expert == stats.expert_bytes_resident
        assert model.info.weight_bytes == stats.converted_bytes + stats.expert_bytes_resident  # read anew
        if budget is None:
            assert stats.expert_budget_bytes == 0 and stats.evictions == 0
        else:
            assert stats.evictions > 0
            # Over the cap only when it is smaller than one expert (the experts in use are never evicted).
            assert stats.expert_bytes_resident <= max(stats.expert_budget_bytes, per_expert)


@pytest.mark.parametrize(
    ("budget", "share"), [("25%", 0.25), ("50 %", 0.5), ("100%", 1.0), ("12.5%", 0.125)]
)
def test_percent_budget_is_a_share_of_all_experts(budget: str, share: float) -> None:
    with moert.Model(fixture_dir("mixtral"), expert_budget=budget) as model:
        stats = model.memory_stats()
    assert stats.expert_budget_bytes == int(share * stats.expert_bytes_total)


@pytest.mark.parametrize("budget", [65536, "64K", "64KiB", "64kb", "0.0625M", "65536", "65536B"])
def test_byte_budget_reaches_the_library(budget: Any) -> None:
    with moert.Model(fixture_dir("mixtral"), expert_budget=budget) as model:
        assert model.memory_stats().expert_budget_bytes == 65536


@pytest.mark.parametrize(
    ("budget", "fields"),
    [
        (None, (0, 0.0)),
        (0, (0, 0.0)),
        (np.int64(4096), (4096, 0.0)),
        ("512M", (512 << 20, 0.0)),
        ("2G", (2 << 30, 0.0)),
        ("2 GiB", (2 << 30, 0.0)),
        ("1.5g", (3 << 29, 0.0)),
        ("1T", (1 << 40, 0.0)),
        (" 25% ", (0, 25.0)),
        ("0.5%", (0, 0.5)),
    ],
)
def test_parse_expert_budget(budget: Any, fields: Any) -> None:
    assert parse_expert_budget(budget) == fields


@pytest.mark.parametrize("budget", ["0%", "101%", "-5%", "-1", "lots", "5X", "", "1e9", "2P", -1, 2**63])
def test_bad_budgets(budget: Any) -> None:
    with pytest.raises(moert.InvalidArgumentError, match="expert_budget"):
        moert.Model(fixture_dir("mixtral"), expert_budget=budget)


@pytest.mark.parametrize("budget", [1.5, True, [1], b"1G"])
def test_budget_types(budget: Any) -> None:
    with pytest.raises(TypeError, match="expert_budget"):
        moert.Model(fixture_dir("mixtral"), expert_budget=budget)


def test_stats_are_frozen_and_named_like_the_c_struct() -> None:
    with moert.Model(fixture_dir("mixtral")) as model:
        stats = model.memory_stats()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.hits = 1  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(stats)] == [
        "allocator", "expert_bytes_total", "expert_bytes_resident", "expert_budget_bytes", "mapped_bytes",
        "converted_bytes", "arena_active_bytes", "arena_mapped_bytes", "hits", "misses", "bytes_loaded", "evictions",
    ]


def test_stats_count_over_all_sessions() -> None:
    with moert.Model(fixture_dir("mixtral")) as model:
        with model.session() as first, model.session() as second:
            first.eval([1, 2, 3])
            after_first = model.memory_stats()
            second.eval([1, 2, 3])
        after_second = model.memory_stats()
    assert after_first.misses > 0
    assert after_second.misses == after_first.misses  # already resident: the second session only hits
    assert after_second.hits > after_first.hits


def test_closed_model() -> None:
    model = moert.Model(fixture_dir("mixtral"))
    model.close()
    with pytest.raises(moert.InvalidArgumentError, match="Model is closed"):
        model.memory_stats()
    with pytest.raises(moert.InvalidArgumentError, match="Model is closed"):
        model.resident_experts()


JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")


@pytest.mark.skipif(not JEMALLOC.is_file(), reason="no libjemalloc.so.2 to preload")
def test_jemalloc_arena_statistics_when_preloaded() -> None:
    """jemalloc cannot be dlopen()ed into Python (static TLS), so moert falls back to aligned malloc; preloaded,
    it is used and its arena statistics appear."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(PACKAGE_ROOT)!r})
        import moert
        with moert.Model({str(fixture_dir("mixtral"))!r}) as model, model.session() as session:
            session.eval([1, 2, 3])
            stats = model.memory_stats()
        print(stats.allocator, stats.arena_active_bytes >= stats.expert_bytes_resident > 0, stats.arena_mapped_bytes > 0)
        """
    )
    environment = dict(os.environ, LD_PRELOAD=str(JEMALLOC))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "jemalloc (in process) True True"
