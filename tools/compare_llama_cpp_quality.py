#!/usr/bin/env python3
"""Perplexity of the demo model quantized by llama.cpp and by moert, on the same weights, tokens and windows.

    pip install llama-cpp-python gguf safetensors tokenizers numpy
    make && python3 tools/compare_llama_cpp_quality.py [--model models/demo] [--text models/kjv-test.txt] [--threads N]

1. Writes the model (a Mixtral-architecture Hugging Face directory) as a float32 GGUF with benchmarks/hf_to_gguf.py
   (llama.cpp's layout; its vocabulary is a placeholder: token ids are fed directly, llama.cpp's tokenizer is never
   used).
2. Quantizes it with llama.cpp's own quantizer (`llama_model_quantize` of llama-cpp-python's libllama) to Q8_0,
   Q4_0 and Q4_K_S, and the Hugging Face directory with `moert quantize --type q8_0|q4_0|q4_k` (`--types` chooses;
   q4_k needs rows of whole 256-weight super-blocks to differ from q4_0, e.g. the model that
   `tools/train_demo.py --hidden 256 --intermediate 512` trains).
3. Scores the text (tokenized with the model's tokenizer.json, no special tokens) in consecutive windows of the
   model's context, each from an empty cache, every token after a window's first — `moert perplexity`'s definition —
   with llama.cpp (logits of every position) and with `moert perplexity`, and prints both per type.
llama.cpp chooses its own types for some tensors (the output layer of a Q4_0 model, rows that are not whole
super-blocks); the table lists what each side stored.
"""
import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# llama.cpp's file type for each moert type: Q4_K_S is its all-Q4_K mix (a few tensors it promotes aside).
LLAMA_TYPES = {"q8_0": "q8_0", "q4_0": "q4_0", "q4_k": "q4_k_s"}
sys.path.insert(0, str(ROOT / "benchmarks"))
from hf_to_gguf import llama_quantize  # noqa: E402  (benchmarks/: the GGUF writer and llama.cpp's quantizer)


def write_gguf(model_dir: Path, path: Path) -> dict:
    """The float32 GGUF of a plain Mixtral directory, by benchmarks/hf_to_gguf.py; returns its config."""
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "mixtral" or "moert" in config:
        sys.exit("compare_llama_cpp_quality: only plain Mixtral checkpoints have a llama.cpp counterpart")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hf_to_gguf.py"), str(model_dir), str(path), "--type",
                    "f32"], check=True)
    return config


def gguf_types(path: Path) -> str:
    """The tensor types of a GGUF, counted: 'Q4_0 x24, Q8_0 x1, F32 x13'."""
    import gguf
    counts: dict = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def llama_perplexity(path: Path, ids: list, window: int, threads: int) -> float:
    import llama_cpp
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=window, n_batch=window, logits_all=True, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    nll, scored = 0.0, 0
    for begin in range(0, len(ids), window):
        part = ids[begin:begin + window]
        if len(part) < 2:
            continue
        llm.reset()
        llm.eval(part)
        logits = np.asarray(llm.scores[:len(part)], dtype=np.float64)
        top = logits.max(axis=1, keepdims=True)
        logsum = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        for t in range(1, len(part)):
            nll += logsum[t - 1] - logits[t - 1, part[t]]
        scored += len(part) - 1
    return math.exp(nll / scored)


def moert_perplexity(binary: Path, model: Path, text: Path, threads: int) -> float:
    out = subprocess.run([str(binary), "perplexity", "--model", str(model), "--file", str(text), "--threads",
                          str(threads)], check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1].split()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "demo")
    ap.add_argument("--text", type=Path, default=ROOT / "models" / "kjv-test.txt")
    ap.add_argument("--moert", type=Path, default=ROOT / "build" / "bin" / "moert")
    ap.add_argument("--threads", type=int, default=2, help="threads of both engines")
    ap.add_argument("--types", default="q8_0,q4_0,q4_k", help="moert types, each against llama.cpp's counterpart "
                    "(q4_k: Q4_K_S)")
    args = ap.parse_args()
    from tokenizers import Tokenizer
    ids = Tokenizer.from_file(str(args.model / "tokenizer.json")).encode(args.text.read_text(),
                                                                          add_special_tokens=False).ids
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = write_gguf(args.model, tmp / "f32.gguf")
        window = config["max_position_embeddings"]
        rows = [("f16 (as stored) / f32 GGUF", args.model, tmp / "f32.gguf")]
        for name in args.types.split(","):
            if name not in LLAMA_TYPES:
                sys.exit(f"compare_llama_cpp_quality: unknown type '{name}' (known: {', '.join(LLAMA_TYPES)})")
            llama_quantize(tmp / "f32.gguf", tmp / f"{name}.gguf", LLAMA_TYPES[name])
            subprocess.run([str(args.moert), "quantize", "--model", str(args.model), "--out", str(tmp / name),
                            "--type", name], check=True, capture_output=True)
            rows.append((name, tmp / name, tmp / f"{name}.gguf"))
        print(f"{len(ids)} tokens of {args.text.name}, windows of {window}")
        print("| type | moert perplexity | llama.cpp perplexity | llama.cpp tensor types |")
        print("|---|---|---|---|")
        for name, moert_dir, gguf_path in rows:
            ours = moert_perplexity(args.moert, moert_dir, args.text, args.threads)
            theirs = llama_perplexity(gguf_path, ids, window, args.threads)
            print(f"| {name} | {ours:.4f} | {theirs:.4f} | {gguf_types(gguf_path)} |", flush=True)


if __name__ == "__main__":
    main()
