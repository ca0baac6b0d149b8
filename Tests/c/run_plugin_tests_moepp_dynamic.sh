#!/usr/bin/env bash
# run_plugin_tests_moepp_dynamic.sh — builds the moepp (C) and dynamic (Swift) plugin libraries and runs their unit
# test, Tests/c/test_plugins_moepp_dynamic.c, against both.
#
# Usage: Tests/c/run_plugin_tests_moepp_dynamic.sh      (from any directory)
#
# moepp is compiled with gcc exactly as the Makefile compiles C plugins for installation; the Swift plugin is the
# debug build of the SwiftPM product moert_dynamic. The test prints "N passed, M failed" as its last line; the
# exit status is non-zero when a check fails or a build step fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
CC="${CC:-gcc}"
SWIFT="${SWIFT:-swift}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The C plugin, with the Makefile's flags.
"$CC" -O2 -std=c11 -Wall -Werror -shared -fPIC -fvisibility=hidden -Iinclude -IPlugins/common \
    Plugins/moepp/*.c Plugins/common/*.c -lm \
    -o "$WORK/libmoert_moepp.so"

# Only the entry point may be exported.
exported="$(nm -D --defined-only "$WORK/libmoert_moepp.so" | awk '$2 ~ /^[A-Z]$/ && $3 !~ /^_/ { print $3 }')"
if [[ "$exported" != "moert_plugin_init" ]]; then
    echo "libmoert_moepp.so exports more than moert_plugin_init:" >&2
    echo "$exported" >&2
    exit 1
fi

# The Swift plugin (debug).
"$SWIFT" build --product moert_dynamic
BIN="$("$SWIFT" build --show-bin-path)"

# The test.
"$CC" -std=c11 -Wall -Wextra -Werror -Iinclude Tests/c/check.c Tests/c/test_plugins_moepp_dynamic.c \
    -o "$WORK/test_plugins_moepp_dynamic" -ldl -lm
"$WORK/test_plugins_moepp_dynamic" "$WORK/libmoert_moepp.so" "$BIN/libmoert_dynamic.so"
