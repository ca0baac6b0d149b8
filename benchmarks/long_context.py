#!/usr/bin/env python3
"""A long-context copy of a bench preset: the same weights with max_position_embeddings raised, for decode at depth.

    python benchmarks/long_context.py --preset small [--ctx 16384] [--work DIR]

Makes WORK/<preset>-16k/ with hf-f16/ (config.json with the new max_position_embeddings; the safetensors linked, not
copied) and model-f16.gguf (benchmarks/hf_to_gguf.py with that context length). Then:
    python benchmarks/compare.py --preset small-16k --depth 0,4000,16000 --kv-types f16
Needs numpy, safetensors and gguf (the venv of ../shared/bench).
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--ctx", type=int, default=16384)
    ap.add_argument("--work", type=Path,
                    default=Path(os.environ.get("BENCH_WORK", Path.home() / ".cache/moert-bench")).resolve())
    args = ap.parse_args()
    src = args.work / args.preset / "hf-f16"
    if not (src / "config.json").exists():
        sys.exit(f"{src}: no f16 copy of the preset (run compare.py --preset {args.preset} once, or make it)")
    out = args.work / f"{args.preset}-{args.ctx // 1024}k"
    hf = out / "hf-f16"
    hf.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    config["max_position_embeddings"] = args.ctx
    (hf / "config.json").write_text(json.dumps(config, indent=1))
    for f in src.glob("*.safetensors"):
        if not (hf / f.name).exists():
            os.symlink(f.resolve(), hf / f.name)
    subprocess.run([sys.executable, str(HERE / "hf_to_gguf.py"), str(hf), str(out / "model-f16.gguf"), "--type", "f16"],
                   check=True)
    print("wrote", out)


if __name__ == "__main__":
    main()
