#!/usr/bin/env python3
"""Decode under a memory cap: moert with its expert residency budget beside llama.cpp (mmap) under the same limit.

    python benchmarks/memcap.py --preset small [--dtype f32] [--shares 100,50,25] [--reps 3] [--decode 128]
                                [--headroom-mib 64] [--moert build/bin/moert] [--work DIR]

For each share P of the expert bytes, every run gets a fresh control group whose memory limit is

    cap(P) = (weight bytes that are not experts) + P% of the expert bytes + headroom

(cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes`; page cache counts against the limit, there is no swap).
moert runs with `--expert-budget P%`: experts live in its arena, everything else is memory-mapped. llama.cpp runs with
`use_mmap=True`, so the kernel's page cache decides which weights stay: the usual way to run a model larger than RAM.
Before each run the model files are dropped from the page cache (posix_fadvise DONTNEED), so the pages a run reads
are charged to its own limit instead of being found already cached. Each run: a 16-token prompt, then --decode
greedy single-token steps, timed. Reported: decode tok/s (median of --reps fresh processes), the group's peak charge
(resident memory plus page cache), and each engine's ratio to its own run at 100%.

Needs root (to create control groups) and the models of ../shared/bench (make_model.py; compare.py makes hf-f16/).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT, VOCAB = 16, 32000


def default_work() -> Path:
    return Path(os.environ.get("BENCH_WORK", Path.home() / ".cache/moert-bench")).resolve()


class MemoryCap:
    """A fresh memory control group with a hard limit; processes started through run() are placed in it."""

    def __init__(self, limit: int, name: str):
        v2 = Path("/sys/fs/cgroup")
        if (v2 / "cgroup.controllers").exists() and "memory" in (v2 / "cgroup.controllers").read_text().split():
            try:
                (v2 / "cgroup.subtree_control").write_text("+memory")
            except OSError:
                pass  # already enabled, or delegated by the service manager
            self.dir = v2 / name
            self.dir.mkdir()
            (self.dir / "memory.max").write_text(str(limit))
            if (self.dir / "memory.swap.max").exists():
                (self.dir / "memory.swap.max").write_text("0")
            self.peak_file = self.dir / "memory.peak"
        elif (v2 / "memory" / "memory.limit_in_bytes").exists():
            self.dir = v2 / "memory" / name
            self.dir.mkdir()
            (self.dir / "memory.limit_in_bytes").write_text(str(limit))
            if (self.dir / "memory.memsw.limit_in_bytes").exists():
                (self.dir / "memory.memsw.limit_in_bytes").write_text(str(limit))
            self.peak_file = self.dir / "memory.max_usage_in_bytes"
        else:
            sys.exit("no cgroup memory controller found (need cgroup v1 or v2 mounted at /sys/fs/cgroup)")

    def run(self, cmd: list) -> subprocess.CompletedProcess:
        procs = self.dir / "cgroup.procs"
        return subprocess.run(cmd, capture_output=True, text=True,
                              preexec_fn=lambda: procs.write_text(str(os.getpid())))

    def peak_mib(self) -> float:
        return int(self.peak_file.read_text()) / 2**20 if self.peak_file.exists() else float("nan")

    def close(self) -> None:
        for _ in range(50):  # the group can be removed once its last process has been reaped
            try:
                self.dir.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def drop_from_page_cache(paths: list) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def weight_bytes(hf: Path) -> tuple:
    """(all weight bytes, expert weight bytes) of a Mixtral-layout checkpoint, from its safetensors headers."""
    total = experts = 0
    for f in sorted(hf.glob("*.safetensors")):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            size = info["data_offsets"][1] - info["data_offsets"][0]
            total += size
            experts += size if ".experts." in name else 0
    return total, experts


def child_llama(gguf: str, decode: int) -> None:
    """One llama.cpp measurement in this process (run inside the group): prompt, then timed greedy decode."""
    import numpy as np
    from llama_cpp import Llama
    llm = Llama(model_path=gguf, n_ctx=256, n_batch=PROMPT, n_ubatch=PROMPT, n_threads=2, n_threads_batch=2,
                use_mmap=True, verbose=False)
    n_vocab = llm.n_vocab()

    def argmax() -> int:
        return int(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).argmax())

    llm.eval(np.random.default_rng(1234).integers(3, VOCAB, PROMPT).tolist())
    tok = argmax()
    t = time.perf_counter()
    for _ in range(decode):
        llm.eval([tok])
        tok = argmax()
    print("RESULT " + json.dumps(dict(decode_tps=decode / (time.perf_counter() - t))), flush=True)


def measure(cap: MemoryCap, engine: str, cmd: list) -> dict:
    """Runs one measurement in `cap` and returns decode tok/s and the group's peak charge (None if it failed)."""
    r = cap.run(cmd)
    if r.returncode != 0:
        why = "killed at the memory limit" if r.returncode in (-9, 137) else r.stderr.strip()[-300:]
        print(f"  {engine}: failed ({why})", file=sys.stderr, flush=True)
        return dict(decode_tps=None, peak_mib=cap.peak_mib())
    if engine == "moert":
        tps = float(re.search(r"decode\s+\d+ tokens\s+([\d.]+) tok/s", r.stdout).group(1))
    else:
        tps = json.loads(r.stdout.split("RESULT ", 1)[1])["decode_tps"]
    return dict(decode_tps=tps, peak_mib=cap.peak_mib())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16"])
    ap.add_argument("--shares", default="100,50,25", help="comma list of expert shares in percent")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--headroom-mib", type=int, default=64, help="added to every cap: runtime, KV cache, buffers")
    ap.add_argument("--moert", default=str(REPO / "build" / "bin" / "moert"))
    ap.add_argument("--work", type=Path, default=default_work())
    ap.add_argument("--child-llama", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_llama:
        child_llama(args.child_llama, args.decode)
        return

    d = args.work / args.preset
    hf = d / ("hf" if args.dtype == "f32" else "hf-f16")
    gguf = d / f"model-{args.dtype}.gguf"
    for p in (hf / "config.json", gguf):
        if not p.exists():
            sys.exit(f"{p}: missing; run ../shared/bench/make_model.py (and benchmarks/compare.py for hf-f16/)")
    total, experts = weight_bytes(hf)
    files = [str(f) for f in hf.glob("*.safetensors")] + [str(gguf)]
    print(f"{args.preset} {args.dtype}: weights {total / 2**20:.0f} MiB, experts {experts / 2**20:.0f} MiB, "
          f"headroom {args.headroom_mib} MiB", file=sys.stderr)

    rows = []
    for share in [int(s) for s in args.shares.split(",")]:
        cap = total - experts + experts * share // 100 + args.headroom_mib * 2**20
        commands = {
            "moert": [args.moert, "bench", "--model", str(hf), "--prompt", str(PROMPT), "--decode", str(args.decode),
                      "--repeat", "1", "--ctx", "256", "--threads", "2"]
                     + ([] if share >= 100 else ["--expert-budget", f"{share}%"]),
            "llama.cpp": [sys.executable, __file__, "--child-llama", str(gguf), "--decode", str(args.decode)],
        }
        for engine, cmd in commands.items():
            reps = []
            for i in range(args.reps):
                drop_from_page_cache(files)
                group = MemoryCap(cap, f"moert-memcap-{os.getpid()}-{share}-{engine.replace('.', '')}-{i}")
                try:
                    reps.append(measure(group, engine, cmd))
                finally:
                    group.close()
                print(f"  {share}% {engine}: {reps[-1]}", file=sys.stderr, flush=True)
            ok = [r["decode_tps"] for r in reps if r["decode_tps"] is not None]
            rows.append(dict(share=share, engine=engine, cap_mib=cap / 2**20,
                             decode_tps=statistics.median(ok) if ok else None, failed=len(reps) - len(ok),
                             peak_mib=statistics.median(r["peak_mib"] for r in reps), reps=reps))

    full = {r["engine"]: r["decode_tps"] for r in rows if r["share"] >= 100}
    print(f"\n| {args.preset} {args.dtype} | cap MiB | decode tok/s | vs own 100% | peak charge MiB |")
    print("|---|---|---|---|---|")
    for r in rows:
        tps = "failed" if r["decode_tps"] is None else f"{r['decode_tps']:.1f}"
        ratio = "" if r["decode_tps"] is None or not full.get(r["engine"]) else f"{r['decode_tps'] / full[r['engine']]:.2f}x"
        print(f"| {r['engine']} {r['share']}% | {r['cap_mib']:.0f} | {tps}{' (' + str(r['failed']) + ' failed)' if r['failed'] and r['decode_tps'] else ''} "
              f"| {ratio} | {r['peak_mib']:.0f} |")
    print("\nmoert / llama.cpp under the same cap:")
    for share in sorted({r["share"] for r in rows}, reverse=True):
        m = next(r for r in rows if r["share"] == share and r["engine"] == "moert")["decode_tps"]
        l = next(r for r in rows if r["share"] == share and r["engine"] == "llama.cpp")["decode_tps"]
        print(f"  {share}%: " + (f"{m / l:.2f}x" if m and l else "n/a (a run failed)"))


if __name__ == "__main__":
    main()
