#!/usr/bin/env python3
"""Make Tests/fixtures/kv-cache/reference.json: KV cache rounding of bf16 and q8_0 as llama.cpp's gguf-py does it.

    python tools/make_kv_fixtures.py [--out Tests/fixtures/kv-cache]

Needs `pip install gguf numpy`. The values (a multiple of 32) are random normals at several scales plus blocks chosen
by hand: ties of q8_0's rounding (x / d = k + 0.5: GGML rounds half away from zero), an all-zero block, a block so
small that its scale is an f16 subnormal, bf16 ties (to even) on both sides. Written:
    values              the float32 inputs (exactly representable, as JSON doubles)
    bf16, q8_0          hex of gguf.quants.quantize(values, BF16 / Q8_0)
    *_dequantized       gguf.quants.dequantize of those bytes
"""
import argparse
import json
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants


def values() -> np.ndarray:
    rng = np.random.default_rng(7)
    parts = [rng.standard_normal(32 * 6) * s for s in (1.0, 0.01, 40.0)]
    ties = np.array([127, 62.5, -62.5, 2.5, -2.5, 0.5, -0.5, 1.5] + [0.25] * 24)
    zero = np.zeros(32)
    tiny = rng.standard_normal(32) * 1e-6
    bf16_ties = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0xBF818000, 0x3F80FFFF, 0x3F807FFF] * 5 + [0, 0],
                         dtype=np.uint32).view(np.float32)
    return np.concatenate(parts + [ties, zero, tiny, bf16_ties]).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "Tests/fixtures/kv-cache")
    args = ap.parse_args()
    x = values()
    out = {"values": [float(v) for v in x]}
    for name, t in (("bf16", T.BF16), ("q8_0", T.Q8_0)):
        q = quants.quantize(x.reshape(1, -1), t)
        out[name] = q.tobytes().hex()
        out[name + "_dequantized"] = [float(v) for v in quants.dequantize(q, t).reshape(-1)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reference.json").write_text(json.dumps(out) + "\n")
    print("wrote", args.out / "reference.json", len(x), "values")


if __name__ == "__main__":
    main()
