#!/usr/bin/env python3
"""This machine's limits and the rooflines of the bench presets, measured as fast code reaches them.

    python benchmarks/limits.py [--threads 2] [--json OUT.json]

Compiles and runs benchmarks/machine_peak.c (read bandwidth: the best of several read patterns and sizes; and the
peak rate of independent FMAs on every thread), then prints the CPU and, per preset and weight type, the decode roofline (read
bandwidth / weight bytes per token) and the prefill-512 bound (FMA peak / FLOPs per token), with the byte and FLOP
counts of ../shared/bench/machine_limits.py. Those are the ceilings BENCHMARKS.md measures against; machine_limits.py
itself measures with NumPy's OpenBLAS and torch.sum, which stay well below them on this machine (and NumPy's OpenBLAS
follows OPENBLAS_CORETYPE too).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO.parent / "shared" / "bench"))
from machine_limits import PRESETS, bytes_per_token, prefill_flops_per_token  # noqa: E402
from cpuinfo import cpu_identity, describe_cpu  # noqa: E402,F401  (compare.py and depth.py use them through here)


def build(directory: Path) -> Path:
    """Compiles machine_peak.c into `directory`; returns the executable."""
    exe = directory / "machine_peak"
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O3", "-pthread", str(REPO / "benchmarks" / "machine_peak.c"), "-o", str(exe)], check=True)
    return exe


def run(exe: Path, threads: int) -> dict:
    """One run of machine_peak: read_gbps, read_sequential_gbps, fma_gflops, threads, vector."""
    out = subprocess.run([str(exe), str(threads)], check=True, capture_output=True, text=True).stdout
    values = dict(line.split(" ", 1) for line in out.splitlines())
    return {k: (v if k == "vector" else float(v)) for k, v in values.items()}


def preset_costs(preset: str) -> dict:
    """Weight bytes read per decoded token (f32, f16; the f16 output layer's share) and FLOPs per token of a
    512-token prefill."""
    p = PRESETS[preset]
    f16 = bytes_per_token(p, 2)
    return dict(bytes_f32=bytes_per_token(p, 4)["total"], bytes_f16=f16["total"], lm_head_f16=f16["lm_head"],
                prefill_flops=prefill_flops_per_token(p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")))
    ap.add_argument("--json", type=Path, help="also write the measurements and rooflines here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        m = run(build(Path(tmp)), args.threads)
    bw, flops = m["read_gbps"], m["fma_gflops"]
    cpu = cpu_identity()
    print(f"CPU: {describe_cpu(cpu)}")
    patterns = ", ".join(f"{k[5:]} {v:.1f}" for k, v in m.items() if k.startswith("read_") and not k.endswith("gbps"))
    print(f"read bandwidth, {args.threads} threads: {bw:.1f} GB/s, the best of the patterns (GB/s: {patterns}; "
          f"{m['read_sequential_gbps']:.1f} GB/s plain sequential)")
    print(f"FMA peak, {args.threads} threads, {m['vector']}: {flops:.0f} GFLOP/s")
    print(f"\n| preset | weights | MB read per decoded token | decode roofline tok/s at {bw:.1f} GB/s "
          f"| prefill-512 bound tok/s at {flops:.0f} GFLOP/s |")
    print("|---|---|---|---|---|")
    rows = []
    for name, p in PRESETS.items():
        for wname, wbytes in (("f32", 4), ("f16", 2)):
            total = bytes_per_token(p, wbytes)["total"]
            row = dict(preset=name, weights=wname, mb_per_token=total / 1e6, decode_roofline=bw * 1e9 / total,
                       prefill_bound=flops * 1e9 / prefill_flops_per_token(p))
            rows.append(row)
            print(f"| {name} | {wname} | {row['mb_per_token']:.1f} | {row['decode_roofline']:.0f} "
                  f"| {row['prefill_bound']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(dict(cpu=cpu, machine=m, rooflines=rows), indent=1))


if __name__ == "__main__":
    main()
