#!/usr/bin/env python3
"""Make Tests/fixtures/scmoe/reference.json: SCMoE self-contrast greedy decoding ("Unchosen Experts Can Contribute
Too", Shi et al., NeurIPS 2024; DavidFanzz/SCMoE) with transformers, for moert's tests to compare with.

    python3 tools/make_scmoe_fixtures.py [--out Tests/fixtures/scmoe]

Needs `pip install torch transformers`. For each case (a model directory, a prompt, the weak rank r, beta, alpha):
- strong pass: the model as transformers runs it (its top-k routing);
- weak pass: a second copy whose every MoE router keeps only the expert at 0-based rank r of the softmax
  probabilities (sorted descending), weighted as the model renormalises (Mixtral: weight 1) — the "rank-r routing"
  of the SCMoE code;
- each pass has its own KV cache; at every step z_s, z_w are the two last-position logits, cutoff = log(alpha) +
  max z_s, score = (1 + beta) z_s - beta z_w where z_s >= cutoff, else -inf; the next token is argmax(score) and is
  fed to both passes. EOS is not special (the tests generate with ignore_eos).
Written per case: the model directory relative to Tests/fixtures, the prompt, the SCMoE tokens, plain greedy tokens (so a test can see that SCMoE changes something),
and the smallest gap between the best and second-best score over the steps (cases are chosen with a clear gap).
"""
import argparse
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    dict(model="Tests/fixtures/mixtral", prompts=[[17, 200, 45, 99, 3], [5, 77, 140, 33, 210], [12, 64, 7, 180, 33],
                                                  [100, 8, 255, 42, 190]], weak_rank=2, beta=0.5, alpha=0.1, steps=12),
    dict(model="Tests/fixtures/mixtral", prompts=[[9, 30, 111, 250, 6], [21, 90, 140, 7, 66]], weak_rank=1, beta=1.0,
         alpha=0.3, steps=12),
]
MIN_GAP = 1e-3


def rank_router(gate, rank: int):
    """A forward for transformers' MixtralTopKRouter keeping only the expert at `rank`, renormalised (weight 1)."""

    def forward(hidden_states):
        hidden_states = hidden_states.reshape(-1, gate.hidden_dim)
        logits = torch.nn.functional.linear(hidden_states, gate.weight)
        probs = torch.softmax(logits.float(), dim=-1)
        values, indices = torch.sort(probs, dim=-1, descending=True, stable=True)
        kept, index = values[:, rank:rank + 1], indices[:, rank:rank + 1]
        return logits, kept / kept.sum(dim=-1, keepdim=True), index

    return forward


@torch.no_grad()
def decode(strong, weak, prompt, steps, beta, alpha):
    """SCMoE greedy (weak given) or plain greedy (weak None); returns (tokens, smallest best-vs-second gap)."""
    from transformers import DynamicCache
    caches = [DynamicCache(config=strong.config), DynamicCache(config=strong.config)]
    ids = torch.tensor([prompt])
    tokens, gap = [], float("inf")
    for _ in range(steps):
        zs = strong(input_ids=ids, cache=caches[0], use_cache=True).logits[0, -1].double()
        score = zs
        if weak is not None:
            zw = weak(input_ids=ids, cache=caches[1], use_cache=True).logits[0, -1].double()
            cutoff = torch.log(torch.tensor(alpha, dtype=torch.float64)) + zs.max()
            score = torch.where(zs >= cutoff, (1 + beta) * zs - beta * zw, torch.tensor(-float("inf"), dtype=torch.float64))
        top = torch.topk(score, 2)
        gap = min(gap, float(top.values[0] - top.values[1]))
        token = int(top.indices[0])
        tokens.append(token)
        ids = torch.tensor([[token]])
    return tokens, gap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "Tests" / "fixtures" / "scmoe")
    args = ap.parse_args()
    import transformers as tf
    torch.set_num_threads(1)
    cases = []
    for case in CASES:
        directory = ROOT / case["model"]
        load = lambda: tf.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32,  # noqa: E731
                                                              attn_implementation="eager").eval()
        strong, weak = load(), load()
        for layer in weak.model.layers:
            layer.mlp.gate.forward = rank_router(layer.mlp.gate, case["weak_rank"])
        for prompt in case["prompts"]:
            tokens, gap = decode(strong, weak, prompt, case["steps"], case["beta"], case["alpha"])
            greedy, _ = decode(strong, None, prompt, case["steps"], 0, 1)
            print(case["model"], prompt, tokens, greedy, f"gap {gap:.3g}")
            if gap < MIN_GAP or tokens == greedy:
                continue
            fixture = str(Path("../..", case["model"]).as_posix()).replace("../../Tests/fixtures/", "")
            cases.append(dict(fixture=fixture, prompt=prompt, weak_rank=case["weak_rank"], beta=case["beta"],
                              alpha=case["alpha"], tokens=tokens, greedy=greedy, min_gap=gap))
            break
        else:
            raise SystemExit(f"no prompt of {case['model']} gives a clear SCMoE continuation that differs from greedy")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reference.json").write_text(json.dumps(dict(cases=cases), indent=1) + "\n")


if __name__ == "__main__":
    main()
