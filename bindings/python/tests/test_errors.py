"""Errors: one exception class per status code, raised with the library's message."""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

import moert
from conftest import fixture_dir, reference

# Status codes and classes

CLASSES = {
    moert.Status.INVALID_ARGUMENT: moert.InvalidArgumentError,
    moert.Status.IO: moert.MoertIOError,
    moert.Status.FORMAT: moert.FormatError,
    moert.Status.UNSUPPORTED: moert.UnsupportedError,
    moert.Status.OUT_OF_MEMORY: moert.MoertMemoryError,
    moert.Status.OUT_OF_RANGE: moert.OutOfRangeError,
    moert.Status.CONTEXT_FULL: moert.ContextFullError,
    moert.Status.BUFFER_TOO_SMALL: moert.BufferTooSmallError,
    moert.Status.PLUGIN: moert.PluginError,
    moert.Status.INTERNAL: moert.InternalError,
    moert.Status.NUMERIC: moert.NumericError,
}


def test_every_status_code_has_a_class() -> None:
    assert [int(s) for s in moert.Status] == list(range(12))
    assert set(CLASSES) == set(moert.Status) - {moert.Status.OK}
    from moert._errors import error_class

    for status, cls in CLASSES.items():
        assert error_class(status) is cls
        error = cls(status, "text")
        assert isinstance(error, moert.MoertError)
        assert error.status == status and error.message == "text" and str(error) == "text"
    assert error_class(99) is moert.MoertError
    assert moert.MoertError(99, "").status == 99
    assert moert.Error is moert.MoertError


def test_builtin_bases() -> None:
    assert issubclass(moert.InvalidArgumentError, ValueError)
    assert issubclass(moert.MoertIOError, OSError)
    assert issubclass(moert.MoertMemoryError, MemoryError)
    assert issubclass(moert.OutOfRangeError, IndexError)
    assert issubclass(moert.LibraryNotFoundError, ImportError)
    assert issubclass(moert.NumericError, ArithmeticError)


def test_status_strings_match_the_library() -> None:
    for status in moert.Status:
        text = moert.status_string(status)
        assert text and text != "unknown status"
        assert str(moert.MoertError(status)) == text
    assert moert.status_string(12) == "unknown status"
    assert moert.status_string(-1) == "unknown status"


def test_errors_pickle() -> None:
    error = moert.ContextFullError(moert.Status.CONTEXT_FULL, "full")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is moert.ContextFullError
    assert (copy.status, copy.message) == (error.status, error.message)


# Loading


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(moert.MoertIOError) as caught:
        moert.Model(missing)
    assert caught.value.status == moert.Status.IO
    assert str(missing) in caught.value.message


def _copy_fixture(tmp_path: Path, name: str = "mixtral") -> Path:
    target = tmp_path / name
    shutil.copytree(fixture_dir(name), target)
    return target


def _edit_config(path: Path, **changes: Any) -> None:
    cfg: Dict[str, Any] = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


def test_unsupported_architecture(tmp_path: Path) -> None:
    path = _copy_fixture(tmp_path)
    _edit_config(path, architectures=["LlamaForCausalLM"])
    with pytest.raises(moert.UnsupportedError, match="LlamaForCausalLM"):
        moert.Model(path)


def test_malformed_config(tmp_path: Path) -> None:
    path = _copy_fixture(tmp_path)
    (path / "config.json").write_text("{")
    with pytest.raises(moert.FormatError):
        moert.Model(path)


def test_truncated_weights(tmp_path: Path) -> None:
    path = _copy_fixture(tmp_path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(moert.FormatError):
        moert.Model(path)


def test_bad_load_options() -> None:
    with pytest.raises(moert.InvalidArgumentError):
        moert.Model(fixture_dir("mixtral"), max_context=-1)
    with pytest.raises(moert.InvalidArgumentError):
        moert.Model(fixture_dir("mixtral"), max_context=2**70)
    with pytest.raises(TypeError):
        moert.Model(fixture_dir("mixtral"), max_context=1.5)  # type: ignore[arg-type]


# Sessions


def test_bad_session_options(mixtral: moert.Model) -> None:
    with pytest.raises(moert.InvalidArgumentError):
        mixtral.session(n_ctx=-1)
    with pytest.raises(moert.InvalidArgumentError):
        mixtral.session(n_ctx=mixtral.info.context_length + 1)
    with pytest.raises(moert.InvalidArgumentError):
        mixtral.session(max_batch=-1)
    with pytest.raises(moert.InvalidArgumentError):
        mixtral.session(max_batch=2**31)


@pytest.mark.parametrize("bad", [256, -1, 1000])
def test_bad_token_id(mixtral: moert.Model, bad: int) -> None:
    with mixtral.session() as session:
        session.eval([1, 2])
        with pytest.raises(moert.OutOfRangeError) as caught:
            session.eval([3, bad, 4])
        assert caught.value.status == moert.Status.OUT_OF_RANGE
        assert str(bad) in caught.value.message
        assert session.n_past == 2  # nothing was evaluated
        session.eval([3])  # and the session is still usable
        assert session.n_past == 3


def test_token_id_beyond_int32(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        with pytest.raises(moert.OutOfRangeError):
            session.eval(np.array([1, 2**40], dtype=np.int64))
        assert session.n_past == 0


def test_context_full(mixtral: moert.Model) -> None:
    prompt = reference("mixtral")["prompt"]
    with mixtral.session(n_ctx=8) as session:
        session.eval(prompt)
        with pytest.raises(moert.ContextFullError) as caught:
            session.eval([1, 2])
        assert caught.value.status == moert.Status.CONTEXT_FULL
        assert session.n_past == 7
        session.eval([1])
        assert session.n_past == 8
        with pytest.raises(moert.ContextFullError):
            session.eval([1])
        session.reset()
        session.eval(prompt)


def test_bad_token_arrays(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        with pytest.raises(moert.InvalidArgumentError):
            session.eval([])
        with pytest.raises(moert.InvalidArgumentError):
            session.eval([[1, 2], [3, 4]])
        with pytest.raises(TypeError):
            session.eval([1.0, 2.0])
        with pytest.raises(TypeError):
            session.eval(["a"])
        assert session.n_past == 0
        assert session.eval(5).shape == (mixtral.info.vocab_size,)  # one id as a scalar
        assert session.eval(np.array([1, 2], dtype=np.uint8)).shape == (mixtral.info.vocab_size,)
        strided = np.arange(0, 20, dtype=np.int32)[::4]
        assert session.eval(strided, all_logits=True).shape == (5, mixtral.info.vocab_size)


# Sampling options

BAD_SAMPLING = [
    {"temperature": -0.5},
    {"temperature": math.nan},
    {"temperature": math.inf},
    {"top_k": -1},
    {"top_p": 0.0},
    {"top_p": 1.5},
    {"top_p": math.nan},
    {"seed": -1},
    {"seed": 2**64},
]


@pytest.mark.parametrize("options", BAD_SAMPLING)
def test_invalid_sampler_options(mixtral: moert.Model, options: Dict[str, Any]) -> None:
    with pytest.raises(moert.InvalidArgumentError):
        moert.Sampler(**options)
    with mixtral.session() as session:
        with pytest.raises(moert.InvalidArgumentError):
            session.generate([1, 2], 4, **options)  # raised by the call, before iterating
        with pytest.raises(moert.InvalidArgumentError):
            session.generate_all([1, 2], 4, **options)
        assert session.n_past == 0


def test_sampler_input_errors() -> None:
    with moert.Sampler() as sampler:
        with pytest.raises(moert.InvalidArgumentError):
            sampler.sample(np.full(8, np.nan, dtype=np.float32))
        with pytest.raises(moert.InvalidArgumentError):
            sampler.sample(np.zeros(0, dtype=np.float32))
        with pytest.raises(moert.InvalidArgumentError):
            sampler.sample(np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(TypeError):
        moert.Sampler(top_k=1.5)  # type: ignore[arg-type]


def test_bad_generate_arguments(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        with pytest.raises(moert.InvalidArgumentError):
            session.generate([1, 2], -1)
        with pytest.raises(moert.InvalidArgumentError, match="nothing to continue"):
            session.generate([], 4)
        with pytest.raises(moert.InvalidArgumentError):
            session.generate_all([1, 2], -1)
        with pytest.raises(moert.InvalidArgumentError):
            session.generate_all([], 4)


def test_callback_exception_is_reraised(mixtral: moert.Model) -> None:
    seen = []

    def on_token(token: int) -> None:
        seen.append(token)
        if len(seen) == 2:
            raise KeyError("stop here")

    with mixtral.session() as session:
        with pytest.raises(KeyError, match="stop here"):
            session.generate_all([1, 2, 3], 8, ignore_eos=True, on_token=on_token)
        assert len(seen) == 2
        assert session.n_past == 3 + 2  # moert feeds each generated token back, the last one too


def test_thread_count_errors() -> None:
    with pytest.raises(moert.InvalidArgumentError):
        moert.set_threads(-1)
    with pytest.raises(moert.InvalidArgumentError):
        moert.Model(fixture_dir("mixtral"), threads=-2)


# Closed objects


def test_closed_session(mixtral: moert.Model) -> None:
    session = mixtral.session()
    session.eval([1, 2])
    session.close()
    session.close()  # idempotent
    assert session.closed
    for use in (
        lambda: session.eval([1]),
        lambda: session.prefill([1]),
        lambda: session.n_past,
        lambda: session.n_ctx,
        lambda: session.reset(),
        lambda: session.generate([1], 2),
        lambda: session.generate_all([1], 2),
    ):
        with pytest.raises(moert.InvalidArgumentError, match="Session is closed"):
            use()
    assert "closed" in repr(session)


def test_closed_model_closes_its_sessions() -> None:
    model = moert.Model(fixture_dir("mixtral"))
    session = model.session()
    stream = session.generate([1, 2, 3], 8, ignore_eos=True)
    next(stream)
    model.close()
    model.close()  # idempotent
    assert model.closed and session.closed
    with pytest.raises(moert.InvalidArgumentError, match="Model is closed"):
        model.info
    with pytest.raises(moert.InvalidArgumentError, match="Model is closed"):
        model.session()
    with pytest.raises(ValueError, match="its Model was closed"):
        session.eval([1])
    with pytest.raises(moert.InvalidArgumentError):
        next(stream)
    session.close()


def test_closed_sampler() -> None:
    sampler = moert.Sampler()
    sampler.close()
    sampler.close()
    with pytest.raises(moert.InvalidArgumentError, match="Sampler is closed"):
        sampler.sample(np.zeros(4, dtype=np.float32))
