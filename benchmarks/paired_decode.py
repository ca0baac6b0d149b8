"""moert and llama.cpp decoding in turns inside one process: the ratio of their decode speeds in the same seconds.

    PY=~/.cache/moert-bench/venv/bin/python
    $PY benchmarks/paired_decode.py --preset small|medium [--dtype f16|f32] [--pairs 24] [--json OUT.json]

On a shared machine the memory's bandwidth moves from one second to the next (BENCHMARKS.md, "Zen 4 EPYC: decode
beside the bandwidth of the same seconds"), while compare.py gives each engine its own process, seconds to minutes
apart: the ratio of two engines then depends on the phases their turns fell in. Here both engines are loaded in this
process on the same weights (moert on hf/ or hf-f16/ through its Python binding, llama.cpp on model-f32.gguf or
model-f16.gguf through llama-cpp-python, 2 threads each) and decode greedily in bursts of 16 tokens, taking turns (the
first of a pair alternates), after a 16-token prompt each (the protocol of ../shared/bench/peer_bench.py, with its
Python loop of one eval and one argmax per token on both sides). A pause of 50 ms before each burst lets the other
engine's idle threads (moert's workers, llama.cpp's OpenMP threads) stop spinning. Prints each pair's tok/s and
ratio, and the median ratio. Both contexts start over when the next burst would not fit 1,024 positions.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bindings" / "python"))
BURST, PROMPT, CONTEXT, PAUSE = 16, 16, 1024, 0.3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--dtype", choices=["f16", "f32"], default="f16")
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "moert-bench")
    ap.add_argument("--json", type=Path, help="also write the pairs here")
    args = ap.parse_args()

    import moert
    from llama_cpp import Llama

    base = args.work / args.preset
    hf, gguf = base / ("hf-f16" if args.dtype == "f16" else "hf"), base / f"model-{args.dtype}.gguf"
    for p in (hf, gguf):
        if not p.exists():
            sys.exit(f"{p}: missing (make_model.py, compare.py or benchmarks/hf_to_gguf.py make it)")
    model = moert.Model(str(hf))
    session = moert.Session(model, n_ctx=CONTEXT)
    llm = Llama(model_path=str(gguf), n_ctx=CONTEXT, n_batch=512, n_ubatch=512, n_threads=2, n_threads_batch=2,
                use_mmap=False, verbose=False)
    n_vocab = llm.n_vocab()
    prompt = np.random.default_rng(0).integers(3, n_vocab, PROMPT).tolist()

    def llama_argmax() -> int:
        return int(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).argmax())

    def moert_start() -> int:
        session.reset()
        return int(session.eval(prompt).argmax())

    def llama_start() -> int:
        llm.reset()
        llm.eval(prompt)
        return llama_argmax()

    def llama_step(tok: int) -> int:
        llm.eval([tok])
        return llama_argmax()

    # Each engine: its (start, step, positions used); a step evaluates one token and returns the greedy next.
    moert_engine = (moert_start, lambda tok: int(session.eval([tok]).argmax()), lambda: session.n_past)
    llama_engine = (llama_start, llama_step, lambda: llm.n_tokens)

    def burst(engine: tuple, tok: int) -> tuple:
        """BURST greedy steps of `engine` after a pause (starting over when they would not fit): tok/s, next token."""
        start, step, used = engine
        if used() + BURST > CONTEXT:
            tok = start()
        time.sleep(PAUSE)
        t = time.perf_counter()
        for _ in range(BURST):
            tok = step(tok)
        return BURST / (time.perf_counter() - t), tok

    mine, theirs = moert_start(), llama_start()
    burst(moert_engine, mine)  # warm-up: both engines' first bursts touch their weights
    burst(llama_engine, theirs)
    pairs = []
    for i in range(args.pairs):
        if i % 2 == 0:
            m, mine = burst(moert_engine, mine)
            l, theirs = burst(llama_engine, theirs)
        else:
            l, theirs = burst(llama_engine, theirs)
            m, mine = burst(moert_engine, mine)
        pairs.append((m, l))
        print(f"pair {i}: moert {m:.1f} tok/s, llama.cpp {l:.1f} tok/s, ratio {m / l:.3f}", file=sys.stderr, flush=True)
    ratios = [m / l for m, l in pairs]
    print(f"{args.preset} {args.dtype}: moert {statistics.median(m for m, _ in pairs):.1f} tok/s, llama.cpp "
          f"{statistics.median(l for _, l in pairs):.1f} tok/s (medians of {len(pairs)} bursts of {BURST}); "
          f"moert / llama.cpp {statistics.median(ratios):.3f} (median of the pairs' ratios; "
          f"quartiles {np.percentile(ratios, 25):.3f}-{np.percentile(ratios, 75):.3f})")
    if args.json:
        args.json.write_text(json.dumps(dict(preset=args.preset, dtype=args.dtype, pairs=pairs), indent=1))


if __name__ == "__main__":
    main()
