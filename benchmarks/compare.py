#!/usr/bin/env python3
"""moert beside llama.cpp and transformers on the same random Mixtral weights, in one run, with ratios.

    python benchmarks/compare.py --preset small [--reps 3] [--peers llama:f32,llama:f16,torch:sdpa]
                                 [--budgets 50,25] [--no-avx512] [--moert build/bin/moert] [--work DIR]
                                 [--json OUT.json] [--report OUT.json] [--paired-read]
    python benchmarks/compare.py --preset small --quant q8_0,q4_0 [--peers ''] [--reps 3]
    python benchmarks/compare.py --preset small --depth 0,1000,4000 [--kv-types f16,q8_0,f32] [--reps 3]

Needs the peer harness of ../shared/bench (its venv: torch, transformers, safetensors, gguf, llama-cpp-python) and
the models it makes (make_model.py --preset P). Each configuration runs --reps times, each time in a fresh process,
and the median is reported. The runs are interleaved (round r runs every configuration once) so that the slow drifts
of a shared machine fall on all engines alike instead of on whichever ran during a slow spell. moert follows the same protocol as peer_bench.py (`moert bench`: one warm-up prefill, prefill of
512 tokens timed 3 times, a 16-token prompt then 128 greedy decode steps). moert's f16 run uses a copy of the HF
checkpoint with float16 storage, made once next to it (hf-f16/). --budgets also runs moert with its expert
residency budget at those percentages of the expert bytes (`--expert-budget P%`), f32, f16 and each --quant type. --no-avx512 also runs
moert with MOERT_AVX512=0, as on a CPU without AVX-512: prefill on OpenBLAS sgemm (with the kernels OpenBLAS picks, or
those OPENBLAS_CORETYPE pins), float32 decode on OpenBLAS sgemv, half-precision decode on the AVX2 GEMV (`moert bench`
prints the kernels used). --quant also runs each quantized type on both engines: moert on `moert quantize --type T`
of the f16 copy (hf-T/; embeddings and output layer at q8_0 for q4_0), llama.cpp on llama_model_quantize of its f16
GGUF (model-T.gguf; its Q4_0 keeps the output layer at Q6_K): both quantize the same f16 values, with the same
blocks and rounding for every tensor both store as T.

Every round also measures the machine's limits (benchmarks/machine_peak.c: read bandwidth, FMA peak), because on a
shared machine they move between minutes; each engine's decode is reported as a share of the roofline (bandwidth /
weight bytes per token) and its prefill as a share of the compute bound (FMA peak / FLOPs per token), both per round
(median of the shares) and against the best limit measured in the run. --no-limits skips this. The machine's
bandwidth moves between seconds too: --paired-read has moert's f32 and f16 runs time 16 decode bursts of 16 tokens,
each followed by a plain read of 256 MiB on the same threads (`moert bench --bandwidth`), and reports decode's bytes
per second as a share of the read's, burst by burst.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import limits

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO.parent / "shared" / "bench"


def default_work() -> Path:
    return Path(os.environ.get("BENCH_WORK", Path.home() / ".cache/moert-bench")).resolve()


def ensure_f16(hf: Path) -> Path:
    """A float16 copy of the HF checkpoint in hf-f16/ (config.json unchanged: moert reads the storage dtype)."""
    out = hf.parent / "hf-f16"
    if (out / "model.safetensors").exists():
        return out
    import numpy as np
    from safetensors.numpy import load_file, save_file
    out.mkdir(exist_ok=True)
    tensors = {}
    for f in sorted(hf.glob("*.safetensors")):
        tensors.update({k: v.astype(np.float16) for k, v in load_file(f).items()})
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    (out / "config.json").write_text((hf / "config.json").read_text())
    return out


# llama.cpp's file type for a moert type whose name it does not share: q4_k against Q4_K_S, its all-Q4_K mix.
LLAMA_KIND = {"q4_k": "q4_k_s"}


def ensure_quantized(binary: str, f16: Path, gguf_f16: Path, kind: str) -> Path:
    """moert's copy of the f16 checkpoint at `kind` (hf-<kind>/) and llama.cpp's of its f16 GGUF (model-<kind>.gguf;
    for q4_k its Q4_K_S), each made once."""
    out = f16.parent / f"hf-{kind}"
    if not (out / "model.safetensors").exists():
        subprocess.run([binary, "quantize", "--model", str(f16), "--out", str(out), "--type", kind, "--force"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gguf = gguf_f16.parent / f"model-{kind}.gguf"
    if not gguf.exists():
        from hf_to_gguf import llama_quantize
        llama_quantize(gguf_f16, gguf, LLAMA_KIND.get(kind, kind))
    return out


def run_moert(binary: str, model: Path, extra: list, env: dict = None) -> dict:
    """One `moert bench` process (itself the median of 3 timings)."""
    out = subprocess.run([binary, "bench", "--model", str(model), "--repeat", "3", *extra],
                         check=True, capture_output=True, text=True, env=env).stdout
    run = dict(prefill_tps=float(re.search(r"prefill \d+ tokens\s+([\d.]+) tok/s", out).group(1)),
               decode_tps=float(re.search(r"decode\s+\d+ tokens\s+([\d.]+) tok/s", out).group(1)),
               load_s=float(re.search(r"load\s+([\d.]+) ms", out).group(1)) / 1000,
               peak_rss_mib=float(re.search(r"peak RSS ([\d.]+) MiB", out).group(1)))
    pairs = re.search(r"^  pairs\s+decode tok/s:read GB/s (.*)$", out, re.M)
    if pairs:  # --bandwidth: [decode tok/s, read GB/s] of each burst and the plain read right after it
        run["pairs"] = [[float(x) for x in p.split(":")] for p in pairs.group(1).split()]
    kernels = " ".join(f"{p}={k}" for p, k in re.findall(r"^kernel\s+(\S+)\s+(\S+)", out, re.M))
    blas = re.search(r"blas\s+(.*)", out)
    print("moert", model.name, *extra, kernels, blas.group(1) if blas else "", json.dumps(run), file=sys.stderr,
          flush=True)
    return run


def run_peer(preset: str, work: Path, peer: str) -> dict:
    """One process of a peer (peer_bench.py's protocol)."""
    subprocess.run([sys.executable, str(BENCH / "peer_bench.py"), "--preset", preset, "--work", str(work),
                    "--runs", peer, "--reps", "1"], check=True, stdout=subprocess.DEVNULL)
    # (peer_bench.py prints the run's line on stderr itself)
    return json.loads((work / preset / "peer_bench.json").read_text())[0]["reps"][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peers", default="llama:f32,llama:f16,torch:sdpa", help="runs for peer_bench.py; '' for none")
    ap.add_argument("--budgets", default="", help="comma list of expert budget percentages for extra moert runs")
    ap.add_argument("--no-avx512", action="store_true", help="also run moert with MOERT_AVX512=0")
    ap.add_argument("--no-limits", action="store_true", help="do not measure the machine's limits each round")
    ap.add_argument("--moert", default=str(REPO / "build" / "bin" / "moert"))
    ap.add_argument("--work", type=Path, default=default_work())
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--report", type=Path, help="print the tables of a --json file from an earlier run; run nothing")
    ap.add_argument("--depth", help="decode after these context depths instead (benchmarks/depth.py), e.g. 0,1000,4000")
    ap.add_argument("--kv-types", default="f16,q8_0,f32", help="with --depth: the KV cache types to compare")
    ap.add_argument("--quant", default="", help="quantized types to run on both engines, e.g. q8_0,q4_0")
    ap.add_argument("--paired-read", action="store_true",
                    help="moert's f32/f16 runs also time decode bursts, each followed by a plain read of memory "
                         "(moert bench --bandwidth): decode's share of the bandwidth of the same seconds")
    args = ap.parse_args()
    if args.depth:
        import depth
        depth.main(args, args.work, limits.preset_costs(args.preset.split("-")[0]))
        return
    if args.report:
        report(args.preset, json.loads(args.report.read_text()))
        return

    hf = args.work / args.preset / "hf"
    if not (hf / "config.json").exists():
        sys.exit(f"{hf}: no model; run {BENCH}/make_model.py --preset {args.preset} first")
    f16 = ensure_f16(hf)
    paired = ["--bandwidth"] if args.paired_read else []
    configs = {"moert:f32": lambda: run_moert(args.moert, hf, paired),
               "moert:f16": lambda: run_moert(args.moert, f16, paired)}
    if args.no_avx512:
        env = dict(os.environ, MOERT_AVX512="0")
        configs["moert:f32 (AVX-512 off)"] = lambda: run_moert(args.moert, hf, [], env)
        configs["moert:f16 (AVX-512 off)"] = lambda: run_moert(args.moert, f16, [], env)
    models = [("f32", hf), ("f16", f16)]
    for kind in filter(None, args.quant.split(",")):
        quantized = ensure_quantized(args.moert, f16, args.work / args.preset / "model-f16.gguf", kind)
        models.append((kind, quantized))
        configs[f"moert:{kind}"] = lambda model=quantized: run_moert(args.moert, model, [])
        configs[f"llama:{kind}"] = lambda kind=kind: run_peer(args.preset, args.work, f"llama:{kind}")
    for pct in filter(None, args.budgets.split(",")):
        for dtype, model in models:
            configs[f"moert:{dtype} budget {pct}%"] = \
                lambda model=model, pct=pct: run_moert(args.moert, model, ["--expert-budget", f"{pct}%"])
    for peer in filter(None, args.peers.split(",")):
        configs[peer] = lambda peer=peer: run_peer(args.preset, args.work, peer)
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    reps = {name: [] for name in configs}
    machine = []
    with tempfile.TemporaryDirectory() as tmp:
        peak = None if args.no_limits else limits.build(Path(tmp))
        for _ in range(args.reps):
            if peak:
                machine.append(limits.run(peak, threads))
                print("limits", json.dumps(machine[-1]), file=sys.stderr, flush=True)
            for name, run in configs.items():
                reps[name].append(run())
    rows = {name: dict(reps=r, median={k: statistics.median(x[k] for x in r) for k in r[0] if k != "pairs"})
            for name, r in reps.items()}
    rows["cpu"] = limits.cpu_identity(args.moert)
    if machine:
        rows["machine"] = dict(reps=machine, costs=limits.preset_costs(args.preset))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    report(args.preset, rows)


def report(preset: str, rows: dict) -> None:
    """Prints the table of medians and the ratios."""

    machine = rows.pop("machine", None)
    cpu = rows.pop("cpu", None)
    print(f"\nCPU: {limits.describe_cpu(cpu) if cpu else 'not recorded (a run from before CPUs were recorded)'}")
    print(f"\n| preset {preset} | prefill-512 tok/s | decode tok/s | load s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        m = r["median"]
        print(f"| {name} | {m['prefill_tps']:.0f} | {m['decode_tps']:.1f} | {m['load_s']:.3f} | {m['peak_rss_mib']:.0f} |")
    if machine:
        report_limits(rows, machine)
    def ratio(a: str, b: str, key: str) -> float:
        """Median over rounds of a/b within each round: robust to drifts between rounds."""
        return statistics.median(x[key] / y[key] for x, y in zip(rows[a]["reps"], rows[b]["reps"]))

    print("\nratios (median of the per-round ratios, same run):")
    for mine in [n for n in rows if n.startswith("moert:") and " budget " not in n]:
        dtype = mine.split(":")[1].split(" ")[0]
        for peer in rows:
            if peer.startswith("moert:") or not (peer.endswith(":" + dtype) or peer.startswith("torch")):
                continue
            print(f"  {mine} / {peer}: prefill {ratio(mine, peer, 'prefill_tps'):.2f}x, "
                  f"decode {ratio(mine, peer, 'decode_tps'):.2f}x")
    if "llama:q4_k_m" in rows:   # llama.cpp's usual 4-bit mixture, beside moert's 4-bit runs
        for mine in [n for n in rows if n.startswith("moert:q4") and " budget " not in n]:
            print(f"  {mine} / llama:q4_k_m: prefill {ratio(mine, 'llama:q4_k_m', 'prefill_tps'):.2f}x, "
                  f"decode {ratio(mine, 'llama:q4_k_m', 'decode_tps'):.2f}x")
    for name, r in rows.items():
        if " budget " in name:
            full = name.split(" budget ")[0]
            print(f"  {name} / full residency: decode {ratio(name, full, 'decode_tps'):.2f}x, "
                  f"peak RSS {r['median']['peak_rss_mib']:.0f} vs {rows[full]['median']['peak_rss_mib']:.0f} MiB")


def weight_bytes(costs: dict, name: str) -> float:
    """Weight bytes one decoded token reads for run `name`: f32 and f16 from the preset's costs; q8_0 at 34 bytes per
    32 weights; q4_0 at 18 per 32 with the output layer at q8_0 (moert) or Q6_K, 210 bytes per 256 (llama.cpp); moert's
    q4_k as its q4_0 (144 bytes per 256); None for llama.cpp's k-quants (Q4_K_S and Q4_K_M mix Q4_K, Q5_K and Q6_K by
    tensor: not modelled)."""
    if name.startswith("moert") and "q4_k" in name:
        name = name.replace("q4_k", "q4_0")
    if "q4_k" in name or "q5_k" in name or "q6_k" in name:
        return None
    if "q8_0" in name:
        return costs["bytes_f16"] * 34 / 64
    if "q4_0" in name:
        head = costs["lm_head_f16"]
        return (costs["bytes_f16"] - head) * 18 / 64 + head * (34 / 64 if name.startswith("moert") else 210 / 512)
    return costs["bytes_f16"] if "f16" in name else costs["bytes_f32"]


def report_limits(rows: dict, machine: dict) -> None:
    """Each engine against the limits: as a median over rounds of its share of the same round's limit, and its median
    against the best limit measured in the run (a round's measurement can land on a slow spell of the machine and
    then sit below what an engine reaches a minute later)."""
    reps, costs = machine["reps"], machine["costs"]
    bw = [m["read_gbps"] for m in reps]
    fma = [m["fma_gflops"] for m in reps]
    reads = ", ".join(f"{x:.1f}" for x in bw)
    peaks = ", ".join(f"{x:.0f}" for x in fma)
    print(f"\nmachine limits per round: read {reads} GB/s; FMA peak {peaks} GFLOP/s")
    print(f"\n| engine | decode / roofline: same round (median) | decode / roofline at best {max(bw):.1f} GB/s "
          f"| prefill / bound: same round (median) | prefill / bound at best {max(fma):.0f} GFLOP/s |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        if " budget " in name:
            continue
        wbytes = weight_bytes(costs, name)
        flops = costs["prefill_flops"]
        prefill = [x["prefill_tps"] * flops / (f * 1e9) for x, f in zip(r["reps"], fma)]
        m = r["median"]
        if wbytes is None:
            print(f"| {name} | n/a | n/a | {statistics.median(prefill):.0%} "
                  f"| {m['prefill_tps'] * flops / (max(fma) * 1e9):.0%} |")
            continue
        decode = [x["decode_tps"] * wbytes / (b * 1e9) for x, b in zip(r["reps"], bw)]
        print(f"| {name} | {statistics.median(decode):.0%} | {m['decode_tps'] * wbytes / (max(bw) * 1e9):.0%} "
              f"| {statistics.median(prefill):.0%} | {m['prefill_tps'] * flops / (max(fma) * 1e9):.0%} |")
        pairs = [p for x in r["reps"] for p in x.get("pairs", [])]
        if pairs:
            shares = sorted(tps * wbytes / (gbps * 1e9) for tps, gbps in pairs)
            print(f"  {name}: decode's bytes per second / a plain read's right after each of {len(pairs)} decode "
                  f"bursts: median {statistics.median(shares):.0%} (from {shares[0]:.0%} to {shares[-1]:.0%}; reads "
                  f"{min(g for _, g in pairs):.1f}-{max(g for _, g in pairs):.1f} GB/s)")
        fastest = max(x["decode_tps"] * wbytes / 1e9 for x in r["reps"])
        if fastest > max(bw):
            print(f"  (!) {name} read {fastest:.1f} GB/s in one round, above the best bandwidth measured: "
                  f"that figure is not this machine's limit")


if __name__ == "__main__":
    main()
