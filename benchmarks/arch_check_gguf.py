#!/usr/bin/env python3
"""Faithfulness check of benchmarks/arch_gguf.py's files: llama.cpp's logits of each GGUF against transformers'
float32 logits of the Hugging Face model it came from, as ../shared/bench/check_gguf.py does for Mixtral.

    python benchmarks/arch_check_gguf.py [--preset small|tiny] [--archs ...] [--types f32,f16] [--tokens 160]
                                         [--tol 1e-3] [--work DIR]

One fixed prompt of --tokens ids (160 by default: past gpt-oss's 128-position window) goes through both; per
architecture and GGUF type it prints max |diff| over all positions and logits, that relative to max |logit|, the
median over positions of each position's max |diff|, and how many positions agree on the argmax (check_gguf.compare).
The reference is transformers with eager attention and the eager expert loop. f32 GGUFs run with an f32 KV cache and
must stay within --tol; f16 GGUFs are also compared with the HF weights rounded to f16 (norms, routers and
e_score_correction_bias kept f32, as the converter keeps them), which separates the rounding of the weights from
conversion errors. A few positions far off the median are routing near-ties that rounding flipped (random routers
have near-ties), not conversion errors. A model whose YaRN has truncate false (gpt-oss) is also compared with
transformers run with truncate true: llama.cpp rounds YaRN's correction range to whole dimensions (ggml's
rope_yarn_corr_dims floors and ceils it) and reads no truncate key, so its logits drift from transformers' by about
1e-3 there (routing near-ties then flip a few positions) and match the truncated reference; the check accepts that
and says so. Exit status 1 if an f32 GGUF matches neither.
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from arch_models import ARCHS, SIZES, default_work, model_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "bench"))
from check_gguf import compare, hf_logits, prompt_ids  # noqa: E402

GGML_F32 = 0
KEEP_F32 = ("norm.weight", "mlp.gate.weight", "mlp.router.weight", "e_score_correction_bias")


def llama_logits(path: Path, ids: list, kv_type: int = GGML_F32) -> np.ndarray:
    """llama.cpp's logits at every position of `ids` (one batch)."""
    from llama_cpp import Llama
    llm = Llama(model_path=str(path), n_ctx=max(64, len(ids)), n_batch=len(ids), n_ubatch=len(ids), n_threads=2,
                logits_all=True, type_k=kv_type, type_v=kv_type, verbose=False)
    llm.eval(ids)
    out = np.array(llm.scores[: len(ids)], dtype=np.float32)
    llm.close()
    return out


@torch.no_grad()
def round_to_f16(model) -> None:
    for name, p in model.named_parameters():
        if p.ndim >= 2 and not name.endswith(KEEP_F32):
            p.copy_(p.half().float())


def load(hf: Path, truncate: bool = None):
    """The transformers model of `hf` in float32 with eager attention and experts; `truncate` overrides YaRN's."""
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = AutoConfig.from_pretrained(hf)
    if truncate is not None:
        cfg.rope_parameters["truncate"] = truncate
    return AutoModelForCausalLM.from_pretrained(hf, config=cfg, dtype=torch.float32, attn_implementation="eager",
                                                experts_implementation="eager").eval()


def check(d: Path, types: list, ids: list, tol: float) -> bool:
    model = load(d / "hf")
    ref = hf_logits(model, ids)
    # llama.cpp's YaRN is always truncated: where the config says otherwise, also compare with that reference
    truncated = load(d / "hf", truncate=True) if model.config.rope_parameters.get("truncate") is False else None
    ref_t = hf_logits(truncated, ids) if truncated else None
    t = " with YaRN truncate true"
    print(f"\n{d.name} ({model.config.architectures[0]}), {len(ids)} tokens")
    print("| GGUF vs reference (KV cache f32) | max abs logit | max abs diff | relative | median over positions "
          "| argmax agree |")
    print("|---|---|---|---|---|---|")
    ok = True
    if "f32" in types:
        got = llama_logits(d / "model-f32.gguf", ids)
        rel = compare("f32 GGUF vs HF f32", ref, got)
        if truncated:
            rel_t = compare("f32 GGUF vs HF f32" + t, ref_t, got)
            if rel_t < tol:
                print("NOTE: llama.cpp matches transformers with YaRN's truncate set to true: it rounds the YaRN "
                      "correction range to whole dimensions whatever the config says")
            rel = min(rel, rel_t)
        ok = rel < tol
    if "f16" in types:
        got = llama_logits(d / "model-f16.gguf", ids)
        compare("f16 GGUF vs HF f32", ref, got)
        if truncated:
            compare("f16 GGUF vs HF f32" + t, ref_t, got)
        rounded = truncated or model
        round_to_f16(rounded)
        compare("f16 GGUF vs HF f16-rounded weights" + (t if truncated else ""), hf_logits(rounded, ids), got)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=SIZES, default="small")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--types", default="f32,f16")
    ap.add_argument("--tokens", type=int, default=160)
    ap.add_argument("--tol", type=float, default=1e-3, help="max relative diff allowed for f32")
    ap.add_argument("--work", type=Path, default=default_work())
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    ids = prompt_ids(args.tokens, SIZES[args.preset]["vocab"])
    failed = []
    for arch in args.archs.split(","):
        try:
            if not check(model_dir(args.work, arch, args.preset), args.types.split(","), ids, args.tol):
                failed.append(arch)
        except Exception as e:  # a GGUF llama.cpp cannot load: report it and go on with the others
            print(f"{arch}: {type(e).__name__}: {e}")
            failed.append(arch)
    print("FAIL: " + ", ".join(failed) if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
