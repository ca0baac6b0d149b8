#!/usr/bin/env python3
"""Encoding speed of moert's tokenizer against Hugging Face ``tokenizers`` (Rust), one thread each.

Builds a multilingual text of at least 1 MiB deterministically from the case strings of
``Tests/fixtures/tokenizers/*/cases.jsonl`` (shuffled and joined with a fixed seed), then for each tokenizer:

- ``tokenizers``: ``Tokenizer.from_file(...).encode(text, add_special_tokens=False)`` of the whole text (the call
  moert's ``encode`` matches), with ``TOKENIZERS_PARALLELISM=false`` and ``RAYON_NUM_THREADS=1`` so that it runs on
  one thread; with ``--lines``, ``encode_batch`` of the text's lines (one thread as well) against moert encoding
  the lines one after the other;
- moert: ``moert-tokenizer-bench`` (``swift build -c release --product moert-tokenizer-bench``), which loads the
  same tokenizer.json and encodes the same bytes;

and prints the load times, the best of ``--repeat`` encode times, tokens per second, the ratio (moert's speed over
tokenizers'), and whether the ids are identical (they must be).

Usage:
    pip install tokenizers==0.23.3
    swift build -c release --product moert-tokenizer-bench
    python3 benchmarks/tokenizer_speed.py [--tokenizer Tests/fixtures/tokenizers/qwen2/tokenizer.json ...]
                                          [--size-mib 1] [--repeat 5] [--lines]

Timings are wall-clock: run it on an otherwise idle machine.
"""

import argparse
import glob
import json
import os
import random
import subprocess
import sys
import tempfile
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "fixtures", "tokenizers")


def benchmark_text(size):
    """At least `size` bytes of text: the fixtures' case strings, shuffled with seed 0 and joined by spaces and
    newlines, round after round."""
    strings = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*", "cases.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                text = json.loads(line).get("text")
                if text and text not in strings:
                    strings.append(text)
    rng = random.Random(0)
    parts, total = [], 0
    while total < size:
        rng.shuffle(strings)
        for s in strings:
            parts.append(s)
            parts.append("\n" if rng.random() < 0.2 else " ")
            total += len(s.encode("utf-8")) + 1
    return "".join(parts)


def best_of(repeat, fn):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", action="append",
                        help="tokenizer.json to compare (default: the qwen2 and llama-spm fixtures)")
    parser.add_argument("--size-mib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--lines", action="store_true", help="encode the lines separately (encode_batch)")
    parser.add_argument("--bench", default=os.path.join(ROOT, ".build", "release", "moert-tokenizer-bench"))
    args = parser.parse_args()
    paths = args.tokenizer or [os.path.join(FIXTURES, n, "tokenizer.json") for n in ("qwen2", "llama-spm")]
    if not os.path.exists(args.bench):
        sys.exit(f"{args.bench} is missing: swift build -c release --product moert-tokenizer-bench")

    text = benchmark_text(int(args.size_mib * (1 << 20)))
    lines = text.splitlines(keepends=True)
    with tempfile.TemporaryDirectory() as tmp:
        text_path = os.path.join(tmp, "text.txt")
        with open(text_path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        print(f"text: {len(text.encode('utf-8'))} bytes, {len(lines)} lines; one thread each; best of {args.repeat}")
        for path in paths:
            start = time.perf_counter()
            hf = Tokenizer.from_file(path)
            hf_load = time.perf_counter() - start
            if args.lines:
                hf_time, encodings = best_of(args.repeat, lambda: hf.encode_batch(lines, add_special_tokens=False))
                hf_ids = [e.ids for e in encodings]
            else:
                hf_time, encoding = best_of(args.repeat, lambda: hf.encode(text, add_special_tokens=False))
                hf_ids = [encoding.ids]
            ids_path = os.path.join(tmp, "ids.txt")
            command = [args.bench, "--tokenizer", path, "--file", text_path, "--repeat", str(args.repeat), "--ids", ids_path]
            if args.lines:
                command.append("--lines")
            ours = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            with open(ids_path) as f:
                our_ids = [[int(x) for x in line.split()] for line in f.read().split("\n")[: len(hf_ids)]]
            tokens = sum(len(i) for i in hf_ids)
            same = our_ids == hf_ids
            name = os.path.basename(os.path.dirname(path))
            print(f"{name}: {tokens} tokens; ids identical: {same}")
            print(f"  load      tokenizers {hf_load:.3f} s   moert {ours['load_s']:.3f} s")
            print(f"  encode    tokenizers {hf_time:.3f} s ({tokens / hf_time / 1e6:.2f} M tok/s)   "
                  f"moert {ours['encode_s']:.3f} s ({tokens / ours['encode_s'] / 1e6:.2f} M tok/s)")
            print(f"  ratio     moert speed / tokenizers speed = {hf_time / ours['encode_s']:.2f}")
            if not same:
                sys.exit(f"{name}: the ids differ")


if __name__ == "__main__":
    main()
