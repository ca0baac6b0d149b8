"""Thread settings, and sessions of one model evaluated from several Python threads at once."""

from __future__ import annotations

import os
import threading
from typing import Iterator, List

import numpy as np
import pytest

import moert
from conftest import fixture_dir, reference


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    yield
    moert.set_threads(0)


def test_set_and_get_threads() -> None:
    moert.set_threads(1)
    assert moert.get_threads() == 1
    moert.set_threads(0)
    assert moert.get_threads() == max(1, os.sysconf("SC_NPROCESSORS_ONLN"))


def test_model_threads_argument() -> None:
    with moert.Model(fixture_dir("mixtral"), threads=1):
        assert moert.get_threads() == 1


def test_sessions_on_parallel_threads(mixtral: moert.Model) -> None:
    ref = reference("mixtral")
    sequence = np.concatenate([ref["prompt"], ref["greedy"]])
    expected = mixtral.session().eval(sequence, all_logits=True)
    results: List[np.ndarray] = [np.empty(0)] * 4
    errors: List[BaseException] = []

    def work(i: int) -> None:
        try:
            with mixtral.session() as session:
                for _ in range(5):
                    session.reset()
                    results[i] = session.eval(sequence, all_logits=True)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_errors_are_per_thread(mixtral: moert.Model) -> None:
    messages: List[str] = []

    def fail() -> None:
        with mixtral.session() as session:
            try:
                session.eval([9999])
            except moert.OutOfRangeError as error:
                messages.append(error.message)

    thread = threading.Thread(target=fail)
    thread.start()
    thread.join()
    with pytest.raises(moert.ContextFullError) as caught:
        mixtral.session(n_ctx=1).eval([1, 2])
    assert messages and "9999" in messages[0]
    assert "9999" not in caught.value.message
