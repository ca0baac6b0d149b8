#!/bin/sh
# all.sh: every table of BENCHMARKS.md in one command — both presets beside llama.cpp and transformers (with the
# expert budget sweep and OpenBLAS's own kernel choice), then decode under a memory limit beside llama.cpp's mmap.
#
#   benchmarks/all.sh            (PY: the peer harness venv, default ~/.cache/moert-bench/venv/bin/python;
#                                 REPS: runs per configuration, default 3; memcap.py needs root for cgroups)
set -e
cd "$(dirname "$0")/.."
PY=${PY:-$HOME/.cache/moert-bench/venv/bin/python}
REPS=${REPS:-3}
make
for preset in small medium; do
    "$PY" benchmarks/compare.py --preset "$preset" --reps "$REPS" --budgets 50,25 --blas-auto
done
for dtype in f32 f16; do
    "$PY" benchmarks/memcap.py --preset small --dtype "$dtype" --reps "$REPS"
done
