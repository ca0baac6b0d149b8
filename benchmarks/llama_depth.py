#!/usr/bin/env python3
"""llama.cpp's decode speed after a long context, with the protocol of `moert bench --depth`.

    python benchmarks/llama_depth.py MODEL.gguf --depth 0,1000,4000 [--kv-type f16] [--flash-attn on|off]
                                     [--repeat 3] [--threads 2]

After a warm-up prefill, for each depth N: fill the KV cache with N pseudo-random tokens (one untimed prefill, batches of 512), then time 64
greedy single-token decode steps; R times; print `depth N decode X tok/s` (the median), as moert does. The context
is sized for the largest depth + 64. Needs llama-cpp-python (the venv of ../shared/bench).
"""
import argparse
import statistics
import time

import numpy as np

STEPS = 64
GGML_TYPES = {"f32": 0, "f16": 1, "q8_0": 8, "bf16": 30}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--depth", required=True)
    ap.add_argument("--kv-type", choices=GGML_TYPES, default="f16")
    ap.add_argument("--flash-attn", choices=["on", "off"], default="on")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=0, help="context size (default: the largest depth + 64)")
    args = ap.parse_args()
    depths = [int(d) for d in args.depth.split(",")]
    from llama_cpp import Llama
    t = GGML_TYPES[args.kv_type]
    llm = Llama(model_path=args.model, n_ctx=args.ctx or max(depths) + STEPS, n_batch=512, n_ubatch=512,
                n_threads=args.threads, n_threads_batch=args.threads, type_k=t, type_v=t,
                flash_attn=args.flash_attn == "on", use_mmap=False, verbose=False)
    n_vocab = llm.n_vocab()
    tokens = np.random.default_rng(1234).integers(3, n_vocab, llm.n_ctx()).tolist()

    def argmax() -> int:
        return int(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).argmax())

    print(f"kv cache {args.kv_type}, flash attention {args.flash_attn}, context {llm.n_ctx()}")
    llm.eval(tokens[:512])  # warm-up, as moert's

    for depth in depths:
        rates = []
        for _ in range(args.repeat):
            llm.reset()
            if depth > 0:
                llm.eval(tokens[:depth])
                tok = argmax()
            else:
                tok = tokens[0]
            t0 = time.perf_counter()
            for _ in range(STEPS):
                llm.eval([tok])
                tok = argmax()
            rates.append(STEPS / (time.perf_counter() - t0))
        print(f"depth {depth} decode {statistics.median(rates):.1f} tok/s")
        print(f"  runs {' '.join(f'{r:.1f}' for r in rates)}", flush=True)


if __name__ == "__main__":
    main()
