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

in interleaved rounds (each round loads and encodes with ``tokenizers``, then runs ``moert-tokenizer-bench`` once), and
prints the medians of the rounds' load and encode times, tokens per second, the ratio of the medians (moert's speed
over tokenizers') with the range of the rounds' own ratios, and whether the ids are identical (they must be).

Usage:
    pip install tokenizers==0.23.3
    swift build -c release --product moert-tokenizer-bench
    python3 benchmarks/tokenizer_speed.py [--tokenizer Tests/fixtures/tokenizers/qwen2/tokenizer.json ...]
                                          [--size-mib 1] [--rounds 7] [--lines]

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


def timed(fn):
    """`fn()`'s result and its wall-clock time in seconds."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", action="append",
                        help="tokenizer.json to compare (default: the qwen2 and llama-spm fixtures)")
    parser.add_argument("--size-mib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--lines", action="store_true", help="encode the lines separately (encode_batch)")
    parser.add_argument("--bench", default=os.path.join(ROOT, ".build", "release", "moert-tokenizer-bench"))
    args = parser.parse_args()
    paths = args.tokenizer or [os.path.join(FIXTURES, n, "tokenizer.json") for n in ("qwen2", "llama-spm")]
    if not os.path.exists(args.bench):
        sys.exit(f"{args.bench} is missing: swift build -c release --product moert-tokenizer-bench")

    text = benchmark_text(int(args.size_mib * (1 << 20)))
    # Lines end at "\n" only, as moert-tokenizer-bench --lines splits them (splitlines() would also cut at U+2028, ...).
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    with tempfile.TemporaryDirectory() as tmp:
        text_path = os.path.join(tmp, "text.txt")
        with open(text_path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        print(f"text: {len(text.encode('utf-8'))} bytes, {len(lines)} lines; one thread each; "
              f"medians of {args.rounds} interleaved rounds")
        for path in paths:
            ids_path = os.path.join(tmp, "ids.txt")
            command = [args.bench, "--tokenizer", path, "--file", text_path, "--repeat", "1", "--ids", ids_path]
            if args.lines:
                command.append("--lines")
            hf_loads, hf_times, our_loads, our_times = [], [], [], []
            for _ in range(args.rounds):
                hf, hf_load = timed(lambda: Tokenizer.from_file(path))
                if args.lines:
                    encodings, hf_time = timed(lambda: hf.encode_batch(lines, add_special_tokens=False))
                    hf_ids = [e.ids for e in encodings]
                else:
                    encoding, hf_time = timed(lambda: hf.encode(text, add_special_tokens=False))
                    hf_ids = [encoding.ids]
                ours = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                hf_loads.append(hf_load)
                hf_times.append(hf_time)
                our_loads.append(ours["load_s"])
                our_times.append(ours["encode_s"])
            with open(ids_path) as f:
                our_ids = [[int(x) for x in line.split()] for line in f.read().split("\n")[: len(hf_ids)]]
            tokens = sum(len(i) for i in hf_ids)
            same = our_ids == hf_ids
            name = os.path.basename(os.path.dirname(path))
            hf_time, our_time = median(hf_times), median(our_times)
            ratios = sorted(h / o for h, o in zip(hf_times, our_times))
            print(f"{name}: {tokens} tokens; ids identical: {same}")
            print(f"  load      tokenizers {median(hf_loads):.3f} s   moert {median(our_loads):.3f} s")
            print(f"  encode    tokenizers {hf_time:.3f} s ({tokens / hf_time / 1e6:.2f} M tok/s)   "
                  f"moert {our_time:.3f} s ({tokens / our_time / 1e6:.2f} M tok/s)")
            print(f"  ratio     moert speed / tokenizers speed = {hf_time / our_time:.2f} "
                  f"(rounds {ratios[0]:.2f}-{ratios[-1]:.2f})")
            if not same:
                sys.exit(f"{name}: the ids differ")


if __name__ == "__main__":
    main()
