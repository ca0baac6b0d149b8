"""A checkpoint with q4_0/q8_0 weights (Tests/fixtures/mixtral_q4_0, quantized by llama.cpp's own quantizer): the
storage type of each tensor, and logits against transformers on the dequantized weights."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import moert

from conftest import fixture_dir, read_safetensors


@pytest.fixture(scope="module")
def quantized():
    with moert.Model(fixture_dir("mixtral_q4_0")) as model:
        yield model


def test_q4_k_tensor_dtypes():
    with moert.Model(fixture_dir("mixtral_q4_k")) as model:
        entry = json.loads((fixture_dir("mixtral_q4_k") / "config.json").read_text())["moert"]["quantization"]["tensors"]
        assert set(entry.values()) == {"q4_k", "q8_0"}
        for name, kind in entry.items():
            assert model.tensor_dtype(name) == kind, name


def test_tensor_dtypes_follow_the_quantization_entry(quantized):
    config = json.loads((fixture_dir("mixtral_q4_0") / "config.json").read_text())
    entry = config["moert"]["quantization"]["tensors"]
    assert entry
    for name, kind in entry.items():
        assert quantized.tensor_dtype(name) == kind, name
    assert quantized.tensor_dtype("model.norm.weight") == "f32"
    assert quantized.tensor_dtype("model.layers.0.block_sparse_moe.gate.weight") == "f32"
    assert quantized.tensor_dtype("no.such.tensor") is None
    assert quantized.info.dtype == "mixed"
    with pytest.raises(TypeError):
        quantized.tensor_dtype(3)
    with pytest.raises(ValueError):
        quantized.tensor_dtype("model.norm.weight\0x")


def _may_run_vnni() -> bool:
    """Whether prefill may run on the AVX-512 VNNI integer kernel here (the CPU has it and AVX-512 is not off)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return " avx512_vnni" in flags and os.environ.get("MOERT_AVX512") != "0"


# q8_0 products in prefill read the weights back to float32, except on the avx512 kernel with AVX-512 VNNI; q4_0,
# q3_0 and q4_k ones, on CPUs with AVX2, meet 8-bit activations as at decode (and in llama.cpp), hence decode's bound.
@pytest.mark.parametrize("name,bound", [("mixtral_q8_0", 3e-2 if _may_run_vnni() else 2e-3), ("mixtral_q4_0", 3e-2),
                                        ("mixtral_q3_0", 3e-2), ("mixtral_q4_k", 3e-2)])
def test_prefill_matches_transformers_on_the_dequantized_weights(name, bound):
    ref = read_safetensors(fixture_dir(name) / "reference.safetensors")
    with moert.Model(fixture_dir(name)) as model, model.session() as s:
        logits = s.eval(ref["tokens"], all_logits=True)
    error = np.abs(logits - ref["logits"]).max() / np.abs(ref["logits"]).max()
    assert error <= bound
