#!/bin/sh
# arch_all.sh: the DeepSeek-V2, DeepSeek-V3, GLM-4.5 MoE and gpt-oss table of BENCHMARKS.md in one command: make,
# the random models and llama.cpp's GGUF files of them (each made once, kept in $BENCH_WORK), the check that every
# GGUF reproduces transformers' logits, then moert beside llama.cpp and transformers.
#
#   benchmarks/arch_all.sh [arch_compare.py options, default --reps 5]
#
# PY: the peer harness venv (default ~/.cache/moert-bench/venv/bin/python); LLAMA_CPP_DIR: the llama.cpp source tree
# llama-cpp-python was built from (benchmarks/arch_gguf.py; default its /tmp/pip-download-* fallback).
set -e
cd "$(dirname "$0")/.."
PY=${PY:-$HOME/.cache/moert-bench/venv/bin/python}
WORK=${BENCH_WORK:-$HOME/.cache/moert-bench}
make
for arch in deepseek_v2 deepseek_v3 glm4_moe gpt_oss; do
    [ -f "$WORK/$arch-small/costs.json" ] || "$PY" benchmarks/arch_models.py --preset small --archs "$arch"
    [ -f "$WORK/$arch-small/model-f16.gguf" ] || "$PY" benchmarks/arch_gguf.py --preset small --archs "$arch"
done
"$PY" benchmarks/arch_check_gguf.py --preset small
[ $# -gt 0 ] || set -- --reps 5
"$PY" benchmarks/arch_compare.py --preset small "$@"
