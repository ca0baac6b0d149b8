#!/usr/bin/env python3
"""Random-weight DeepSeek-V2, DeepSeek-V3, GLM-4.5 MoE and gpt-oss models at the size of ../shared/bench's presets,
in Hugging Face form, for benchmarks/arch_compare.py.

    python benchmarks/arch_models.py [--preset small|tiny] [--archs deepseek_v2,deepseek_v3,glm4_moe,gpt_oss]
                                     [--work DIR] [--seed 0]

Writes DIR/<arch>-<preset>/hf/ (config.json, float32 model.safetensors, the Llama SentencePiece tokenizer of
../shared/tokenizers/llama-spm), hf-f16/ (a float16 copy, compare.ensure_f16) and costs.json. DIR defaults to
$BENCH_WORK or ~/.cache/moert-bench. Needs torch and transformers 5.25 (the peer venv of ../shared/bench has both).

Shared by every architecture, as the Mixtral presets of ../shared/bench/make_model.py: hidden 512, 8 layers, 8 routed
experts with top-2, expert ffn 1408, vocabulary 32000 (bos 1, eos 2), RMSNorm eps 1e-5 (1e-6 for DeepSeek, as its
releases), untied output layer, float32. Weights ~ N(0, 0.02) (biases and e_score_correction_bias too), RMSNorm gains
~ N(1, 0.1), so that a norm mix-up shows; gpt-oss's attention sinks ~ N(0, 1), so that they visibly move the softmax.
Where a layer is dense (first_k_dense_replace) its ffn is (top-k + shared experts) x 1408 = 4224 wide, the width of
the experts a MoE layer runs per token. Per architecture, scaled from the released models:

- deepseek_v2 (like DeepSeek-V2-Lite): multi-head latent attention with 8 heads, no query compression
  (q_lora_rank null), kv_lora_rank 128, qk_nope_head_dim 64, qk_rope_head_dim 32, v_head_dim 64; YaRN as V2-Lite
  (factor 40 over 4096 positions, mscale = mscale_all_dim = 0.707, beta 32/1, theta 10000); 1 shared expert,
  first_k_dense_replace 1; softmax router with greedy top-2 (topk_method greedy, scoring_func softmax),
  norm_topk_prob false, routed_scaling_factor 1.
- deepseek_v3 (like DeepSeek-V3): the same attention sizes with query compression (q_lora_rank 256); rope_interleave;
  YaRN (factor 40 over 4096, mscale = mscale_all_dim = 1, beta 32/1, theta 10000); 1 shared expert,
  first_k_dense_replace 1; sigmoid router with e_score_correction_bias for selection (topk_method noaux_tc,
  scoring_func sigmoid), n_group 4 / topk_group 2 (4 groups of 2 experts, the best 2 groups by the sum of their two
  best scores), norm_topk_prob true, routed_scaling_factor 2.5; no multi-token-prediction layers
  (num_nextn_predict_layers 0).
- glm4_moe (like GLM-4.5): GQA with 8 query / 4 kv heads of 64, partial_rotary_factor 0.5 (rope on 32 of 64 dims),
  use_qk_norm, attention_bias (q/k/v), theta 1e6; 1 shared expert, first_k_dense_replace 1; sigmoid router with
  e_score_correction_bias, n_group 1 / topk_group 1, norm_topk_prob true, routed_scaling_factor 2.5; no
  multi-token-prediction layers.
- gpt_oss (like gpt-oss-20b): GQA with 8 query / 4 kv heads of 64, attention biases, a learned sink per head, layers
  alternating sliding-window (128) and full attention, sliding first; YaRN (factor 32 over 4096, beta 32/1, theta
  150000, truncate false); router with bias, softmax over the selected top-2; fused experts with biases and the
  clamped SwiGLU (alpha 1.702, limit 7.0).

--preset tiny is the same with hidden 64, 4 layers, 4 heads (kv 2) of 16, expert ffn 96 and the attention ranks
scaled down: for checking plumbing, not for figures.

costs.json records, from the model's own tensors: the parameter count (total, and per kind), the weight bytes one
decoded token reads (every attention, norm and router weight; of each MoE layer the top-k routed experts and the
shared experts; of each dense layer its whole ffn; the output layer; one embedding row) for float32 and for float16
storage (norms, routers and e_score_correction_bias kept float32, as in llama.cpp's f16 GGUF), the FLOPs per token of
a 512-token prefill, and the KV cache values per token and layer. The keys bytes_f32, bytes_f16, lm_head_f16 and
prefill_flops are those of limits.preset_costs, so that compare.report_limits computes the rooflines from them.
"""
import argparse
import json
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO.parent / "shared" / "tokenizers" / "llama-spm"
ARCHS = ("deepseek_v2", "deepseek_v3", "glm4_moe", "gpt_oss")
N_PREFILL = 512

# hidden, layers, routed experts, top-k, expert ffn, heads, kv heads, vocabulary; MLA ranks and head sizes
SIZES = {
    "small": dict(hidden=512, layers=8, experts=8, top_k=2, ffn=1408, heads=8, kv_heads=4, vocab=32000,
                  kv_lora_rank=128, q_lora_rank=256, nope=64, rope=32, v=64),
    "tiny": dict(hidden=64, layers=4, experts=8, top_k=2, ffn=96, heads=4, kv_heads=2, vocab=32000,
                 kv_lora_rank=32, q_lora_rank=48, nope=16, rope=8, v=16),
}


def default_work() -> Path:
    return Path(os.environ.get("BENCH_WORK", Path.home() / ".cache/moert-bench")).resolve()


def model_dir(work: Path, arch: str, preset: str) -> Path:
    return work / f"{arch}-{preset}"


def common(s: dict, n_shared: int) -> dict:
    return dict(hidden_size=s["hidden"], num_hidden_layers=s["layers"], vocab_size=s["vocab"],
                num_attention_heads=s["heads"], num_experts_per_tok=s["top_k"], moe_intermediate_size=s["ffn"],
                intermediate_size=(s["top_k"] + n_shared) * s["ffn"], tie_word_embeddings=False,
                bos_token_id=1, eos_token_id=2, pad_token_id=None)


def make_config(arch: str, preset: str):
    import transformers
    s = SIZES[preset]
    yarn = dict(rope_type="yarn", factor=40.0, original_max_position_embeddings=4096, beta_fast=32.0, beta_slow=1.0)
    mla = dict(kv_lora_rank=s["kv_lora_rank"], qk_nope_head_dim=s["nope"], qk_rope_head_dim=s["rope"],
               v_head_dim=s["v"], num_key_value_heads=s["heads"], n_routed_experts=s["experts"], n_shared_experts=1,
               first_k_dense_replace=1, rms_norm_eps=1e-6, max_position_embeddings=163840, attention_bias=False)
    if arch == "deepseek_v2":
        return transformers.DeepseekV2Config(
            **common(s, 1), **mla, q_lora_rank=None, topk_method="greedy", scoring_func="softmax",
            norm_topk_prob=False, routed_scaling_factor=1.0, n_group=None, topk_group=None,
            rope_parameters=dict(yarn, rope_theta=10000.0, mscale=0.707, mscale_all_dim=0.707))
    if arch == "deepseek_v3":
        return transformers.DeepseekV3Config(
            **common(s, 1), **mla, q_lora_rank=s["q_lora_rank"], topk_method="noaux_tc", scoring_func="sigmoid",
            n_group=4, topk_group=2, norm_topk_prob=True, routed_scaling_factor=2.5, rope_interleave=True,
            num_nextn_predict_layers=0, rope_parameters=dict(yarn, rope_theta=10000.0, mscale=1.0, mscale_all_dim=1.0))
    if arch == "glm4_moe":
        return transformers.Glm4MoeConfig(
            **common(s, 1), num_key_value_heads=s["kv_heads"], head_dim=s["hidden"] // s["heads"],
            n_routed_experts=s["experts"], n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1,
            norm_topk_prob=True, routed_scaling_factor=2.5, use_qk_norm=True, attention_bias=True,
            rms_norm_eps=1e-5, max_position_embeddings=131072, num_nextn_predict_layers=0,
            rope_parameters=dict(rope_type="default", rope_theta=1e6, partial_rotary_factor=0.5))
    if arch == "gpt_oss":
        c = common(s, 0)
        del c["moe_intermediate_size"]
        c["intermediate_size"] = s["ffn"]
        return transformers.GptOssConfig(
            **c, num_key_value_heads=s["kv_heads"], head_dim=s["hidden"] // s["heads"],
            num_local_experts=s["experts"], sliding_window=128, attention_bias=True, rms_norm_eps=1e-5,
            layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(s["layers"])],
            swiglu_limit=7.0, max_position_embeddings=131072,
            rope_parameters=dict(rope_type="yarn", factor=32.0, original_max_position_embeddings=4096,
                                 beta_fast=32.0, beta_slow=1.0, truncate=False, rope_theta=150000.0))
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")


def random_model(cfg, seed: int):
    """The model of `cfg` with every parameter and the e_score_correction_bias buffers drawn from `seed`."""
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).float().eval()
    g = torch.Generator().manual_seed(seed)
    tensors = dict(model.named_parameters())
    tensors.update((n, b) for n, b in model.named_buffers() if n.endswith("e_score_correction_bias"))
    with torch.no_grad():
        for name, p in sorted(tensors.items()):
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("sinks"):
                p.copy_(noise)
            else:
                p.copy_(0.02 * noise)
    return model


def weight_kind(name: str) -> str:
    """What a tensor is, for the costs: embedding, lm_head, experts (routed, one slice per expert), router (gate
    weights and biases, e_score_correction_bias), norm, or dense (everything else: attention, shared experts,
    dense-layer ffn)."""
    if "embed_tokens" in name:
        return "embedding"
    if name.startswith("lm_head"):
        return "lm_head"
    if ".mlp.experts." in name:
        return "experts"
    if ".mlp.gate." in name or ".mlp.router." in name:
        return "router"
    if name.endswith("norm.weight"):
        return "norm"
    return "dense"


def attention_flops(cfg, n: int) -> float:
    """FLOPs per token and layer of the attention scores and values of an n-token causal prefill (mean over the
    prompt's positions of the keys each one sees; a sliding window caps them)."""
    heads = cfg.num_attention_heads
    if hasattr(cfg, "kv_lora_rank"):
        dk, dv = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim, cfg.v_head_dim
    else:
        dk = dv = cfg.head_dim
    full = (n + 1) / 2
    if getattr(cfg, "layer_types", None) and getattr(cfg, "sliding_window", None):
        w = cfg.sliding_window
        windowed = sum(min(i + 1, w) for i in range(n)) / n
        visible = [windowed if t == "sliding_attention" else full for t in cfg.layer_types]
    else:
        visible = [full] * cfg.num_hidden_layers
    return sum(2 * heads * (dk + dv) * v for v in visible)


def costs(model) -> dict:
    """Parameter counts and the per-token weight bytes and prefill FLOPs of `model` (see the module docstring)."""
    cfg = model.config
    experts = getattr(cfg, "n_routed_experts", None) or cfg.num_local_experts
    share = cfg.num_experts_per_tok / experts
    tensors = dict(model.named_parameters())
    tensors.update((n, b) for n, b in model.named_buffers() if n.endswith("e_score_correction_bias"))
    params = {}
    touched = {}
    for name, t in tensors.items():
        kind = weight_kind(name)
        params[kind] = params.get(kind, 0) + t.numel()
        used = {"experts": t.numel() * share, "embedding": cfg.hidden_size}.get(kind, t.numel())
        touched.setdefault(kind, [0, 0])
        touched[kind][0 if t.ndim >= 2 and kind != "router" else 1] += used  # [16-bit-able, always f32]
    per_kind = {k: dict(f32=4 * (a + b), f16=2 * a + 4 * b) for k, (a, b) in touched.items()}
    flops = sum(2 * a for k, (a, b) in touched.items() if k not in ("embedding", "lm_head"))
    prefill = flops + attention_flops(cfg, N_PREFILL) + 2 * cfg.vocab_size * cfg.hidden_size / N_PREFILL
    if hasattr(cfg, "kv_lora_rank"):
        kv_values = cfg.kv_lora_rank + cfg.qk_rope_head_dim
    else:
        kv_values = 2 * cfg.num_key_value_heads * cfg.head_dim
    return dict(architecture=cfg.architectures[0] if cfg.architectures else type(model).__name__,
                params=sum(params.values()), params_by_kind=params,
                bytes_f32=sum(v["f32"] for v in per_kind.values()), bytes_f16=sum(v["f16"] for v in per_kind.values()),
                lm_head_f16=per_kind["lm_head"]["f16"], bytes_by_kind=per_kind, prefill_flops=prefill,
                kv_values_per_token_and_layer=kv_values)


def write(arch: str, preset: str, work: Path, seed: int, tokenizer: Path = TOKENIZER) -> Path:
    """Writes one model (hf/, hf-f16/, costs.json) and returns its directory."""
    import compare
    d = model_dir(work, arch, preset)
    hf = d / "hf"
    hf.mkdir(parents=True, exist_ok=True)
    model = random_model(make_config(arch, preset), seed)
    model.save_pretrained(hf)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer / f, hf / f)
    c = costs(model)
    (d / "costs.json").write_text(json.dumps(c, indent=1) + "\n")
    shutil.rmtree(d / "hf-f16", ignore_errors=True)                 # a copy of the previous weights, if any
    compare.ensure_f16(hf)
    print(f"{d}: {c['params'] / 1e6:.1f} M parameters, {c['bytes_f32'] / 1e6:.1f} MB (f32) / "
          f"{c['bytes_f16'] / 1e6:.1f} MB (f16) read per decoded token")
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=SIZES, default="small")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--work", type=Path, default=default_work())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", type=Path, default=TOKENIZER, help="folder of tokenizer.json and tokenizer_config.json")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    for arch in args.archs.split(","):
        write(arch, args.preset, args.work, args.seed, args.tokenizer)


if __name__ == "__main__":
    main()
