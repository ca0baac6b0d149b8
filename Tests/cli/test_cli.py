"""The `moert` command: its commands and flags, run as a user runs them, against the fixtures' references.

Run with the staged binary: ``MOERT_CLI=build/bin/moert python3 -m pytest -q Tests/cli`` (``make test-cli`` does it).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests" / "fixtures"
CLI = os.environ.get("MOERT_CLI", str(ROOT / "build" / "bin" / "moert"))


def moert(*args: str, input_bytes: bytes = b"", check: bool = True) -> subprocess.CompletedProcess:
    """Runs the command; with `check`, fails the test (showing stderr) unless it exits 0."""
    done = subprocess.run([CLI, *args], input=input_bytes, capture_output=True, timeout=300)
    if check:
        assert done.returncode == 0, f"moert {' '.join(args)} exited {done.returncode}: {done.stderr.decode()}"
    return done


def read_safetensors(path: Path) -> Dict[str, np.ndarray]:
    """The tensors of a safetensors file (F32 and I32 only: what the references hold)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    base = 8 + length
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = {"F32": np.float32, "I32": np.int32}[entry["dtype"]]
        out[name] = np.frombuffer(data[base + begin : base + end], dtype=dtype).reshape(entry["shape"])
    return out


def reference(fixture: str) -> Dict[str, np.ndarray]:
    return read_safetensors(FIXTURES / fixture / "reference.safetensors")


def ids(values: np.ndarray) -> str:
    return ",".join(str(int(v)) for v in values)


@pytest.mark.parametrize("fixture", ["mixtral", "qwen2_moe", "olmoe"])
def test_run_writes_the_logits_of_transformers(fixture: str, tmp_path: Path) -> None:
    ref = reference(fixture)
    out = tmp_path / "logits.npy"
    moert("run", "--model", str(FIXTURES / fixture), "--tokens", ids(ref["prompt"]), "--logits", str(out))
    logits = np.load(out)
    expected = ref["logits"].reshape(logits.shape)
    assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("fixture", ["mixtral", "qwen3_moe"])
def test_generate_tokens_is_the_greedy_continuation(fixture: str) -> None:
    ref = reference(fixture)
    n = len(ref["greedy"])
    done = moert("generate", "--model", str(FIXTURES / fixture), "--tokens", ids(ref["prompt"]), "--max-new", str(n),
                 "--ignore-eos")
    assert done.stdout.decode().split() == [str(int(t)) for t in ref["greedy"]]


def test_info_and_its_flags() -> None:
    done = moert("info", "--model", str(FIXTURES / "mixtral"), "--memory", "--no-mmap", "--threads", "1")
    text = done.stdout.decode()
    assert "MixtralForCausalLM" in text and "experts" in text and "expert cache" in text


def test_trace_writes_every_routing_decision(tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    moert("trace", "--model", str(FIXTURES / "mixtral"), "--tokens", "1,2,3,4", "--out", str(out))
    trace = json.loads(out.read_text())
    assert trace["tokens"] == [1, 2, 3, 4] and len(trace["records"]) == 4 * len(trace["layers"])
    assert all(len(r["experts"]) == 2 for r in trace["records"])


def test_bench_prints_its_lines() -> None:
    text = moert("bench", "--model", str(FIXTURES / "mixtral"), "--prompt", "8", "--decode", "4", "--repeat", "1").stdout.decode()
    assert "prefill 8 tokens" in text and "decode  4 tokens" in text


@pytest.mark.parametrize("args, message", [
    (["frobnicate"], "unknown command"),
    (["run", "--model", str(FIXTURES / "mixtral"), "--tokens", ""], "--tokens needs at least one token id"),
    (["run", "--model", str(FIXTURES / "mixtral"), "--tokens", "1", "--bogus", "2"], "unknown argument"),
    (["run", "--model", str(FIXTURES / "mixtral"), "--tokens", "1,99999"], "outside [0, 256)"),
    (["generate", "--model", str(FIXTURES / "mixtral"), "--tokens", "1", "--moe-top-k", "0"], "--moe-top-k"),
])
def test_bad_input_is_one_line_and_a_nonzero_status(args: List[str], message: str) -> None:
    done = moert(*args, check=False)
    assert done.returncode != 0
    err = done.stderr.decode()
    assert err.startswith("moert: error: ") and message in err and err.count("\n") == 1, err


def test_every_command_has_help() -> None:
    text = moert("--help").stdout.decode()
    commands = [line.split()[0] for line in text.split("commands:")[1].splitlines() if line.startswith("  ")]
    assert "run" in commands and "generate" in commands
    for command in commands:
        assert "usage: moert " + command in moert(command, "--help").stdout.decode()
