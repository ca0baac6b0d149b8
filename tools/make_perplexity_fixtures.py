#!/usr/bin/env python3
"""Make Tests/fixtures/perplexity/reference.json: transformers' perplexity of tiny fixture models and of models/demo on
short texts and on the demo's held-out split (models/kjv-test.txt), with the windows of `moert perplexity`.

    python tools/make_perplexity_fixtures.py [--out Tests/fixtures/perplexity]

Needs `pip install torch transformers tokenizers`. A case's text (genesis.txt: Genesis 1:1-13, King James Version,
public domain; or the held-out split) is tokenized by the fixture's tokenizer.json without special tokens and cut into consecutive windows of
`ctx` tokens (the last may be shorter); each window is one forward pass from an empty cache, and every token after the
first of its window is scored: perplexity = exp(sum of -log p(token | the window's tokens before it) / tokens scored),
in float64 from transformers' float32 logits. With a stride, windows start every `stride` tokens and each scores only
the tokens after the previous window's end (the sliding-window evaluation of the transformers perplexity guide).
Written per (fixture, ctx, stride): the token count, the tokens scored, the summed negative log-likelihood and the
perplexity.
"""
import argparse
import json
import math
from pathlib import Path

import torch
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1] / "Tests" / "fixtures"
# (model directory relative to Tests/fixtures, ctx, stride, text relative to Tests/fixtures/perplexity)
CASES = [("mixtral", 64, None, "genesis.txt"), ("mixtral", 512, None, "genesis.txt"), ("mixtral", 100, None, "genesis.txt"),
         ("mixtral", 100, 40, "genesis.txt"), ("mixtral", 64, 64, "genesis.txt"),
         # the demo model: on Genesis 1 (training text) and on the whole held-out split, in its context of 512
         ("../../models/demo", 512, None, "genesis.txt"), ("../../models/demo", 128, 64, "genesis.txt"),
         ("../../models/demo", 512, None, "../../../models/kjv-test.txt")]


@torch.no_grad()
def perplexity(model, ids: list, ctx: int, stride) -> tuple:
    """Without stride: consecutive windows, every token after a window's first scored. With stride: the windows of
    the transformers perplexity guide (begin advances by `stride`; a window scores the tokens after the previous
    window's end, never its own first)."""
    nll, scored, previous_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride or ctx):
        end = min(begin + ctx, len(ids))
        window = ids[begin:end]
        first = max(1, previous_end - begin) if stride else 1
        if len(window) >= 2 and first < len(window):
            logits = model(input_ids=torch.tensor([window]), use_cache=False).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            for t in range(first, len(window)):
                nll -= float(logp[t - 1, window[t]])
            scored += len(window) - first
        previous_end = end
        if stride and end == len(ids):
            break
    return nll, scored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "perplexity")
    args = ap.parse_args()
    import transformers as tf

    cases = []
    for name, ctx, stride, text_file in CASES:
        text = (args.out / text_file).read_text()
        directory = ROOT / name
        ids = Tokenizer.from_file(str(directory / "tokenizer.json")).encode(text, add_special_tokens=False).ids
        arch = json.loads((directory / "config.json").read_text())["architectures"][0]
        model = getattr(tf, arch).from_pretrained(directory, dtype=torch.float32, attn_implementation="eager",
                                                  experts_implementation="eager")
        model.eval()
        nll, scored = perplexity(model, ids, ctx, stride)
        cases.append(dict(fixture=name, ctx=ctx, stride=stride, text=text_file, tokens=len(ids), scored=scored, nll=nll,
                          perplexity=math.exp(nll / scored)))
        print(cases[-1])
    (args.out / "reference.json").write_text(json.dumps(dict(cases=cases), indent=1) + "\n")


if __name__ == "__main__":
    main()
