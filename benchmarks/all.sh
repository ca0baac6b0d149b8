#!/bin/sh
# all.sh: every table of BENCHMARKS.md in one command — both presets beside llama.cpp and transformers (with the
# expert budget sweep and the kernels of a CPU without AVX-512), then decode under a memory limit beside llama.cpp's mmap.
#
#   benchmarks/all.sh            (PY: the peer harness venv, default ~/.cache/moert-bench/venv/bin/python;
#                                 rounds as in BENCHMARKS.md: 5 small, 3 medium, 3 memcap; memcap.py needs root)
set -e
cd "$(dirname "$0")/.."
PY=${PY:-$HOME/.cache/moert-bench/venv/bin/python}
make
"$PY" benchmarks/compare.py --preset small --reps 5 --budgets 50,25 --no-avx512
"$PY" benchmarks/compare.py --preset medium --reps 3 --budgets 50,25 --no-avx512
for dtype in f32 f16; do
    "$PY" benchmarks/memcap.py --preset small --dtype "$dtype" --reps 3
done
