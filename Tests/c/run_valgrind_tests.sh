#!/usr/bin/env bash
# run_valgrind_tests.sh — runs the C host test (Tests/c/api), the plugin ABI test and a plugin load/unload loop under
# valgrind against a staged build.
#
# Usage: Tests/c/run_valgrind_tests.sh STAGE_DIR [CYCLES]     (STAGE_DIR as staged by `make`; CYCLES default 100)
#
# Every program must finish with no invalid read or write, no use of uninitialised memory and no definite or
# indirect leak. The Swift runtime's per-image caches, which become unreachable when a Swift plugin is unloaded,
# are suppressed by Tests/c/valgrind-swift-runtime.supp (see the reasons there); the suppressed totals are printed.
# Without valgrind installed the script says so and succeeds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STAGE="$(cd "${1:?usage: $0 STAGE_DIR [CYCLES]}" && pwd)"
CYCLES="${2:-100}"
if ! command -v valgrind >/dev/null; then
    echo "valgrind not installed: skipped"
    exit 0
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
# Timings under valgrind mean nothing: no kernel is measured, the table of measured defaults decides.
export MOERT_KERNEL_CACHE=off

flags="$(PKG_CONFIG_PATH="$STAGE/lib/pkgconfig" pkg-config --cflags --libs moert)"
# shellcheck disable=SC2086  # pkg-config output is a list of flags
gcc -std=c11 -Wall -Wextra -Werror -g Tests/c/check.c Tests/c/api/*.c -o "$WORK/test_api" $flags -lpthread -lm
# shellcheck disable=SC2086
gcc -std=c11 -Wall -Wextra -Werror -g Tests/c/plugin_load_loop.c -o "$WORK/plugin_load_loop" $flags
# shellcheck disable=SC2086
gcc -std=c11 -Wall -Wextra -Werror -g Tests/c/check.c Tests/c/test_plugin_abi.c -o "$WORK/test_plugin_abi" $flags -lm
for p in faulty topk_c bad_abi no_entry init_fails; do
    gcc -O2 -g -std=c11 -Wall -Werror -shared -fPIC -fvisibility=hidden -Iinclude "Tests/c/plugins/$p.c" -lm \
        -o "$WORK/libmoert_test_$p.so"
done
cp "$WORK/libmoert_test_faulty.so" "$WORK/libmoert_test_faulty_copy.so"

plugins=()
for lib in "$STAGE"/lib/libmoert_*.so; do
    name="$(basename "$lib" .so)"
    plugins+=("${name#libmoert_}")
done

failed=0
# Runs one program under valgrind; prints its last output line and valgrind's summary.
check() {
    local name="$1"
    shift
    local status=0
    valgrind --leak-check=full --keep-debuginfo=yes --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
        --suppressions=Tests/c/valgrind-swift-runtime.supp "$@" >"$WORK/$name.out" 2>"$WORK/$name.vg" || status=$?
    echo "$name: $(tail -n 1 "$WORK/$name.out")"
    grep -E "(definitely|indirectly|possibly) lost:|suppressed:|ERROR SUMMARY" "$WORK/$name.vg" | sed 's/^==[0-9]*== */    /' || true
    if [[ $status != 0 ]]; then
        grep -E -A8 "Invalid|uninitialised|definitely lost in|indirectly lost in" "$WORK/$name.vg" | head -n 60 || true
        # valgrind itself may give up (e.g. on debug information it cannot read): show its last words
        grep -q "ERROR SUMMARY" "$WORK/$name.vg" || tail -n 8 "$WORK/$name.vg"
        echo "FAIL  $name under valgrind (exit status $status)"
        failed=1
    else
        echo "ok    $name under valgrind"
    fi
}

check test_api "$WORK/test_api" Tests/fixtures
check test_plugin_abi "$WORK/test_plugin_abi" Tests/fixtures "$WORK"
check plugin_load_loop "$WORK/plugin_load_loop" "$CYCLES" "${plugins[@]}"
exit $failed
