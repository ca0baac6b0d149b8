"""KV cache types (``kv_type=``) against transformers' logits within each type's tolerance, ``kv_bytes``, and the
context shift (``context_shift=``, ``n_keep=``, :meth:`Session.shift`)."""

from __future__ import annotations

import numpy as np
import pytest

import moert
from conftest import cache_values, config, fixture_dir, head_dim, reference

# The tolerance of each type relative to the largest reference logit (the Swift tests' table, where the measured
# figures are explained).
TOLERANCE = {"f32": 1e-4, "f16": 2e-3, "bf16": 1.5e-2, "q8_0": 3e-2}


@pytest.mark.parametrize("kv_type", list(moert.KV_TYPES))
def test_each_type_within_its_tolerance(model: moert.Model, fixture_name: str, kv_type: str) -> None:
    ref = reference(fixture_name)
    latent = "kv_lora_rank" in config(fixture_name)
    if kv_type == "q8_0" and (cache_values(fixture_name) if latent else head_dim(fixture_name)) % 32:
        with pytest.raises(moert.InvalidArgumentError, match="multiple of 32"):
            model.session(kv_type=kv_type)
        return
    with model.session(n_ctx=32, kv_type=kv_type) as s:
        assert s.kv_type == kv_type
        logits = s.eval(ref["prompt"], all_logits=True)
        err = np.abs(logits - ref["logits"]).max() / np.abs(ref["logits"]).max()
        assert err <= TOLERANCE[kv_type], err


def test_kv_bytes_per_type() -> None:
    with moert.Model(fixture_dir("mixtral_hd64")) as m:
        sizes = {t: m.session(n_ctx=64, kv_type=t).kv_bytes for t in moert.KV_TYPES}
    c = config("mixtral_hd64")
    assert sizes["f32"] == 2 * c["num_hidden_layers"] * 64 * c["num_key_value_heads"] * head_dim("mixtral_hd64") * 4
    assert sizes["f16"] * 2 == sizes["bf16"] * 2 == sizes["f32"]
    assert sizes["q8_0"] * 128 == sizes["f32"] * 34


def test_bad_options_are_refused(mixtral: moert.Model) -> None:
    with pytest.raises(moert.InvalidArgumentError, match="kv_type must be one of f32, f16, bf16, q8_0"):
        mixtral.session(kv_type="q4_0")
    with pytest.raises(moert.InvalidArgumentError, match="n_keep"):
        mixtral.session(n_ctx=16, context_shift=True, n_keep=16)


def test_context_shift_generates_past_n_ctx(mixtral: moert.Model) -> None:
    prompt = reference("mixtral")["prompt"]
    with mixtral.session(n_ctx=16) as plain:
        assert len(list(plain.generate(prompt, 40, ignore_eos=True))) == 16 - len(prompt) + 1
    with mixtral.session(n_ctx=16, context_shift=True, n_keep=1) as shifting:
        assert len(list(shifting.generate(prompt, 40, ignore_eos=True))) == 40
        assert shifting.n_past <= 16


def test_shift_moves_positions_and_checks_its_range(mixtral: moert.Model) -> None:
    prompt = reference("mixtral")["prompt"]
    with mixtral.session() as s:
        s.eval(prompt)
        with pytest.raises(moert.InvalidArgumentError):
            s.shift(1, len(prompt))
        s.shift(1, 2)
        assert s.n_past == len(prompt) - 2
        assert np.isfinite(s.eval([5])).all()


@pytest.mark.parametrize("fixture_name", ["mixtral_window", "qwen2_moe_window"])
@pytest.mark.parametrize("max_batch", [1, 3, 0])
def test_sliding_windows_past_their_length(fixture_name: str, max_batch: int) -> None:
    """The 40-token reference (8 windows of 5, 10 of 4) in chunks shorter than the window, token by token and in one
    pass; the windowed layers keep only their window (a ring buffer), the full layers every position."""
    ref, c = reference(fixture_name), config(fixture_name)
    window = c["sliding_window"]
    windowed = c["num_hidden_layers"] if "layer_types" not in c else c["layer_types"].count("sliding_attention")
    row = c["num_key_value_heads"] * (c["hidden_size"] // c["num_attention_heads"]) * 4
    with moert.Model(fixture_dir(fixture_name)) as m, m.session(n_ctx=64, max_batch=max_batch) as s:
        logits = s.eval(ref["long_tokens"], all_logits=True)
        err = np.abs(logits - ref["long_logits"]).max() / np.abs(ref["long_logits"]).max()
        assert err <= TOLERANCE["f32"], err
        assert s.kv_bytes == 2 * row * ((c["num_hidden_layers"] - windowed) * 64 + windowed * window)
        with pytest.raises(moert.UnsupportedError, match="sliding window"):
            s.shift(0, 1)
