#!/usr/bin/env bash
# fuzz.sh — builds the libFuzzer targets of Tests/fuzz and runs each for a given time, one process at a time.
#
# Usage: tools/fuzz.sh [TARGET] [SECONDS]
#        tools/fuzz.sh coverage
#   TARGET   safetensors | config | loader | tokenizer | jinja | kernels | all   (default: all)
#   SECONDS  run time per target                         (default: 60)
#   coverage replays each target's corpus (seeds and what the fuzzer found) once through a build instrumented for
#            source coverage, and prints the line and branch coverage of the files the target exercises
#   FUZZ_ARGS extra libFuzzer flags, e.g. FUZZ_ARGS="-only_ascii=1"
#
# Each target runs as one libFuzzer process (no -jobs/-workers), the targets one after another, so a run uses one
# core. moert's Swift layers (MODULES, in dependency order) are compiled once with -sanitize=fuzzer,address (checked
# arithmetic, -O) into .build/fuzz/, then linked into each target. Seeds come from Tests/fuzz/corpus/<target> (read only); inputs the fuzzer finds go to
# .build/fuzz/corpus/<target>, crashes, timeouts and out-of-memory inputs to .build/fuzz/artifacts/<target>/.
# The log of each run is .build/fuzz/<target>.log. Ends with one summary line per target: executions, libFuzzer's
# coverage counters (cov: edges, ft: features), corpus size and findings (artifacts written by this run). Exit
# status 1 when any target found something.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${1:-all}"
SECONDS_PER_TARGET="${2:-60}"
OUT="$ROOT/.build/fuzz"
ALL_TARGETS=(safetensors config loader tokenizer jinja kernels)
# The Swift targets of Sources/ the fuzz targets link, each importing only those before it.
MODULES=(MoertTensor MoertFormats MoertText MoertMoE MoertCore)

case "$TARGET" in
    all|coverage) TARGETS=("${ALL_TARGETS[@]}") ;;
    safetensors|config|loader|tokenizer|jinja|kernels) TARGETS=("$TARGET") ;;
    *) echo "usage: $0 [safetensors|config|loader|tokenizer|jinja|kernels|all] [SECONDS] | $0 coverage" >&2; exit 2 ;;
esac
[[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || { echo "SECONDS must be a whole number" >&2; exit 2; }

# The Swift source file of each target, and the longest input libFuzzer may build.
source_of() { case "$1" in safetensors) echo FuzzSafetensors.swift ;; config) echo FuzzConfig.swift ;; loader) echo FuzzLoader.swift ;; tokenizer) echo FuzzTokenizer.swift ;; jinja) echo FuzzJinja.swift ;; kernels) echo FuzzKernels.swift ;; esac; }
max_len_of() { case "$1" in safetensors) echo 16384 ;; config) echo 8192 ;; loader) echo 16384 ;; tokenizer) echo 16384 ;; jinja) echo 20000 ;; kernels) echo 4096 ;; esac; }

# clang, llvm-profdata and llvm-cov must come from the Swift toolchain: their versions must match its runtimes.
TOOLCHAIN="$(dirname "$(readlink -f "$(command -v swiftc)")")"
SANITIZE=(-sanitize=fuzzer,address)
C_SANITIZE=(-fsanitize=fuzzer-no-link,address)
if [[ "$TARGET" == coverage ]]; then
    # Source coverage instead of AddressSanitizer, in its own directory; -Onone keeps lines and regions exact.
    OUT="$OUT/coverage"
    SANITIZE=(-sanitize=fuzzer -profile-generate -profile-coverage-mapping)
    C_SANITIZE=(-fsanitize=fuzzer-no-link -fprofile-instr-generate -fcoverage-mapping)
    OPT=-Onone
    DEBUG=-gline-tables-only  # full -g at -Onone adds a module-wrapping job that clashes with -emit-object -o
else
    OPT=-O
    DEBUG=-g
fi
BLAS_FLAGS=($(pkg-config --cflags-only-I openblas | sed 's/^/-Xcc /'))
BLAS_LIBS=($(pkg-config --libs openblas libpcre2-8 libutf8proc))
# ld.gold warns once per ASan helper symbol it cannot export; those lines are noise.
quiet() { grep -v "Cannot export local symbol" || true; }

# C targets the Swift layers import (Sources/<Name>/ with an include/ directory, as SwiftPM lays them out): each gets
# a module map under .build/fuzz/c/<Name> and is compiled with the same sanitizers into the static library.
c_targets() {
    local d m
    for d in Sources/*/; do
        d="${d%/}"
        [[ -d "$d/include" && -n "$(find "$d" -maxdepth 1 -name '*.c' -print -quit)" ]] || continue
        for m in "${MODULES[@]}"; do
            if grep -rqs "^import $(basename "$d")\$" "Sources/$m"; then basename "$d"; break; fi
        done
    done
}

build_core() {
    local lib="$OUT/lib/libmoert-layers.a" name header src module
    local deps=(include)
    for module in "${MODULES[@]}"; do deps+=("Sources/$module"); done
    for name in $(c_targets); do deps+=("Sources/$name"); done
    if [[ -f "$lib" ]] && [[ -z "$(find "${deps[@]}" tools/fuzz.sh -newer "$lib" -print -quit)" ]]; then return; fi
    echo "building instrumented ${MODULES[*]}"
    rm -rf "$OUT/lib" "$OUT/c"
    mkdir -p "$OUT/lib"
    local c_flags=() objects=()
    for name in $(c_targets); do
        mkdir -p "$OUT/c/$name"
        {
            echo "module $name {"
            for header in "$ROOT/Sources/$name/include/"*.h; do echo "    header \"$header\""; done
            echo "    export *"
            echo "}"
        } >"$OUT/c/$name/module.modulemap"
        c_flags+=(-I "$OUT/c/$name" -Xcc "-I$ROOT/Sources/$name/include")
        for src in "Sources/$name/"*.c; do
            local obj="$OUT/c/$name/$(basename "$src" .c).o"
            "$TOOLCHAIN/clang" -O2 -g -std=c11 "${C_SANITIZE[@]}" -I "Sources/$name/include" -c "$src" -o "$obj"
            objects+=("$obj")
        done
    done
    for module in "${MODULES[@]}"; do
        # shellcheck disable=SC2046  # one argument per source file
        swiftc "${SANITIZE[@]}" "$OPT" "$DEBUG" -enable-testing -parse-as-library -module-name "$module" -package-name moert \
            -emit-module -emit-module-path "$OUT/lib/$module.swiftmodule" -emit-object -wmo -o "$OUT/lib/$module.o" \
            -I "$OUT/lib" -I include -I Sources/COpenBLAS -I Sources/CSystem -I Sources/CPCRE2 -I Sources/CUtf8proc "${c_flags[@]}" "${BLAS_FLAGS[@]}" \
            $(find "Sources/$module" -name '*.swift' | sort) >"$OUT/build-$module.log" 2>&1 || { quiet <"$OUT/build-$module.log"; exit 1; }
        objects+=("$OUT/lib/$module.o")
    done
    ar rcs "$lib" "${objects[@]}"
}

build_target() {
    local t="$1" bin="$OUT/fuzz-$1"
    local src="Tests/fuzz/$(source_of "$t")" name c_flags=()
    for name in $(c_targets); do c_flags+=(-I "$OUT/c/$name" -Xcc "-I$ROOT/Sources/$name/include"); done
    if [[ -f "$bin" && "$bin" -nt "$OUT/lib/libmoert-layers.a" && "$bin" -nt "$src" && "$bin" -nt Tests/fuzz/FuzzSupport.swift ]]; then return; fi
    echo "building fuzz-$t"
    swiftc "${SANITIZE[@]}" "$OPT" "$DEBUG" -parse-as-library -module-name "Fuzz_$t" -package-name moert \
        -I "$OUT/lib" -I include -I Sources/COpenBLAS -I Sources/CSystem -I Sources/CPCRE2 -I Sources/CUtf8proc "${c_flags[@]}" "${BLAS_FLAGS[@]}" \
        Tests/fuzz/FuzzSupport.swift "$src" "$OUT/lib/libmoert-layers.a" "${BLAS_LIBS[@]}" -lpthread -o "$bin" 2>&1 | quiet
    [[ -x "$bin" ]] || exit 1
}

summaries=()
found=0
run_target() {
    local t="$1"
    local corpus="$OUT/corpus/$t" artifacts="$OUT/artifacts/$t" log="$OUT/$t.log"
    mkdir -p "$corpus" "$artifacts"
    touch "$OUT/.start-$t"
    echo "fuzzing $t for ${SECONDS_PER_TARGET}s (log: $log)"
    local status=0
    # shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" "$OUT/fuzz-$t" "$corpus" "Tests/fuzz/corpus/$t" \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len_of "$t")" -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
    grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)" "$log" || true
    local execs cov ft corp findings
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)"
    ft="$(grep -oE 'ft: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)"
    corp="$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1 | cut -d' ' -f2)"
    findings="$(find "$artifacts" -type f -newer "$OUT/.start-$t" | wc -l)"
    if [[ $status != 0 || $findings != 0 ]]; then
        found=1
        grep -E 'ERROR: |SUMMARY: |Fatal error|invariant violated' "$log" | head -n 5 || true
    fi
    summaries+=("$(printf '%-12s %6ss  execs %-10s cov %-6s ft %-7s corpus %-12s findings %s (exit %s)' \
        "$t" "$SECONDS_PER_TARGET" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$findings" "$status")")
}

# The Swift files each target is meant to exercise, for the coverage report.
files_of() {
    local formats=Sources/MoertFormats
    case "$1" in
        safetensors) echo "$formats/Safetensors.swift $formats/MappedFile.swift $formats/JSON.swift" ;;
        config) echo "$formats/JSON.swift $formats/ModelConfig.swift $formats/MoESection.swift" ;;
        tokenizer) ls Sources/MoertText/Tokenizer/*.swift ;;
        jinja) echo Sources/MoertText/Chat/*.swift Sources/MoertText/Chat/Jinja/*.swift ;;
        kernels) echo Sources/MoertTensor/Support/KernelCache.swift Sources/MoertTensor/Support/KernelChoice.swift ;;
        loader) echo "$formats/Checkpoint.swift $formats/Safetensors.swift $formats/ModelConfig.swift $formats/MoESection.swift Sources/MoertCore/Model/Model.swift Sources/MoertCore/Model/LayerLoader.swift Sources/MoertCore/Session/Session.swift Sources/MoertMoE/MoEBlock.swift Sources/MoertMoE/Experts/ExpertStore.swift" ;;
    esac
}

# Replays .build/fuzz/corpus/<target> and the seeds once (-runs=0) and reports source coverage.
coverage_target() {
    local t="$1" prof="$OUT/$t"
    rm -f "$prof".profraw "$prof".profdata
    mkdir -p "$ROOT/.build/fuzz/corpus/$t"
    echo "replaying the $t corpus ($(find "$ROOT/.build/fuzz/corpus/$t" "Tests/fuzz/corpus/$t" -type f | wc -l) inputs)"
    LLVM_PROFILE_FILE="$prof.profraw" "$OUT/fuzz-$t" -runs=0 "$ROOT/.build/fuzz/corpus/$t" "Tests/fuzz/corpus/$t" \
        >"$OUT/$t.log" 2>&1 || { tail -n 20 "$OUT/$t.log"; found=1; return; }
    grep -E "^#[0-9]+[[:space:]]+INITED" "$OUT/$t.log" || true
    "$TOOLCHAIN/llvm-profdata" merge -sparse "$prof.profraw" -o "$prof.profdata"
    # shellcheck disable=SC2046  # one argument per file
    "$TOOLCHAIN/llvm-cov" report "$OUT/fuzz-$t" -instr-profile="$prof.profdata" $(files_of "$t") | cut -c1-160
}

build_core
for t in "${TARGETS[@]}"; do build_target "$t"; done
if [[ "$TARGET" == coverage ]]; then
    for t in "${TARGETS[@]}"; do coverage_target "$t"; done
    exit $found
fi
for t in "${TARGETS[@]}"; do run_target "$t"; done
printf '%s\n' "${summaries[@]}"
exit $found
