"""Decode after a long context: `moert bench --depth` beside llama.cpp (benchmarks/llama_depth.py) on the same weights,
in interleaved rounds, with each run's share of the bandwidth roofline counting weight and KV bytes.

Used by ``compare.py --depth 0,1000,4000 [--kv-types f16,q8_0,f32] [--preset small|medium|small-16k]``. Each round runs
every configuration once in a fresh process (--repeat 1 inside it); the medians over rounds are reported. moert reads
hf-f16/ and llama.cpp model-f16.gguf (both f16 weights); llama.cpp runs with flash attention on and off where its
cache type allows both (a quantized V cache needs it on), and the faster is the comparison peer.
"""
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import limits

HERE = Path(__file__).resolve().parent


def parse_depths(out: str) -> dict:
    """{depth: tok/s} from `depth N decode X tok/s` lines."""
    return {int(d): float(x) for d, x in re.findall(r"^depth (\d+) decode ([\d.]+) tok/s", out, re.M)}


def run_moert(binary: str, model: Path, depths: str, kv: str, ctx: int) -> dict:
    out = subprocess.run([binary, "bench", "--model", str(model), "--depth", depths, "--kv-type", kv, "--ctx", str(ctx),
                          "--repeat", "1"], check=True, capture_output=True, text=True).stdout
    kv_bytes = int(re.search(r"kv cache \S+, (\d+) bytes per token", out).group(1))
    # The speed at each later depth over the first's, paired within the process (alternating bursts).
    kept = {int(d): float(r) for d, r in re.findall(
        r"^depth (\d+) decode .*\n  runs .*\n  attention .*\n  speed / depth \d+'s ([\d.]+)", out, re.M)}
    # Each depth's step split into attention over the cache (its KV read speed) and the rest, in the same steps.
    split = {int(d): dict(attention_ms=float(a), kv_gbps=float(g), rest_ms=float(r)) for d, a, g, r in re.findall(
        r"^depth (\d+) decode .*\n  runs .*\n  attention ([\d.]+) ms per step, KV read at ([\d.]+) GB/s; "
        r"the rest of the step ([\d.]+) ms", out, re.M)}
    return dict(tps=parse_depths(out), kv_bytes_per_token=kv_bytes, kept=kept, split=split)


def run_llama(model: Path, depths: str, kv: str, flash: str, ctx: int) -> dict:
    out = subprocess.run([sys.executable, str(HERE / "llama_depth.py"), str(model), "--depth", depths, "--kv-type", kv,
                          "--flash-attn", flash, "--repeat", "1", "--ctx", str(ctx)],
                         check=True, capture_output=True, text=True).stdout
    return dict(tps=parse_depths(out))


def main(args, work: Path, costs: dict) -> None:
    base = work / args.preset
    hf16, gguf = base / "hf-f16", base / "model-f16.gguf"
    for p in (hf16, gguf):
        if not p.exists():
            sys.exit(f"{p}: missing (make_model.py, or benchmarks/hf_to_gguf.py for the GGUF)")
    depths = [int(d) for d in args.depth.split(",")]
    ctx = max(depths) + 64
    configs = {}
    for kv in args.kv_types.split(","):
        configs[f"moert {kv}"] = lambda kv=kv: run_moert(args.moert, hf16, args.depth, kv, ctx)
        for flash in (["on"] if kv == "q8_0" else ["on", "off"]):
            configs[f"llama.cpp {kv} fa={flash}"] = lambda kv=kv, flash=flash: run_llama(gguf, args.depth, kv, flash, ctx)
    runs = {name: [] for name in configs}
    machine = []
    with tempfile.TemporaryDirectory() as tmp:
        peak = limits.build(Path(tmp))
        for r in range(args.reps):
            machine.append(limits.run(peak, 2))
            print("limits", json.dumps(machine[-1]), file=sys.stderr, flush=True)
            for name, run in configs.items():
                runs[name].append(run())
                print(f"round {r}", name, json.dumps(runs[name][-1]), file=sys.stderr, flush=True)
    bandwidth = max(m["read_gbps"] for m in machine) * 1e9
    med = {name: {d: statistics.median(x["tps"][d] for x in rs) for d in depths} for name, rs in runs.items()}
    kv_bytes = {name.split()[1]: rs[0]["kv_bytes_per_token"] for name, rs in runs.items() if name.startswith("moert")}
    if args.json:
        args.json.write_text(json.dumps(dict(runs=runs, machine=machine, costs=costs,
                                             cpu=limits.cpu_identity(args.moert)), indent=1))
    print(f"\npreset {args.preset}, f16 weights ({costs['bytes_f16'] / 1e6:.1f} MB per token), {args.reps} interleaved "
          f"rounds, medians; roofline from the best read bandwidth of the run, {bandwidth / 1e9:.1f} GB/s\n")
    print("| KV cache | depth | MB read per token (weights + KV) | moert tok/s | llama.cpp tok/s (best of FA on/off) "
          "| moert / llama.cpp | moert share of roofline |")
    print("|---|---|---|---|---|---|---|")
    for kv in args.kv_types.split(","):
        peers = [n for n in med if n.startswith(f"llama.cpp {kv} ")]
        for d in depths:
            best = max(peers, key=lambda n: med[n][d])
            read = costs["bytes_f16"] + kv_bytes[kv] * (d + 32)
            roof = bandwidth / read
            m = med[f"moert {kv}"][d]
            print(f"| {kv} | {d} | {read / 1e6:.1f} | {m:.1f} | {med[best][d]:.1f} ({best.split()[-1]}) "
                  f"| {m / med[best][d]:.2f} | {m / roof:.0%} |")
    for kv in args.kv_types.split(","):
        first = depths[0]
        for d in depths[1:]:
            kept = [r["kept"][d] for r in runs[f"moert {kv}"] if d in r.get("kept", {})]
            if kept:
                predicted = (costs["bytes_f16"] + kv_bytes[kv] * (first + 32)) / (costs["bytes_f16"] + kv_bytes[kv] * (d + 32))
                print(f"moert {kv}: at depth {d} {statistics.median(kept):.3f} of the speed at depth {first} (median of the "
                      f"rounds' paired ratios: {', '.join(f'{k:.3f}' for k in kept)}); the bytes predict {predicted:.3f}")
            splits = [r["split"][d] for r in runs[f"moert {kv}"] if d in r.get("split", {})]
            if splits:
                # The same steps' two parts: the cache read by attention, the weights by the rest of the step.
                kv_gbps = statistics.median(x["kv_gbps"] for x in splits)
                weights_gbps = statistics.median(costs["bytes_f16"] / (x["rest_ms"] * 1e-3) / 1e9 for x in splits)
                rest_first = statistics.median(r["split"][first]["rest_ms"] for r in runs[f"moert {kv}"])
                print(f"moert {kv}: at depth {d} attention reads the cache at {kv_gbps:.1f} GB/s, the rest of the step "
                      f"the weights at {weights_gbps:.1f} GB/s ({kv_gbps / weights_gbps:.2f}x); the rest takes "
                      f"{statistics.median(x['rest_ms'] for x in splits) / rest_first:.3f}x its time at depth {first}")
