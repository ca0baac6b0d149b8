#!/usr/bin/env python3
"""Is the kernel moert chooses the fastest? For every product a model runs that has more than one kernel this CPU can
run, times `moert bench` with each kernel forced (MOERT_KERNELS=PRODUCT=KERNEL) and with moert's own choice.

    python3 benchmarks/kernel_choice.py --model DIR [--rounds 5] [--threads N] [--json OUT.json]

Each round runs every configuration once, each in a fresh process (`moert bench --repeat 1`: one warm-up and one timed
512-token prefill, then 128 decode steps), in the opposite order every other round; figures are medians over rounds.
A product's figure is decode tok/s for the decode GEMVs and decode attention, prefill tok/s for the others. moert's
own choice is what it chose for this CPU (measured at its first load and cached, as a user gets it: the cache is
left as it is); the goal is that it is within 3% of the fastest forced kernel. "chosen / fastest" is the smallest,
over the other kernels, of the median of the per-round ratios (the chosen kernel forced against that kernel in the
same round): on a machine whose speed drifts between rounds, pairs within a round cancel the drift that medians of
separate rounds keep. Needs nothing but the built `moert` (make).
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from ab_bench import bench

REPO = Path(__file__).resolve().parents[1]
DECODE_PRODUCTS = ("gemv.", "attention.decode")


def run_bench(moert: str, model: str, threads: int, env_kernels: str = "") -> dict:
    """One `moert bench` process (one timing each): prefill and decode tok/s."""
    env = {"MOERT_KERNELS": env_kernels} if env_kernels else {}
    try:
        prefill, decode, _ = bench(moert, model, ["--threads", str(threads)], repeat=1, env=env)
    except subprocess.CalledProcessError as e:
        sys.exit(f"moert bench failed ({env_kernels or 'default'}): {e.stderr.strip()}")
    return dict(prefill=prefill, decode=decode)


def choices(moert: str, model: str, threads: int) -> dict:
    """product -> (chosen kernel, reason) from `moert info`'s kernel lines."""
    out = subprocess.run([moert, "info", "--model", model, "--threads", str(threads)], capture_output=True, text=True,
                         check=True).stdout
    result = {}
    for line in out.splitlines():
        if line.startswith("kernel "):
            product, kernel, why = line.split(None, 3)[1:]
            result[product] = (kernel, why)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="moert's threads (default 0: every online CPU)")
    ap.add_argument("--moert", default=str(REPO / "build" / "bin" / "moert"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from cpuinfo import cpu_identity, describe_cpu
    cpu = cpu_identity(args.moert)
    chosen = choices(args.moert, args.model, args.threads)
    available = subprocess.run([args.moert, "kernels"], capture_output=True, text=True, check=True).stdout
    candidates = {}
    for line in available.splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[0] in chosen:
            kernels = [k for k in fields[1].split(",") if not k.startswith("(")]
            if len(kernels) > 1:
                candidates[fields[0]] = kernels
    configs = {"default": ""}
    for product, kernels in candidates.items():
        for k in kernels:
            configs[f"{product}={k}"] = f"{product}={k}"
    runs = {name: [] for name in configs}
    order = list(configs.items())
    for r in range(args.rounds):
        for name, forced in (order if r % 2 == 0 else order[::-1]):
            runs[name].append(run_bench(args.moert, args.model, args.threads, forced))
            print(f"round {r} {name} {json.dumps(runs[name][-1])}", file=sys.stderr, flush=True)
    medians = {name: {k: statistics.median(x[k] for x in v) for k in v[0]} for name, v in runs.items()}
    print(f"CPU: {describe_cpu(cpu)}; model {args.model}; {args.rounds} rounds\n")
    print("| product | metric | " + " | ".join(["kernel tok/s (median)", "chosen", "chosen / fastest"]) + " |")
    print("|---|---|---|---|---|")
    verdicts = {}
    for product, kernels in candidates.items():
        metric = "decode" if product.startswith(DECODE_PRODUCTS) else "prefill"
        figures = {k: medians[f"{product}={k}"][metric] for k in kernels}
        kernel, why = chosen[product]
        mine = runs[f"{product}={kernel}"]
        share = min(statistics.median(a[metric] / b[metric] for a, b in zip(mine, runs[f"{product}={k}"]))
                    for k in kernels)
        verdicts[product] = dict(kernel=kernel, reason=why, figures=figures, share=share)
        cells = ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
        print(f"| {product} | {metric} | {cells} | {kernel} ({why.split(':')[0].strip('(')}) | {share:.1%} |")
    print(f"\ndefault configuration: prefill {medians['default']['prefill']:.1f} tok/s, "
          f"decode {medians['default']['decode']:.1f} tok/s")
    missed = [p for p, v in verdicts.items() if v["share"] < 0.97]
    print("goal (chosen within 3% of the fastest): " + ("met" if not missed else "missed for " + ", ".join(missed)))
    if args.json:
        args.json.write_text(json.dumps(dict(cpu=cpu, model=args.model, runs=runs, verdicts=verdicts), indent=1))


if __name__ == "__main__":
    main()
