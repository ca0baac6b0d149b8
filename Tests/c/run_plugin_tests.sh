#!/usr/bin/env bash
# run_plugin_tests.sh — builds the gru, hash and comet router plugins as the Makefile does and runs their unit test.
#
# Usage: Tests/c/run_plugin_tests.sh        (from any directory; needs gcc)
#
# The plugins are compiled into a temporary directory with the Makefile's flags, each is checked to export only
# moert_plugin_init, and the test of Tests/c/routers (one program with Tests/c/check.c; it needs no libmoert) loads
# them with a fake host. The last line printed is the test's "N passed, M failed"; the exit status is non-zero on any
# failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

PLUGINS=(gru hash comet)
LIBS=()
for p in "${PLUGINS[@]}"; do
    gcc -O2 -std=c11 -Wall -Werror -shared -fPIC -fvisibility=hidden -Iinclude -IPlugins/common \
        Plugins/$p/*.c Plugins/common/*.c -lm \
        -o "$WORK/libmoert_$p.so"
    exported="$(nm -D --defined-only "$WORK/libmoert_$p.so" | awk '$2 ~ /^[A-Z]$/ { print $3 }' | sort -u)"
    if [[ "$exported" != "moert_plugin_init" ]]; then
        echo "libmoert_$p.so exports more than moert_plugin_init:" >&2
        echo "$exported" | sed 's/^/    /' >&2
        exit 1
    fi
    LIBS+=("$WORK/libmoert_$p.so")
done

gcc -O2 -std=c11 -Wall -Wextra -Werror -pthread -Iinclude Tests/c/check.c Tests/c/routers/*.c -o "$WORK/test_plugins" \
    -ldl -lm
"$WORK/test_plugins" "${LIBS[@]}"
