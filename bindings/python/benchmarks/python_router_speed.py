"""How much a router written in Python costs, against moert's built-in router, on a small fixture model.

Usage (from the repository root, after `make`):

    MOERT_LIBRARY=$PWD/build/lib/libmoert.so python3 bindings/python/benchmarks/python_router_speed.py \
        [--model Tests/fixtures/mixtral] [--steps 300] [--prefill 64] [--repeats 7] [--threads 1]

For each router it times `--steps` single-token decode calls (``session.eval([token])``) and one prefill call of
`--prefill` tokens with ``time.perf_counter``. The routers run in turn within each repeat and the fastest of
`--repeats` runs is kept (other processes on the machine only ever add time). It prints tokens/s, the cost of one
route() call above the built-in router ((time with the Python router - time with the built-in) / route calls),
and how much of that is spent inside the Python ``route()`` body itself (the lowest per-call mean of a run); the
rest is the binding's callback machinery (ctypes trampoline and GIL, NumPy views of the C buffers, checking and
copying the result).

Routers compared, all choosing the same experts (so the expert work is the same):

- ``topk`` (built-in, Swift): softmax top-k over the model's gate;
- ``py_topk``: softmax top-k in NumPy reading ``gate.weight``, returning (ids, weights);
- ``py_topk_inplace``: the same, writing moert's output buffers in place and returning None.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import moert  # noqa: E402


def _top_k(logits: np.ndarray, k: int) -> Any:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = shifted * (np.float32(1) / shifted.sum(axis=1, keepdims=True, dtype=np.float32))
    ids = np.argsort(-p, axis=1, kind="stable")[:, :k]
    weights = np.take_along_axis(p, ids, axis=1)
    return ids, weights / weights.sum(axis=1, keepdims=True, dtype=np.float32)


# Seconds spent inside route() bodies, and calls, per router kind.
BODY: Dict[str, List[float]] = {}


class TopK(moert.Router):
    kind = "py_topk"

    def __init__(self, layer: moert.LayerInfo, context: moert.CreateContext) -> None:
        super().__init__(layer, context)
        self.gate = context.tensor("gate.weight")
        self.body = BODY.setdefault(self.kind, [0.0, 0])

    def route(self, x: np.ndarray, token_ids: np.ndarray, positions: np.ndarray, batch: moert.RouterBatch) -> Any:
        start = time.perf_counter()
        result = _top_k(x @ self.gate.T, self.layer.top_k)
        self.body[0] += time.perf_counter() - start
        self.body[1] += 1
        return result


class TopKInPlace(TopK):
    kind = "py_topk_inplace"

    def route(self, x: np.ndarray, token_ids: np.ndarray, positions: np.ndarray, batch: moert.RouterBatch) -> Any:
        start = time.perf_counter()
        ids, weights = _top_k(x @ self.gate.T, self.layer.top_k)
        batch.out_expert_ids[...] = ids
        batch.out_weights[...] = weights
        batch.out_counts[...] = ids.shape[1]
        self.body[0] += time.perf_counter() - start
        self.body[1] += 1
        return None


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(HERE.parents[2] / "Tests" / "fixtures" / "mixtral"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--prefill", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    routers = ("topk", "py_topk", "py_topk_inplace")
    for name, factory in (("py_topk", TopK), ("py_topk_inplace", TopKInPlace)):
        if name not in moert.router_kinds():
            moert.register_router(name, factory)
    rng = np.random.default_rng(0)
    with moert.Model(args.model, threads=args.threads) as model:
        info = model.info
        decode_tokens = [[int(t)] for t in rng.integers(0, info.vocab_size, size=args.steps)]
        prompt = rng.integers(0, info.vocab_size, size=args.prefill).astype(np.int32)
        print(f"{info.architecture}: {info.n_layers} layers ({info.n_moe_layers} MoE), hidden {info.hidden_size}, "
              f"{info.n_experts} experts, top-{info.n_experts_per_tok}; moert threads {moert.get_threads()}; "
              f"best of {args.repeats} runs")
        decode: Dict[str, List[float]] = {r: [] for r in routers}
        prefill: Dict[str, List[float]] = {r: [] for r in routers}
        sessions = {r: model.session(n_ctx=max(args.steps, args.prefill) + 1) for r in routers}
        for router, session in sessions.items():
            session.set_router(None if router == "topk" else router)
            for tokens in decode_tokens:  # warm-up: experts materialised, caches filled
                session.eval(tokens)
        body_per_call: Dict[str, List[float]] = {r: [] for r in routers}
        for _ in range(args.repeats):
            for router, session in sessions.items():
                session.reset()
                for body in BODY.values():  # the instances hold these lists
                    body[:] = [0.0, 0]
                start = time.perf_counter()
                for tokens in decode_tokens:
                    session.eval(tokens)
                decode[router].append(time.perf_counter() - start)
                if router in BODY:
                    body_per_call[router].append(BODY[router][0] / max(BODY[router][1], 1))
                session.reset()
                start = time.perf_counter()
                session.eval(prompt)
                prefill[router].append(time.perf_counter() - start)
        for session in sessions.values():
            session.close()
        best_decode = {r: min(t) for r, t in decode.items()}
        best_prefill = {r: min(t) for r, t in prefill.items()}
        calls = args.steps * info.n_moe_layers
        print(f"{'router':<16} {'decode tok/s':>12} {'us/token':>9} {'extra us/call':>14} {'in route()':>11} "
              f"{'prefill tok/s':>14}")
        for router in routers:
            line = f"{router:<16} {args.steps / best_decode[router]:12.0f} {best_decode[router] / args.steps * 1e6:9.1f}"
            if router == "topk":
                line += f" {'':>14} {'':>11}"
            else:
                extra = (best_decode[router] - best_decode["topk"]) / calls * 1e6
                line += f" {extra:14.1f} {min(body_per_call[router]) * 1e6:11.1f}"
            print(line + f" {args.prefill / best_prefill[router]:14.0f}")


if __name__ == "__main__":
    main()
