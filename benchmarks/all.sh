#!/bin/sh
# all.sh: every table of BENCHMARKS.md in one command — both presets beside llama.cpp and transformers (with the
# expert budget sweep and the kernels of a CPU without AVX-512), quantized weights beside llama.cpp's, then decode
# under a memory limit beside llama.cpp's mmap. (The depth tables: compare.py --depth, see BENCHMARKS.md.)
#
#   benchmarks/all.sh            (PY: the peer harness venv, default ~/.cache/moert-bench/venv/bin/python;
#                                 rounds as in BENCHMARKS.md: 5 small, 3 medium, 3 memcap; memcap.py needs root)
set -e
cd "$(dirname "$0")/.."
PY=${PY:-$HOME/.cache/moert-bench/venv/bin/python}
make
"$PY" benchmarks/compare.py --preset small --reps 5 --budgets 50,25 --no-avx512
"$PY" benchmarks/compare.py --preset medium --reps 3 --budgets 50,25 --no-avx512
# quantized weights beside llama.cpp's own quantization of the same f16 values, and the budget with q4_0
"$PY" benchmarks/compare.py --preset small --quant q8_0,q4_0 --peers '' --reps 3
"$PY" benchmarks/compare.py --preset medium --quant q8_0,q4_0 --peers '' --reps 2
"$PY" benchmarks/compare.py --preset small --quant q4_0 --peers '' --budgets 50 --reps 3 --no-limits
for dtype in f32 f16; do
    "$PY" benchmarks/memcap.py --preset small --dtype "$dtype" --reps 3
done
