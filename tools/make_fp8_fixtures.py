#!/usr/bin/env python3
"""Make the fixtures of checkpoints' own quantized formats: block-wise FP8 (DeepSeek-V3, Qwen3 FP8) and MXFP4
(gpt-oss experts), with references computed by transformers from the quantized data.

    python3 tools/make_fp8_fixtures.py [--out Tests/fixtures]

Written:

  qwen3_moe_fp8/     a tiny Qwen3-MoE checkpoint (hidden 48, expert width 40, heads of 12, 2 layers, 4 experts)
                     whose attention projections and routed experts are stored as the published FP8 checkpoints store
                     them: `X.weight` F8_E4M3 [out, in] and `X.weight_scale_inv` F32 [ceil(out / 16), ceil(in / 32)],
                     config.json's quantization_config {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme":
                     "dynamic", "weight_block_size": [16, 32], "modules_to_not_convert": [...]}. Block rows and columns
                     differ (a transposed scale grid would be caught), and most matrices end in partial blocks (48 and
                     40 are not multiples of 32, 40 and 24 not of 16). Router gates, norms, the embedding and the
                     output layer are BF16, as published. Quantization is block-wise max-abs, as transformers'
                     `Fp8Quantize` and DeepSeek's own script do it (scale_inv = amax / 448, weight = e4m3(w / scale_inv)),
                     extended to partial blocks by taking the max over the part that exists.
                     reference.safetensors has the layout of tools/make_fixtures.py (prompt, logits, greedy,
                     full_logits): transformers' Qwen3MoeForCausalLM in float32 with the weights dequantized by
                     transformers' own `_dequantize_fp8_weight` (integrations/finegrained_fp8.py) using the block size
                     of config.json. Loading with FineGrainedFP8Config(dequantize=True) is not used: its `Fp8Dequantize`
                     derives the block from the scale grid (rows // scale rows), which is wrong for partial blocks
                     (48 rows in blocks of 32 have 2 scale rows, which it reads as blocks of 24); the script checks
                     that this is still so and says so.
  mxfp4/             model.safetensors: the fused expert tensors of one gpt-oss MoE layer as published (prefix
                     "model.layers.0.mlp.experts.": gate_up_proj_blocks U8 [E, 2I, H / 32, 16], gate_up_proj_scales
                     U8 [E, 2I, H / 32], down_proj_blocks U8 [E, H, I / 32, 16], down_proj_scales U8 [E, H, I / 32];
                     E 3, H 64, I 32) with random nibbles and scales from 2^-127 to 2^123, config.json
                     {"quantization_config": {"quant_method": "mxfp4", ...}}; reference.safetensors: transformers'
                     `convert_moe_packed_tensors` (integrations/mxfp4.py) of both, `gate_up_proj` BF16 [E, H, 2I] and
                     `down_proj` BF16 [E, I, H], as GptOssExperts holds them.

Requires torch, transformers (5.x) and safetensors; imports tools/make_fixtures.py for the model and its checks.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402

FP8_MAX = 448.0
BLOCK = [16, 32]

FP8_FIXTURE = mf.Fixture(
    name="qwen3_moe_fp8",
    arch="Qwen3MoeForCausalLM",
    config_cls="Qwen3MoeConfig",
    config=dict(
        vocab_size=256,
        hidden_size=48,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,
        max_position_embeddings=512,
        hidden_act="silu",
        num_hidden_layers=2,
        intermediate_size=64,
        moe_intermediate_size=40,
        num_experts=4,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        attention_bias=False,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        use_sliding_window=False,
        tie_word_embeddings=False,
        bos_token_id=250,
        eos_token_id=251,
        pad_token_id=None,
    ),
    disk_dtype="bfloat16",
    seed=8000,
    prompt=[9, 140, 61, 222, 37, 105, 18],
    router_std=0.3,
    embed_std=0.5,
)

QUANTIZATION_CONFIG = {
    "quant_method": "fp8",
    "fmt": "e4m3",
    "activation_scheme": "dynamic",
    "weight_block_size": BLOCK,
    # As Qwen3's FP8 checkpoints list them: the output layer and the router gates stay unquantized.
    "modules_to_not_convert": ["lm_head", "model.layers.0.mlp.gate", "model.layers.1.mlp.gate"],
}


def is_quantized(name: str, t: torch.Tensor) -> bool:
    """The weights FP8 checkpoints store as F8_E4M3: attention projections and routed experts."""
    return t.ndim == 2 and name.endswith("_proj.weight") and ("self_attn." in name or ".experts." in name)


def quantize_fp8(w: torch.Tensor, block: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-wise max-abs e4m3 of w [rows, cols]: (F8 [rows, cols], scale_inv F32 [ceil(rows/b0), ceil(cols/b1)])."""
    rows, cols = w.shape
    b0, b1 = block
    r, c = math.ceil(rows / b0), math.ceil(cols / b1)
    padded = torch.zeros(r * b0, c * b1, dtype=torch.float32)
    padded[:rows, :cols] = w.float()
    tiles = padded.reshape(r, b0, c, b1)
    amax = tiles.abs().amax(dim=(1, 3))
    scales = torch.where(amax > 0, FP8_MAX / amax.clamp(min=1e-30), torch.ones_like(amax))
    inv = (1.0 / scales).to(torch.float32)
    q = (tiles * scales[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q.reshape(r * b0, c * b1)[:rows, :cols].contiguous(), inv.contiguous()


def dequantize_fp8(q: torch.Tensor, inv: torch.Tensor, block: list[int]) -> torch.Tensor:
    """transformers' own dequantization with the configured block size."""
    from transformers.integrations.finegrained_fp8 import _dequantize_fp8_weight

    return _dequantize_fp8_weight(q.clone(), inv.clone(), block, torch.float32)


def check_dequantize_loader(quantized: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> str:
    """What transformers' loading path with dequantize=True (Fp8Dequantize) makes of the partial blocks."""
    from transformers.integrations.finegrained_fp8 import Fp8Dequantize

    op = Fp8Dequantize(hf_quantizer=None)
    same = wrong = refused = 0
    for name, ref in reference.items():
        try:
            got = op._dequantize_one(quantized[name], quantized[name + "_scale_inv"], output_dtype=torch.float32)
        except ValueError:
            refused += 1
            continue
        if torch.equal(got, ref):
            same += 1
        else:
            wrong += 1
    return f"Fp8Dequantize: {same} matrices equal to _dequantize_fp8_weight, {wrong} different, {refused} refused"


def build_fp8(out_dir: Path, verbose: bool) -> None:
    from safetensors.torch import load_file, save_file

    fx = FP8_FIXTURE
    mf.check_prompt(fx)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for attempt in range(mf.MAX_SEED_TRIES):
            seed = fx.seed + attempt
            model = mf.build_model(fx, seed)  # float32 holding bf16 values
            shutil.rmtree(tmp / "float", ignore_errors=True)
            model.save_pretrained(tmp / "float")
            state = load_file(str(tmp / "float" / "model.safetensors"))
            quantized: dict[str, torch.Tensor] = {}
            dequantized: dict[str, torch.Tensor] = {}
            for name, t in state.items():
                if is_quantized(name, t):
                    q, inv = quantize_fp8(t, BLOCK)
                    quantized[name], quantized[name + "_scale_inv"] = q, inv
                    dequantized[name] = dequantize_fp8(q, inv, BLOCK)
                else:
                    quantized[name] = t.to(torch.bfloat16)
                    dequantized[name] = t.to(torch.bfloat16).to(torch.float32)
            # The reference model: the float32 checkpoint with the dequantized weights, loaded by transformers.
            save_file(dequantized, str(tmp / "float" / "model.safetensors"), metadata={"format": "pt"})
            ref_model = mf.load_model(fx, tmp / "float")
            res = mf.analyse(fx, ref_model)
            errs = mf.consistency_errors(res)
            if errs:
                raise RuntimeError(f"{fx.name} seed {seed}: " + "; ".join(errs))
            errs = mf.quality_errors(res)
            if verbose:
                print(f"  {fx.name} seed {seed}: {'ok' if not errs else '; '.join(errs)}")
            if not errs:
                break
        else:
            raise RuntimeError(f"{fx.name}: no acceptable seed")

        path = out_dir / fx.name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        for f in ("config.json", "generation_config.json"):
            shutil.copy(tmp / "float" / f, path / f)
        cfg = json.loads((path / "config.json").read_text())
        cfg["quantization_config"] = QUANTIZATION_CONFIG
        cfg["dtype"] = "bfloat16"
        (path / "config.json").write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")
        save_file(dict(sorted(quantized.items())), str(path / "model.safetensors"), metadata={"format": "pt"})
        mf.save_reference(path, res)

    partial = sum(1 for n, t in quantized.items() if n.endswith(".weight") and t.dtype == torch.float8_e4m3fn
                  and (t.shape[0] % BLOCK[0] or t.shape[1] % BLOCK[1]))
    total = sum(1 for t in quantized.values() if t.dtype == torch.float8_e4m3fn)
    print(f"{fx.name}: seed {seed}, {total} FP8 matrices ({partial} with partial blocks), greedy {res['greedy']}, "
          f"min router gap {min(res['prob_gaps']):.4f}, greedy margin {res['greedy_margin']:.4f}")
    print("  " + check_dequantize_loader(quantized, {n: t for n, t in dequantized.items() if n + "_scale_inv" in quantized}))


def build_mxfp4(out_dir: Path) -> None:
    from safetensors.torch import save_file
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    experts, hidden, inter = 3, 64, 32
    gen = torch.Generator().manual_seed(9000)
    tensors, reference = {}, {}
    prefix = "model.layers.0.mlp.experts."
    for proj, rows, cols in (("gate_up_proj", 2 * inter, hidden), ("down_proj", hidden, inter)):
        blocks = torch.randint(0, 256, (experts, rows, cols // 32, 16), generator=gen, dtype=torch.int32).to(torch.uint8)
        # Mostly the exponents of trained weights (2^-8 .. 2^2), and the extremes: 2^-127 (products are subnormal) and
        # 2^123 (6 * 2^123 is still finite).
        scales = torch.randint(119, 130, (experts, rows, cols // 32), generator=gen, dtype=torch.int32)
        scales[0, 0, 0], scales[1, 1, 0], scales[2, 3, 0] = 0, 250, 1
        scales = scales.to(torch.uint8)
        tensors[prefix + proj + "_blocks"], tensors[prefix + proj + "_scales"] = blocks, scales
        reference[proj] = convert_moe_packed_tensors(blocks.clone(), scales.clone(), dtype=torch.bfloat16)
    if list(reference["gate_up_proj"].shape) != [experts, hidden, 2 * inter] or \
            list(reference["down_proj"].shape) != [experts, inter, hidden]:
        raise RuntimeError(f"unexpected dequantized shapes {[list(t.shape) for t in reference.values()]}")
    if not all(torch.isfinite(t.float()).all() for t in reference.values()):
        raise RuntimeError("dequantized values are not all finite")
    path = out_dir / "mxfp4"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    config = {"architectures": ["GptOssForCausalLM"], "hidden_size": hidden, "intermediate_size": inter,
              "num_local_experts": experts,
              "quantization_config": {"quant_method": "mxfp4",
                                      "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                                 "model.embed_tokens", "lm_head"]}}
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    save_file({k: v.contiguous() for k, v in reference.items()}, str(path / "reference.safetensors"),
              metadata={"format": "pt"})
    print(f"mxfp4: {experts} experts, hidden {hidden}, width {inter}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=mf.DEFAULT_OUT, help="output directory (default: Tests/fixtures)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every seed that is tried")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    out = args.out.resolve()
    build_fp8(out, args.verbose)
    build_mxfp4(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
