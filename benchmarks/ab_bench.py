#!/usr/bin/env python3
"""Paired A/B of two moert builds with `moert bench`: rounds alternate the two binaries (the order flips every round)
and the verdict is the median of the per-round ratios, so drift of the machine's speed cancels.

    python3 benchmarks/ab_bench.py OLD_MOERT NEW_MOERT MODEL_DIR ROUNDS [moert bench options...]

e.g. benchmarks/ab_bench.py /tmp/old/moert build/bin/moert ~/.cache/moert-bench/small/hf 10 --decode 0
"""
import os
import re
import statistics
import subprocess
import sys


def bench(binary: str, model: str, options: list, repeat: int = 3, env: dict = None) -> tuple:
    """Median prefill and decode tok/s (decode None when not measured) and peak RSS of one `moert bench` run of
    `repeat` timings, with `env` added to the environment."""
    out = subprocess.run([binary, "bench", "--model", model, "--repeat", str(repeat)] + options,
                         capture_output=True, text=True, check=True,
                         env=None if env is None else {**os.environ, **env}).stdout
    prefill = float(re.search(r"prefill \d+ tokens\s+([\d.]+)", out).group(1))
    decode = re.search(r"decode\s+\d+ tokens\s+([\d.]+)", out)
    rss = float(re.search(r"peak RSS ([\d.]+)", out).group(1))
    return prefill, float(decode.group(1)) if decode else None, rss


def main() -> None:
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    old, new, model, rounds, options = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
    runs = {"old": [], "new": []}
    for r in range(rounds):
        order = [("old", old), ("new", new)] if r % 2 == 0 else [("new", new), ("old", old)]
        for name, binary in order:
            runs[name].append(bench(binary, model, options))
    for name in ("old", "new"):
        v = runs[name]
        line = f"{name}: prefill {statistics.median(x[0] for x in v):.1f} tok/s"
        if v[0][1] is not None:
            line += f", decode {statistics.median(x[1] for x in v):.1f} tok/s"
        print(line + f", peak RSS {statistics.median(x[2] for x in v):.1f} MiB")
    for i, what in ((0, "prefill"), (1, "decode")):
        if runs["old"][0][i] is None:
            continue
        ratios = [n[i] / o[i] for o, n in zip(runs["old"], runs["new"])]
        print(f"new/old {what}: median {statistics.median(ratios):.3f} over {rounds} rounds "
              f"({' '.join(f'{x:.3f}' for x in ratios)})")


if __name__ == "__main__":
    main()
