#!/usr/bin/env python3
"""The GGUF of a random bench Mixtral from its Hugging Face directory, with numpy alone (no torch).

    python benchmarks/hf_to_gguf.py HF_DIR OUT.gguf [--type f16|f32]

../shared/bench/make_model.py writes both forms of a bench model from PyTorch; this writes the llama.cpp form of an
HF directory that already exists (for example one made elsewhere, or on a machine without torch), with the same
layout: llama.cpp's naming, q/k rows permuted for its rope, experts stacked into 3-D tensors, norms and the router
kept float32, a fake SentencePiece vocabulary. Reads per-expert (w1/w2/w3) or fused (gate_up_proj) expert tensors.
Needs numpy, safetensors and gguf.
"""
import argparse
import json
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half rows -> llama.cpp's interleaved rows (convert_hf_to_gguf's LlamaModel.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tensors(hf: Path, cfg: dict):
    sd = {}
    for f in sorted(hf.glob("*.safetensors")):
        sd.update(load_file(f))
    E, n_ff = cfg["num_local_experts"], cfg["intermediate_size"]
    yield "token_embd.weight", sd["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        yield b + "attn_norm.weight", sd[p + "input_layernorm.weight"]
        yield b + "attn_q.weight", permute(sd[p + "self_attn.q_proj.weight"], cfg["num_attention_heads"])
        yield b + "attn_k.weight", permute(sd[p + "self_attn.k_proj.weight"], cfg["num_key_value_heads"])
        yield b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"]
        yield b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"]
        yield b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"]
        moe = p + "block_sparse_moe." if p + "block_sparse_moe.gate.weight" in sd else p + "mlp."
        yield b + "ffn_gate_inp.weight", sd[moe + "gate.weight"]
        if moe + "experts.gate_up_proj" in sd:
            gate_up = sd[moe + "experts.gate_up_proj"]
            gate, up, down = gate_up[:, :n_ff], gate_up[:, n_ff:], sd[moe + "experts.down_proj"]
        else:
            stack = lambda w: np.stack([sd[f"{moe}experts.{e}.{w}.weight"] for e in range(E)])
            gate, up, down = stack("w1"), stack("w3"), stack("w2")
        yield b + "ffn_gate_exps.weight", gate
        yield b + "ffn_up_exps.weight", up
        yield b + "ffn_down_exps.weight", down
    yield "output_norm.weight", sd["model.norm.weight"]
    yield "output.weight", sd["lm_head.weight"]


def llama_quantize(source: Path, out: Path, kind: str) -> None:
    """llama.cpp's own quantization of the GGUF `source` to `kind` (q8_0, q4_0, ...; llama-cpp-python's
    llama_model_quantize), written to `out`."""
    import ctypes
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind.upper()}")
    params.nthread = 2
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"llama_model_quantize failed for {kind}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hf", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--type", choices=["f16", "f32"], default="f16")
    args = ap.parse_args()
    cfg = json.loads((args.hf / "config.json").read_text())
    w = gguf.GGUFWriter(str(args.out), "llama")
    w.add_name(args.hf.name)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    rope = cfg.get("rope_parameters", {}).get("rope_theta", cfg.get("rope_theta", 1e6))
    w.add_rope_freq_base(float(rope))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_expert_count(cfg["num_local_experts"])
    w.add_expert_used_count(cfg["num_experts_per_tok"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_rope_dimension_count(cfg["hidden_size"] // cfg["num_attention_heads"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if args.type == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    n_vocab = cfg["vocab_size"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    tokens += [f"\u2581t{i}" for i in range(len(tokens), n_vocab)]
    types += [gguf.TokenType.NORMAL] * (n_vocab - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(n_vocab)])
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    for name, a in tensors(args.hf, cfg):
        keep_f32 = a.ndim <= 1 or name.endswith(("_norm.weight", "ffn_gate_inp.weight"))
        a = a.astype(np.float32)
        w.add_tensor(name, a if args.type == "f32" or keep_f32 else a.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", args.out)


if __name__ == "__main__":
    main()
