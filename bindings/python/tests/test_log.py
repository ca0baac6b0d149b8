"""The log callback: moert's warnings reach a Python callback at their level, None gives them back to stderr, and the
callback's exceptions stay on the Python side."""

from __future__ import annotations

import gc
import sys
import threading
from typing import Any, Iterator, List, Tuple

import pytest

import moert
from conftest import fixture_dir

# ExpertStore's warning for a budget below the experts one step needs (moert.h, "Logging"); once per model.
BUDGET_WARNING = "expert budget of 1 bytes is smaller than the experts one step needs; running over it"


def run_over_budget() -> None:
    """Evaluates two steps of the Mixtral fixture under a 1-byte expert budget (experts of both run over it)."""
    with moert.Model(fixture_dir("mixtral"), expert_budget=1) as model, model.session() as session:
        session.eval([1, 15, 27])
        session.eval([3])


@pytest.fixture(autouse=True)
def default_log() -> Iterator[None]:
    """Every test leaves moert's default log installed."""
    yield
    moert.set_log_callback(None)


def test_levels_are_those_of_the_header() -> None:
    levels = [(level.name, int(level)) for level in moert.LogLevel]
    assert levels == [("ERROR", 0), ("WARN", 1), ("INFO", 2), ("DEBUG", 3)]


def test_callback_gets_the_warning_and_none_restores_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    received: List[Tuple[Any, str]] = []
    moert.set_log_callback(lambda level, message: received.append((level, message)))  # only the binding holds it
    gc.collect()
    run_over_budget()
    warnings = [entry for entry in received if BUDGET_WARNING in entry[1]]
    assert warnings == [(moert.LogLevel.WARN, BUDGET_WARNING)]
    assert isinstance(warnings[0][0], moert.LogLevel)
    assert BUDGET_WARNING not in capfd.readouterr().err

    moert.set_log_callback(None)
    count = len(received)
    run_over_budget()
    assert len(received) == count
    assert f"moert: warning: {BUDGET_WARNING}\n" in capfd.readouterr().err


def test_replacing_the_callback(capfd: pytest.CaptureFixture[str]) -> None:
    first: List[str] = []
    second: List[str] = []
    moert.set_log_callback(lambda level, message: first.append(message))
    moert.set_log_callback(lambda level, message: second.append(message))
    run_over_budget()
    assert BUDGET_WARNING not in first and BUDGET_WARNING in second
    assert BUDGET_WARNING not in capfd.readouterr().err


def test_callback_runs_on_the_thread_that_logs() -> None:
    threads: List[int] = []
    moert.set_log_callback(lambda level, message: threads.append(threading.get_ident()))
    worker = threading.Thread(target=run_over_budget)
    worker.start()
    worker.join()
    assert threads and set(threads) == {worker.ident}


def test_exceptions_of_the_callback_stay_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: List[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    def failing(level: moert.LogLevel, message: str) -> None:
        raise RuntimeError(f"log callback failure at {level.name}")

    moert.set_log_callback(failing)
    run_over_budget()  # returns normally: the evaluation does not see the exception
    failures = [entry for entry in reported if isinstance(entry.exc_value, RuntimeError)]
    assert failures and str(failures[0].exc_value) == "log callback failure at WARN"
    assert "moert log callback" in repr(failures[0].object) and "failing" in repr(failures[0].object)


def test_a_callback_must_be_callable() -> None:
    with pytest.raises(TypeError, match="callable or None"):
        moert.set_log_callback("stderr")  # type: ignore[arg-type]
