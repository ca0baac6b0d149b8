#!/usr/bin/env python3
"""Build the seed corpora of the fuzz targets from the committed fixtures in Tests/fixtures.

    corpus/safetensors/   shrunken copies of each architecture's model.safetensors, plus small edge-case files
    corpus/config/        every fixture's config.json, a standalone moert.json and a shard index
    corpus/loader/        config.json + model.safetensors (+ moert.json) of each shrunken model (one of them stored
                          as block-wise FP8) and of the DeepSeek, GLM-4.5 and gpt-oss fixtures, joined by the
                          separator FuzzLoader.swift splits on
    corpus/jinja/         every real chat template of fixtures/chat (some followed by a conversation, joined by the
                          separator FuzzJinja.swift splits on), the Jinja semantics probes, Command-R's config

A shrunken model keeps each fixture's tensor names, dtypes and architecture but slices every tensor down to
vocab 16, hidden 8, 2 query heads and 1 key/value head of width 4, intermediate widths 4, 3 experts and one
MoE layer (two layers for qwen2_moe, whose second layer is dense), so that the loader target runs thousands of
loads a second. Needs numpy only. Run from anywhere:

    python3 Tests/fuzz/make_corpus.py
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"
CORPUS = HERE / "corpus"
SEPARATOR = b"\n#moert-fuzz-file#\n"

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I32": np.int32}

# Shrunken sizes.
V, H, NH, NKV, HD, I, E = 16, 8, 2, 1, 4, 4, 3
CONTEXT = 32
LAYERS = {"mixtral": 1, "mixtral_bf16": 1, "qwen2_moe": 2, "qwen3_moe": 1, "olmoe": 1}


def read_safetensors(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    return read_safetensors_bytes(path.read_bytes())


def read_safetensors_bytes(raw: bytes) -> dict[str, tuple[str, np.ndarray]]:
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        data = np.frombuffer(raw[8 + n + begin : 8 + n + end], dtype=DTYPES[entry["dtype"]])
        out[name] = (entry["dtype"], data.reshape(entry["shape"]))
    return out


def safetensors_bytes(tensors: dict[str, tuple[str, np.ndarray]], metadata: dict | None = None) -> bytes:
    header: dict = {"__metadata__": metadata} if metadata else {}
    data = b""
    for name, (dtype, array) in tensors.items():
        blob = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned, as the safetensors writer does
    return struct.pack("<Q", len(text)) + text + data


def target_shape(name: str, config: dict) -> list[int] | None:
    """The shrunken shape of tensor `name`, or None when the tensor is dropped."""
    m = re.match(r"model\.layers\.(\d+)\.", name)
    if m and int(m.group(1)) >= config["num_hidden_layers"]:
        return None
    m = re.search(r"\.experts\.(\d+)\.", name)
    if m and int(m.group(1)) >= E:
        return None
    q, kv = NH * HD, NKV * HD
    rules = [
        (r"(embed_tokens|lm_head)\.weight$", [V, H]),
        (r"(input_layernorm|post_attention_layernorm|model\.norm)\.weight$", [H]),
        (r"q_proj\.weight$", [q, H]), (r"q_proj\.bias$", [q]),
        (r"[kv]_proj\.weight$", [kv, H]), (r"[kv]_proj\.bias$", [kv]),
        (r"o_proj\.weight$", [H, q]),
        (r"q_norm\.weight$", [HD] if config["model_type"] == "qwen3_moe" else [q]),
        (r"k_norm\.weight$", [HD] if config["model_type"] == "qwen3_moe" else [kv]),
        (r"shared_expert_gate\.weight$", [1, H]),
        (r"\.gate\.weight$", [E, H]),
        (r"(w1|w3|gate_proj|up_proj)\.weight$", [I, H]),
        (r"(w2|down_proj)\.weight$", [H, I]),
    ]
    for pattern, shape in rules:
        if re.search(pattern, name):
            return shape
    raise ValueError(f"no shrink rule for {name}")


def shrink(fixture: str) -> tuple[bytes, bytes]:
    """config.json and model.safetensors bytes of the shrunken `fixture`."""
    config = json.loads((FIXTURES / fixture / "config.json").read_text())
    config.update(vocab_size=V, hidden_size=H, num_attention_heads=NH, num_key_value_heads=NKV, head_dim=HD,
                  intermediate_size=I, num_hidden_layers=LAYERS[fixture], max_position_embeddings=CONTEXT,
                  num_experts_per_tok=2, bos_token_id=1, eos_token_id=2)
    if "layer_types" in config:  # one entry per layer, as transformers' validate_layer_type requires
        config["layer_types"] = config["layer_types"][: LAYERS[fixture]]
    for key in ("moe_intermediate_size", "shared_expert_intermediate_size"):
        if key in config:
            config[key] = I
    config["num_local_experts" if "num_local_experts" in config else "num_experts"] = E
    tensors = {}
    for name, (dtype, array) in sorted(read_safetensors(FIXTURES / fixture / "model.safetensors").items()):
        shape = target_shape(name, config)
        if shape is not None:
            tensors[name] = (dtype, array[tuple(slice(0, d) for d in shape)])
    return json.dumps(config, indent=2).encode(), safetensors_bytes(tensors, {"format": "pt"})


def edge_safetensors() -> dict[str, bytes]:
    """Small hand-made files: empty header, metadata only, scalar, zero-size, integer and half tensors."""
    one = np.arange(6, dtype=np.float32).reshape(2, 3)
    return {
        "empty_header": safetensors_bytes({}),
        "metadata_only": safetensors_bytes({}, {"format": "pt", "note": "x"}),
        "scalar_f32": safetensors_bytes({"s": ("F32", np.array(1.5, dtype=np.float32))}),
        "zero_dim": safetensors_bytes({"z": ("F32", np.zeros((0, 4), dtype=np.float32))}),
        "mixed_dtypes": safetensors_bytes({
            "a": ("F32", one), "b": ("F16", one.astype(np.float16)),
            "c": ("BF16", (one.view(np.uint32) >> 16).astype(np.uint16)), "d": ("I32", np.arange(4, dtype=np.int32))}),
    }


def e4m3_table() -> np.ndarray:
    """The value of each e4m3fn byte (NaN for 0x7f and 0xff)."""
    values = np.empty(256, dtype=np.float64)
    for b in range(256):
        e, m = (b >> 3) & 15, b & 7
        v = m * 2.0 ** -9 if e == 0 else (8 + m) * 2.0 ** (e - 10)
        values[b] = np.nan if (e, m) == (15, 7) else (-v if b & 0x80 else v)
    return values


def fp8_shrunk() -> tuple[bytes, bytes]:
    """The shrunken qwen3_moe with its projections as F8_E4M3 and float32 scales per block of 4 x 8 (partial edges)."""
    config_bytes, weights = shrink("qwen3_moe")
    config = json.loads(config_bytes)
    block = [4, 8]
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": block, "modules_to_not_convert": ["lm_head"]}
    table = e4m3_table()
    finite = np.where(np.isnan(table), np.inf, table)
    tensors = {}
    for name, (dtype, array) in sorted(read_safetensors_bytes(weights).items()):
        if not (array.ndim == 2 and name.endswith("_proj.weight")):
            tensors[name] = (dtype, array)
            continue
        rows, cols = array.shape
        r, c = -(-rows // block[0]), -(-cols // block[1])
        scales = np.ones((r, c), dtype=np.float32)
        q = np.zeros(array.shape, dtype=np.uint8)
        for i in range(r):
            for j in range(c):
                tile = array[i * block[0]:(i + 1) * block[0], j * block[1]:(j + 1) * block[1]].astype(np.float64)
                amax = np.abs(tile).max()
                scales[i, j] = amax / 448 if amax > 0 else 1
                q[i * block[0]:(i + 1) * block[0], j * block[1]:(j + 1) * block[1]] = \
                    np.abs(tile[..., None] / scales[i, j] - finite).argmin(axis=-1)
        tensors[name] = ("F8_E4M3", q)
        tensors[name + "_scale_inv"] = ("F32", scales)
    return json.dumps(config, indent=2).encode(), safetensors_bytes(tensors, {"format": "pt"})


def main() -> None:
    # Only the corpora made here: the other targets' seeds (tokenizer, kernels, ...) come from elsewhere.
    for d in ("safetensors", "config", "loader", "jinja"):
        shutil.rmtree(CORPUS / d, ignore_errors=True)
        (CORPUS / d).mkdir(parents=True)

    for fixture in LAYERS:
        config, weights = shrink(fixture)
        (CORPUS / "safetensors" / f"{fixture}.safetensors").write_bytes(weights)
        (CORPUS / "config" / f"tiny_{fixture}.json").write_bytes(config)
        (CORPUS / "loader" / fixture).write_bytes(config + SEPARATOR + weights)
    # Mixtral with a moert.json overlay: per-layer router parameters and explicit expert groups.
    config, weights = shrink("mixtral")
    overlay = {"format_version": 1, "router": {"kind": "topk", "params": {"top_k": 1, "normalize": False}},
               "experts": [{"kind": "ffn", "count": E}], "layers": {"0": {"router": {"kind": "topk"}}}}
    overlay_bytes = json.dumps(overlay).encode()
    (CORPUS / "loader" / "mixtral_overlay").write_bytes(config + SEPARATOR + weights + SEPARATOR + overlay_bytes)
    (CORPUS / "config" / "moert_overlay.json").write_bytes(overlay_bytes)

    # Checkpoints with q8_0/q4_0/q3_0/q4_k weights (tools/make_quant_fixtures.py): U8 tensors named in the
    # quantization entry.
    for fixture in ("mixtral_q4_0", "qwen3_moe_q8_0", "mixtral_q3_0", "mixtral_q4_k"):
        config = (FIXTURES / fixture / "config.json").read_bytes()
        weights = (FIXTURES / fixture / "model.safetensors").read_bytes()
        (CORPUS / "loader" / fixture).write_bytes(config + SEPARATOR + weights)

    # The architectures with their own attention, routing or experts (multi-head latent attention, DeepSeek-V3 and
    # GLM-4.5 routing, gpt-oss's sinks, windows and fused or MXFP4 experts), whole: their fixtures are small.
    for fixture in ("deepseek_v2_lite", "deepseek_v3", "glm4_moe", "gpt_oss", "gpt_oss_mxfp4"):
        config = (FIXTURES / fixture / "config.json").read_bytes()
        weights = (FIXTURES / fixture / "model.safetensors").read_bytes()
        (CORPUS / "loader" / fixture).write_bytes(config + SEPARATOR + weights)

    # Checkpoints' own formats (tools/make_fp8_fixtures.py): the shrunken Qwen3-MoE as block-wise FP8, and the
    # MXFP4 expert tensors of gpt-oss.
    config, weights = fp8_shrunk()
    (CORPUS / "loader" / "qwen3_moe_fp8").write_bytes(config + SEPARATOR + weights)
    (CORPUS / "safetensors" / "qwen3_moe_fp8.safetensors").write_bytes(weights)
    shutil.copy(FIXTURES / "mxfp4" / "model.safetensors", CORPUS / "safetensors" / "mxfp4.safetensors")

    for name, data in edge_safetensors().items():
        (CORPUS / "safetensors" / f"{name}.safetensors").write_bytes(data)
    for config in sorted(FIXTURES.glob("**/config.json")):
        name = str(config.parent.relative_to(FIXTURES)).replace("/", "_")
        shutil.copy(config, CORPUS / "config" / f"{name}.json")
    shutil.copy(FIXTURES / "mixtral_sharded" / "model.safetensors.index.json", CORPUS / "config" / "shard_index.json")
    jinja_seeds()


def jinja_seeds() -> None:
    chat = FIXTURES / "chat"
    conversations = {}
    for line in (chat / "cases.jsonl").read_text(encoding="utf-8").split("\n")[:-1]:
        case = json.loads(line)
        conversations.setdefault(case["template"], case["messages"])
    for template in sorted((chat / "templates").glob("*.jinja")):
        source = template.read_bytes()
        (CORPUS / "jinja" / template.stem).write_bytes(source)
        if template.stem in conversations:
            messages = conversations[template.stem].encode()
            (CORPUS / "jinja" / f"{template.stem}_messages").write_bytes(source + b"\n#moert-fuzz-messages#\n" + messages)
    for line in (chat / "jinja_cases.jsonl").read_text(encoding="utf-8").split("\n")[:-1]:
        case = json.loads(line)
        (CORPUS / "jinja" / f"probe_{case['name']}").write_bytes(case["template"].encode())
    shutil.copy(chat / "command-r" / "tokenizer_config.json", CORPUS / "jinja" / "command_r_config.json")


if __name__ == "__main__":
    main()
