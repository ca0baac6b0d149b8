#!/usr/bin/env python3
"""moert beside llama.cpp and transformers on random DeepSeek-V2, DeepSeek-V3, GLM-4.5 MoE and gpt-oss models, in
one run, with ratios and each engine's share of the decode roofline.

    python benchmarks/arch_compare.py [--preset small] [--archs deepseek_v2,deepseek_v3,glm4_moe,gpt_oss] [--reps 3]
                                      [--runs moert:f32,moert:f16,llama:f32,llama:f16,torch:default] [--quant q8_0]
                                      [--no-limits] [--moert build/bin/moert] [--work DIR] [--json OUT.json]
    python benchmarks/arch_compare.py --report OUT.json          # reprint the tables of a saved run; run nothing
    benchmarks/arch_all.sh                                        # make, the models, the GGUF check, then this

Needs the models of benchmarks/arch_models.py and the GGUF files of benchmarks/arch_gguf.py in
DIR/<arch>-<preset>/ (DIR: $BENCH_WORK, default ~/.cache/moert-bench), and the peer venv of ../shared/bench. The
protocol is compare.py's: every configuration runs once per round, each time in a fresh process, rounds are repeated
--reps times and each figure is the median over the rounds; a round runs every configuration of every architecture,
so slow spells of a shared machine fall on all of them alike. Each process: one untimed 512-token prefill, the
512-token prefill timed 3 times (last-position logits), then a 16-token prompt and 128 greedy single-token decode
steps with the KV cache (../shared/bench/peer_bench.py; `moert bench` does the same).

Configurations (--runs): moert:f32 on hf/, moert:f16 on hf-f16/ (compare.run_moert, which parses `moert bench`);
llama:f32 and llama:f16 on model-<type>.gguf (peer_bench.run_llama: llama-cpp-python, 2 threads, n_batch 512,
n_ctx 1024, default f16 KV cache); torch:default, transformers float32 with its default attention and expert
implementations (peer_bench.run_torch; sdpa where the model supports it; gpt-oss has no sdpa in transformers 5.25 and
runs eager attention). --quant adds moert:T on `moert quantize --type T` of hf-f16/ and llama:T on
llama_model_quantize of model-f16.gguf (compare.ensure_quantized). A llama:T run whose GGUF is missing is left out
with a note.

Every round also measures the machine's limits (benchmarks/machine_peak.c, as compare.py) and each engine's decode is
reported as a share of the roofline: bandwidth / weight bytes read per decoded token, from costs.json (written by
arch_models.py: attention, routers and norms, the top-k and shared experts of each layer, the dense layers' ffn, the
output layer; the KV cache is not counted). The tables per architecture are compare.report's; the last table sums
all architectures up for BENCHMARKS.md.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import compare
import limits
from arch_models import ARCHS, SIZES, default_work, model_dir

DEFAULT_RUNS = "moert:f32,moert:f16,llama:f32,llama:f16,torch:default"
NAMES = {"deepseek_v2": "DeepSeek-V2", "deepseek_v3": "DeepSeek-V3", "glm4_moe": "GLM-4.5 MoE", "gpt_oss": "gpt-oss"}


def peer_bench():
    """../shared/bench/peer_bench.py as a module."""
    sys.path.insert(0, str(compare.BENCH))
    import peer_bench as module
    return module


def child(run: str, d: Path) -> None:
    """One peer measurement in this process (peer_bench's), printed as RESULT <json>."""
    engine, variant = run.split(":")
    if engine == "llama":
        result = peer_bench().run_llama(d, variant)
    else:
        # peer_bench.run_torch loads the model as transformers.MixtralForCausalLM; in this process that name is
        # AutoModelForCausalLM, which takes the class from config.json.
        import transformers
        transformers.MixtralForCausalLM = transformers.AutoModelForCausalLM
        result = peer_bench().run_torch(d, variant)
    print("RESULT " + json.dumps(result), flush=True)


def run_peer(run: str, d: Path) -> dict:
    """One peer measurement in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--child", run, "--model-dir", str(d)], check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out.split("RESULT ", 1)[1])
    print(d.name, run, json.dumps(result), file=sys.stderr, flush=True)
    return result


def configurations(d: Path, runs: list, quant: list, binary: str, paired: list = ()) -> dict:
    """name -> function measuring it once, for the model directory `d`; `paired` (["--bandwidth"]) goes to moert's
    f32 and f16 runs."""
    configs = {}
    for run in runs + [f"{engine}:{kind}" for kind in quant for engine in ("moert", "llama")]:
        engine, variant = run.split(":")
        if engine == "moert":
            if variant == "f32":
                model = d / "hf"
            elif variant == "f16":
                model = compare.ensure_f16(d / "hf")
            else:
                model = compare.ensure_quantized(binary, compare.ensure_f16(d / "hf"), d / "model-f16.gguf", variant)
            extra = list(paired) if variant in ("f32", "f16") else []
            configs[run] = lambda model=model, extra=extra: compare.run_moert(binary, model, extra)
        elif engine == "llama" and not (d / f"model-{variant}.gguf").exists():
            print(f"{d.name}: no model-{variant}.gguf, {run} left out (benchmarks/arch_gguf.py makes it)",
                  file=sys.stderr)
        elif engine in ("llama", "torch"):
            configs[run] = lambda run=run: run_peer(run, d)
        else:
            sys.exit(f"unknown run {run!r}: moert:T, llama:T or torch:default")
    return configs


def measure(args) -> dict:
    """Every configuration of every architecture, --reps interleaved rounds; returns the saved form of the run."""
    dirs = {arch: model_dir(args.work, arch, args.preset) for arch in args.archs.split(",")}
    for arch, d in dirs.items():
        if not (d / "hf" / "config.json").exists():
            sys.exit(f"{d}: no model; run benchmarks/arch_models.py --preset {args.preset} --archs {arch} first")
    quant = list(filter(None, args.quant.split(",")))
    paired = ["--bandwidth"] if args.paired_read else []
    configs = {arch: configurations(d, list(filter(None, args.runs.split(","))), quant, args.moert, paired)
               for arch, d in dirs.items()}
    reps = {arch: {name: [] for name in c} for arch, c in configs.items()}
    machine = []
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    with tempfile.TemporaryDirectory() as tmp:
        peak = None if args.no_limits else limits.build(Path(tmp))
        for _ in range(args.reps):
            if peak:
                machine.append(limits.run(peak, threads))
                print("limits", json.dumps(machine[-1]), file=sys.stderr, flush=True)
            for arch, c in configs.items():
                for name, run in c.items():
                    reps[arch][name].append(run())
    saved = dict(preset=args.preset, cpu=limits.cpu_identity(args.moert), machine=machine, archs={})
    for arch, r in reps.items():
        rows = {name: dict(reps=x, median={k: statistics.median(v[k] for v in x) for k in x[0] if k != "pairs"})
                for name, x in r.items()}
        saved["archs"][arch] = dict(costs=json.loads((dirs[arch] / "costs.json").read_text()), rows=rows)
    return saved


def report(saved: dict) -> None:
    """compare.report's tables for each architecture, then the summary for BENCHMARKS.md."""
    for arch, a in saved["archs"].items():
        rows = dict(a["rows"])
        rows["cpu"] = saved["cpu"]
        if saved["machine"]:
            rows["machine"] = dict(reps=saved["machine"], costs=a["costs"])
        print(f"\n## {NAMES.get(arch, arch)} ({a['costs']['architecture']}, {a['costs']['params'] / 1e6:.1f} M "
              f"parameters)")
        compare.report(f"{arch}-{saved['preset']}", rows)
    summary(saved)


def ratio(rows: dict, a: str, b: str, key: str) -> str:
    """Median over rounds of a/b within each round, or '—' when either was not run."""
    if a not in rows or b not in rows:
        return "—"
    return f"{statistics.median(x[key] / y[key] for x, y in zip(rows[a]['reps'], rows[b]['reps'])):.2f}x"


def summary(saved: dict) -> None:
    """The Markdown tables for BENCHMARKS.md: figures and roofline shares per architecture and engine, then ratios."""
    bw = max((m["read_gbps"] for m in saved["machine"]), default=None)
    print(f"\n| architecture ({saved['preset']}) | engine | prefill-512 tok/s | decode tok/s "
          f"| decode / roofline{f' at {bw:.1f} GB/s' if bw else ''} | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for arch, a in saved["archs"].items():
        for name, r in a["rows"].items():
            m = r["median"]
            share = f"{m['decode_tps'] * compare.weight_bytes(a['costs'], name) / (bw * 1e9):.0%}" if bw else "—"
            print(f"| {NAMES.get(arch, arch)} | {name} | {m['prefill_tps']:.0f} | {m['decode_tps']:.1f} | {share} "
                  f"| {m['peak_rss_mib']:.0f} |")
    pairs = [("moert:f32", "llama:f32"), ("moert:f16", "llama:f16"), ("moert:f32", "torch:default")]
    head = " | ".join(f"{a} / {b} prefill | decode" for a, b in pairs)
    print(f"\n| ratio (median of per-round ratios) | {head} |")
    print("|---|" + "---|" * 2 * len(pairs))
    for arch, a in saved["archs"].items():
        cells = " | ".join(f"{ratio(a['rows'], x, y, 'prefill_tps')} | {ratio(a['rows'], x, y, 'decode_tps')}"
                           for x, y in pairs)
        print(f"| {NAMES.get(arch, arch)} | {cells} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=SIZES, default="small")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--runs", default=DEFAULT_RUNS, help="comma list of moert:T, llama:T and torch:default")
    ap.add_argument("--quant", default="", help="quantized types to run on moert and llama.cpp, e.g. q8_0")
    ap.add_argument("--no-limits", action="store_true", help="do not measure the machine's limits each round")
    ap.add_argument("--paired-read", action="store_true",
                    help="as compare.py's: moert's f32/f16 decode beside a plain read of the same seconds")
    ap.add_argument("--moert", default=str(compare.REPO / "build" / "bin" / "moert"))
    ap.add_argument("--work", type=Path, default=default_work())
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--report", type=Path, help="print the tables of a --json file from an earlier run; run nothing")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.model_dir)
        return
    saved = json.loads(args.report.read_text()) if args.report else measure(args)
    if args.json and not args.report:
        args.json.write_text(json.dumps(saved, indent=1))
    report(saved)


if __name__ == "__main__":
    main()
