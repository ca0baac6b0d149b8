"""Lifetimes: handles are freed by close() and by garbage collection, without leaks or crashes."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref

import moert
from conftest import PACKAGE_ROOT, fixture_dir

MIB = 1024 * 1024
# Allowed RSS growth over the loop: allocator caches and fragmentation, far below the ~0.4 MiB of weights and
# KV cache that each leaked cycle would keep (1,000 cycles would leak hundreds of MiB).
RSS_SLACK = 8 * MIB


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cycle(i: int) -> None:
    """One model and one session, freed by close() on even cycles and by garbage collection on odd ones."""
    model = moert.Model(fixture_dir("mixtral"))
    session = model.session(n_ctx=64)
    session.eval([1, 2, 3])
    next(session.generate([4], 2))
    if i % 2 == 0:
        session.close()
        model.close()


def test_create_free_loop_does_not_leak() -> None:
    for i in range(50):  # warm-up: allocator pools, lazy library state
        cycle(i)
    gc.collect()
    before = rss_bytes()
    for i in range(1000):
        cycle(i)
    gc.collect()
    grown = rss_bytes() - before
    assert grown <= RSS_SLACK, f"RSS grew by {grown / MIB:.1f} MiB over 1000 cycles"


def test_unclosed_objects_are_collected() -> None:
    model = moert.Model(fixture_dir("mixtral"))
    session = model.session()
    session.eval([1, 2])
    model_ref, session_ref = weakref.ref(model), weakref.ref(session)
    del model
    gc.collect()
    assert model_ref() is not None  # the session keeps its model alive
    assert session.eval([3]).shape == (256,)
    del session
    gc.collect()
    assert session_ref() is None and model_ref() is None


def test_reference_cycles_are_collected() -> None:
    model = moert.Model(fixture_dir("mixtral"))
    session = model.session()
    model.keep = session  # type: ignore[attr-defined]
    session.keep = model  # type: ignore[attr-defined]
    refs = [weakref.ref(model), weakref.ref(session)]
    del model, session
    gc.collect()
    assert all(ref() is None for ref in refs)


def test_context_managers_close() -> None:
    with moert.Model(fixture_dir("mixtral")) as model:
        with model.session() as session:
            session.eval([1])
        assert session.closed and not model.closed
        other = model.session()
    assert model.closed and other.closed


def test_interpreter_exit_with_open_objects() -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(PACKAGE_ROOT)!r})
        import moert
        model = moert.Model({str(fixture_dir("mixtral"))!r})
        session = model.session()
        stream = session.generate([1, 2, 3], 8)
        next(stream)
        sampler = moert.Sampler(temperature=1.0)
        model.cycle = model
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert result.stderr == ""
