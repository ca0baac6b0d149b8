#!/usr/bin/env python3
"""Make the quantized-weight fixtures: llama.cpp's own quantizers (libggml's quantize_row_*_ref and dequantize_row_*)
applied to values and to tiny checkpoints, and transformers' logits on the dequantized weights; for q3_0, which GGML
does not have, a plain numpy transcription of docs/model-format.md's definition.

    python tools/make_quant_fixtures.py [--out Tests/fixtures]

Needs `pip install llama-cpp-python torch transformers safetensors numpy` (libggml-base.so comes with
llama-cpp-python; --ggml-lib names another copy). Blocks: 32 values for q8_0, q4_0 and q3_0 (34, 18 and 14 bytes),
256 for q4_k (GGML's Q4_K super-block, 144 bytes: f16 d and dmin, 12 bytes of 6-bit scales and mins, 128 of
nibbles). Written:

  quant/blocks.safetensors      `values` [rows, 128] float32 (random normals at several scales, plus blocks chosen
                                by hand: ties of both roundings, a zero block, values whose largest magnitude is
                                negative, a block whose scale is an f16 subnormal), and for q8_0 and q4_0 the bytes
                                of GGML's reference quantizer (`q8_0`, `q4_0`, U8 [rows, 128 / 32 * block bytes])
                                and GGML's dequantization of them (`q8_0_dequantized`, `q4_0_dequantized`); `q3_0`
                                and `q3_0_dequantized` from quantize_q3_0 / dequantize_q3_0 below. `values_256`
                                [rows, 512] float32 (two super-blocks a row: random normals at several scales, a
                                super-block all positive beside one all negative, a zero super-block beside one of
                                constant sub-blocks, tiny values whose scales are below f16's normal range beside
                                normals with an outlier, sub-blocks of very different magnitudes side by side),
                                `q4_k` U8 [rows, 2 * 144] from GGML's quantize_row_q4_K_ref and `q4_k_dequantized`
                                from its dequantize_row_q4_K.
  <fixture>_<type>/             a copy of Tests/fixtures/<fixture> with its weights quantized by GGML (q3_0: numpy) as
                                `moert quantize --type <type>` plans them (attention, experts, shared experts and
                                dense MLPs at <type>; embeddings and output layer at q8_0; router gates, norms and
                                biases kept; a tensor whose rows are not whole blocks of the type kept, and with it
                                the rest of its routed expert — moert quantize would give q4_0 for q4_k there, which
                                no fixture here needs), in the layout of docs/model-format.md, and
                                reference.safetensors: `tokens` [16] int32 and `logits` [16, vocab], transformers'
                                float32 output over those tokens with the dequantized weights.
  mixtral_q4_k/                 the same for q4_k, made from a Mixtral built here (base_model: hidden and
                                intermediate 256, so that rows are whole super-blocks) rather than from a fixture.
"""
import argparse
import ctypes
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

BLOCK = {"q8_0": 32, "q4_0": 32, "q3_0": 32, "q4_k": 256}
BLOCK_BYTES = {"q8_0": 34, "q4_0": 18, "q3_0": 14, "q4_k": 144}
GGML_TYPES = ("q8_0", "q4_0", "q4_k")
FIXTURES = [("mixtral", "q8_0"), ("mixtral", "q4_0"), ("qwen2_moe", "q4_0"), ("qwen3_moe", "q8_0"), ("mixtral", "q3_0")]


def load_ggml(path: str | None) -> ctypes.CDLL:
    if path is None:
        import llama_cpp

        path = str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so")
    lib = ctypes.CDLL(path)
    for t in GGML_TYPES:
        for fn in (getattr(lib, f"quantize_row_{ggml_name(t)}_ref"), getattr(lib, f"dequantize_row_{ggml_name(t)}")):
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            fn.restype = None
    return lib


def ggml_name(t: str) -> str:
    """GGML's spelling of a moert type in its function names: q4_k -> q4_K."""
    return t[:-2] + "_K" if t.endswith("_k") else t


def quantize(ggml, t: str, x: np.ndarray) -> np.ndarray:
    """GGML's reference quantization of the rows of x [rows, cols] -> U8 [rows, cols / block * block bytes]."""
    if t == "q3_0":
        return quantize_q3_0(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    assert x.shape[1] % BLOCK[t] == 0, (t, x.shape)
    out = np.zeros((x.shape[0], x.shape[1] // BLOCK[t] * BLOCK_BYTES[t]), dtype=np.uint8)
    getattr(ggml, f"quantize_row_{ggml_name(t)}_ref")(x.ctypes.data, out.ctypes.data, x.size)
    return out


def dequantize(ggml, t: str, q: np.ndarray, shape) -> np.ndarray:
    if t == "q3_0":
        return dequantize_q3_0(q, shape)
    assert shape[1] % BLOCK[t] == 0 and q.shape == (shape[0], shape[1] // BLOCK[t] * BLOCK_BYTES[t]), (t, shape)
    out = np.zeros(shape, dtype=np.float32)
    getattr(ggml, f"dequantize_row_{ggml_name(t)}")(np.ascontiguousarray(q).ctypes.data, out.ctypes.data, out.size)
    return out


def quantize_q3_0(x: np.ndarray) -> np.ndarray:
    """q3_0 of the rows of x [rows, cols], as docs/model-format.md defines it, in float32 arithmetic: per block of 32,
    m = the value of largest magnitude (the first on a tie), d = m / -4 (stored as f16), q = min(7, trunc(x * (1 / d)
    + 4.5)); bytes: d, then qs[8] with value i's two low bits at bits 2 (i // 8) of qs[i % 8], then qh[4] with value
    i's high bit at bit i // 4 of qh[i % 4]."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, cols = x.shape
    n = BLOCK["q3_0"]
    out = np.zeros((rows, cols // n * 14), dtype=np.uint8)
    for r in range(rows):
        for b in range(cols // n):
            v = x[r, b * n:(b + 1) * n]
            m = v[int(np.argmax(np.abs(v)))]
            d = np.float32(m) / np.float32(-4)
            inv = np.float32(1) / d if d != 0 else np.float32(0)
            q = np.minimum(7, np.trunc((v * inv).astype(np.float32) + np.float32(4.5))).astype(np.int64)
            block = bytearray(np.float16(d).tobytes())
            qs, qh = [0] * 8, [0] * 4
            for i in range(n):
                qs[i % 8] |= (int(q[i]) & 3) << (2 * (i // 8))
                qh[i % 4] |= (int(q[i]) >> 2) << (i // 4)
            block += bytes(qs) + bytes(qh)
            out[r, b * 14:(b + 1) * 14] = np.frombuffer(bytes(block), dtype=np.uint8)
    return out


def dequantize_q3_0(q: np.ndarray, shape) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float32)
    n = BLOCK["q3_0"]
    for r in range(shape[0]):
        for b in range(shape[1] // n):
            block = q[r, b * 14:(b + 1) * 14].tobytes()
            d = np.float32(np.frombuffer(block[:2], dtype=np.float16)[0])
            for i in range(n):
                quant = (block[2 + i % 8] >> (2 * (i // 8)) & 3) + 4 * (block[10 + i % 4] >> (i // 4) & 1) - 4
                out[r, b * n + i] = d * np.float32(quant)
    return out


def block_values() -> np.ndarray:
    rng = np.random.default_rng(11)
    rows = [rng.standard_normal(128) * s for s in (1.0, 0.02, 30.0, 1e-3)]
    ties = np.array([127, 63.5, -63.5, 2.5, -2.5, 0.5, -0.5, 1.5] * 4)         # q8_0: x / d = k + 0.5
    q4_ties = np.array([-8, 7.5, 6.5, -0.5, 0.5, 3.5, -4.5, 1.0] * 4)            # q4_0: d = 1, x + 8.5 integral
    negative_max = np.concatenate([[-5.0], rng.uniform(-4.9, 4.9, 31)])          # largest magnitude negative
    zero = np.zeros(32)
    subnormal = rng.standard_normal(32) * 2e-6                                   # scale below f16's normal range
    rows.append(np.concatenate([ties, q4_ties, negative_max, zero]))
    rows.append(np.concatenate([subnormal, -ties, -q4_ties, -negative_max]))
    q3_ties = np.array([-4, 3.5, 2.5, -0.5, 0.5, -3.5, 1.5, -1.5] * 4)           # q3_0: d = 1, x + 4.5 integral
    rows.append(np.concatenate([q3_ties, -q3_ties, q3_ties * 3, rng.uniform(-1, 1, 32)]))
    return np.stack(rows).astype(np.float32)


def block_values_256() -> np.ndarray:
    """Rows of two q4_k super-blocks (256 values, 8 sub-blocks of 32 each); a generator of its own, so that
    block_values' draws are unchanged."""
    rng = np.random.default_rng(256)
    rows = [rng.standard_normal(512) * s for s in (1.0, 0.02, 30.0, 1e-3)]
    rows.append(np.concatenate([rng.uniform(0.5, 2.0, 256), -rng.uniform(0.5, 2.0, 256)]))  # min > 0; max < 0
    constants = np.array([1.5, 0.0, -2.25, 0.75, -0.125, 0.0, 3.0, -1.0])                     # one per sub-block
    rows.append(np.concatenate([np.zeros(256), np.repeat(constants, 32)]))
    outlier = rng.standard_normal(256)
    outlier[3 * 32 + 5] = 50.0
    rows.append(np.concatenate([rng.standard_normal(256) * 2e-6, outlier]))                  # scales below f16 normals
    alternate = np.repeat([1e-3, 10.0] * 4, 32)                                               # 1e-3 next to 10
    lone = np.repeat([1e-3, 1e-3, 1e-3, 10.0, 1e-3, 1e-3, 1e-3, 1e-3], 32)
    rows.append(rng.standard_normal(512) * np.concatenate([alternate, lone]))
    return np.stack(rows).astype(np.float32)


def tensor_class(name: str) -> str:
    """The classes of moert quantize (docs/model-format.md)."""
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        return "output"
    if not (name.endswith("_proj.weight") or name.endswith(("w1.weight", "w2.weight", "w3.weight", "gate.weight"))):
        return "other"
    if name.endswith(".gate.weight") or name.endswith("shared_expert_gate.weight"):
        return "gate"
    if ".self_attn." in name:
        return "attention"
    if ".shared_expert." in name or ".shared_experts." in name:
        return "shared"
    if ".experts." in name:
        return "experts"
    return "shared" if ".mlp." in name else "other"


def plan(tensors: dict, t: str) -> dict:
    """Tensor name -> quantized type, as `moert quantize --type t` (default output type) chooses."""
    asked = {"attention": t, "experts": t, "shared": t, "output": "q8_0"}
    chosen = {}
    for name, v in tensors.items():
        typ = asked.get(tensor_class(name))
        if typ and v.ndim == 2 and v.shape[1] % BLOCK[typ] == 0:
            chosen[name] = typ
    experts = {}
    for name in tensors:
        if tensor_class(name) == "experts":
            parts = name.split(".")
            i = parts.index("experts")
            experts.setdefault(".".join(parts[: i + 2]), []).append(name)
    for members in experts.values():
        if len({chosen.get(m) for m in members}) > 1:
            for m in members:
                chosen.pop(m, None)
    return chosen


@torch.no_grad()
def reference_logits(directory: Path, tokens: np.ndarray) -> np.ndarray:
    import transformers as tf

    arch = json.loads((directory / "config.json").read_text())["architectures"][0]
    model = getattr(tf, arch).from_pretrained(directory, dtype=torch.float32, attn_implementation="eager",
                                              experts_implementation="eager")
    model.eval()
    return model(input_ids=torch.tensor(tokens, dtype=torch.long)[None], use_cache=False).logits[0].numpy()


def base_model(out: Path) -> None:
    """The float32 Mixtral that mixtral_q4_k is made from: hidden and intermediate 256, so that every row of its
    attention and experts is a whole q4_k super-block; transformers' own initialisation."""
    import transformers as tf

    config = tf.MixtralConfig(hidden_size=256, intermediate_size=256, num_hidden_layers=1, num_attention_heads=4,
                              num_key_value_heads=2, head_dim=64, num_local_experts=4, num_experts_per_tok=2,
                              vocab_size=256, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
                              tie_word_embeddings=False)
    torch.manual_seed(4096)
    model = tf.MixtralForCausalLM(config).to(torch.float32)
    model.save_pretrained(out)


def make_model(ggml, source: Path, out: Path, t: str) -> None:
    """source (a float checkpoint directory) quantized to out as `moert quantize --type t` would."""
    tensors = load_file(str(source / "model.safetensors"))
    chosen = plan(tensors, t)
    stored, dequantized = {}, {}
    for k, v in tensors.items():
        if k in chosen:
            q = quantize(ggml, chosen[k], v.astype(np.float32))
            stored[k] = q
            dequantized[k] = dequantize(ggml, chosen[k], q, v.shape)
        else:
            stored[k] = v
            dequantized[k] = v
    config = json.loads((source / "config.json").read_text())
    section = config.setdefault("moert", {})
    section["quantization"] = {"version": 1, "tensors": dict(sorted(chosen.items())),
                               "notes": {"type": t, "made_by": "tools/make_quant_fixtures.py (libggml reference)"
                                         if t != "q3_0" else "tools/make_quant_fixtures.py (numpy, docs/model-format.md)"}}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for extra in ("generation_config.json",):
        if (source / extra).exists():
            shutil.copy(source / extra, out / extra)
    save_file(stored, str(out / "model.safetensors"), metadata={"format": "pt"})

    rng = np.random.default_rng(5)
    vocab = config["vocab_size"]
    tokens = rng.integers(0, vocab, 16).astype(np.int32)
    with tempfile.TemporaryDirectory() as tmp:
        plain = dict(config)
        plain.pop("moert")
        (Path(tmp) / "config.json").write_text(json.dumps(plain))
        save_file(dequantized, str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        logits = reference_logits(Path(tmp), tokens)
    save_file({"tokens": tokens, "logits": logits.astype(np.float32)}, str(out / "reference.safetensors"))
    print(f"{out}: {len(chosen)} of {len(tensors)} tensors quantized")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "Tests/fixtures")
    ap.add_argument("--ggml-lib", help="path of libggml-base.so (default: llama-cpp-python's)")
    args = ap.parse_args()
    ggml = load_ggml(args.ggml_lib)

    blocks = {}
    for key, x, types in (("values", block_values(), ("q8_0", "q4_0", "q3_0")),
                          ("values_256", block_values_256(), ("q4_k",))):
        blocks[key] = x
        for t in types:
            q = quantize(ggml, t, x)
            blocks[t] = q
            blocks[f"{t}_dequantized"] = dequantize(ggml, t, q, x.shape)
        print(f"{key}: {x.shape[0]} rows of {x.shape[1]}")
    (args.out / "quant").mkdir(exist_ok=True)
    save_file(blocks, str(args.out / "quant" / "blocks.safetensors"))
    print(f"{args.out / 'quant' / 'blocks.safetensors'}: {', '.join(sorted(blocks))}")

    for name, t in FIXTURES:
        make_model(ggml, args.out / name, args.out / f"{name}_{t}", t)
    with tempfile.TemporaryDirectory() as tmp:
        base_model(Path(tmp))
        make_model(ggml, Path(tmp), args.out / "mixtral_q4_k", "q4_k")


if __name__ == "__main__":
    main()
