"""Shared test setup: imports the package from this checkout, finds the fixtures and reads their references."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT = PACKAGE_ROOT.parent.parent
FIXTURES = Path(__file__).resolve().parent / ".." / ".." / ".." / "Tests" / "fixtures"
FIXTURE_NAMES = [
    "mixtral", "mixtral_bf16", "mixtral_sharded", "mixtral_hd64", "qwen2_moe", "qwen3_moe", "olmoe", "qwen3_moe_fp8",
    "deepseek_v2", "deepseek_v2_lite", "deepseek_v2_group", "deepseek_v3", "deepseek_v3_dense", "glm4_moe", "gpt_oss",
    "gpt_oss_mxfp4", "mixtral_window", "qwen2_moe_window",
]

# Test this checkout's package, not an installed copy.
sys.path.insert(0, str(PACKAGE_ROOT))

import moert  # noqa: E402

_DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "I64": np.int64}


def read_safetensors(path: Path) -> Dict[str, np.ndarray]:
    """Every tensor of a safetensors file (8-byte little-endian header length, JSON header, raw data)."""
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")
        array = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize, offset=base + start)
        tensors[name] = array.reshape(entry["shape"]).astype(dtype.newbyteorder("="))
    return tensors


_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int32): "I32", np.dtype(np.int64): "I64"}


def write_safetensors(path: Path, tensors: Dict[str, np.ndarray]) -> None:
    """Writes `tensors` as a safetensors file (little-endian data, header padded to 8 bytes)."""
    header: Dict[str, Any] = {"__metadata__": {"format": "pt"}}
    chunks, offset = [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[array.dtype], "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def fixture_dir(name: str) -> Path:
    return FIXTURES / name


def reference(name: str) -> Dict[str, np.ndarray]:
    return read_safetensors(fixture_dir(name) / "reference.safetensors")


def config(name: str) -> Dict[str, Any]:
    return json.loads((fixture_dir(name) / "config.json").read_text())


def moe_layer_indices(name: str) -> List[int]:
    """Decoder layers with an MoE block, as the HF modeling files decide (Qwen2Moe/Qwen3Moe: mlp_only_layers and
    decoder_sparse_step; DeepSeek: from first_k_dense_replace on; Mixtral and OLMoE: every layer)."""
    cfg = config(name)
    only_mlp = set(cfg.get("mlp_only_layers") or [])
    step = cfg.get("decoder_sparse_step") or 1
    first = cfg.get("first_k_dense_replace") or 0
    return [i for i in range(first, cfg["num_hidden_layers"]) if i not in only_mlp and (i + 1) % step == 0]


def head_dim(name: str) -> int:
    """Width of a query/key head: head_dim, hidden / heads, or DeepSeek's qk_nope_head_dim + qk_rope_head_dim (its
    config.json's head_dim is the rope part alone)."""
    c = config(name)
    if "kv_lora_rank" in c:
        return c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


def cache_values(name: str) -> int:
    """Values the KV cache holds per position and layer: keys and values of every key/value head, or DeepSeek's
    latent and shared rope key (kv_lora_rank + qk_rope_head_dim)."""
    c = config(name)
    if "kv_lora_rank" in c:
        return c["kv_lora_rank"] + c["qk_rope_head_dim"]
    return 2 * c.get("num_key_value_heads", c["num_attention_heads"]) * head_dim(name)


@pytest.fixture(params=FIXTURE_NAMES)
def fixture_name(request: pytest.FixtureRequest) -> str:
    """Each fixture model in turn."""
    return str(request.param)


@pytest.fixture
def model(fixture_name: str) -> Iterator[moert.Model]:
    """The fixture model, closed after the test."""
    with moert.Model(fixture_dir(fixture_name)) as m:
        yield m


@pytest.fixture
def mixtral() -> Iterator[moert.Model]:
    """The float32 Mixtral fixture, closed after the test."""
    with moert.Model(fixture_dir("mixtral")) as m:
        yield m


def pytest_report_header(config: Any) -> str:
    try:
        return f"moert library: {moert.library_path()}"
    except moert.LibraryNotFoundError as error:
        return f"moert library: not found ({error})"
