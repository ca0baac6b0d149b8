"""ModelInfo against each fixture's config.json and safetensors headers."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import struct
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import moert
from conftest import config, fixture_dir, head_dim, moe_layer_indices, reference

_DTYPE_NAMES = {"F32": "f32", "F16": "f16", "BF16": "bf16"}


ROUTED_EXPERT = re.compile(r"\.experts\.\d+\.")
# gpt-oss's fused expert matrices (float, or MXFP4 blocks of two values per byte; their scales and biases are not
# the experts' compute layout).
FUSED_EXPERTS = re.compile(r"\.experts\.(gate_up_proj|down_proj)(_blocks)?$")
LAYER = re.compile(r"^model\.layers\.(\d+)\.")


def checkpoint_facts(name: str) -> Tuple[int, int, List[str], int]:
    """(parameter count, bytes of the safetensors files, dtypes stored, values of routed experts' matrices) of a
    fixture."""
    n_params, n_bytes, dtypes, n_expert = 0, 0, set(), 0
    cfg = config(name)
    # DeepSeek-V3's multi-token-prediction layers follow the decoder layers; moert skips them.
    n_layers, n_mtp = cfg["num_hidden_layers"], cfg.get("num_nextn_predict_layers", 0)
    for path in sorted(fixture_dir(name).glob("model*.safetensors")):
        data = path.read_bytes()
        (header_len,) = struct.unpack("<Q", data[:8])
        header: Dict[str, Dict] = json.loads(data[8 : 8 + header_len])
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            layer = LAYER.match(key)
            if layer and n_layers <= int(layer.group(1)) < n_layers + n_mtp:
                continue
            count = 1
            for dim in entry["shape"]:
                count *= dim
            n_params += count
            fused = FUSED_EXPERTS.search(key)
            if ROUTED_EXPERT.search(key):
                n_expert += count
            elif fused:
                n_expert += 2 * count if fused.group(2) else count
            dtypes.add(entry["dtype"])
        n_bytes += len(data)
    return n_params, n_bytes, sorted(dtypes), n_expert


def test_info_matches_config(model: moert.Model, fixture_name: str) -> None:
    cfg = config(fixture_name)
    info = model.info
    heads = cfg["num_attention_heads"]
    assert info.architecture == cfg["architectures"][0]
    assert info.vocab_size == cfg["vocab_size"]
    assert info.hidden_size == cfg["hidden_size"]
    assert info.n_layers == cfg["num_hidden_layers"]
    assert info.n_moe_layers == len(moe_layer_indices(fixture_name))
    assert info.n_experts == cfg.get("num_local_experts", cfg.get("num_experts", cfg.get("n_routed_experts")))
    assert info.n_experts_per_tok == cfg["num_experts_per_tok"]
    assert info.n_heads == heads
    assert info.n_kv_heads == cfg.get("num_key_value_heads", heads)
    assert info.head_dim == head_dim(fixture_name)
    assert info.context_length == cfg["max_position_embeddings"]
    assert info.bos_token_id == cfg.get("bos_token_id")
    eos = cfg.get("eos_token_id")
    assert info.eos_token_id == (eos[0] if isinstance(eos, list) else eos)
    assert model.eos_token_ids == tuple(eos if isinstance(eos, list) else [eos])


def test_info_matches_checkpoint(model: moert.Model, fixture_name: str) -> None:
    n_params, n_bytes, dtypes, n_expert = checkpoint_facts(fixture_name)
    info = model.info
    stats = model.memory_stats()
    assert info.dtype == (_DTYPE_NAMES[dtypes[0]] if len(dtypes) == 1 else "mixed")
    assert info.file_bytes == stats.mapped_bytes == n_bytes
    # f32 weights are used from the mapping and routed experts are materialised as float32 on first use. f16/bf16
    # checkpoints convert what the kernels need in float32 at load (at most every weight but the experts), and
    # their experts' compute layout holds 2 or 4 bytes per parameter.
    # MXFP4 experts (U8 blocks) beside float32 weights: nothing converted at load, experts decoded to bf16.
    if info.dtype == "f32" or set(dtypes) == {"F32", "U8"}:
        assert stats.converted_bytes == 0
        assert stats.expert_bytes_total == (2 if "U8" in dtypes else 4) * n_expert
    else:
        assert 0 < stats.converted_bytes <= 4 * (n_params - n_expert)
        assert 2 * n_expert <= stats.expert_bytes_total <= 4 * n_expert
    assert stats.expert_bytes_resident == 0
    assert info.weight_bytes == stats.converted_bytes
    with model.session() as session:
        session.eval(reference(fixture_name)["prompt"])
    stats = model.memory_stats()
    if n_expert:
        assert 0 < stats.expert_bytes_resident <= stats.expert_bytes_total
    else:  # every layer dense (deepseek_v3_dense)
        assert stats.expert_bytes_resident == stats.expert_bytes_total == 0
    assert model.info.weight_bytes == stats.converted_bytes + stats.expert_bytes_resident  # info is read anew


def test_parameter_count_matches_checkpoint(model: moert.Model, fixture_name: str) -> None:
    n_params, _, _, _ = checkpoint_facts(fixture_name)
    assert model.info.n_params == n_params


def test_eos_token_ids_come_from_the_library(tmp_path: Path) -> None:
    path = tmp_path / "mixtral"
    shutil.copytree(fixture_dir("mixtral"), path)
    cfg = json.loads((path / "config.json").read_text())
    generation = path / "generation_config.json"
    generation.unlink()
    for eos, expected in (([7, 9, 11], (7, 9, 11)), (5, (5,)), (None, ())):
        cfg["eos_token_id"] = eos
        (path / "config.json").write_text(json.dumps(cfg))
        with moert.Model(path) as model:
            assert model.eos_token_ids == expected
            assert model.info.eos_token_id == (expected[0] if expected else None)
    # generation_config.json's ids come first, then config.json's not yet listed; info keeps config.json's first.
    generation.write_text(json.dumps({"eos_token_id": [4, 7]}))
    cfg["eos_token_id"] = [7, 9]
    (path / "config.json").write_text(json.dumps(cfg))
    with moert.Model(path) as model:
        assert model.eos_token_ids == (4, 7, 9)
        assert model.info.eos_token_id == 7
    (path / "config.json").write_text(json.dumps(cfg))
    model = moert.Model(path)
    model.close()
    with pytest.raises(moert.InvalidArgumentError, match="closed"):
        model.eos_token_ids


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
