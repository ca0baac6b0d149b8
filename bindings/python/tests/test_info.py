"""ModelInfo against each fixture's config.json and safetensors headers."""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Dict, List, Tuple

import pytest

import moert
from conftest import config, fixture_dir, moe_layer_indices

_DTYPE_NAMES = {"F32": "f32", "F16": "f16", "BF16": "bf16"}


def checkpoint_facts(name: str) -> Tuple[int, int, List[str]]:
    """(parameter count, bytes of the safetensors files, dtypes stored) of a fixture."""
    n_params, n_bytes, dtypes = 0, 0, set()
    for path in sorted(fixture_dir(name).glob("model*.safetensors")):
        data = path.read_bytes()
        (header_len,) = struct.unpack("<Q", data[:8])
        header: Dict[str, Dict] = json.loads(data[8 : 8 + header_len])
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            count = 1
            for dim in entry["shape"]:
                count *= dim
            n_params += count
            dtypes.add(entry["dtype"])
        n_bytes += len(data)
    return n_params, n_bytes, sorted(dtypes)


def test_info_matches_config(model: moert.Model, fixture_name: str) -> None:
    cfg = config(fixture_name)
    info = model.info
    heads = cfg["num_attention_heads"]
    assert info.architecture == cfg["architectures"][0]
    assert info.vocab_size == cfg["vocab_size"]
    assert info.hidden_size == cfg["hidden_size"]
    assert info.n_layers == cfg["num_hidden_layers"]
    assert info.n_moe_layers == len(moe_layer_indices(fixture_name))
    assert info.n_experts == cfg.get("num_local_experts", cfg.get("num_experts"))
    assert info.n_experts_per_tok == cfg["num_experts_per_tok"]
    assert info.n_heads == heads
    assert info.n_kv_heads == cfg.get("num_key_value_heads", heads)
    assert info.head_dim == (cfg.get("head_dim") or cfg["hidden_size"] // heads)
    assert info.context_length == cfg["max_position_embeddings"]
    assert info.bos_token_id == cfg.get("bos_token_id")
    eos = cfg.get("eos_token_id")
    assert info.eos_token_id == (eos[0] if isinstance(eos, list) else eos)
    assert model.eos_token_ids == tuple(eos if isinstance(eos, list) else [eos])


def test_info_matches_checkpoint(model: moert.Model, fixture_name: str) -> None:
    n_params, n_bytes, dtypes = checkpoint_facts(fixture_name)
    info = model.info
    assert info.dtype == (_DTYPE_NAMES[dtypes[0]] if len(dtypes) == 1 else "mixed")
    assert info.file_bytes == n_bytes
    # f16/bf16 weights are converted to float32 once at load; float32 ones are used from the mapping.
    assert info.weight_bytes == (0 if info.dtype == "f32" else 4 * n_params)


@pytest.mark.xfail(
    strict=True,
    reason="library bug: n_params leaves out the router gate weights since routers became kinds "
    "(e.g. mixtral 106816, the checkpoint holds 107328 = the index's total_parameters)",
)
def test_parameter_count_matches_checkpoint(model: moert.Model, fixture_name: str) -> None:
    n_params, _, _ = checkpoint_facts(fixture_name)
    assert model.info.n_params == n_params


def test_info_is_frozen_and_typed(mixtral: moert.Model) -> None:
    info = mixtral.info
    assert isinstance(info, moert.ModelInfo)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.vocab_size = 1  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(info)] == [
        "architecture", "vocab_size", "hidden_size", "n_layers", "n_moe_layers", "n_experts", "n_experts_per_tok",
        "n_heads", "n_kv_heads", "head_dim", "dtype", "context_length", "n_params", "file_bytes", "weight_bytes",
        "bos_token_id", "eos_token_id",
    ]


def test_max_context_caps_sessions() -> None:
    with moert.Model(fixture_dir("mixtral"), max_context=32) as model:
        assert model.info.context_length == 32
        with model.session() as session:
            assert session.n_ctx == 32
        with pytest.raises(moert.InvalidArgumentError):
            model.session(n_ctx=33)


def test_session_sizes(mixtral: moert.Model) -> None:
    with mixtral.session(n_ctx=20, max_batch=4) as session:
        assert session.n_ctx == 20
        assert session.n_past == 0
        assert session.model is mixtral
    with mixtral.session() as session:
        assert session.n_ctx == min(mixtral.info.context_length, 4096)
