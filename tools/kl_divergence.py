#!/usr/bin/env python3
"""How far quantized copies of a model move its predictions: the KL divergence of each copy's next-token distribution
from the base model's, and how often their most likely next tokens agree (llama.cpp's `llama-perplexity
--kl-divergence` measures), on the same token ids in the same windows as `moert perplexity`.

    make && python3 tools/kl_divergence.py --base DIR --text FILE COPY_DIR [COPY_DIR ...] [--limit N]

Tokenizes FILE with the base model's tokenizer (no special tokens), cuts it into consecutive windows of the base's
context (config.json's max_position_embeddings), evaluates each window from an empty cache with every model, and
prints per copy: the mean KL(base || copy) over every position, its 99th percentile, the share of positions whose
argmax agrees with the base's, and the copy's perplexity. Runs on libmoert through the Python binding
(PYTHONPATH=bindings/python and MOERT_LIBRARY=build/lib/libmoert.so unless set).
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bindings" / "python"))
os.environ.setdefault("MOERT_LIBRARY", str(ROOT / "build" / "lib" / "libmoert.so"))
import moert  # noqa: E402


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))


def window_logits(model_dir: Path, windows: list) -> list:
    """Every position's log-probabilities of each window, each from an empty cache."""
    out = []
    with moert.Model(str(model_dir)) as model:
        for w in windows:
            with model.session() as s:
                out.append(log_softmax(np.asarray(s.eval(np.asarray(w, dtype=np.int32), all_logits=True))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="the unquantized model")
    ap.add_argument("--text", type=Path, required=True, help="UTF-8 text to score")
    ap.add_argument("--limit", type=int, default=0, help="score only the first N tokens (0: all)")
    ap.add_argument("copies", type=Path, nargs="+", help="quantized copies of the base")
    args = ap.parse_args()
    from tokenizers import Tokenizer
    ids = Tokenizer.from_file(str(args.base / "tokenizer.json")).encode(args.text.read_text(encoding="utf-8"),
                                                                         add_special_tokens=False).ids
    if args.limit > 0:
        ids = ids[:args.limit]
    window = json.loads((args.base / "config.json").read_text())["max_position_embeddings"]
    windows = [ids[b:b + window] for b in range(0, len(ids), window) if len(ids[b:b + window]) >= 2]
    base = window_logits(args.base, windows)
    print(f"{sum(len(w) for w in windows)} tokens of {args.text.name} in {len(windows)} windows of {window}")
    print("| copy | mean KL(base ‖ copy) | 99th percentile | same argmax | perplexity |")
    print("|---|---|---|---|---|")
    for copy in args.copies:
        kl, same, nll, scored = [], 0, 0.0, 0
        for w, p, q in zip(windows, base, window_logits(copy, windows)):
            kl.append((np.exp(p) * (p - q)).sum(axis=1))
            same += int((p.argmax(axis=1) == q.argmax(axis=1)).sum())
            nll -= sum(q[t - 1, w[t]] for t in range(1, len(w)))
            scored += len(w) - 1
        kl = np.concatenate(kl)
        print(f"| {copy.name} | {kl.mean():.6f} | {np.percentile(kl, 99):.6f} | {same / len(kl):.2%} | "
              f"{np.exp(nll / scored):.4f} |", flush=True)


if __name__ == "__main__":
    main()
